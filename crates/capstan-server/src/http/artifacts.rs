//! `/api/tasks/{id}/artifacts`: files a task attaches (reports, bundles, dumps),
//! streamed into the blob store; anyone can list and download them.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{ArtifactList, ArtifactResponse, Problem};
use capstan_blob::keys;
use capstan_db::{
    DbError,
    artifacts::{self, ArtifactRow},
};

use super::{
    ApiError,
    download::{self, Download},
    extract::ApiPath,
};
use crate::{
    audit::{self, Change, ChangedBy},
    blobs,
    node::NodeContext,
};

/// The most artifacts one listing returns.
const MAX_LISTED: i64 = 1000;

/// `POST /api/tasks/{id}/artifacts/{name}`: attach a file (the raw body).
#[utoipa::path(post, path = "/api/tasks/{id}/artifacts/{name}", tag = "tasks",
    params(("id" = i64, Path), ("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ArtifactResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn upload_artifact(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath((task_id, name)): ApiPath<(i64, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    blobs::refuse_declared_oversize(&ctx, request.headers())?;
    let max = ctx.settings.max_upload_size;
    // Refuse early what would be refused after the upload.
    match artifacts::get(&ctx.pools.api, task_id, &name).await {
        Ok(_) => return Err(exists(task_id, &name)),
        Err(DbError::NotFound) => {}
        Err(e) => return Err(ApiError::from_db(e, String::new)),
    }
    capstan_db::tasks::get(&ctx.pools.api, task_id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_such_task(task_id)))?;

    let body = request.into_body().into_data_stream();
    let received = blobs::receive(&ctx, keys::artifact(task_id, &name), body, max).await?;
    let written = &received.written;
    let db = |e| ApiError::from_db(e, String::new);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(db)?;
    let row = artifacts::insert(
        &mut *tx,
        task_id,
        &name,
        i64::try_from(written.size).unwrap_or(i64::MAX),
        &written.sha256,
        &written.key,
    )
    .await
    .map_err(db)?;
    if let Some(row) = &row {
        Change::new("artifact.upload")
            .object(format!("{task_id}/{name}"), &name)
            .after(&to_response(row.clone()))
            .record(&mut *tx, &actor)
            .await
            .map_err(db)?;
    }
    audit::commit(tx).await.map_err(db)?;
    received.keep();
    let Some(row) = row else {
        ctx.blob_sweep.notify_one();
        // The task vanished or a concurrent upload took the name.
        return match capstan_db::tasks::get(&ctx.pools.api, task_id).await {
            Err(DbError::NotFound) => Err(ApiError::not_found(no_such_task(task_id))),
            _ => Err(exists(task_id, &name)),
        };
    };
    let body = to_response(row);
    let mut response = (StatusCode::CREATED, Json(body.clone())).into_response();
    if let Ok(location) = body.download.parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/tasks/{id}/artifacts`.
#[utoipa::path(get, path = "/api/tasks/{id}/artifacts", tag = "tasks",
    params(("id" = i64, Path)), responses(
    (status = 200, body = ArtifactList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_artifacts(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<ArtifactList>, ApiError> {
    capstan_db::tasks::get(&ctx.pools.api, task_id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_such_task(task_id)))?;
    let rows = artifacts::list(&ctx.pools.api, task_id, MAX_LISTED)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(ArtifactList {
        items: rows.into_iter().map(to_response).collect(),
    }))
}

/// `GET /api/tasks/{id}/artifacts/{name}`: the file, streamed, with `Range`.
#[utoipa::path(get, path = "/api/tasks/{id}/artifacts/{name}", tag = "tasks",
    params(("id" = i64, Path), ("name" = String, Path)), responses(
    (status = 200, description = "The file", content_type = "application/octet-stream"),
    (status = 206, description = "The requested range", content_type = "application/octet-stream"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 416, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn download_artifact(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath((task_id, name)): ApiPath<(i64, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let row = artifacts::get(&ctx.pools.api, task_id, &name)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("task {task_id} has no artifact `{name}`")))?;
    download::send(
        &ctx,
        &headers,
        Download {
            blob_key: &row.blob_key,
            size: u64::try_from(row.size).unwrap_or(0),
            sha256: &row.sha256,
            file_name: row.name.clone(),
            content_type: "application/octet-stream",
            modified: row.created_at,
        },
    )
    .await
}

/// Artifact names become blob keys and download file names.
fn check_name(name: &str) -> Result<(), ApiError> {
    let fine = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{name}` is not an artifact name: use 1 to 200 letters, digits, `.`, `_` and `-`, \
             not starting with `.`"
        )))
    }
}

fn exists(task_id: i64, name: &str) -> ApiError {
    ApiError::conflict(format!("task {task_id} already has an artifact `{name}`"))
}

fn no_such_task(id: i64) -> String {
    format!("there is no task {id}")
}

fn to_response(row: ArtifactRow) -> ArtifactResponse {
    ArtifactResponse {
        download: format!("/api/tasks/{}/artifacts/{}", row.task_id, row.name),
        task_id: row.task_id,
        name: row.name,
        size: u64::try_from(row.size).unwrap_or(0),
        sha256: row.sha256,
        created_at: row.created_at,
    }
}
