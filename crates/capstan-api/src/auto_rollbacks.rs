//! Automatic rollback: the environments where a project's failed deployment is rolled
//! back once, by the node that recorded the failure.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{ApiClient, ClientError};

/// `GET` and `PUT /api/projects/{id}/auto-rollback`: the environments, by name, where
/// a failed deployment of the project is rolled back automatically. `PUT` replaces
/// the list; an empty list turns automatic rollback off everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRollback {
    pub environments: Vec<String>,
}

impl ApiClient {
    /// `GET /api/projects/{id}/auto-rollback`.
    pub async fn auto_rollback(&self, project_id: i64) -> Result<AutoRollback, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/projects/{project_id}/auto-rollback"),
            None::<&()>,
        )
        .await
    }

    /// `PUT /api/projects/{id}/auto-rollback`.
    pub async fn set_auto_rollback(
        &self,
        project_id: i64,
        request: &AutoRollback,
    ) -> Result<AutoRollback, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/projects/{project_id}/auto-rollback"),
            Some(request),
        )
        .await
    }
}
