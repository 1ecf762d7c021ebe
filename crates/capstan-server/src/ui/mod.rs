//! The web UI: pages rendered on the node that serves them, from templates checked at
//! compile time ([`maud`]). Every page reads and every form acts through this node's
//! own JSON API ([`api::Api`]), as the signed-in person, so the UI can do exactly what
//! that person could do with the CLI, under the same checks and audit.
//!
//! Pages work without JavaScript where that is reasonable (plain links and forms, each
//! form with its CSRF field); htmx and the node's own script add partial updates and
//! live views (server-sent events). Nothing is loaded from elsewhere, and the
//! Content-Security-Policy allows no inline script or style.

mod ansi;
mod api;
mod assets;
mod caller;
mod error;
mod login;
mod nodes;
mod page;
mod task_log;

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};

pub(crate) use api::Api;

use crate::node::NodeContext;

/// What every page handler has: the API to call, and the node.
pub(crate) struct Ui {
    pub api: Api,
    pub ctx: Arc<NodeContext>,
}

/// The policy every page is served under: scripts, styles and connections from this
/// node only, no inline script or style, no framing, forms posting here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages and their assets; `api` is the node's API router that pages call.
pub(crate) fn router(ctx: Arc<NodeContext>, api: Router) -> Router {
    let ui = Arc::new(Ui {
        api: Api::new(api),
        ctx,
    });
    Router::new()
        .route("/login", get(login::form).post(login::sign_in))
        .route("/logout", post(login::sign_out))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}/{action}", post(nodes::act))
        .route("/tasks/{id}/log", get(task_log::show))
        .layer(middleware::from_fn(protect))
        .route("/assets/{file}", get(assets::serve))
        .with_state(ui)
}

/// Headers of every page: the policy, no sniffing, no framing, and no caching of pages
/// that carry a CSRF token.
async fn protect(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
