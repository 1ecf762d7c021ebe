//! `/api/lifecycles` and `PUT /api/projects/{id}/lifecycle`: the phases a project's
//! releases are promoted through. The promotion check itself runs when a deployment is
//! queued (`deployments::create`).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    lifecycles::{
        LifecycleList, LifecycleRequest, LifecycleResponse, PhaseBody, PhaseRule, ProjectLifecycle,
        RetentionBody,
    },
};
use capstan_core::{
    lifecycle::{self, PhaseDraft, ProgressRule, Retention},
    names,
};
use capstan_db::{
    DbError, agents,
    lifecycles::{self as db, Lifecycle, NewPhase},
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath},
    problems::Problems,
};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
};

const MAX_DESCRIPTION: usize = 4000;

fn response(lifecycle: Lifecycle) -> LifecycleResponse {
    LifecycleResponse {
        id: lifecycle.row.id,
        name: lifecycle.row.name,
        description: lifecycle.row.description,
        created_at: lifecycle.row.created_at,
        phases: lifecycle
            .phases
            .into_iter()
            .map(|p| PhaseBody {
                name: p.name,
                environments: p.environments.into_iter().map(|e| e.name).collect(),
                rule: match p.rule {
                    ProgressRule::All => PhaseRule::All,
                    ProgressRule::AtLeast(_) => PhaseRule::AtLeast,
                    ProgressRule::Optional => PhaseRule::Optional,
                },
                min_count: match p.rule {
                    ProgressRule::AtLeast(n) => Some(n),
                    _ => None,
                },
                automatic: p.automatic,
                retention: p.retention.map(|r| match r {
                    Retention::KeepReleases(n) => RetentionBody {
                        keep_releases: Some(n),
                        keep_days: None,
                    },
                    Retention::KeepDays(d) => RetentionBody {
                        keep_releases: None,
                        keep_days: Some(d),
                    },
                }),
            })
            .collect(),
    }
}

fn lifecycle_error(e: DbError, name: &str, id: Option<i64>) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "lifecycles_name" => {
            ApiError::conflict(format!("a lifecycle named `{name}` already exists"))
        }
        DbError::Conflict { constraint } if constraint == "projects_lifecycle" => {
            ApiError::conflict(format!(
                "lifecycle {} is used by projects; give them another lifecycle (or none) first",
                id.unwrap_or_default()
            ))
        }
        e => ApiError::from_db(e, || {
            format!("there is no lifecycle {}", id.unwrap_or_default())
        }),
    }
}

/// Checks the request and looks its environments up; every problem at once.
async fn check(ctx: &NodeContext, request: &LifecycleRequest) -> Result<Vec<NewPhase>, ApiError> {
    let mut problems = Problems::new();
    problems.check("name", lifecycle::check_name(&request.name, "lifecycle"));
    if request.description.len() > MAX_DESCRIPTION {
        problems.add(
            "description",
            "a lifecycle's description has at most 4,000 bytes",
        );
    }
    let environments: Vec<Vec<String>> = request
        .phases
        .iter()
        .map(|p| p.environments.iter().map(|e| names::nfc(e)).collect())
        .collect();
    let drafts: Vec<PhaseDraft<'_>> = request
        .phases
        .iter()
        .zip(&environments)
        .map(|(p, environments)| PhaseDraft {
            name: &p.name,
            environments,
            rule: match p.rule {
                PhaseRule::All => "all",
                PhaseRule::AtLeast => "at_least",
                PhaseRule::Optional => "optional",
            },
            min_count: p.min_count,
            automatic: p.automatic,
            keep_releases: p.retention.as_ref().and_then(|r| r.keep_releases),
            keep_days: p.retention.as_ref().and_then(|r| r.keep_days),
        })
        .collect();
    let found = lifecycle::check_phases(&drafts);
    let invalid = !found.is_empty();
    for p in found {
        problems.add(p.field, p.detail);
    }
    if invalid {
        return Err(problems.into());
    }
    let mut phases = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.iter().enumerate() {
        let mut environment_ids = Vec::with_capacity(draft.environments.len());
        for (j, name) in draft.environments.iter().enumerate() {
            match agents::find_environment(&ctx.pools.api, name)
                .await
                .map_err(|e| ApiError::from_db(e, String::new))?
            {
                Some(row) => environment_ids.push(row.id),
                None => problems.add(
                    format!("phases[{i}].environments[{j}]"),
                    format!("there is no environment `{name}`"),
                ),
            }
        }
        phases.push(NewPhase {
            name: draft.name.to_owned(),
            rule: ProgressRule::from_parts(draft.rule, draft.min_count)
                .unwrap_or(ProgressRule::All),
            environment_ids,
            automatic: draft.automatic,
            retention: draft.retention(),
        });
    }
    problems.finish()?;
    Ok(phases)
}

/// `POST /api/lifecycles`.
#[utoipa::path(post, path = "/api/lifecycles", tag = "lifecycles",
    request_body = LifecycleRequest, responses(
    (status = 201, body = LifecycleResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_lifecycle(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<LifecycleRequest>,
) -> Result<(StatusCode, Json<LifecycleResponse>), ApiError> {
    let phases = check(&ctx, &request).await?;
    let failed = |e| lifecycle_error(e, &request.name, None);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let created = db::create(&mut tx, &request.name, &request.description, &phases)
        .await
        .map_err(failed)?;
    let shown = response(created);
    Change::new("lifecycle.create")
        .object(shown.id, &shown.name)
        .after(&shown)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `GET /api/lifecycles`: all of them, by name.
#[utoipa::path(get, path = "/api/lifecycles", tag = "lifecycles", responses(
    (status = 200, body = LifecycleList),
))]
pub(crate) async fn list_lifecycles(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<LifecycleList>, ApiError> {
    let failed = |e| ApiError::from_db(e, String::new);
    let mut conn = ctx
        .pools
        .api
        .acquire()
        .await
        .map_err(|e| failed(e.into()))?;
    let all = db::list(&mut conn).await.map_err(failed)?;
    Ok(Json(LifecycleList {
        items: all.into_iter().map(response).collect(),
    }))
}

/// `GET /api/lifecycles/{id}`.
#[utoipa::path(get, path = "/api/lifecycles/{id}", tag = "lifecycles",
    params(("id" = i64, Path)), responses(
    (status = 200, body = LifecycleResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_lifecycle(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LifecycleResponse>, ApiError> {
    let failed = |e| lifecycle_error(e, "", Some(id));
    let mut conn = ctx
        .pools
        .api
        .acquire()
        .await
        .map_err(|e| failed(e.into()))?;
    Ok(Json(response(
        db::get(&mut conn, id).await.map_err(failed)?,
    )))
}

/// `PUT /api/lifecycles/{id}`: replaces its name, description and phases. The projects
/// that follow it follow the new phases from their next deployment on.
#[utoipa::path(put, path = "/api/lifecycles/{id}", tag = "lifecycles",
    params(("id" = i64, Path)), request_body = LifecycleRequest, responses(
    (status = 200, body = LifecycleResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_lifecycle(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<LifecycleRequest>,
) -> Result<Json<LifecycleResponse>, ApiError> {
    let phases = check(&ctx, &request).await?;
    let failed = |e| lifecycle_error(e, &request.name, Some(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    db::lock(&mut tx, id).await.map_err(failed)?;
    let before = response(db::get(&mut tx, id).await.map_err(failed)?);
    let updated = db::update(&mut tx, id, &request.name, &request.description, &phases)
        .await
        .map_err(failed)?;
    let shown = response(updated);
    Change::new("lifecycle.update")
        .object(id, &shown.name)
        .before(&before)
        .after(&shown)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(shown))
}

/// `DELETE /api/lifecycles/{id}`: only once no project uses it.
#[utoipa::path(delete, path = "/api/lifecycles/{id}", tag = "lifecycles",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_lifecycle(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| lifecycle_error(e, "", Some(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = response(db::get(&mut tx, id).await.map_err(failed)?);
    db::delete(&mut *tx, id).await.map_err(failed)?;
    Change::new("lifecycle.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/projects/{id}/lifecycle`: the lifecycle the project's releases follow;
/// `null` lifts every restriction.
#[utoipa::path(put, path = "/api/projects/{id}/lifecycle", tag = "lifecycles",
    params(("id" = i64, Path)), request_body = ProjectLifecycle, responses(
    (status = 200, body = ProjectLifecycle),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_project_lifecycle(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ProjectLifecycle>,
) -> Result<Json<ProjectLifecycle>, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no project {id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    if let Some(lifecycle) = request.lifecycle_id {
        match db::get(&mut tx, lifecycle).await {
            Ok(_) => {}
            Err(DbError::NotFound) => {
                return Err(Problems::one(
                    "lifecycle_id",
                    format!("there is no lifecycle {lifecycle}"),
                )
                .into());
            }
            Err(e) => return Err(failed(e)),
        }
    }
    let before = db::set_project_lifecycle(&mut tx, id, request.lifecycle_id)
        .await
        .map_err(failed)?;
    Change::new("project.lifecycle")
        .object(id, format!("project {id}"))
        .project(id)
        .before(&ProjectLifecycle {
            lifecycle_id: before,
        })
        .after(&request)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(request))
}
