//! The web UI: pages rendered on the node that serves them, from templates checked at
//! compile time ([`maud`]). Every page reads and every form acts through this node's
//! own JSON API ([`api::Api`]), as the signed-in person, so the UI can do exactly what
//! that person could do with the CLI, under the same checks and audit.
//!
//! Pages work without JavaScript where that is reasonable (plain links and forms, each
//! form with its CSRF field); htmx and the node's own script add partial updates and
//! live views (server-sent events). Nothing is loaded from elsewhere, and the
//! Content-Security-Policy allows no inline script or style.

mod account;
mod admin;
mod agents;
mod ansi;
mod api;
mod approvals;
mod assets;
mod audit;
mod caller;
mod dashboard;
mod deployment;
mod environments;
mod error;
mod freezes;
mod lifecycles;
mod login;
mod nodes;
mod page;
mod projects;
mod task_log;
mod tasks;

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
        .route("/", get(dashboard::show))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/audit", get(audit::list))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}/{action}", post(nodes::act))
        .route("/agents", get(agents::list))
        .route("/agents/{id}/{action}", post(agents::act))
        .route(
            "/environments",
            get(environments::list).post(environments::create),
        )
        .route("/environments/{id}/delete", post(environments::delete))
        .route(
            "/environments/registration-tokens",
            post(environments::create_token),
        )
        .route(
            "/environments/registration-tokens/{id}/delete",
            post(environments::delete_token),
        )
        .route("/account", get(account::show))
        .route("/account/api-keys", post(account::create_key))
        .route(
            "/account/api-keys/{key_id}/revoke",
            post(account::revoke_key),
        )
        .route("/account/password", post(account::change_password))
        .route(
            "/admin/users",
            get(admin::users::list).post(admin::users::create),
        )
        .route("/admin/users/{id}/{action}", post(admin::users::act))
        .route(
            "/admin/teams",
            get(admin::teams::list).post(admin::teams::create),
        )
        .route("/admin/teams/{id}/members", post(admin::teams::add_member))
        .route(
            "/admin/teams/{id}/members/{user_id}/remove",
            post(admin::teams::remove_member),
        )
        .route("/admin/teams/{id}/grants", post(admin::teams::add_grant))
        .route(
            "/admin/teams/{id}/grants/{grant_id}/remove",
            post(admin::teams::remove_grant),
        )
        .route(
            "/admin/roles",
            get(admin::roles::list).post(admin::roles::create),
        )
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", post(approvals::decide))
        .route("/freezes", get(freezes::list).post(freezes::create))
        .route("/freezes/{id}/delete", post(freezes::delete))
        .route(
            "/lifecycles",
            get(lifecycles::list).post(lifecycles::create),
        )
        .route("/lifecycles/new", get(lifecycles::new))
        .route("/lifecycles/{id}", post(lifecycles::update))
        .route("/lifecycles/{id}/edit", get(lifecycles::edit))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{id}", get(projects::show))
        .route(
            "/projects/{id}/process",
            get(projects::edit_process).post(projects::save_process),
        )
        .route("/projects/{id}/releases", post(projects::create_release))
        .route("/projects/{id}/releases/new", get(projects::new_release))
        .route("/projects/{id}/releases/{release}", get(projects::release))
        .route(
            "/projects/{id}/releases/{release}/deploy",
            post(projects::deploy),
        )
        .route("/deployments/{id}", get(deployment::show))
        .route("/deployments/{id}/events", get(deployment::stream))
        .route("/deployments/{id}/cancel", post(deployment::cancel))
        .route(
            "/deployments/{id}/interventions/{iid}",
            post(deployment::answer),
        )
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
