//! Capstan's wire contract: what goes over HTTP between the CLI, the nodes, agents and
//! any script an operator writes.
//!
//! Types here are the JSON the API speaks, spelled exactly as documented. The crate owns
//! the `application/problem+json` error body and a thin typed client. It must never
//! import sqlx, axum or object_store: the server adapts to these types, not the reverse.

pub mod client;
pub mod nodes;
pub mod packages;
pub mod problem;
pub mod task_logs;
pub mod tasks;
pub mod timestamp;

pub use client::{ApiClient, ClientError, LogChunks, LogFollower};
pub use nodes::{NodeResponse, UpdateNodeRequest};
pub use packages::{
    ArtifactList, ArtifactResponse, PackagePage, PackageQuery, PackageResponse, PackageSummary,
    PackageVersionPage, UploadPackageQuery,
};
pub use problem::{PROBLEM_JSON, Problem};
pub use task_logs::{LogEvent, TaskLogEnd, TaskLogQuery};
pub use tasks::{
    AttemptList, AttemptResponse, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse,
    TaskPage, TaskQuery, TaskResponse,
};
