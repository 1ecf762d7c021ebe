//! `/api/freezes`: freeze windows. Reading them needs `view`; managing one needs
//! `manage_environments` in every environment it covers (system-wide for a window of
//! every environment), before and after a change. The gate itself is
//! `deployments::freezes`.

use std::sync::Arc;

use axum::{Extension, Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    freezes::{FreezeList, FreezeRequest, FreezeResponse},
};
use capstan_core::{
    access::{Permission, Scope},
    freeze::{self, Schedule},
    names,
};
use capstan_db::{
    DbError, agents,
    freezes::{self as db, NewWindow, WindowRow},
};
use time::OffsetDateTime;

use super::{
    ApiError,
    access::{Caller, forbidden},
    extract::{ApiJson, ApiPath},
    problems::Problems,
};
use crate::{
    audit::{self, Change, ChangedBy},
    deployments::freezes::{from_timestamp, release_held, response},
    node::NodeContext,
};

/// At most this many windows exist at once.
pub const MAX_WINDOWS: i64 = 500;
/// A window names at most this many projects, and as many environments.
const MAX_SCOPE: usize = 100;
const MAX_DESCRIPTION: usize = 4000;

/// The 409 of a deployment refused because a window holds it: names the window and
/// when it closes.
pub(crate) fn frozen(window: String, until: OffsetDateTime, detail: String) -> ApiError {
    let mut problem = Problem::new(409, "Conflict", detail.clone());
    problem
        .extensions
        .insert("freeze_window".to_owned(), serde_json::Value::from(window));
    problem.extensions.insert(
        "until".to_owned(),
        serde_json::Value::from(capstan_api::timestamp::format(until)),
    );
    ApiError {
        problem: Some(Box::new(problem)),
        ..ApiError::conflict(detail)
    }
}

/// `POST /api/deployments` with `override_freeze`: the caller needs `override_freeze`
/// on the release's project in the environment. Missing ones are the service's to
/// report.
pub(crate) async fn check_override(
    ctx: &NodeContext,
    caller: &Caller,
    release: i64,
    environment: &str,
) -> Result<(), ApiError> {
    let db = &ctx.pools.api;
    let failed = |e| ApiError::from_db(e, String::new);
    let project = capstan_db::access::release_project(db, release)
        .await
        .map_err(failed)?;
    let found = agents::find_environment(db, &names::nfc(environment))
        .await
        .map_err(failed)?;
    let (Some(project), Some(environment)) = (project, found) else {
        return Ok(());
    };
    let scope = Scope::Deployment {
        project,
        environment: environment.id,
    };
    if caller.may(Permission::OverrideFreeze, scope) {
        return Ok(());
    }
    Err(forbidden(ctx, Permission::OverrideFreeze, scope).await)
}

/// Refuses a caller who may not manage every environment `environments` names
/// (`None`: all of them).
async fn check_manage(
    ctx: &NodeContext,
    caller: &Caller,
    environments: Option<&[i64]>,
) -> Result<(), ApiError> {
    let scopes: Vec<Scope> = match environments {
        None => vec![Scope::System],
        Some(ids) => ids.iter().map(|&e| Scope::Environment(e)).collect(),
    };
    for scope in scopes {
        if !caller.may(Permission::ManageEnvironments, scope) {
            return Err(forbidden(ctx, Permission::ManageEnvironments, scope).await);
        }
    }
    Ok(())
}

fn stored_scope(row: &WindowRow) -> Option<&[i64]> {
    (!row.all_environments).then_some(&row.environment_ids[..])
}

fn window_error(e: DbError, name: &str, id: Option<i64>) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "freeze_windows_name" => {
            ApiError::conflict(format!("a freeze window named `{name}` already exists"))
        }
        e => ApiError::from_db(e, || {
            format!("there is no freeze window {}", id.unwrap_or_default())
        }),
    }
}

fn shown(row: WindowRow) -> Result<FreezeResponse, ApiError> {
    response(row, OffsetDateTime::now_utc()).map_err(|e| ApiError::from_db(e, String::new))
}

/// Checks a request and looks its projects and environments up; every problem at once.
async fn check(ctx: &NodeContext, request: &FreezeRequest) -> Result<NewWindow, ApiError> {
    let mut problems = Problems::new();
    problems.check("name", freeze::check_name(&request.name));
    if request.description.len() > MAX_DESCRIPTION {
        problems.add(
            "description",
            "a freeze window's description has at most 4,000 bytes",
        );
    }
    let fixed = request.start.is_some() || request.end.is_some();
    let recurring =
        request.cron.is_some() || request.duration.is_some() || request.time_zone.is_some();
    let now = jiff::Timestamp::now();
    let mut window = NewWindow {
        name: names::nfc(&request.name),
        description: request.description.clone(),
        starts_at: None,
        ends_at: None,
        cron: None,
        duration: None,
        time_zone: None,
        projects: None,
        environments: None,
    };
    match (fixed, recurring) {
        (true, true) => problems.add(
            "cron",
            "a window is fixed (`start` and `end`) or recurring (`cron`, `duration` and `time_zone`), not both",
        ),
        (false, false) => problems.add(
            "start",
            "a window needs `start` and `end` (fixed) or `cron`, `duration` and `time_zone` (recurring)",
        ),
        (true, false) => {
            let mut instant = |field: &'static str, value: &Option<String>| match value {
                None => {
                    problems.add(field, format!("a fixed window needs `{field}`"));
                    None
                }
                Some(text) => match freeze::parse_instant(text) {
                    Ok(at) => Some(at),
                    Err(detail) => {
                        problems.add(field, detail);
                        None
                    }
                },
            };
            let start = instant("start", &request.start);
            let end = instant("end", &request.end);
            if let (Some(start), Some(end)) = (start, end) {
                match Schedule::fixed(start, end) {
                    Ok(_) => {
                        window.starts_at = Some(from_timestamp(start));
                        window.ends_at = Some(from_timestamp(end));
                    }
                    Err(found) => {
                        for p in found {
                            problems.add(p.field, p.detail);
                        }
                    }
                }
            }
        }
        (false, true) => {
            let cron = request.cron.as_deref().unwrap_or_default();
            let duration = request.duration.as_deref().unwrap_or_default();
            let zone = request.time_zone.as_deref().unwrap_or_default();
            match Schedule::recurring(cron, duration, zone, now) {
                Ok(_) => {
                    window.cron = Some(cron.to_owned());
                    window.duration = Some(duration.to_owned());
                    window.time_zone = Some(zone.to_owned());
                }
                Err(found) => {
                    for p in found {
                        problems.add(p.field, p.detail);
                    }
                }
            }
        }
    }
    for (field, list) in [
        ("projects", &request.projects),
        ("environments", &request.environments),
    ] {
        if list.len() > MAX_SCOPE {
            problems.add(
                field,
                format!("a freeze window names at most {MAX_SCOPE} {field}"),
            );
        }
    }
    if !problems.is_empty() {
        return Err(problems.into());
    }
    let failed = |e| ApiError::from_db(e, String::new);
    if !request.projects.is_empty() {
        let wanted: Vec<String> = request.projects.iter().map(|p| names::nfc(p)).collect();
        let ids = db::project_ids(&ctx.pools.api, &wanted)
            .await
            .map_err(failed)?;
        let mut found = Vec::with_capacity(ids.len());
        for (i, (name, id)) in wanted.iter().zip(ids).enumerate() {
            match id {
                Some(id) => found.push(id),
                None => problems.add(
                    format!("projects[{i}]"),
                    format!("there is no project `{name}`"),
                ),
            }
        }
        window.projects = Some(found);
    }
    if !request.environments.is_empty() {
        let mut found = Vec::with_capacity(request.environments.len());
        for (i, name) in request.environments.iter().enumerate() {
            match agents::find_environment(&ctx.pools.api, &names::nfc(name))
                .await
                .map_err(failed)?
            {
                Some(row) => found.push(row.id),
                None => problems.add(
                    format!("environments[{i}]"),
                    format!("there is no environment `{name}`"),
                ),
            }
        }
        window.environments = Some(found);
    }
    problems.finish()?;
    Ok(window)
}

/// `GET /api/freezes`: every window, by name, each with whether it is open now.
#[utoipa::path(get, path = "/api/freezes", tag = "freezes", responses(
    (status = 200, body = FreezeList),
))]
pub(crate) async fn list_freezes(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<FreezeList>, ApiError> {
    let rows = db::list(&ctx.pools.api)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let items = rows.into_iter().map(shown).collect::<Result<_, _>>()?;
    Ok(Json(FreezeList { items }))
}

/// `GET /api/freezes/{id}`.
#[utoipa::path(get, path = "/api/freezes/{id}", tag = "freezes",
    params(("id" = i64, Path)), responses(
    (status = 200, body = FreezeResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_freeze(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<FreezeResponse>, ApiError> {
    let row = db::get(&ctx.pools.api, id)
        .await
        .map_err(|e| window_error(e, "", Some(id)))?;
    Ok(Json(shown(row)?))
}

/// `POST /api/freezes`.
#[utoipa::path(post, path = "/api/freezes", tag = "freezes",
    request_body = FreezeRequest, responses(
    (status = 201, body = FreezeResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_freeze(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<FreezeRequest>,
) -> Result<(StatusCode, Json<FreezeResponse>), ApiError> {
    let window = check(&ctx, &request).await?;
    check_manage(&ctx, &caller, window.environments.as_deref()).await?;
    let failed = |e| window_error(e, &request.name, None);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    db::lock(&mut tx).await.map_err(failed)?;
    if db::count(&mut *tx).await.map_err(failed)? >= MAX_WINDOWS {
        return Err(Problems::one(
            "name",
            format!("there are {MAX_WINDOWS} freeze windows already, the most there may be: delete one first"),
        )
        .into());
    }
    let created = db::create(&mut tx, &window).await.map_err(failed)?;
    let after = shown(created)?;
    Change::new("freeze.create")
        .object(after.id, &after.name)
        .after(&after)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(after)))
}

/// `PUT /api/freezes/{id}`: replaces the window; deployments it held are asked again
/// at once.
#[utoipa::path(put, path = "/api/freezes/{id}", tag = "freezes",
    params(("id" = i64, Path)), request_body = FreezeRequest, responses(
    (status = 200, body = FreezeResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_freeze(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<FreezeRequest>,
) -> Result<Json<FreezeResponse>, ApiError> {
    let failed = |e| window_error(e, &request.name, Some(id));
    let existing = db::get(&ctx.pools.api, id).await.map_err(failed)?;
    check_manage(&ctx, &caller, stored_scope(&existing)).await?;
    let window = check(&ctx, &request).await?;
    check_manage(&ctx, &caller, window.environments.as_deref()).await?;
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = shown(db::get(&mut *tx, id).await.map_err(failed)?)?;
    let updated = db::update(&mut tx, id, &window).await.map_err(failed)?;
    let after = shown(updated)?;
    Change::new("freeze.update")
        .object(id, &after.name)
        .before(&before)
        .after(&after)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    release(&ctx).await;
    Ok(Json(after))
}

/// `DELETE /api/freezes/{id}`: deployments it held are asked again at once.
#[utoipa::path(delete, path = "/api/freezes/{id}", tag = "freezes",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_freeze(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| window_error(e, "", Some(id));
    let existing = db::get(&ctx.pools.api, id).await.map_err(failed)?;
    check_manage(&ctx, &caller, stored_scope(&existing)).await?;
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = shown(db::get(&mut *tx, id).await.map_err(failed)?)?;
    db::delete(&mut *tx, id).await.map_err(failed)?;
    Change::new("freeze.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    release(&ctx).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets the deployments windows hold be asked again; a failure only delays them to
/// the end their window had.
async fn release(ctx: &NodeContext) {
    if let Err(e) = release_held(ctx).await {
        tracing::warn!(error = %e, "could not release deployments held by freeze windows; they are asked again when their window would have closed");
    }
}
