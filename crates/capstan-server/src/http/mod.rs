//! The HTTP surface of a node: the router and the layers every request passes.

pub mod access;
mod agent_protocol;
mod agents;
mod approvals;
mod artifacts;
mod audit;
mod auth;
mod auto_rollbacks;
pub mod client_addr;
mod dashboard;
mod deployments;
mod download;
mod error;
mod extract;
mod freezes;
mod health;
mod lifecycles;
mod log_pages;
mod log_reader;
mod login;
mod master_key;
mod nodes;
mod observe;
pub mod openapi;
mod packages;
mod paging;
pub(crate) mod problems;
mod projects;
mod releases;
mod roles;
mod scripts;
mod task_logs;
mod task_order;
mod tasks;
mod teams;
mod timeout;
mod users;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post, put},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

pub use error::ApiError;
pub(crate) use observe::REQUEST_SPAN;
pub(crate) use timeout::too_slow;

use crate::node::NodeContext;

/// The largest JSON body the API reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// All routes of a node (the API and the web UI's pages), with auth, limits, request
/// ids, logging and metrics.
pub fn router(ctx: Arc<NodeContext>) -> Router {
    let authenticated = Router::new()
        .route("/api/nodes", get(nodes::list_nodes))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route(
            "/api/nodes/{id}",
            get(nodes::get_node)
                .patch(nodes::update_node)
                .delete(nodes::delete_node),
        )
        .route(
            "/api/tasks",
            get(tasks::list_tasks).post(tasks::create_task),
        )
        .route(
            "/api/tasks/batch",
            post(tasks::create_tasks).layer(DefaultBodyLimit::max(tasks::MAX_BATCH_BODY_BYTES)),
        )
        .route("/api/tasks/{id}", get(tasks::get_task))
        .route("/api/tasks/{id}/attempts", get(tasks::task_attempts))
        .route("/api/tasks/{id}/cancel", post(tasks::cancel_task))
        .route(
            "/api/tasks/{id}/move-to-front",
            post(task_order::move_to_front),
        )
        .route("/api/tasks/{id}/artifacts", get(artifacts::list_artifacts))
        .route(
            "/api/tasks/{id}/artifacts/{name}",
            get(artifacts::download_artifact),
        )
        .route("/api/master-key", get(master_key::get_master_key))
        .route(
            "/api/master-key/rotate",
            post(master_key::rotate_master_key),
        )
        .route("/api/packages", get(packages::list_packages))
        .route("/api/packages/{id}/versions", get(packages::list_versions))
        .route(
            "/api/packages/{id}/{version}",
            get(packages::get_package).delete(packages::delete_package),
        )
        .route(
            "/api/packages/{id}/{version}/raw",
            get(packages::download_package),
        )
        .route("/api/tasks/{id}/log", get(task_logs::get_task_log))
        .route("/api/tasks/{id}/commands", get(scripts::task_commands))
        .route("/api/scripts", post(scripts::run_script))
        .route(
            "/api/agents/registration-tokens",
            get(agents::list_tokens).post(agents::create_token),
        )
        .route(
            "/api/agents/registration-tokens/{id}",
            delete(agents::delete_token),
        )
        .route("/api/agents", get(agents::list_agents))
        .route(
            "/api/agents/{id}",
            get(agents::get_agent)
                .patch(agents::update_agent)
                .delete(agents::delete_agent),
        )
        .route(
            "/api/environments",
            get(agents::list_environments).post(agents::create_environment),
        )
        .route(
            "/api/environments/{id}",
            get(agents::get_environment)
                .put(agents::update_environment)
                .delete(agents::delete_environment),
        )
        .route("/api/dashboard", get(dashboard::get_dashboard))
        .route(
            "/api/lifecycles",
            get(lifecycles::list_lifecycles).post(lifecycles::create_lifecycle),
        )
        .route(
            "/api/lifecycles/{id}",
            get(lifecycles::get_lifecycle)
                .put(lifecycles::update_lifecycle)
                .delete(lifecycles::delete_lifecycle),
        )
        .route(
            "/api/projects/{id}/lifecycle",
            put(lifecycles::put_project_lifecycle),
        )
        .route(
            "/api/projects/{id}/auto-rollback",
            get(auto_rollbacks::get_auto_rollback).put(auto_rollbacks::put_auto_rollback),
        )
        .route(
            "/api/freezes",
            get(freezes::list_freezes).post(freezes::create_freeze),
        )
        .route(
            "/api/freezes/{id}",
            get(freezes::get_freeze)
                .put(freezes::update_freeze)
                .delete(freezes::delete_freeze),
        )
        .route(
            "/api/projects",
            get(projects::list_projects).post(projects::create_project),
        )
        .route(
            "/api/projects/{id}",
            get(projects::get_project)
                .patch(projects::update_project)
                .delete(projects::delete_project),
        )
        .route(
            "/api/projects/{id}/process",
            get(projects::get_process)
                .put(projects::put_process)
                .layer(DefaultBodyLimit::max(
                    capstan_api::projects::MAX_DOCUMENT_BYTES,
                )),
        )
        .route(
            "/api/projects/{id}/variables",
            get(projects::get_variables)
                .put(projects::put_variables)
                .layer(DefaultBodyLimit::max(
                    capstan_api::projects::MAX_DOCUMENT_BYTES,
                )),
        )
        .route(
            "/api/projects/{id}/variables/preview",
            post(projects::preview_variables),
        )
        .route(
            "/api/releases",
            get(releases::list_releases).post(releases::create_release),
        )
        .route(
            "/api/releases/{id}",
            get(releases::get_release).delete(releases::delete_release),
        )
        .route(
            "/api/deployments",
            get(deployments::list_deployments).post(deployments::create_deployment),
        )
        .route("/api/deployments/{id}", get(deployments::get_deployment))
        .route(
            "/api/deployments/{id}/cancel",
            post(deployments::cancel_deployment),
        )
        .route(
            "/api/deployments/{id}/abandon",
            post(deployments::abandon_deployment),
        )
        .route(
            "/api/deployments/{id}/interventions/{iid}",
            post(deployments::answer_intervention),
        )
        // Approvals (docs/approvals.md).
        .route("/api/approval-rules", get(approvals::list_rules))
        .route(
            "/api/environments/{id}/approval-rule",
            put(approvals::put_rule).delete(approvals::delete_rule),
        )
        .route("/api/approvals", get(approvals::list_awaiting))
        .route("/api/deployments/{id}/approve", post(approvals::approve))
        .route("/api/deployments/{id}/deny", post(approvals::deny))
        .route(
            "/api/users",
            get(users::list_users).post(users::create_user),
        )
        .route(
            "/api/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route("/api/users/{id}/password", put(login::set_password))
        .route("/api/session", get(login::get_session))
        .route("/api/logout", post(login::logout))
        .route(
            "/api/users/{id}/api-keys",
            get(users::list_api_keys).post(users::create_api_key),
        )
        .route(
            "/api/users/{id}/api-keys/{key_id}",
            delete(users::revoke_api_key),
        )
        .route("/api/audit", get(audit::list_audit))
        .route(
            "/api/roles",
            get(roles::list_roles).post(roles::create_role),
        )
        .route(
            "/api/roles/{id}",
            get(roles::get_role)
                .patch(roles::update_role)
                .delete(roles::delete_role),
        )
        .route(
            "/api/teams",
            get(teams::list_teams).post(teams::create_team),
        )
        .route(
            "/api/teams/{id}",
            get(teams::get_team)
                .patch(teams::update_team)
                .delete(teams::delete_team),
        )
        .route(
            "/api/teams/{id}/members",
            get(teams::list_members).post(teams::add_member),
        )
        .route(
            "/api/teams/{id}/members/{user_id}",
            delete(teams::remove_member),
        )
        .route(
            "/api/teams/{id}/grants",
            get(teams::list_grants).post(teams::create_grant),
        )
        .route(
            "/api/teams/{id}/grants/{grant_id}",
            delete(teams::delete_grant),
        )
        // The permission check runs after authentication: route layers added later
        // run first.
        .route_layer(middleware::from_fn_with_state(ctx.clone(), access::check))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            timeout::limit_duration,
        ));
    // Uploads run as long as the bytes keep coming, and their size limit is the
    // node's upload limit, not the JSON one.
    let uploads = Router::new()
        .route("/api/packages/raw", post(packages::upload_package))
        .route(
            "/api/tasks/{id}/artifacts/{name}",
            post(artifacts::upload_artifact),
        )
        .route_layer(middleware::from_fn_with_state(ctx.clone(), access::check))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            timeout::limit_upload_stalls,
        ));
    // Agents authenticate with their own credentials, per handler and before the body
    // is read; a poll waits up to a minute, so the API's request time limit does not
    // apply, but bodies are still read within their own limit.
    let agent_protocol = Router::new()
        .route("/api/agents/register", post(agents::register))
        .route("/api/agent/commands", get(agent_protocol::poll))
        .route("/api/agent/commands/{id}/ack", post(agent_protocol::ack))
        .route(
            "/api/agent/commands/{id}/output",
            post(agent_protocol::output),
        )
        .route(
            "/api/agent/commands/{id}/result",
            post(agent_protocol::result),
        )
        .route(
            "/api/agent/commands/{id}/packages/{index}",
            get(agent_protocol::package),
        )
        .layer(DefaultBodyLimit::max(agent_protocol::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            timeout::limit_body_time,
        ));
    // Signing in needs no credential; the login routes have the API's limits.
    let sign_in = Router::new()
        .route("/api/login", post(login::login))
        .route("/api/login/api-key", post(login::create_login_key))
        .route("/api/login/cli-code", post(login::create_code_key))
        .route("/api/login/oidc", get(login::start_oidc_login))
        .route("/api/login/oidc/callback", get(login::finish_oidc_login))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            timeout::limit_duration,
        ));
    let public = Router::new()
        .route("/api/nodes/ping", get(nodes::ping))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics));

    // The pages call the API in-process (crate::ui::Api), through the same routes and
    // the same authentication and permission layers as any client.
    let api: Router = Router::new()
        .merge(public)
        .merge(sign_in)
        .merge(authenticated)
        .merge(uploads)
        .merge(agent_protocol)
        .with_state(ctx.clone());
    let ui = crate::ui::router(ctx.clone(), api.clone());

    Router::new()
        .merge(api)
        .merge(ui)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .route_layer(middleware::from_fn(observe::stash_matched_path))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            observe::observe,
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(error::panic_response))
}
