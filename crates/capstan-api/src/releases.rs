//! Releases: a project's process, variables and package versions frozen under a
//! version number, so what is tested in one environment is what reaches the next.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::projects::{Step, VariableResponse};

/// `POST /api/releases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReleaseRequest {
    pub project_id: i64,
    /// Unique in the project, e.g. `1.4.0`; default: the newest release's version with
    /// its last number raised by one (`0.0.1` for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub notes: String,
    /// Package versions to take instead of what the actions' rules pick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageSelection>,
}

/// "Deploy this version of this package", for every action that deploys it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageSelection {
    pub package_id: String,
    pub version: String,
}

/// The package version a release's action deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleasePackage {
    pub step: String,
    pub action: String,
    pub package_id: String,
    pub version: String,
}

/// A release in lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseSummary {
    pub id: i64,
    pub project_id: i64,
    pub version: String,
    pub notes: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// `GET /api/releases/{id}`: everything the release froze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseResponse {
    #[serde(flatten)]
    pub summary: ReleaseSummary,
    /// The process version it was made from.
    pub process_version: i64,
    pub steps: Vec<Step>,
    pub packages: Vec<ReleasePackage>,
    /// The variables version it was made from.
    pub variables_version: i64,
    /// Sensitive values are not shown.
    pub variables: Vec<VariableResponse>,
}

/// One page of `GET /api/releases`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleasePage {
    pub items: Vec<ReleaseSummary>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /api/releases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReleaseQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}
