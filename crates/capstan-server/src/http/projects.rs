//! `/api/projects`: projects, their deployment process and their variables.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    PreviewRequest, PreviewResponse, Problem, ProcessRequest, ProcessResponse, ProjectPage,
    ProjectQuery, ProjectRequest, ProjectResponse, UpdateProjectRequest, VariablesRequest,
    VariablesResponse, Warning,
};
use capstan_core::{
    names,
    process::{Action, Step, validate},
};
use capstan_db::{
    DbError,
    agents::carried_tags,
    packages::known_ids,
    projects::{self, ProjectRow, SaveOutcome},
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
    problems::Problems,
};
use crate::audit::{self, Change, ChangedBy};
use crate::node::NodeContext;
use crate::projects::{preview, variables};

const DEFAULT_PAGE: u32 = 100;
const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 4000;

fn project_response(row: ProjectRow) -> ProjectResponse {
    ProjectResponse {
        id: row.id,
        name: row.name,
        description: row.description,
        process_version: row.process_version,
        variables_version: row.variables_version,
        created_at: row.created_at,
    }
}

fn project_error(e: DbError, id: i64, name: &str) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "projects_name" => {
            ApiError::conflict(format!("a project named `{name}` already exists"))
        }
        other => ApiError::from_db(other, || format!("there is no project {id}")),
    }
}

/// Checks both fields, and returns the name in NFC: names that look the same are the
/// same name, so the unique constraint sees them as one.
fn check_project(
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let mut problems = Problems::new();
    let name = name.and_then(|name| {
        let name = problems.check(
            "name",
            names::normalize(name).map_err(|e| format!("a project's name {e}")),
        )?;
        if name.trim().is_empty() || name.trim() != name {
            problems.add(
                "name",
                "a project's name cannot be empty or start or end with spaces",
            );
        } else if name.chars().count() > MAX_NAME {
            problems.add("name", format!("at most {MAX_NAME} characters"));
        }
        Some(name)
    });
    if description.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        problems.add("description", format!("at most {MAX_DESCRIPTION} bytes"));
    }
    problems.finish()?;
    Ok(name)
}

/// `POST /api/projects`.
#[utoipa::path(post, path = "/api/projects", tag = "projects",
    request_body = ProjectRequest, responses(
    (status = 201, body = ProjectResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_project(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<ProjectRequest>,
) -> Result<(StatusCode, Json<ProjectResponse>), ApiError> {
    let name = check_project(Some(&request.name), Some(&request.description))?.unwrap_or_default();
    let failed = |e| project_error(e, 0, &name);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = projects::create(&mut *tx, &name, &request.description)
        .await
        .map_err(failed)?;
    let project = project_response(row);
    Change::new("project.create")
        .object(project.id, &project.name)
        .project(project.id)
        .after(&project)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// `GET /api/projects`: by id, in pages.
#[utoipa::path(get, path = "/api/projects", tag = "projects", params(ProjectQuery),
    responses((status = 200, body = ProjectPage)))]
pub(crate) async fn list_projects(
    State(ctx): State<Arc<NodeContext>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiQuery(query): ApiQuery<ProjectQuery>,
) -> Result<Json<ProjectPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let name = query.name.as_deref().map(names::nfc);
    let rows = projects::list(
        &ctx.pools.api,
        caller.viewer(),
        name.as_deref(),
        query.search.as_deref(),
        keyset.cursor,
        keyset.fetch(),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    let items = rows.into_iter().map(project_response).collect();
    Ok(Json(ProjectPage { items, next }))
}

/// `GET /api/projects/{id}`.
#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects",
    params(("id" = i64, Path)), responses(
    (status = 200, body = ProjectResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_project(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ProjectResponse>, ApiError> {
    let row = projects::get(&ctx.pools.api, id)
        .await
        .map_err(|e| project_error(e, id, ""))?;
    Ok(Json(project_response(row)))
}

/// `PATCH /api/projects/{id}`: renames it or changes its description.
#[utoipa::path(patch, path = "/api/projects/{id}", tag = "projects",
    params(("id" = i64, Path)), request_body = UpdateProjectRequest, responses(
    (status = 200, body = ProjectResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_project(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateProjectRequest>,
) -> Result<Json<ProjectResponse>, ApiError> {
    if request.name.is_none() && request.description.is_none() {
        return Err(ApiError::unprocessable(
            "nothing to change: send `name` and/or `description`",
        ));
    }
    let name = check_project(request.name.as_deref(), request.description.as_deref())?;
    let failed = |e| project_error(e, id, name.as_deref().unwrap_or_default());
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = projects::get_for_update(&mut tx, id)
        .await
        .map_err(failed)?;
    let row = projects::update(
        &mut *tx,
        id,
        name.as_deref(),
        request.description.as_deref(),
    )
    .await
    .map_err(failed)?;
    let project = project_response(row);
    Change::new("project.update")
        .object(id, &project.name)
        .project(id)
        .before(&project_response(before))
        .after(&project)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(project))
}

/// `DELETE /api/projects/{id}`: with its process, variables and releases.
#[utoipa::path(delete, path = "/api/projects/{id}", tag = "projects",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_project(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| project_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = project_response(
        projects::get_for_update(&mut tx, id)
            .await
            .map_err(failed)?,
    );
    projects::delete(&mut tx, id).await.map_err(failed)?;
    Change::new("project.delete")
        .object(id, &before.name)
        .project(id)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/projects/{id}/process`.
#[utoipa::path(get, path = "/api/projects/{id}/process", tag = "projects",
    params(("id" = i64, Path)), responses(
    (status = 200, body = ProcessResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_process(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ProcessResponse>, ApiError> {
    let (version, stored) = projects::process(&ctx.pools.api, id)
        .await
        .map_err(|e| project_error(e, id, ""))?;
    let steps: Vec<Step> = serde_json::from_value(stored).map_err(|e| {
        ApiError::internal(&std::io::Error::other(format!(
            "stored process of {id}: {e}"
        )))
    })?;
    let warnings = tag_warnings(&ctx, &steps).await?;
    Ok(Json(ProcessResponse {
        project_id: id,
        version,
        steps,
        warnings,
    }))
}

/// `PUT /api/projects/{id}/process`: replaces the steps if nobody saved since
/// `version`. Problems are 422 naming the step and field; tags no agent carries yet
/// are only warned about.
#[utoipa::path(put, path = "/api/projects/{id}/process", tag = "projects",
    params(("id" = i64, Path)), request_body = ProcessRequest, responses(
    (status = 200, body = ProcessResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_process(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(mut request): ApiJson<ProcessRequest>,
) -> Result<Json<ProcessResponse>, ApiError> {
    // Step names and tags that look the same are the same: one spelling is stored.
    for step in &mut request.steps {
        step.name = names::nfc(&step.name);
        for tag in &mut step.target_tags {
            *tag = names::nfc(tag);
        }
    }
    let mut problems = Problems::new();
    for issue in validate(&request.steps) {
        problems.add(issue.field, issue.detail);
    }
    problems.finish()?;
    check_packages(&ctx, &request.steps).await?;
    let stored = serde_json::to_value(&request.steps).unwrap_or_default();
    let failed = |e| project_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let project = projects::get_for_update(&mut tx, id)
        .await
        .map_err(failed)?;
    let (before_version, before_steps) = projects::process(&mut *tx, id).await.map_err(failed)?;
    let version = match projects::save_process(&mut tx, id, request.version, &stored)
        .await
        .map_err(failed)?
    {
        SaveOutcome::Saved(version) => {
            Change::new("process.update")
                .object(id, &project.name)
                .project(id)
                .before(&serde_json::json!({ "version": before_version, "steps": before_steps }))
                .after(&serde_json::json!({ "version": version, "steps": stored }))
                .record(&mut *tx, &actor)
                .await
                .map_err(failed)?;
            audit::commit(tx).await.map_err(failed)?;
            version
        }
        SaveOutcome::Outdated(current) => {
            return Err(ApiError::conflict(crate::projects::outdated(
                "process",
                request.version,
                current,
            )));
        }
    };
    let warnings = tag_warnings(&ctx, &request.steps).await?;
    Ok(Json(ProcessResponse {
        project_id: id,
        version,
        steps: request.steps,
        warnings,
    }))
}

/// Every package a step deploys must be in the feed: a typo would only show at
/// release time otherwise.
async fn check_packages(ctx: &NodeContext, steps: &[Step]) -> Result<(), ApiError> {
    let mut wanted = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        for (a, action) in step.actions.iter().enumerate() {
            if let Action::Package { package_id, .. } = action {
                wanted.push((s, a, package_id.clone()));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = wanted.iter().map(|(_, _, id)| id.clone()).collect();
    let known: BTreeSet<String> = known_ids(&ctx.pools.api, &ids)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .into_iter()
        .collect();
    if let Some((s, a, id)) = wanted.iter().find(|(_, _, id)| !known.contains(id)) {
        return Err(ApiError::unprocessable(format!(
            "steps[{s}].actions[{a}].package_id: step {} (\"{}\"): the feed has no package \
             `{id}`; push it first (capstan packages push)",
            s + 1,
            steps[*s].name
        )));
    }
    Ok(())
}

/// A warning for each target tag that no agent carries: the step would find no target.
async fn tag_warnings(ctx: &NodeContext, steps: &[Step]) -> Result<Vec<Warning>, ApiError> {
    let tags: BTreeSet<String> = steps
        .iter()
        .flat_map(|s| s.target_tags.iter().cloned())
        .collect();
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let tags: Vec<String> = tags.into_iter().collect();
    let carried: BTreeSet<String> = carried_tags(&ctx.pools.api, &tags)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .into_iter()
        .collect();
    let mut warnings = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        for tag in step.target_tags.iter().filter(|t| !carried.contains(*t)) {
            warnings.push(Warning {
                field: format!("steps[{s}].target_tags"),
                detail: format!(
                    "step {} (\"{}\"): no agent carries the tag `{tag}` yet",
                    s + 1,
                    step.name
                ),
            });
        }
    }
    Ok(warnings)
}

/// `GET /api/projects/{id}/variables`: sensitive values are never shown.
#[utoipa::path(get, path = "/api/projects/{id}/variables", tag = "projects",
    params(("id" = i64, Path)), responses(
    (status = 200, body = VariablesResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_variables(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<VariablesResponse>, ApiError> {
    variables_response(&ctx, id).await.map(Json)
}

async fn variables_response(ctx: &NodeContext, id: i64) -> Result<VariablesResponse, ApiError> {
    let project = projects::get(&ctx.pools.api, id)
        .await
        .map_err(|e| project_error(e, id, ""))?;
    let rows = projects::variables(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(VariablesResponse {
        project_id: id,
        version: project.variables_version,
        variables: variables::responses(rows),
    })
}

/// `PUT /api/projects/{id}/variables`: replaces the whole set if nobody saved since
/// `version`.
#[utoipa::path(put, path = "/api/projects/{id}/variables", tag = "projects",
    params(("id" = i64, Path)), request_body = VariablesRequest, responses(
    (status = 200, body = VariablesResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_variables(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(mut request): ApiJson<VariablesRequest>,
) -> Result<Json<VariablesResponse>, ApiError> {
    // Names that look the same are the same name: one spelling is stored and matched.
    for variable in &mut request.variables {
        variable.name = names::nfc(&variable.name);
        let scope = &mut variable.scope;
        for value in scope
            .environments
            .iter_mut()
            .chain(&mut scope.machines)
            .chain(&mut scope.steps)
        {
            *value = names::nfc(value);
        }
    }
    variables::save(&ctx, &actor, id, &request).await?;
    variables_response(&ctx, id).await.map(Json)
}

/// `POST /api/projects/{id}/variables/preview`: a template evaluated for an
/// environment, machine and step; sensitive values are masked.
#[utoipa::path(post, path = "/api/projects/{id}/variables/preview", tag = "projects",
    params(("id" = i64, Path)), request_body = PreviewRequest, responses(
    (status = 200, body = PreviewResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn preview_variables(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<Json<PreviewResponse>, ApiError> {
    Ok(Json(preview::preview(&ctx, id, &request).await?))
}
