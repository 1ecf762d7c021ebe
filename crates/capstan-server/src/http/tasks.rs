//! `/api/tasks`: queue tasks, list and show them, their attempts, and cancel them.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{
    AttemptList, AttemptResponse, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse,
    Problem, TaskPage, TaskQuery, TaskResponse,
};
use capstan_core::{ConcurrencyKey, NodeLostPolicy, TaskState};
use capstan_db::tasks::{self, Cancelled, NewTask, TaskFilter, TaskRow};
use uuid::Uuid;

use super::{
    ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
    problems::Problems,
};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
    runner,
};

/// The most tasks one batch may queue.
pub const MAX_BATCH: usize = 50_000;
/// The largest body `POST /api/tasks/batch` reads.
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;
const DEFAULT_PAGE: u32 = 50;

/// `POST /api/tasks`: queue one task. Any node accepts it; the node with a free slot
/// that claims first runs it.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTaskRequest, responses(
    (status = 201, body = TaskResponse),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_task(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<CreateTaskRequest>,
) -> Result<Response, ApiError> {
    let task = prepare(&ctx, request).map_err(ApiError::unprocessable)?;
    let change = Change::new("task.create").after(&audited_task(&task));
    let row = runner::queue_one_audited(ctx.clone(), task, (actor, change))
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let id = row.id;
    let mut response = (StatusCode::CREATED, Json(to_response(row))).into_response();
    if let Ok(location) = format!("/api/tasks/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `POST /api/tasks/batch`: queue up to 50,000 tasks in one transaction, in the order
/// given. All or nothing: one bad task refuses the batch, naming its index.
#[utoipa::path(post, path = "/api/tasks/batch", tag = "tasks", request_body = CreateTasksRequest, responses(
    (status = 201, body = CreateTasksResponse),
    (status = 413, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_tasks(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<CreateTasksRequest>,
) -> Result<(StatusCode, Json<CreateTasksResponse>), ApiError> {
    if request.tasks.is_empty() {
        return Err(ApiError::unprocessable(
            "`tasks` is empty: send at least one task",
        ));
    }
    if request.tasks.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch holds at most {MAX_BATCH} tasks, this one has {}; split it",
                request.tasks.len()
            ),
        ));
    }
    let mut problems = Problems::new();
    let prepared: Vec<NewTask> = request
        .tasks
        .into_iter()
        .enumerate()
        .filter_map(|(i, task)| problems.check(&format!("tasks[{i}]"), prepare(&ctx, task)))
        .collect();
    problems.finish()?;
    // One row for the batch: it is one change, and its tasks are alike.
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    for task in &prepared {
        *kinds.entry(task.kind.as_str()).or_default() += 1;
    }
    let batch = |ids: &[i64]| {
        Change::new("task.batch")
            .object(
                format!(
                    "{}-{}",
                    ids.first().copied().unwrap_or_default(),
                    ids.last().copied().unwrap_or_default()
                ),
                format!("{} task(s)", ids.len()),
            )
            .after(&serde_json::json!({
                "count": ids.len(),
                "first_id": ids.first(),
                "last_id": ids.last(),
                "kinds": kinds,
            }))
    };
    let ids = runner::queue_many(&ctx, &prepared, &actor, batch)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok((StatusCode::CREATED, Json(CreateTasksResponse { ids })))
}

/// `GET /api/tasks`: newest first, filtered by state, kind and node, in pages.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(TaskQuery), responses(
    (status = 200, body = TaskPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_tasks(
    State(ctx): State<Arc<NodeContext>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiQuery(query): ApiQuery<TaskQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let node_id = match query.node.as_deref() {
        None => None,
        Some(node) => Some(resolve_node(&ctx, node).await?),
    };
    let filter = TaskFilter {
        state: query.state,
        kind: query.kind,
        node_id,
        before: keyset.cursor,
        limit: keyset.fetch(),
        viewer: caller.viewer(),
    };
    let rows = tasks::list(&ctx.pools.api, &filter)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    // One statement for the whole page, and none when nothing on it is queued.
    let queued: Vec<i64> = rows
        .iter()
        .filter(|row| row.state == TaskState::Queued)
        .map(|row| row.id)
        .collect();
    let mut blocked = crate::tasks::blocked::look_up(&ctx.pools.api, &queued)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let items = rows
        .into_iter()
        .map(|row| {
            let blocked_by = blocked.remove(&row.id);
            TaskResponse {
                blocked_by,
                ..to_response(row)
            }
        })
        .collect();
    Ok(Json(TaskPage { items, next }))
}

/// `GET /api/tasks/{id}`. A queued task carries `blocked_by`: its place in line and
/// every reason it has not started.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)), responses(
    (status = 200, body = TaskResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_task(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TaskResponse>, ApiError> {
    let row = tasks::get(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_such_task(id)))?;
    if row.state != TaskState::Queued {
        return Ok(Json(to_response(row)));
    }
    // A task claimed between the two reads has no `blocked_by`, though its state still
    // reads queued: the next read shows it running.
    let blocked_by = crate::tasks::blocked::look_up(&ctx.pools.api, &[id])
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .remove(&id);
    Ok(Json(TaskResponse {
        blocked_by,
        ..to_response(row)
    }))
}

/// `GET /api/tasks/{id}/attempts`: every claim of the task, oldest first.
#[utoipa::path(get, path = "/api/tasks/{id}/attempts", tag = "tasks", params(("id" = i64, Path)), responses(
    (status = 200, body = AttemptList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn task_attempts(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AttemptList>, ApiError> {
    let rows = tasks::attempts(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_such_task(id)))?;
    let items = rows
        .into_iter()
        .map(|row| AttemptResponse {
            attempt: row.attempt.max(0) as u32,
            node_id: row.node_id,
            node_name: row.node_name,
            started_at: row.started_at,
            finished_at: row.finished_at,
            outcome: row.outcome,
        })
        .collect();
    Ok(Json(AttemptList { items }))
}

/// `POST /api/tasks/{id}/cancel`: a queued task is cancelled at once (200); a running
/// one is stopped by its node within a second (202, `cancel_requested`); a finished one
/// cannot be (409).
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", tag = "tasks", params(("id" = i64, Path)), responses(
    (status = 200, description = "cancelled", body = TaskResponse),
    (status = 202, description = "its node is stopping it", body = TaskResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "already finished", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn cancel_task(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<TaskResponse>), ApiError> {
    let failed = |e| ApiError::from_db(e, || no_such_task(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = tasks::get_for_update(&mut tx, id).await.map_err(failed)?;
    let cancelled = tasks::cancel(&mut *tx, id).await.map_err(failed)?;
    if let Cancelled::Now(row) | Cancelled::Requested(row) = &cancelled {
        Change::new("task.cancel")
            .object(id, &row.kind)
            .before(&to_response(before))
            .after(&to_response(row.clone()))
            .record(&mut *tx, &actor)
            .await
            .map_err(failed)?;
    }
    audit::commit(tx).await.map_err(failed)?;
    match cancelled {
        Cancelled::Now(row) => {
            tracing::info!(task.id = id, "task {id} cancelled before it started");
            Ok((StatusCode::OK, Json(to_response(row))))
        }
        Cancelled::Requested(row) => {
            tracing::info!(
                task.id = id,
                "task {id} is running; asked its node to cancel it"
            );
            Ok((StatusCode::ACCEPTED, Json(to_response(row))))
        }
        Cancelled::AlreadyFinished(row) => Err(ApiError::conflict(format!(
            "task {id} already {}{}; only queued or running tasks can be cancelled",
            row.state,
            row.finished_at
                .map(|at| format!(" at {}", capstan_api::timestamp::format(at)))
                .unwrap_or_default()
        ))),
    }
}

/// A task about to be queued, as its audit row shows it: the arguments as the API
/// shows them (a script's secrets masked).
fn audited_task(task: &NewTask) -> serde_json::Value {
    serde_json::json!({
        "kind": task.kind,
        "args": runner::redact(&task.kind, task.args.clone()),
        "on_node_lost": task.on_node_lost,
        "concurrency_key": task.concurrency_key,
    })
}

/// Validates a task with its kind.
pub(crate) fn prepare(ctx: &NodeContext, request: CreateTaskRequest) -> Result<NewTask, String> {
    let prepared = ctx.runner.kinds.prepare(&request.kind, &request.args)?;
    Ok(NewTask {
        kind: request.kind,
        args: prepared.args,
        on_node_lost: prepared.on_node_lost.as_str(),
        concurrency_key: request.concurrency_key.map(String::from),
    })
}

/// A node filter is a node id or a node name.
async fn resolve_node(ctx: &NodeContext, node: &str) -> Result<Uuid, ApiError> {
    if let Ok(id) = node.parse::<Uuid>() {
        return Ok(id);
    }
    let nodes = capstan_db::nodes::list(&ctx.pools.api)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    nodes
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.id)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`node` must be a node id or name; no node is named `{node}`"
            ))
        })
}

fn no_such_task(id: i64) -> String {
    format!("there is no task with id {id}")
}

pub(crate) fn to_response(row: TaskRow) -> TaskResponse {
    TaskResponse {
        id: row.id,
        args: runner::redact(&row.kind, row.args),
        kind: row.kind,
        // The table's CHECK constraints allow only these values.
        state: row.state,
        on_node_lost: row.on_node_lost.parse().unwrap_or(NodeLostPolicy::Fail),
        concurrency_key: row
            .concurrency_key
            .and_then(|k| ConcurrencyKey::parse(k).ok()),
        node_id: row.node_id,
        node_name: row.node_name,
        attempt: row.attempt.max(0) as u32,
        // Only meaningful while the task runs; a run that finished first keeps its outcome.
        cancel_requested: row.cancel_requested && row.state == TaskState::Running,
        queued_at: row.queued_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        error: row.error,
        blocked_by: None,
    }
}
