//! A deadline on every request, answered as problem+json when it passes.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::node::NodeContext;

pub(crate) async fn limit_duration(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = ctx.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than the node's limit of {}s (CAPSTAN_REQUEST_TIMEOUT)",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}
