//! `/api/nodes`: the cluster's nodes, their ping, and what operators change on them.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use capstan_api::{NodeResponse, Problem, UpdateNodeRequest};
use capstan_db::nodes::{self, NodeRow};
use uuid::Uuid;

use super::{
    ApiError,
    error::problem_response,
    extract::{ApiJson, ApiPath},
};
use crate::audit::{self, Change, ChangedBy};
use crate::node::NodeContext;

/// How long ping waits for PostgreSQL: a load balancer must hear "no" within a second.
const PING_DB_TIMEOUT: Duration = Duration::from_millis(800);

/// `GET /api/nodes/ping`: 200 when online and not draining, 418 when draining, 503
/// when the node cannot reach PostgreSQL.
#[utoipa::path(get, path = "/api/nodes/ping", tag = "nodes", security(()), responses(
    (status = 200, description = "online and not draining", body = NodeResponse),
    (status = 418, description = "draining", body = NodeResponse),
    (status = 503, description = "PostgreSQL unreachable", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn ping(State(ctx): State<Arc<NodeContext>>) -> Response {
    let node = ctx.state.to_response();
    let failure = match tokio::time::timeout(
        PING_DB_TIMEOUT,
        capstan_db::liveness::check(&ctx.pools.liveness),
    )
    .await
    {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "database unreachable: no answer within {}ms",
            PING_DB_TIMEOUT.as_millis()
        )),
    };
    let blob_failure = ctx.blob_health.failure();
    if failure.is_some() || blob_failure.is_some() {
        let check = |failure: &Option<String>| match failure {
            None => serde_json::json!({ "ok": true }),
            Some(reason) => serde_json::json!({ "ok": false, "reason": reason }),
        };
        let checks =
            serde_json::json!({ "postgres": check(&failure), "blob": check(&blob_failure) });
        let detail = [failure, blob_failure]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let problem = Problem::new(503, "Service Unavailable", detail)
            .with("node", &node)
            .with("checks", checks);
        return problem_response(StatusCode::SERVICE_UNAVAILABLE, &problem);
    }
    let status = if node.draining {
        StatusCode::IM_A_TEAPOT
    } else {
        StatusCode::OK
    };
    (status, Json(node)).into_response()
}

/// `GET /api/nodes`.
#[utoipa::path(get, path = "/api/nodes", tag = "nodes", responses(
    (status = 200, body = Vec<NodeResponse>),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_nodes(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<Vec<NodeResponse>>, ApiError> {
    let rows = nodes::list(&ctx.pools.api)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(rows.into_iter().map(to_response).collect()))
}

/// `GET /api/nodes/{id}`.
#[utoipa::path(get, path = "/api/nodes/{id}", tag = "nodes", params(("id" = Uuid, Path)), responses(
    (status = 200, body = NodeResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_node(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<NodeResponse>, ApiError> {
    let row = nodes::get(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_such_node(id)))?;
    Ok(Json(to_response(row)))
}

/// `PATCH /api/nodes/{id}`: any node accepts it for any node; the target applies it
/// within a second (NOTIFY), at the latest on its next heartbeat.
#[utoipa::path(patch, path = "/api/nodes/{id}", tag = "nodes", params(("id" = Uuid, Path)),
    request_body = UpdateNodeRequest, responses(
    (status = 200, body = NodeResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_node(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(update): ApiJson<UpdateNodeRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    if update.is_empty() {
        return Err(ApiError::unprocessable(
            "nothing to change: send `task_cap` (0-1000) and/or `draining` (true or false)",
        ));
    }
    let failed = |e| ApiError::from_db(e, || no_such_node(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = nodes::get_for_update(&mut tx, id).await.map_err(failed)?;
    let row = nodes::update(
        &mut *tx,
        id,
        update.task_cap.map(capstan_core::TaskCap::get),
        update.draining,
    )
    .await
    .map_err(failed)?;
    // Draining is the change operators look for: it gets its own action.
    let action = if update.draining == Some(true) && !before.draining {
        "node.drain"
    } else {
        "node.update"
    };
    Change::new(action)
        .object(id, &row.name)
        .before(&node_settings(&before))
        .after(&node_settings(&row))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    tracing::info!(
        node.id = %id,
        node.name = %row.name,
        task_cap = row.task_cap,
        draining = row.draining,
        "node `{}` updated", row.name
    );
    Ok(Json(to_response(row)))
}

/// `DELETE /api/nodes/{id}`: forgets a node. One that is still alive adds itself back
/// on its next heartbeat.
#[utoipa::path(delete, path = "/api/nodes/{id}", tag = "nodes", params(("id" = Uuid, Path)), responses(
    (status = 204, description = "deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_node(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| ApiError::from_db(e, || no_such_node(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = nodes::get_for_update(&mut tx, id).await.map_err(failed)?;
    nodes::delete(&mut *tx, id).await.map_err(failed)?;
    Change::new("node.delete")
        .object(id, &before.name)
        .before(&node_settings(&before))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    tracing::info!(node.id = %id, "node {id} deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// What an operator sets on a node, for its audit rows: the rest (last seen, running
/// tasks) is the node's own doing and would make every row differ.
fn node_settings(row: &NodeRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "name": row.name,
        "task_cap": row.task_cap,
        "draining": row.draining,
    })
}

fn no_such_node(id: Uuid) -> String {
    format!("there is no node with id {id}")
}

fn to_response(row: NodeRow) -> NodeResponse {
    NodeResponse {
        id: row.id,
        name: row.name,
        version: row.version,
        url: row.url,
        task_cap: row.task_cap.max(0) as u32,
        draining: row.draining,
        running_tasks: row.running_tasks.max(0) as u32,
        last_seen: row.last_seen,
        online: row.online,
    }
}
