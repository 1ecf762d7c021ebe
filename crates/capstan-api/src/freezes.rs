//! `/api/freezes`: freeze windows, when deployments to some projects and environments
//! wait (or are refused) instead of starting.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /api/freezes` and `PUT /api/freezes/{id}`. A window is either fixed (`start`
/// and `end`) or recurring (`cron`, `duration` and `time_zone`), never both.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    /// Unique; at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Fixed: when the window opens, RFC 3339 (`2026-12-24T00:00:00+01:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Fixed: when it closes (not held any more), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Recurring: five cron fields (minute hour day-of-month month day-of-week), read
    /// on the wall clock of `time_zone`; each firing opens the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Recurring: how long each opening lasts, such as `62h` or `1h30m` (at most 31 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Recurring: an IANA time zone, such as `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Project names; empty: every project.
    #[serde(default)]
    pub projects: Vec<String>,
    /// Environment names; empty: every environment.
    #[serde(default)]
    pub environments: Vec<String>,
}

/// Whether a window is fixed or recurring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreezeKind {
    Fixed,
    Recurring,
}

/// A window as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FreezeResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: FreezeKind,
    #[serde(default, with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<OffsetDateTime>,
    #[serde(default, with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<OffsetDateTime>,
    pub cron: Option<String>,
    pub duration: Option<String>,
    pub time_zone: Option<String>,
    /// Empty: every project.
    pub projects: Vec<String>,
    /// Empty: every environment.
    pub environments: Vec<String>,
    /// When the window now open closes; absent while it is not open.
    #[serde(default, with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub open_until: Option<OffsetDateTime>,
    /// When it opens next; absent when it never will again.
    #[serde(default, with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_start: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `GET /api/freezes`, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FreezeList {
    pub items: Vec<FreezeResponse>,
}

/// What `POST /api/deployments` does when a freeze window holds the deployment now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IfFrozen {
    /// Queue it; it starts when the window closes.
    #[default]
    Wait,
    /// Refuse it (409) and store nothing.
    Refuse,
}

impl IfFrozen {
    pub fn is_wait(&self) -> bool {
        *self == Self::Wait
    }
}

use reqwest::Method;

use crate::{ApiClient, ClientError};

impl ApiClient {
    /// `GET /api/freezes`.
    pub async fn list_freezes(&self) -> Result<FreezeList, ClientError> {
        self.call(Method::GET, "/api/freezes", None::<&()>).await
    }

    /// A window by id, or by name (in any case).
    pub async fn find_freeze(&self, name_or_id: &str) -> Result<FreezeResponse, ClientError> {
        self.list_freezes()
            .await?
            .items
            .into_iter()
            .find(|w| w.id.to_string() == name_or_id || w.name.eq_ignore_ascii_case(name_or_id))
            .ok_or_else(|| {
                crate::access::not_found(format!("no freeze window is named `{name_or_id}`"))
            })
    }

    /// `POST /api/freezes`.
    pub async fn create_freeze(
        &self,
        request: &FreezeRequest,
    ) -> Result<FreezeResponse, ClientError> {
        self.call(Method::POST, "/api/freezes", Some(request)).await
    }

    /// `PUT /api/freezes/{id}`.
    pub async fn update_freeze(
        &self,
        id: i64,
        request: &FreezeRequest,
    ) -> Result<FreezeResponse, ClientError> {
        self.call(Method::PUT, &format!("/api/freezes/{id}"), Some(request))
            .await
    }

    /// `DELETE /api/freezes/{id}`.
    pub async fn delete_freeze(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/freezes/{id}"), None::<&()>)
            .await
    }
}
