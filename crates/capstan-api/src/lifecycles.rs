//! `/api/lifecycles` and `PUT /api/projects/{id}/lifecycle`: the order a project's
//! releases are promoted through environments.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// When a release has completed a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseRule {
    /// A successful deployment to every environment of the phase.
    All,
    /// Successful deployments to at least `min_count` of them.
    AtLeast,
    /// Never blocks.
    Optional,
}

/// A phase as sent and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Environment names; each environment belongs to one phase of a lifecycle.
    pub environments: Vec<String>,
    pub rule: PhaseRule,
    /// For `at_least`: from 1 to the number of environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    /// A release the earlier phases let in is deployed to every environment of this
    /// phase without anyone asking. Not on the first phase.
    #[serde(default)]
    pub automatic: bool,
    /// How many of the releases whose latest phase is this one are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionBody>,
}

/// One of the two: the newest `keep_releases`, or those of the last `keep_days` days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// From 1 to 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_releases: Option<u32>,
    /// From 1 to 36,500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

/// `POST /api/lifecycles`, and `PUT /api/lifecycles/{id}` (which replaces the name,
/// description and phases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    /// Unique; at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// In promotion order; at most 50.
    pub phases: Vec<PhaseBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LifecycleResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub phases: Vec<PhaseBody>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// `GET /api/lifecycles`, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LifecycleList {
    pub items: Vec<LifecycleResponse>,
}

/// `PUT /api/projects/{id}/lifecycle`: `null` puts the project back to no restriction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectLifecycle {
    pub lifecycle_id: Option<i64>,
}

use reqwest::Method;

use crate::{ApiClient, ClientError};

impl ApiClient {
    /// `GET /api/lifecycles`.
    pub async fn list_lifecycles(&self) -> Result<LifecycleList, ClientError> {
        self.call(Method::GET, "/api/lifecycles", None::<&()>).await
    }

    /// A lifecycle by id, or by name (in any case).
    pub async fn find_lifecycle(&self, name_or_id: &str) -> Result<LifecycleResponse, ClientError> {
        self.list_lifecycles()
            .await?
            .items
            .into_iter()
            .find(|l| l.id.to_string() == name_or_id || l.name.eq_ignore_ascii_case(name_or_id))
            .ok_or_else(|| {
                crate::access::not_found(format!("no lifecycle is named `{name_or_id}`"))
            })
    }

    /// `POST /api/lifecycles`.
    pub async fn create_lifecycle(
        &self,
        request: &LifecycleRequest,
    ) -> Result<LifecycleResponse, ClientError> {
        self.call(Method::POST, "/api/lifecycles", Some(request))
            .await
    }

    /// `PUT /api/lifecycles/{id}`.
    pub async fn update_lifecycle(
        &self,
        id: i64,
        request: &LifecycleRequest,
    ) -> Result<LifecycleResponse, ClientError> {
        self.call(Method::PUT, &format!("/api/lifecycles/{id}"), Some(request))
            .await
    }

    /// `DELETE /api/lifecycles/{id}`.
    pub async fn delete_lifecycle(&self, id: i64) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/lifecycles/{id}"),
            None::<&()>,
        )
        .await
    }
}
