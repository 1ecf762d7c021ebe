//! One place where every request is given a span, a log line and its metrics.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use tracing::{Instrument, Level, field::Empty};

use super::client_addr;
use crate::{identity::Principal, node::NodeContext};

/// Routes an orchestrator or a load balancer calls every few seconds: logged at debug
/// level unless they fail (5xx), so they do not drown the log.
const PROBE_ROUTES: &[&str] = &["/api/nodes/ping", "/healthz", "/metrics"];

/// A response extension: the request succeeded and brought nothing new (say, an
/// agent's poll that found no work), so its line is logged at debug level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routine;

/// The name of every request's span.
pub(crate) const REQUEST_SPAN: &str = "http.request";

/// Carries the matched route template out to [`observe`], which runs before routing.
pub(crate) async fn stash_matched_path(request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(path) = path {
        response.extensions_mut().insert(path);
    }
    response
}

pub(crate) async fn observe(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let client = client_addr::of_request(peer, request.headers(), &ctx.settings.trusted_proxies);
    let client_text = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());

    // An agent's poll waits up to a minute and a node holds thousands of them: each
    // gets its log line and metrics below, but no span kept open for its whole wait.
    let long_poll = method == Method::GET && path == "/api/agent/commands";
    let span = if long_poll {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            REQUEST_SPAN,
            otel.name = %format!("{method} {path}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = Empty,
            url.path = %path,
            http.response.status_code = Empty,
            client.address = %client_text,
            enduser.id = Empty,
            request.id = %request_id,
            node.name = %ctx.state.name,
        )
    };
    let response = next.run(request).instrument(span.clone()).await;

    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    // Who sent it, by public names only (a key's id, a session's id), once authenticated.
    let user = response
        .extensions()
        .get::<Principal>()
        .map_or_else(|| "-".to_owned(), Principal::to_string);
    span.record("enduser.id", user.as_str());
    span.record("otel.name", format!("{method} {route}"));
    span.record("http.route", route.as_str());
    span.record("http.response.status_code", status);
    ctx.metrics
        .record_request(&route, method_label(&method), status, elapsed.as_secs_f64());

    // Tenths of a millisecond are enough to read and keep the line short.
    let latency_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
    // A draining node's ping answers 418 on purpose; only a failing probe (5xx) is news.
    let quiet = (PROBE_ROUTES.contains(&route.as_str()) && status < 500)
        || (response.extensions().get::<Routine>().is_some() && status < 400);
    // One line per request naming each field once: the span carries the same facts
    // for traces, and the text log leaves it out (see `telemetry`).
    macro_rules! request_log {
        ($level:expr) => {
            tracing::event!(
                parent: &span,
                $level,
                http.request.method = %method,
                url.path = %path,
                http.response.status_code = status,
                latency_ms,
                client.address = %client_text,
                enduser.id = %user,
                request.id = %request_id,
                node.name = %ctx.state.name,
                "request"
            )
        };
    }
    if quiet {
        request_log!(Level::DEBUG);
    } else if status >= 500 {
        request_log!(Level::WARN);
    } else {
        request_log!(Level::INFO);
    }
    response
}

/// Methods as a bounded label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
