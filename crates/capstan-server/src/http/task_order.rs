//! `POST /api/tasks/{id}/move-to-front`: put a queued task ahead of every other queued
//! task, so the next claim that may run it takes it first.

use std::sync::Arc;

use axum::{Json, extract::State};
use capstan_api::{Problem, TaskResponse};
use capstan_db::{
    schedule::{self, Moved},
    tasks,
};

use super::{ApiError, extract::ApiPath, tasks::to_response};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
};

/// `POST /api/tasks/{id}/move-to-front`: a queued task goes to the front of the queue
/// (200, with its new `blocked_by`); one that is not queued cannot (409). It still
/// waits for what else holds it back: its concurrency key held by a running task, a
/// gate of its deployment, a free slot.
#[utoipa::path(post, path = "/api/tasks/{id}/move-to-front", tag = "tasks", params(("id" = i64, Path)), responses(
    (status = 200, description = "moved to the front", body = TaskResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "not queued", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn move_to_front(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TaskResponse>, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no task with id {id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let (from, to) = match schedule::move_to_front(&mut tx, id).await.map_err(failed)? {
        Moved::Moved { from, to } => (from, to),
        Moved::NotQueued(state) => {
            return Err(ApiError::conflict(format!(
                "task {id} is {state}; only a queued task can be moved to the front"
            )));
        }
    };
    let row = tasks::get(&mut *tx, id).await.map_err(failed)?;
    Change::new("task.move_to_front")
        .object(id, &row.kind)
        .before(&serde_json::json!({ "position": from }))
        .after(&serde_json::json!({ "position": to }))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    tracing::info!(
        task.id = id,
        "task {id} moved to the front of the queue (from position {from})"
    );
    ctx.runner.wake();
    let blocked_by = crate::tasks::blocked::look_up(&ctx.pools.api, &[id])
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .remove(&id);
    Ok(Json(TaskResponse {
        blocked_by,
        ..to_response(row)
    }))
}
