//! Liveness and metrics: no authentication, nothing that touches the database.

use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};

use crate::node::NodeContext;

/// `GET /healthz`: 200 while the process serves, draining or not. Orchestrators restart
/// a node that fails this, so it must not depend on PostgreSQL: a database outage
/// would otherwise restart every node at once.
pub(crate) async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// `GET /metrics` in the Prometheus text format.
pub(crate) async fn metrics(State(ctx): State<Arc<NodeContext>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}
