//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers.

use axum::Json;
use capstan_api::access::{
    AddMemberRequest, CreateGrantRequest, CreateRoleRequest, CreateTeamRequest, GrantList,
    GrantResponse, MemberList, MemberResponse, RoleList, RoleResponse, TeamList, TeamResponse,
    UpdateRoleRequest, UpdateTeamRequest,
};
use capstan_api::{
    AgentCommand, AgentFacts, AgentHealth, AgentPage, AgentResponse, ArtifactList,
    ArtifactResponse, AttemptList, AttemptResponse, Blocked, BlockedBy, CommandBody, CommandList,
    CommandOutcome, CommandResponse, CommandResult, CommandVariable,
    CreateRegistrationTokenRequest, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse,
    EnvironmentList, EnvironmentRequest, EnvironmentResponse, MasterKeyStatus, MasterKeyVersion,
    NodeKeyVersions, NodeLoad, NodeResponse, OutputBatch, OutputLine, OutputStream, PackagePage,
    PackageRef, PackageResponse, PackageSummary, PackageVersionPage, PackageVersionRef,
    PollResponse, Problem, RegisterAgentRequest, RegisterAgentResponse, RegistrationTokenList,
    RegistrationTokenResponse, RotateMasterKeyResponse, RunScriptRequest, ScriptCommand,
    ScriptSyntax, SseEvent, TaskLogEnd, TaskPage, TaskResponse, UpdateAgentRequest,
    UpdateNodeRequest,
};
use capstan_api::{
    ApiKeyList, ApiKeyResponse, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey,
    UpdateUserRequest, UserKind, UserPage, UserResponse,
};
use capstan_api::{AuditActor, AuditEvent, AuditObject, AuditPage};
use capstan_api::{
    CodeKeyRequest, LoginKeyRequest, LoginRequest, SessionResponse, SetPasswordRequest,
};
use capstan_api::{
    CreateReleaseRequest, PackageSelection, PreviewRequest, PreviewResponse, ProcessRequest,
    ProcessResponse, ProjectPage, ProjectRequest, ProjectResponse, ReleasePackage, ReleasePage,
    ReleaseResponse, ReleaseSummary, UpdateProjectRequest, VariableInput, VariableResponse,
    VariableScope, VariablesRequest, VariablesResponse, Warning,
    projects::{Action, FailurePolicy, LockScope, NamedLock, RunCondition, StartTrigger, Step},
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, PathItem, Ref, RefOr, Response,
        path::{Operation, ParameterIn},
        security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        },
    },
};

use capstan_api::approvals::{
    Approval, ApprovalRuleList, ApprovalRuleRequest, ApprovalRuleResponse, AwaitingApproval,
    AwaitingApprovalList, DecisionRequest,
};
use capstan_api::auto_rollbacks::AutoRollback;
use capstan_api::dashboard::{Dashboard, DashboardCell, DashboardEnvironment, DashboardProject};
use capstan_api::deployments::{
    Actor, AnswerRequest, Answered, Cell, CreateDeploymentRequest, DeploymentOptions,
    DeploymentPage, DeploymentResponse, DeploymentSummary, GridStep, GridTarget, Intervention,
    StopRequest,
};
use capstan_api::freezes::{FreezeKind, FreezeList, FreezeRequest, FreezeResponse, IfFrozen};
use capstan_api::lifecycles::{
    LifecycleList, LifecycleRequest, LifecycleResponse, PhaseBody, PhaseRule, ProjectLifecycle,
};
// Lifecycle automation.
use capstan_api::{deployments::DeploymentTrigger, lifecycles::RetentionBody};
use capstan_core::deployment::{
    CellState, DeploymentState, InterventionAnswer, InterventionKind, OfflineTargets,
};

use super::{
    access, agent_protocol, agents, artifacts, audit, auto_rollbacks, dashboard, deployments,
    freezes, lifecycles, login, master_key, nodes, packages, projects, releases, roles, scripts,
    task_logs, task_order, tasks, teams, users,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Capstan API"),
    paths(
        nodes::ping, nodes::list_nodes, nodes::get_node, nodes::update_node, nodes::delete_node,
        tasks::create_task, tasks::create_tasks, tasks::list_tasks, tasks::get_task,
        tasks::task_attempts, tasks::cancel_task, task_order::move_to_front,
        task_logs::get_task_log,
        artifacts::upload_artifact, artifacts::list_artifacts, artifacts::download_artifact,
        packages::upload_package, packages::list_packages, packages::list_versions,
        packages::get_package, packages::download_package, packages::delete_package,
        agents::create_token, agents::list_tokens, agents::delete_token, agents::register,
        agents::list_agents, agents::get_agent, agents::update_agent, agents::delete_agent,
        agents::create_environment, agents::list_environments, agents::get_environment,
        agents::update_environment, agents::delete_environment,
        lifecycles::create_lifecycle, lifecycles::list_lifecycles, lifecycles::get_lifecycle,
        lifecycles::delete_lifecycle, lifecycles::put_project_lifecycle,
        auto_rollbacks::get_auto_rollback, auto_rollbacks::put_auto_rollback,
        freezes::list_freezes, freezes::get_freeze, freezes::create_freeze,
        freezes::update_freeze, freezes::delete_freeze,
        lifecycles::update_lifecycle,
        agent_protocol::poll, agent_protocol::ack, agent_protocol::output,
        agent_protocol::result, agent_protocol::package,
        scripts::run_script, scripts::task_commands,
        master_key::get_master_key, master_key::rotate_master_key,
        projects::create_project, projects::list_projects, projects::get_project,
        projects::update_project, projects::delete_project, projects::get_process,
        projects::put_process, projects::get_variables, projects::put_variables,
        projects::preview_variables,
        releases::create_release, releases::list_releases, releases::get_release,
        releases::delete_release,
        deployments::create_deployment, deployments::list_deployments,
        deployments::get_deployment, deployments::cancel_deployment,
        deployments::abandon_deployment, deployments::answer_intervention,
        dashboard::get_dashboard,
        users::create_user, users::list_users, users::get_user, users::update_user,
        users::delete_user, users::create_api_key, users::list_api_keys,
        users::revoke_api_key,
        login::login, login::create_login_key, login::get_session, login::logout,
        login::set_password, login::start_oidc_login, login::finish_oidc_login,
        login::create_code_key, audit::list_audit,
        roles::list_roles, roles::get_role, roles::create_role, roles::update_role,
        roles::delete_role,
        teams::list_teams, teams::create_team, teams::get_team, teams::update_team,
        teams::delete_team, teams::list_members, teams::add_member, teams::remove_member,
        teams::list_grants, teams::create_grant, teams::delete_grant,
        super::approvals::list_rules, super::approvals::put_rule, super::approvals::delete_rule,
        super::approvals::list_awaiting, super::approvals::approve, super::approvals::deny,
    ),
    components(schemas(
        CreateUserRequest, UpdateUserRequest, UserKind, UserResponse, UserPage,
        CreateApiKeyRequest, ApiKeyResponse, CreatedApiKey, ApiKeyList,
        LoginRequest, LoginKeyRequest, SessionResponse, SetPasswordRequest, CodeKeyRequest,
        NodeResponse, UpdateNodeRequest, Problem, CreateTaskRequest, CreateTasksRequest,
        CreateTasksResponse, TaskResponse, Blocked, BlockedBy, NodeLoad, TaskPage, AttemptResponse, AttemptList, TaskLogEnd, capstan_api::TaskLogPage, capstan_api::TaskLogLine,
        PackageResponse, PackageSummary, PackagePage, PackageVersionPage, ArtifactResponse,
        ArtifactList, CreateRegistrationTokenRequest, RegistrationTokenResponse,
        RegistrationTokenList, RegisterAgentRequest, RegisterAgentResponse, AgentResponse,
        AgentPage, AgentHealth, UpdateAgentRequest, EnvironmentRequest, EnvironmentResponse,
        EnvironmentList, PollResponse, AgentCommand, CommandBody, ScriptCommand, ScriptSyntax,
        CommandVariable, PackageRef, OutputBatch, OutputLine, OutputStream, CommandResult,
        CommandOutcome, AgentFacts, RunScriptRequest, SseEvent, PackageVersionRef, CommandResponse,
        CommandList, MasterKeyStatus, MasterKeyVersion, NodeKeyVersions, RotateMasterKeyResponse,
        CommandList, ProjectRequest, UpdateProjectRequest, ProjectResponse, ProjectPage,
        Dashboard, DashboardProject, DashboardEnvironment, DashboardCell,
        FreezeRequest, FreezeResponse, FreezeList, FreezeKind, IfFrozen,
        ProcessRequest, ProcessResponse, Warning, Step, StartTrigger, RunCondition,
        FailurePolicy, NamedLock, LockScope, Action, VariableScope, VariableInput,
        VariableResponse, VariablesRequest, VariablesResponse, PreviewRequest, PreviewResponse,
        CreateReleaseRequest, PackageSelection, ReleasePackage, ReleaseSummary, ReleaseResponse,
        ReleasePage, CreateDeploymentRequest, DeploymentSummary, DeploymentResponse,
        DeploymentOptions, GridStep, GridTarget, Cell, Intervention, Answered, Actor,
        AnswerRequest, StopRequest, DeploymentPage,
        DeploymentState, CellState, InterventionKind, InterventionAnswer, OfflineTargets,
        AuditPage, AuditEvent, AuditActor, AuditObject,
        RoleResponse, RoleList, CreateRoleRequest, UpdateRoleRequest, TeamResponse, TeamList,
        CreateTeamRequest, UpdateTeamRequest, MemberResponse, MemberList, AddMemberRequest,
        GrantResponse, GrantList, CreateGrantRequest,
        LifecycleRequest, LifecycleResponse, LifecycleList, PhaseBody, PhaseRule, ProjectLifecycle,
        AutoRollback,
        ApprovalRuleRequest, ApprovalRuleResponse, ApprovalRuleList, DecisionRequest, Approval,
        AwaitingApproval, AwaitingApprovalList, capstan_core::approval::Decision,
        RetentionBody, DeploymentTrigger,
    )),
    modifiers(&BearerAuth, &GenericResponses, &AccessRequirements),
    security(("api_key" = []), ("session" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // A person's browser session; its changing requests also carry X-CSRF-Token.
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                capstan_api::login::SESSION_COOKIE,
            ))),
        );
    }
}

/// The answers any route can give before or beside its handler: the extractors' 400,
/// 413, 415 and 422, the API key check's 401, and the 503 of an unreachable database or
/// a request past the node's time limit. Added here, by what each operation accepts,
/// so no annotation can forget one and a route's own description of a status wins.
struct GenericResponses;

/// `(status, component name, description)`.
const GENERIC: [(&str, &str, &str); 7] = [
    (
        "400",
        "BadRequest",
        "Malformed input: a path or query parameter that does not parse, an unknown query parameter, or a body that is not JSON",
    ),
    (
        "401",
        "Unauthorized",
        "No credentials, or credentials that are not valid here",
    ),
    (
        "408",
        "RequestTimeout",
        "The body did not arrive in time: an agent's within CAPSTAN_BODY_TIMEOUT, an upload's next chunk within CAPSTAN_UPLOAD_STALL_TIMEOUT",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the endpoint accepts (1 MiB; 16 MiB for task batches, processes and variables)",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body was not sent as `Content-Type: application/json`",
    ),
    (
        "422",
        "UnprocessableEntity",
        "Well-formed input the endpoint cannot accept: a field of the wrong type, a missing or unknown field, a value out of range, or text with NUL or invisible characters; the detail names the field",
    ),
    (
        "503",
        "ServiceUnavailable",
        "The database is unreachable, or the request took longer than the node's limit (CAPSTAN_REQUEST_TIMEOUT)",
    ),
];

impl Modify for GenericResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (_, name, description) in GENERIC {
            let problem = Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem"))));
            components.responses.insert(
                name.to_owned(),
                RefOr::T(
                    Response::builder()
                        .description(description)
                        .content(capstan_api::PROBLEM_JSON, problem)
                        .build(),
                ),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                for (status, name, _) in GENERIC {
                    if applies(status, path, operation) {
                        operation
                            .responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                    }
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Whether an operation can answer `status` without its handler saying so.
fn applies(status: &str, path: &str, operation: &Operation) -> bool {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |location: ParameterIn| parameters.iter().any(|p| p.parameter_in == location);
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    // An empty requirement among the alternatives means the route is public.
    let public = operation
        .security
        .as_ref()
        .is_some_and(|alternatives| alternatives.contains(&SecurityRequirement::default()));
    match status {
        "400" => json_body || has(ParameterIn::Path) || has(ParameterIn::Query),
        "401" => !public,
        // Bodies outside the request time limit have one of their own (`timeout`).
        "408" => {
            operation.request_body.is_some()
                && (!json_body || path.starts_with("/api/agent/") || path == "/api/agents/register")
        }
        "413" | "415" => json_body,
        "422" => json_body || has(ParameterIn::Path) || has(ParameterIn::Query),
        _ => true,
    }
}

/// Each operation's requirement from the route table, as `x-capstan-access`:
/// `{"permission": "deploy" | null, "scope": "deployment"}`. An operation the table
/// does not declare gets none, which the matrix test reports. Every operation that
/// names a permission can also answer 403.
struct AccessRequirements;

impl Modify for AccessRequirements {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                ("GET", item.get.as_mut()),
                ("PUT", item.put.as_mut()),
                ("POST", item.post.as_mut()),
                ("DELETE", item.delete.as_mut()),
                ("PATCH", item.patch.as_mut()),
            ] {
                let (Some(operation), Some(requirement)) =
                    (operation, access::requirement(method, path))
                else {
                    continue;
                };
                let permission = requirement
                    .permission()
                    .map(capstan_core::access::Permission::as_str);
                operation
                    .extensions
                    .get_or_insert_with(Default::default)
                    .insert(
                        "x-capstan-access".to_owned(),
                        serde_json::json!({"permission": permission, "scope": requirement.scope()}),
                    );
                if permission.is_some() {
                    operation
                        .responses
                        .responses
                        .entry("403".to_owned())
                        .or_insert_with(|| {
                            RefOr::T(
                                Response::builder()
                                    .description("The caller's grants do not allow this here; `missing_permission` names what is missing")
                                    .content(
                                        capstan_api::PROBLEM_JSON,
                                        Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
                                    )
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    Json(doc)
}
