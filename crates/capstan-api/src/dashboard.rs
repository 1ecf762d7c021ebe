//! The dashboard: which release is where, per project × environment, or on one
//! machine.

use capstan_core::deployment::DeploymentState;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `GET /api/dashboard`: filters and paging (by project name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// Only this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// Only this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<i64>,
    /// What is deployed on this machine (an agent id) instead of the newest
    /// deployments: per project × environment, the newest deployment whose steps on
    /// that machine succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Projects per page, 1 to 500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DashboardProject {
    pub id: i64,
    pub name: String,
    /// The project's newest release by version, if it has one.
    pub latest_release_id: Option<i64>,
    pub latest_release: Option<String>,
}

/// A column of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DashboardEnvironment {
    pub id: i64,
    pub name: String,
}

/// The newest deployment of a project × environment (or, for a machine, the newest
/// that succeeded there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DashboardCell {
    pub project_id: i64,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub release_id: i64,
    pub release: String,
    pub state: DeploymentState,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub queued_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Who queued it; absent once the audit row that named them has been swept.
    pub queued_by: Option<String>,
    /// A release of the project sorts after this one by version and may be deployed
    /// here now (under the project's lifecycle, it completed the earlier phases): it
    /// waits to be promoted here.
    pub newer_release: bool,
}

/// `GET /api/dashboard`: the page's projects (rows), the environments (columns) and
/// the cells that have a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub projects: Vec<DashboardProject>,
    pub environments: Vec<DashboardEnvironment>,
    pub cells: Vec<DashboardCell>,
    /// The cursor of the next page of projects.
    pub next: Option<String>,
}
