//! Capstan's wire contract: what goes over HTTP between the CLI, the nodes, agents and
//! any script an operator writes.
//!
//! Types here are the JSON the API speaks, spelled exactly as documented. The crate owns
//! the `application/problem+json` error body and a thin typed client. It must never
//! import sqlx, axum or object_store: the server adapts to these types, not the reverse.

pub mod access;
pub mod agents;
pub mod approvals;
pub mod audit;
pub mod auto_rollbacks;
pub mod client;
pub mod dashboard;
pub mod deployments;
pub mod freezes;
pub mod lifecycles;
pub mod login;
pub mod master_key;
pub mod nodes;
pub mod packages;
pub mod problem;
pub mod projects;
pub mod releases;
pub mod scripts;
pub mod task_logs;
pub mod tasks;
pub mod timestamp;
pub mod users;

pub use agents::{
    AgentCommand, AgentFacts, AgentHealth, AgentPage, AgentQuery, AgentResponse, CommandBody,
    CommandOutcome, CommandResult, CommandVariable, CreateRegistrationTokenRequest,
    EnvironmentList, EnvironmentRequest, EnvironmentResponse, OutputBatch, OutputLine,
    OutputStream, PackageRef, PollQuery, PollResponse, RegisterAgentRequest, RegisterAgentResponse,
    RegistrationTokenList, RegistrationTokenResponse, ScriptCommand, ScriptSyntax,
    UpdateAgentRequest,
};
pub use audit::{AuditActor, AuditEvent, AuditObject, AuditPage, AuditQuery};
pub use client::{ApiClient, ClientError, LogChunks, LogFollower};
pub use deployments::{Blocked, BlockedBy, NodeLoad};
pub use login::{
    CodeKeyRequest, LoginKeyRequest, LoginRequest, SessionResponse, SetPasswordRequest,
};
pub use master_key::{MasterKeyStatus, MasterKeyVersion, NodeKeyVersions, RotateMasterKeyResponse};
pub use nodes::{NodeResponse, UpdateNodeRequest};
pub use packages::{
    ArtifactList, ArtifactResponse, PackagePage, PackageQuery, PackageResponse, PackageSummary,
    PackageVersionPage, UploadPackageQuery,
};
pub use problem::{PROBLEM_JSON, Problem};
pub use projects::{
    PreviewRequest, PreviewResponse, ProcessRequest, ProcessResponse, ProjectPage, ProjectQuery,
    ProjectRequest, ProjectResponse, UpdateProjectRequest, VariableInput, VariableResponse,
    VariableScope, VariablesRequest, VariablesResponse, Warning,
};
pub use releases::{
    CreateReleaseRequest, PackageSelection, ReleasePackage, ReleasePage, ReleaseQuery,
    ReleaseResponse, ReleaseSummary,
};
pub use scripts::{CommandList, CommandResponse, PackageVersionRef, RunScriptRequest};
pub use task_logs::{
    LogEvent, PageRequest, SseEvent, TaskLogEnd, TaskLogLine, TaskLogPage, TaskLogQuery,
};
pub use tasks::{
    AttemptList, AttemptResponse, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse,
    TaskPage, TaskQuery, TaskResponse,
};
pub use users::{
    ApiKeyList, ApiKeyResponse, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey,
    UpdateUserRequest, UserKind, UserPage, UserQuery, UserResponse,
};
