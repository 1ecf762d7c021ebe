//! Deadlines: on every API request (answered as problem+json when it passes), and on
//! the bodies of the routes that have none.

use std::{
    future::Future as _,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
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

/// Routes outside the request time limit (agents': a poll waits) still read their small
/// bodies within `CAPSTAN_BODY_TIMEOUT`, so a client that stalls mid-body cannot hold a
/// connection and a handler forever.
pub(crate) async fn limit_body_time(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = ctx.settings.body_timeout;
    let request = request.map(|body| {
        Body::new(TimedBody::new(
            body,
            BodyLimit::Total(tokio::time::Instant::now() + limit),
        ))
    });
    next.run(request).await
}

/// Uploads run as long as their bytes keep coming, at any honest speed: the limit is on
/// the pause between two chunks (`CAPSTAN_UPLOAD_STALL_TIMEOUT`), not on the total.
pub(crate) async fn limit_upload_stalls(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = ctx.settings.upload_stall_timeout;
    let request = request.map(|body| Body::new(TimedBody::new(body, BodyLimit::Stall(limit))));
    next.run(request).await
}

/// What a request body must keep up with.
#[derive(Debug, Clone, Copy)]
enum BodyLimit {
    /// All of it by then.
    Total(tokio::time::Instant),
    /// Each chunk within this of the one before.
    Stall(Duration),
}

/// A request body that fails with [`BodyTooSlow`] when it falls behind its limit.
struct TimedBody {
    inner: Body,
    limit: BodyLimit,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: Body, limit: BodyLimit) -> Self {
        let deadline = match limit {
            BodyLimit::Total(at) => at,
            BodyLimit::Stall(pause) => tokio::time::Instant::now() + pause,
        };
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

/// The client sent a request body too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time ({0})")]
pub(crate) struct BodyTooSlow(String);

/// The 408 for a body that fell behind its limit, when that is what `error` comes from.
pub(crate) fn too_slow(error: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(slow) = error.downcast_ref::<BodyTooSlow>() {
            return Some(ApiError::new(StatusCode::REQUEST_TIMEOUT, slow.to_string()));
        }
        next = error.source();
    }
    None
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let (Some(Ok(_)), BodyLimit::Stall(pause)) = (&frame, self.limit) {
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + pause);
            }
            return Poll::Ready(frame);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            let why = match self.limit {
                BodyLimit::Total(_) => "CAPSTAN_BODY_TIMEOUT".to_owned(),
                BodyLimit::Stall(pause) => format!(
                    "no byte for {}s, CAPSTAN_UPLOAD_STALL_TIMEOUT",
                    pause.as_secs_f64()
                ),
            };
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(why)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
