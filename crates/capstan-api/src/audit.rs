//! The audit log: who changed what, when, from where, and how it looked before and
//! after. Sensitive values appear only as `"changed"` or `"unchanged"`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The most rows one page of `GET /api/audit` holds.
pub const MAX_PAGE: u32 = 500;

/// `GET /api/audit?…`: every filter given must match; newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// `person`, `service`, `admin_key`, `agent`, `anonymous` or `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_kind: Option<String>,
    /// The user's or agent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<i64>,
    /// The actor's whole name, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `project`, `deployment`, `agent`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<i64>,
    /// A whole action (`deployment.cancel`) or all actions on a kind (`deployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// RFC 3339; rows at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339; rows before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Who made a change and how they proved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditActor {
    /// `person`, `service`, `admin_key`, `agent`, `anonymous` or `system`.
    pub kind: String,
    pub id: Option<i64>,
    pub name: String,
    /// `admin_key`, `api_key`, `password`, `oidc`, `agent_credential`,
    /// `registration_token` or `none`.
    pub method: String,
    /// The public part of the credential: an API key's id, a session's id, a
    /// registration token's id.
    pub credential: Option<String>,
    /// The client's address through the trusted proxies.
    pub address: Option<String>,
}

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditObject {
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub actor: AuditActor,
    /// `<object kind>.<verb>`: `project.create`, `deployment.cancel`, …
    pub action: String,
    pub object: AuditObject,
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    /// The object before the change; null for a create.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The object after the change; null for a delete.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// One page of `GET /api/audit`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// The `cursor` of the next (older) page; absent on the last one.
    pub next: Option<String>,
}
