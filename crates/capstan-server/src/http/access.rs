//! The permission every endpoint needs, and the layer that checks it.
//!
//! [`ROUTES`] maps each (method, route template) to a [`Requirement`]: the permission
//! and where its scope comes from. The layer runs after authentication, reads the
//! route's `MatchedPath`, finds the object in the path (a project, a release, a
//! deployment, a task, an agent, an environment) and holds the caller's cached grants
//! against its project and environment. A route missing from the table is refused, and
//! the OpenAPI document carries each operation's requirement (`x-capstan-access`), so
//! an undeclared endpoint also fails the matrix test.
//!
//! A caller who may not `view` the object is answered 404 exactly like a missing one;
//! one who may view it but lacks the permission gets 403 naming what is missing.

use std::{collections::HashMap, sync::Arc, sync::LazyLock};

use axum::{
    extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State},
    http::StatusCode,
    middleware::Next,
    response::Response,
};
use capstan_api::Problem;
use capstan_core::access::{Permission, Scope, allows};
use capstan_db::{DbError, access as db, access::Viewer};

use super::{ApiError, problems::Problems};
use crate::{
    identity::{Principal, access::Grants},
    node::NodeContext,
};

use Permission as P;

/// What an endpoint needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No credential at all (ping, health, metrics).
    Public,
    /// The agent protocol: agent credentials and registration tokens, checked by its
    /// handlers.
    AgentProtocol,
    /// Any authenticated caller.
    Authenticated,
    /// A list: any authenticated caller, who sees only what they may `view`.
    Listed,
    /// A grant of the permission scoped to every project and environment.
    System(Permission),
    /// The permission anywhere: the package feed is shared by every project.
    AnyProject(Permission),
    /// The permission on the project `{id}`.
    Project(Permission),
    /// The permission on the project of release `{id}`.
    Release(Permission),
    /// The permission on the project and environment of deployment `{id}`.
    Deployment(Permission),
    /// The permission where task `{id}` runs: its deployment's project and
    /// environment, or system-wide for a task of no deployment.
    Task(Permission),
    /// The permission on the environment of agent `{id}`.
    Agent(Permission),
    /// The permission on environment `{id}`.
    Environment(Permission),
    /// User `{id}` acting on itself, or the permission system-wide.
    OwnUserOr(Permission),
    /// The body names the project or environment; the handler checks the permission.
    InHandler(Permission),
}

impl Requirement {
    /// The permission, if the requirement names one.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Self::Public | Self::AgentProtocol | Self::Authenticated | Self::Listed => None,
            Self::System(p)
            | Self::AnyProject(p)
            | Self::Project(p)
            | Self::Release(p)
            | Self::Deployment(p)
            | Self::Task(p)
            | Self::Agent(p)
            | Self::Environment(p)
            | Self::OwnUserOr(p)
            | Self::InHandler(p) => Some(p),
        }
    }

    /// Where the scope comes from, as the OpenAPI document names it.
    pub fn scope(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::AgentProtocol => "agent",
            Self::Authenticated => "authenticated",
            Self::Listed => "listed",
            Self::System(_) => "system",
            Self::AnyProject(_) => "any_project",
            Self::Project(_) => "project",
            Self::Release(_) => "release",
            Self::Deployment(_) => "deployment",
            Self::Task(_) => "task",
            Self::Agent(_) => "agent_environment",
            Self::Environment(_) => "environment",
            Self::OwnUserOr(_) => "own_user",
            Self::InHandler(_) => "body",
        }
    }
}

use Requirement as R;

/// Every route of the node and what it needs. One line per endpoint.
pub const ROUTES: &[(&str, &str, Requirement)] = &[
    ("GET", "/api/nodes/ping", R::Public),
    ("GET", "/healthz", R::Public),
    ("GET", "/metrics", R::Public),
    ("GET", "/api/openapi.json", R::Authenticated),
    ("GET", "/api/nodes", R::System(P::View)),
    ("GET", "/api/nodes/{id}", R::System(P::View)),
    ("PATCH", "/api/nodes/{id}", R::System(P::ManageNodes)),
    ("DELETE", "/api/nodes/{id}", R::System(P::ManageNodes)),
    ("GET", "/api/tasks", R::Listed),
    ("POST", "/api/tasks", R::System(P::ManageNodes)),
    ("POST", "/api/tasks/batch", R::System(P::ManageNodes)),
    ("GET", "/api/tasks/{id}", R::Task(P::View)),
    ("GET", "/api/tasks/{id}/attempts", R::Task(P::View)),
    ("POST", "/api/tasks/{id}/cancel", R::Task(P::Deploy)),
    ("POST", "/api/tasks/{id}/move-to-front", R::Task(P::Deploy)),
    ("GET", "/api/tasks/{id}/artifacts", R::Task(P::View)),
    ("GET", "/api/tasks/{id}/artifacts/{name}", R::Task(P::View)),
    (
        "POST",
        "/api/tasks/{id}/artifacts/{name}",
        R::System(P::ManageNodes),
    ),
    ("GET", "/api/tasks/{id}/log", R::Task(P::View)),
    ("GET", "/api/tasks/{id}/commands", R::Task(P::View)),
    ("GET", "/api/master-key", R::System(P::ManageNodes)),
    ("POST", "/api/master-key/rotate", R::System(P::ManageNodes)),
    ("GET", "/api/packages", R::AnyProject(P::View)),
    ("POST", "/api/packages/raw", R::AnyProject(P::CreateRelease)),
    ("GET", "/api/packages/{id}/versions", R::AnyProject(P::View)),
    (
        "GET",
        "/api/packages/{id}/{version}",
        R::AnyProject(P::View),
    ),
    (
        "DELETE",
        "/api/packages/{id}/{version}",
        R::AnyProject(P::CreateRelease),
    ),
    (
        "GET",
        "/api/packages/{id}/{version}/raw",
        R::AnyProject(P::View),
    ),
    ("POST", "/api/scripts", R::System(P::ManageAgents)),
    (
        "GET",
        "/api/agents/registration-tokens",
        R::System(P::ManageAgents),
    ),
    (
        "POST",
        "/api/agents/registration-tokens",
        R::System(P::ManageAgents),
    ),
    (
        "DELETE",
        "/api/agents/registration-tokens/{id}",
        R::System(P::ManageAgents),
    ),
    ("GET", "/api/agents", R::Listed),
    ("GET", "/api/agents/{id}", R::Agent(P::View)),
    ("PATCH", "/api/agents/{id}", R::Agent(P::ManageAgents)),
    ("DELETE", "/api/agents/{id}", R::Agent(P::ManageAgents)),
    ("GET", "/api/environments", R::Listed),
    (
        "POST",
        "/api/environments",
        R::System(P::ManageEnvironments),
    ),
    ("GET", "/api/environments/{id}", R::Environment(P::View)),
    (
        "PUT",
        "/api/environments/{id}",
        R::Environment(P::ManageEnvironments),
    ),
    (
        "DELETE",
        "/api/environments/{id}",
        R::Environment(P::ManageEnvironments),
    ),
    ("GET", "/api/dashboard", R::Listed),
    // A lifecycle names environments: reading one needs `view` everywhere.
    ("GET", "/api/lifecycles", R::System(P::View)),
    ("POST", "/api/lifecycles", R::System(P::ManageEnvironments)),
    ("GET", "/api/lifecycles/{id}", R::System(P::View)),
    (
        "PUT",
        "/api/lifecycles/{id}",
        R::System(P::ManageEnvironments),
    ),
    (
        "DELETE",
        "/api/lifecycles/{id}",
        R::System(P::ManageEnvironments),
    ),
    (
        "PUT",
        "/api/projects/{id}/lifecycle",
        R::Project(P::ManageProjects),
    ),
    (
        "GET",
        "/api/projects/{id}/auto-rollback",
        R::Project(P::View),
    ),
    // The handler also checks `deploy` on each environment turned on.
    (
        "PUT",
        "/api/projects/{id}/auto-rollback",
        R::Project(P::ManageProjects),
    ),
    // Freeze windows: managing one needs `manage_environments` where it applies,
    // checked by the handler against the body and the stored window.
    ("GET", "/api/freezes", R::System(P::View)),
    ("POST", "/api/freezes", R::InHandler(P::ManageEnvironments)),
    ("GET", "/api/freezes/{id}", R::System(P::View)),
    (
        "PUT",
        "/api/freezes/{id}",
        R::InHandler(P::ManageEnvironments),
    ),
    (
        "DELETE",
        "/api/freezes/{id}",
        R::InHandler(P::ManageEnvironments),
    ),
    ("GET", "/api/projects", R::Listed),
    ("POST", "/api/projects", R::System(P::ManageProjects)),
    ("GET", "/api/projects/{id}", R::Project(P::View)),
    ("PATCH", "/api/projects/{id}", R::Project(P::ManageProjects)),
    (
        "DELETE",
        "/api/projects/{id}",
        R::Project(P::ManageProjects),
    ),
    ("GET", "/api/projects/{id}/process", R::Project(P::View)),
    (
        "PUT",
        "/api/projects/{id}/process",
        R::Project(P::EditProcess),
    ),
    ("GET", "/api/projects/{id}/variables", R::Project(P::View)),
    (
        "PUT",
        "/api/projects/{id}/variables",
        R::Project(P::EditProcess),
    ),
    (
        "POST",
        "/api/projects/{id}/variables/preview",
        R::Project(P::View),
    ),
    ("GET", "/api/releases", R::Listed),
    ("POST", "/api/releases", R::InHandler(P::CreateRelease)),
    ("GET", "/api/releases/{id}", R::Release(P::View)),
    ("DELETE", "/api/releases/{id}", R::Release(P::CreateRelease)),
    ("GET", "/api/deployments", R::Listed),
    ("POST", "/api/deployments", R::InHandler(P::Deploy)),
    ("GET", "/api/deployments/{id}", R::Deployment(P::View)),
    (
        "POST",
        "/api/deployments/{id}/cancel",
        R::Deployment(P::Deploy),
    ),
    (
        "POST",
        "/api/deployments/{id}/abandon",
        R::Deployment(P::Deploy),
    ),
    (
        "POST",
        "/api/deployments/{id}/interventions/{iid}",
        R::Deployment(P::AnswerInterventions),
    ),
    // Approvals: deciding needs membership of the rule's team (checked by the service).
    ("GET", "/api/approval-rules", R::Listed),
    (
        "PUT",
        "/api/environments/{id}/approval-rule",
        R::Environment(P::ManageEnvironments),
    ),
    (
        "DELETE",
        "/api/environments/{id}/approval-rule",
        R::Environment(P::ManageEnvironments),
    ),
    ("GET", "/api/approvals", R::Listed),
    (
        "POST",
        "/api/deployments/{id}/approve",
        R::Deployment(P::View),
    ),
    ("POST", "/api/deployments/{id}/deny", R::Deployment(P::View)),
    ("GET", "/api/users", R::System(P::ManageUsers)),
    ("POST", "/api/users", R::System(P::ManageUsers)),
    ("GET", "/api/users/{id}", R::OwnUserOr(P::ManageUsers)),
    ("PATCH", "/api/users/{id}", R::System(P::ManageUsers)),
    ("DELETE", "/api/users/{id}", R::System(P::ManageUsers)),
    (
        "GET",
        "/api/users/{id}/api-keys",
        R::OwnUserOr(P::ManageUsers),
    ),
    (
        "POST",
        "/api/users/{id}/api-keys",
        R::OwnUserOr(P::ManageUsers),
    ),
    (
        "DELETE",
        "/api/users/{id}/api-keys/{key_id}",
        R::OwnUserOr(P::ManageUsers),
    ),
    (
        "PUT",
        "/api/users/{id}/password",
        R::OwnUserOr(P::ManageUsers),
    ),
    // Sign-in: the password, the provider or a one-time code is the credential.
    ("POST", "/api/login", R::Public),
    ("POST", "/api/login/api-key", R::Public),
    ("POST", "/api/login/cli-code", R::Public),
    ("GET", "/api/login/oidc", R::Public),
    ("GET", "/api/login/oidc/callback", R::Public),
    ("GET", "/api/session", R::Authenticated),
    ("POST", "/api/logout", R::Authenticated),
    ("GET", "/api/audit", R::System(P::ViewAudit)),
    ("GET", "/api/roles", R::Authenticated),
    ("POST", "/api/roles", R::System(P::ManageUsers)),
    ("GET", "/api/roles/{id}", R::Authenticated),
    ("PATCH", "/api/roles/{id}", R::System(P::ManageUsers)),
    ("DELETE", "/api/roles/{id}", R::System(P::ManageUsers)),
    ("GET", "/api/teams", R::System(P::ManageUsers)),
    ("POST", "/api/teams", R::System(P::ManageUsers)),
    ("GET", "/api/teams/{id}", R::System(P::ManageUsers)),
    ("PATCH", "/api/teams/{id}", R::System(P::ManageUsers)),
    ("DELETE", "/api/teams/{id}", R::System(P::ManageUsers)),
    ("GET", "/api/teams/{id}/members", R::System(P::ManageUsers)),
    ("POST", "/api/teams/{id}/members", R::System(P::ManageUsers)),
    (
        "DELETE",
        "/api/teams/{id}/members/{user_id}",
        R::System(P::ManageUsers),
    ),
    ("GET", "/api/teams/{id}/grants", R::System(P::ManageUsers)),
    ("POST", "/api/teams/{id}/grants", R::System(P::ManageUsers)),
    (
        "DELETE",
        "/api/teams/{id}/grants/{grant_id}",
        R::System(P::ManageUsers),
    ),
    ("POST", "/api/agents/register", R::AgentProtocol),
    ("GET", "/api/agent/commands", R::AgentProtocol),
    ("POST", "/api/agent/commands/{id}/ack", R::AgentProtocol),
    ("POST", "/api/agent/commands/{id}/output", R::AgentProtocol),
    ("POST", "/api/agent/commands/{id}/result", R::AgentProtocol),
    (
        "GET",
        "/api/agent/commands/{id}/packages/{index}",
        R::AgentProtocol,
    ),
];

static TABLE: LazyLock<HashMap<(&'static str, &'static str), Requirement>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|(method, path, requirement)| ((*method, *path), *requirement))
        .collect()
});

/// The requirement of a route, if it declares one.
pub fn requirement(method: &str, path: &str) -> Option<Requirement> {
    TABLE.get(&(method, path)).copied()
}

/// The caller as the handlers see it: who, and what their grants allow. Put into a
/// request's extensions by [`check`].
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    /// `None`: the admin key, which may do everything.
    grants: Option<Grants>,
}

impl Caller {
    /// A caller the check let through; `grants` is `None` for the admin key.
    pub fn new(principal: Principal, grants: Option<Grants>) -> Self {
        Self { principal, grants }
    }

    /// Whether the caller may do `permission` in `scope`.
    pub fn may(&self, permission: Permission, scope: Scope) -> bool {
        self.grants
            .as_deref()
            .is_none_or(|grants| allows(grants, permission, scope))
    }

    /// Whose view lists are filtered for.
    pub fn viewer(&self) -> Viewer {
        match (&self.grants, self.principal.user_id()) {
            (Some(_), Some(id)) => Viewer::User(id),
            _ => Viewer::All,
        }
    }
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not see the object: answer as if it were missing.
    Hidden,
    /// The caller sees the object but lacks the permission.
    Forbidden {
        permission: Permission,
        scope: Scope,
    },
}

/// The check of `requirement` for a caller, the objects being found in the database.
/// `Ok(())` also when the object is missing: its handler answers that.
pub async fn decide(
    ctx: &NodeContext,
    caller: &Caller,
    requirement: Requirement,
    id: Option<i64>,
) -> Result<Result<(), Refusal>, DbError> {
    if caller.grants.is_none() {
        return Ok(Ok(()));
    }
    let db = &ctx.pools.api;
    let scope = match requirement {
        R::Public | R::AgentProtocol | R::Authenticated | R::Listed | R::InHandler(_) => {
            return Ok(Ok(()));
        }
        R::System(_) => Some(Scope::System),
        R::AnyProject(_) => Some(Scope::AnyProject),
        R::OwnUserOr(_) => {
            if id.is_some() && caller.principal.user_id() == id {
                return Ok(Ok(()));
            }
            Some(Scope::System)
        }
        // A path id that does not parse is the handler's 400.
        R::Project(_) => id.map(Scope::Project),
        R::Environment(_) => id.map(Scope::Environment),
        R::Release(_) => match id {
            Some(id) => db::release_project(db, id).await?.map(Scope::Project),
            None => None,
        },
        R::Deployment(_) => match id {
            Some(id) => db::deployment_scope(db, id)
                .await?
                .map(|(project, environment)| Scope::Deployment {
                    project,
                    environment,
                }),
            None => None,
        },
        R::Task(_) => match id {
            Some(id) => db::task_scope(db, id).await?.map(|scope| match scope {
                Some((project, environment)) => Scope::Deployment {
                    project,
                    environment,
                },
                None => Scope::System,
            }),
            None => None,
        },
        R::Agent(_) => match id {
            Some(id) => db::agent_environment(db, id).await?.map(Scope::Environment),
            None => None,
        },
    };
    let (Some(scope), Some(permission)) = (scope, requirement.permission()) else {
        return Ok(Ok(()));
    };
    Ok(refusal(caller, permission, scope))
}

/// Whether `caller` may do `permission` in `scope`, and if not, how to say so.
pub fn refusal(caller: &Caller, permission: Permission, scope: Scope) -> Result<(), Refusal> {
    if caller.may(permission, scope) {
        return Ok(());
    }
    // System-wide things and the shared feed exist for everyone: naming them leaks
    // nothing, so they are refused, never hidden.
    let hideable = !matches!(scope, Scope::System | Scope::AnyProject);
    if hideable && !caller.may(P::View, scope) {
        return Err(Refusal::Hidden);
    }
    Err(Refusal::Forbidden { permission, scope })
}

/// The 403 of a refusal, naming the permission and the scope by name.
pub async fn forbidden(ctx: &NodeContext, permission: Permission, scope: Scope) -> ApiError {
    let db = &ctx.pools.api;
    let project = |id: i64| async move {
        match db::project_name(db, id).await {
            Ok(Some(name)) => format!("project {name}"),
            _ => format!("project {id}"),
        }
    };
    let environment = |id: i64| async move {
        match db::environment_name(db, id).await {
            Ok(Some(name)) => format!("environment {name}"),
            _ => format!("environment {id}"),
        }
    };
    let place = match scope {
        Scope::System => {
            "system-wide (it needs a grant scoped to every project and environment)".to_owned()
        }
        Scope::AnyProject => "in any project".to_owned(),
        Scope::Project(p) => format!("in {}", project(p).await),
        Scope::Environment(e) => format!("in {}", environment(e).await),
        Scope::Deployment {
            project: p,
            environment: e,
        } => format!("to {} ({})", environment(e).await, project(p).await),
    };
    let detail = format!(
        "you may not `{permission}` {place}: no grant of yours allows it",
        permission = permission.as_str()
    );
    let mut problem = Problem::new(403, "Forbidden", detail.clone());
    problem.extensions.insert(
        "missing_permission".to_owned(),
        serde_json::Value::from(permission.as_str()),
    );
    ApiError {
        problem: Some(Box::new(problem)),
        ..ApiError::new(StatusCode::FORBIDDEN, detail)
    }
}

/// The 404 of an object the caller may not see, worded as its handler words a
/// missing one.
fn hidden(requirement: Requirement, route: &str, id: i64, name: Option<&str>) -> ApiError {
    // An artifact is looked up by task and name at once.
    if let (R::Task(_), Some(name)) = (requirement, name)
        && route.contains("/artifacts/")
    {
        return ApiError::not_found(format!("task {id} has no artifact `{name}`"));
    }
    let what = match requirement {
        R::Project(_) => "project",
        R::Release(_) => "release",
        R::Deployment(_) => "deployment",
        // The task's artifacts and commands say it without "with id".
        R::Task(_) if route.contains("/artifacts") || route.ends_with("/commands") => "task",
        R::Task(_) => "task with id",
        R::Agent(_) => "agent",
        _ => "environment",
    };
    ApiError::not_found(format!("there is no {what} {id}"))
}

/// `POST /api/releases`: `create_release` on the body's project. A project the
/// caller may not view reads as a missing one, in the service's own words.
pub(crate) async fn check_create_release(
    ctx: &NodeContext,
    caller: &Caller,
    project: i64,
) -> Result<(), ApiError> {
    match refusal(caller, P::CreateRelease, Scope::Project(project)) {
        Ok(()) => Ok(()),
        Err(Refusal::Hidden) => {
            Err(Problems::one("project_id", format!("there is no project {project}")).into())
        }
        Err(Refusal::Forbidden { permission, scope }) => {
            Err(forbidden(ctx, permission, scope).await)
        }
    }
}

/// `POST /api/deployments`: `deploy` on the release's project in the environment
/// named, checked before anything is queued. A release the caller may not view reads
/// as a missing one, in the service's own words. The environment is named in the
/// refusal even when the caller may not view it: environments are the vocabulary
/// every project deploys to, and "you may not deploy to Production" is the answer a
/// deployer on Test needs.
pub(crate) async fn check_create_deployment(
    ctx: &NodeContext,
    caller: &Caller,
    release: i64,
    environment: &str,
) -> Result<(), ApiError> {
    if caller.grants.is_none() {
        return Ok(());
    }
    let db = &ctx.pools.api;
    let db_error = |e| ApiError::from_db(e, String::new);
    let project = db::release_project(db, release).await.map_err(db_error)?;
    let found = capstan_db::agents::find_environment(db, &capstan_core::names::nfc(environment))
        .await
        .map_err(db_error)?;
    let mut problems = Problems::new();
    if let Some(p) = project
        && !caller.may(P::View, Scope::Project(p))
    {
        problems.add("release_id", format!("there is no release {release}"));
    }
    problems.finish()?;
    // Missing ones are the service's to report, with everything else it checks.
    let (Some(project), Some(environment)) = (project, found) else {
        return Ok(());
    };
    let scope = Scope::Deployment {
        project,
        environment: environment.id,
    };
    if caller.may(P::Deploy, scope) {
        return Ok(());
    }
    Err(forbidden(ctx, P::Deploy, scope).await)
}

/// The layer: runs after authentication on every authenticated route.
pub(crate) async fn check(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // axum answers HEAD with the GET handler, so HEAD needs what GET needs.
    let method = if parts.method == axum::http::Method::HEAD {
        "GET"
    } else {
        parts.method.as_str()
    };
    let Some(requirement) = requirement(method, &route) else {
        tracing::error!(http.route = %route, "route {} {route} declares no permission; refused", parts.method);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {route} declares no permission, so nobody may use it",
                parts.method
            ),
        ));
    };
    let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
        return Err(ApiError::unauthorized(
            "send an API key as `Authorization: Bearer <key>`",
        ));
    };
    // The admin key has no user and no grants: it may do everything.
    let grants = match principal.user_id() {
        Some(user) => Some(
            ctx.access
                .grants(&ctx.pools.api, user)
                .await
                .map_err(|e| ApiError::from_db(e, String::new))?,
        ),
        None => None,
    };
    let caller = Caller::new(principal, grants);
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|params| {
            params
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let param = |wanted: &str| {
        params
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    let id = param("id").and_then(|value| value.parse::<i64>().ok());
    match decide(&ctx, &caller, requirement, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
    {
        Ok(()) => {}
        Err(Refusal::Hidden) => {
            return Err(hidden(
                requirement,
                &route,
                id.unwrap_or_default(),
                param("name"),
            ));
        }
        Err(Refusal::Forbidden { permission, scope }) => {
            return Err(forbidden(&ctx, permission, scope).await);
        }
    }
    parts.extensions.insert(caller);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use utoipa::OpenApi;

    use super::*;

    #[test]
    fn every_documented_operation_declares_a_requirement_and_every_row_is_documented() {
        let doc = super::super::openapi::ApiDoc::openapi();
        let mut documented = HashSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if operation.is_some() {
                    documented.insert((method, path.as_str()));
                }
            }
        }
        let undeclared: Vec<_> = documented
            .iter()
            .filter(|(m, p)| requirement(m, p).is_none())
            .collect();
        assert!(undeclared.is_empty(), "undeclared: {undeclared:?}");
        let undocumented: Vec<_> = ROUTES
            .iter()
            .filter(|(m, p, _)| !documented.contains(&(*m, *p)))
            .filter(|(_, p, _)| !matches!(*p, "/healthz" | "/metrics" | "/api/openapi.json"))
            .collect();
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    }

    fn deployer_on(project: i64, environment: i64) -> Caller {
        let grant = capstan_core::access::Grant {
            permissions: [P::View, P::Deploy].into_iter().collect(),
            projects: Some([project].into_iter().collect()),
            environments: Some([environment].into_iter().collect()),
        };
        Caller::new(
            Principal::ApiKey {
                user_id: 1,
                user_name: "ci".to_owned(),
                service: true,
                key_id: "AAAAAAAAAAAA".to_owned(),
            },
            Some(vec![grant].into()),
        )
    }

    #[test]
    fn what_the_caller_may_not_view_is_hidden_and_the_rest_is_forbidden() {
        let caller = deployer_on(1, 10);
        let at = |project, environment| Scope::Deployment {
            project,
            environment,
        };
        assert_eq!(refusal(&caller, P::Deploy, at(1, 10)), Ok(()));
        assert_eq!(
            refusal(&caller, P::Deploy, at(1, 11)),
            Err(Refusal::Hidden),
            "a deployment in an environment the caller cannot see"
        );
        assert_eq!(
            refusal(&caller, P::View, Scope::Project(2)),
            Err(Refusal::Hidden)
        );
        assert_eq!(
            refusal(&caller, P::EditProcess, Scope::Project(1)),
            Err(Refusal::Forbidden {
                permission: P::EditProcess,
                scope: Scope::Project(1)
            })
        );
        assert_eq!(
            refusal(&caller, P::ManageNodes, Scope::System),
            Err(Refusal::Forbidden {
                permission: P::ManageNodes,
                scope: Scope::System
            })
        );
        let admin = Caller::new(Principal::AdminKey, None);
        assert_eq!(refusal(&admin, P::ManageUsers, Scope::System), Ok(()));
        assert_eq!(admin.viewer(), Viewer::All);
        assert_eq!(caller.viewer(), Viewer::User(1));
    }

    #[test]
    fn each_route_is_declared_once() {
        let mut seen = HashSet::new();
        for (method, path, _) in ROUTES {
            assert!(seen.insert((method, path)), "{method} {path} twice");
        }
    }
}
