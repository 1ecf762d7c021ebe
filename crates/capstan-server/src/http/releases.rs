//! `/api/releases`: frozen copies of a project's process, variables and packages.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    CreateReleaseRequest, Problem, ReleasePackage, ReleasePage, ReleaseQuery, ReleaseResponse,
    ReleaseSummary,
};
use capstan_core::process::Step;
use capstan_db::{
    projects::VariableRow,
    releases::{self, ReleaseRow},
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
};
use crate::audit::{self, Change, ChangedBy};
use crate::node::NodeContext;
use crate::projects::{releases as create, variables};

const DEFAULT_PAGE: u32 = 100;

fn release_response(
    row: ReleaseRow,
    variables: Vec<VariableRow>,
) -> Result<ReleaseResponse, ApiError> {
    let stored = |what: &str, e: serde_json::Error| {
        ApiError::internal(&std::io::Error::other(format!(
            "stored {what} of release {}: {e}",
            row.id
        )))
    };
    let steps: Vec<Step> =
        serde_json::from_value(row.process.clone()).map_err(|e| stored("process", e))?;
    let packages: Vec<ReleasePackage> =
        serde_json::from_value(row.packages.clone()).map_err(|e| stored("packages", e))?;
    Ok(ReleaseResponse {
        summary: ReleaseSummary {
            id: row.id,
            project_id: row.project_id,
            version: row.version,
            notes: row.notes,
            created_at: row.created_at,
        },
        process_version: row.process_version,
        steps,
        packages,
        variables_version: row.variables_version,
        variables: variables::responses(variables),
    })
}

/// `POST /api/releases`: snapshots the project now.
#[utoipa::path(post, path = "/api/releases", tag = "releases",
    request_body = CreateReleaseRequest, responses(
    (status = 201, body = ReleaseResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_release(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiJson(request): ApiJson<CreateReleaseRequest>,
) -> Result<(StatusCode, Json<ReleaseResponse>), ApiError> {
    super::access::check_create_release(&ctx, &caller, request.project_id).await?;
    let (row, variables) = create::create(&ctx, &actor, &request).await?;
    Ok((StatusCode::CREATED, Json(release_response(row, variables)?)))
}

/// `GET /api/releases`: newest first, in pages.
#[utoipa::path(get, path = "/api/releases", tag = "releases", params(ReleaseQuery),
    responses((status = 200, body = ReleasePage)))]
pub(crate) async fn list_releases(
    State(ctx): State<Arc<NodeContext>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiQuery(query): ApiQuery<ReleaseQuery>,
) -> Result<Json<ReleasePage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let rows = releases::list(
        &ctx.pools.api,
        caller.viewer(),
        query.project_id,
        keyset.cursor,
        keyset.fetch(),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    let items: Vec<ReleaseSummary> = rows
        .into_iter()
        .map(|row| ReleaseSummary {
            id: row.id,
            project_id: row.project_id,
            version: row.version,
            notes: row.notes,
            created_at: row.created_at,
        })
        .collect();
    Ok(Json(ReleasePage { items, next }))
}

/// `GET /api/releases/{id}`.
#[utoipa::path(get, path = "/api/releases/{id}", tag = "releases",
    params(("id" = i64, Path)), responses(
    (status = 200, body = ReleaseResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_release(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let not_found = || format!("there is no release {id}");
    let row = releases::get(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, not_found))?;
    let variables = releases::variables(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, not_found))?;
    release_response(row, variables).map(Json)
}

/// `DELETE /api/releases/{id}`.
#[utoipa::path(delete, path = "/api/releases/{id}", tag = "releases",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_release(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no release {id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = releases::get_for_update(&mut tx, id)
        .await
        .map_err(failed)?;
    let variables = releases::variables(&mut *tx, id).await.map_err(failed)?;
    releases::delete(&mut tx, id).await.map_err(failed)?;
    Change::new("release.delete")
        .object(id, &row.version)
        .project(row.project_id)
        .before(&create::audited(&row, &variables))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}
