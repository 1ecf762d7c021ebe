//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers.

use axum::Json;
use capstan_api::{
    AgentCommand, AgentFacts, AgentHealth, AgentPage, AgentResponse, ArtifactList,
    ArtifactResponse, AttemptList, AttemptResponse, CommandBody, CommandList, CommandOutcome,
    CommandResponse, CommandResult, CommandVariable, CreateRegistrationTokenRequest,
    CreateTaskRequest, CreateTasksRequest, CreateTasksResponse, EnvironmentList,
    EnvironmentRequest, EnvironmentResponse, MasterKeyStatus, MasterKeyVersion, NodeKeyVersions,
    NodeResponse, OutputBatch, OutputLine, OutputStream, PackagePage, PackageRef, PackageResponse,
    PackageSummary, PackageVersionPage, PackageVersionRef, PollResponse, Problem,
    RegisterAgentRequest, RegisterAgentResponse, RegistrationTokenList, RegistrationTokenResponse,
    RotateMasterKeyResponse, RunScriptRequest, ScriptCommand, ScriptSyntax, TaskLogEnd, TaskPage,
    TaskResponse, UpdateAgentRequest, UpdateNodeRequest,
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
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{
    agent_protocol, agents, artifacts, master_key, nodes, packages, projects, releases, scripts,
    task_logs, tasks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Capstan API"),
    paths(
        nodes::ping, nodes::list_nodes, nodes::get_node, nodes::update_node, nodes::delete_node,
        tasks::create_task, tasks::create_tasks, tasks::list_tasks, tasks::get_task,
        tasks::task_attempts, tasks::cancel_task, task_logs::get_task_log,
        artifacts::upload_artifact, artifacts::list_artifacts, artifacts::download_artifact,
        packages::upload_package, packages::list_packages, packages::list_versions,
        packages::get_package, packages::download_package, packages::delete_package,
        agents::create_token, agents::list_tokens, agents::delete_token, agents::register,
        agents::list_agents, agents::get_agent, agents::update_agent, agents::delete_agent,
        agents::create_environment, agents::list_environments, agents::get_environment,
        agents::update_environment, agents::delete_environment,
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
    ),
    components(schemas(
        NodeResponse, UpdateNodeRequest, Problem, CreateTaskRequest, CreateTasksRequest,
        CreateTasksResponse, TaskResponse, TaskPage, AttemptResponse, AttemptList, TaskLogEnd,
        PackageResponse, PackageSummary, PackagePage, PackageVersionPage, ArtifactResponse,
        ArtifactList, CreateRegistrationTokenRequest, RegistrationTokenResponse,
        RegistrationTokenList, RegisterAgentRequest, RegisterAgentResponse, AgentResponse,
        AgentPage, AgentHealth, UpdateAgentRequest, EnvironmentRequest, EnvironmentResponse,
        EnvironmentList, PollResponse, AgentCommand, CommandBody, ScriptCommand, ScriptSyntax,
        CommandVariable, PackageRef, OutputBatch, OutputLine, OutputStream, CommandResult,
        CommandOutcome, AgentFacts, RunScriptRequest, PackageVersionRef, CommandResponse,
        CommandList, MasterKeyStatus, MasterKeyVersion, NodeKeyVersions, RotateMasterKeyResponse,
        CommandList, ProjectRequest, UpdateProjectRequest, ProjectResponse, ProjectPage,
        ProcessRequest, ProcessResponse, Warning, Step, StartTrigger, RunCondition,
        FailurePolicy, NamedLock, LockScope, Action, VariableScope, VariableInput,
        VariableResponse, VariablesRequest, VariablesResponse, PreviewRequest, PreviewResponse,
        CreateReleaseRequest, PackageSelection, ReleasePackage, ReleaseSummary, ReleaseResponse,
        ReleasePage,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = []))
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
    }
}

pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    Json(doc)
}
