//! Projects, their deployment process and their variables.
//!
//! The process and the variables are each edited as a whole document with a
//! `version`: a `PUT` names the version it was based on and gets 409 if someone else
//! saved in between, so two editors never overwrite each other silently.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use capstan_core::process::{
    Action, FailurePolicy, LockScope, NamedLock, RunCondition, StartTrigger, Step,
};

/// Most variables in one project.
pub const MAX_VARIABLES: usize = 10_000;
/// Largest variable value, in bytes.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Largest body of a process or variables `PUT`.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// `POST /api/projects`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `PATCH /api/projects/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub process_version: i64,
    pub variables_version: i64,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// One page of `GET /api/projects`, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectPage {
    pub items: Vec<ProjectResponse>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /api/projects`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Only the project of exactly this name, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only projects whose name contains this text, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Something in a saved process that is allowed but probably wrong, such as a tag no
/// agent carries yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Warning {
    /// Where: `steps[1].target_tags`.
    pub field: String,
    pub detail: String,
}

/// `GET /api/projects/{id}/process`, and the answer to a `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessResponse {
    pub project_id: i64,
    /// Send it back with the next `PUT`.
    pub version: i64,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// `PUT /api/projects/{id}/process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    /// The version this edit was based on (0 for a project never saved).
    pub version: i64,
    pub steps: Vec<Step>,
}

/// Where a variable's value applies. Values in one list are alternatives; lists
/// combine: a variable scoped to environment Production and tag web applies only to web
/// targets in Production. The most specific match wins (docs/variables.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// A variable as the API shows it: a sensitive value is never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariableResponse {
    pub id: Uuid,
    pub name: String,
    /// Absent for sensitive variables.
    pub value: Option<String>,
    pub sensitive: bool,
    #[serde(default)]
    pub scope: VariableScope,
}

/// `GET /api/projects/{id}/variables`, and the answer to a `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariablesResponse {
    pub project_id: i64,
    pub version: i64,
    pub variables: Vec<VariableResponse>,
}

/// A variable in a `PUT`. Give the `id` of an existing variable to keep it; a
/// sensitive variable sent with its `id` and without a `value` keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub scope: VariableScope,
}

/// `PUT /api/projects/{id}/variables`: the whole set, replacing the stored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariablesRequest {
    /// The version this edit was based on (0 for a project never saved).
    pub version: i64,
    pub variables: Vec<VariableInput>,
}

/// `POST /api/projects/{id}/variables/preview`: evaluate a template as a deployment
/// to this environment, machine and step would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// An agent's name; its environment and tags apply unless given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Shown as `Capstan.Release.Number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewResponse {
    /// The rendered template, sensitive values masked as `********`.
    pub result: String,
    /// For each name the template reads, the variable whose value won.
    pub used: Vec<VariableResponse>,
}
