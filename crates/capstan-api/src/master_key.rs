//! The master key resource: `/api/master-key` (its versions, how many values each
//! holds, which live node holds which) and `/api/master-key/rotate`. Keys themselves
//! never cross the wire.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// `GET /api/master-key`: the state of the cluster's master key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MasterKeyStatus {
    /// The version new values are sealed under; `null` until a node with a key starts.
    pub active_version: Option<i32>,
    /// Every registered version, oldest first.
    pub versions: Vec<MasterKeyVersion>,
    /// Every live node and the versions it holds, by name.
    pub nodes: Vec<NodeKeyVersions>,
}

impl MasterKeyStatus {
    /// Values not yet under `version`: what a rotation to it still has to do.
    pub fn secrets_not_under(&self, version: i32) -> u64 {
        self.versions
            .iter()
            .filter(|v| v.version != version)
            .map(|v| v.secrets)
            .sum()
    }
}

/// One version of the master key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MasterKeyVersion {
    pub version: i32,
    /// New values are sealed under this version.
    pub active: bool,
    /// When a node first started with this key.
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When this version last became the active one.
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<OffsetDateTime>,
    /// Values encrypted under this version.
    pub secrets: u64,
}

/// A live node and the master key versions it can decrypt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeKeyVersions {
    pub id: Uuid,
    pub name: String,
    pub key_versions: Vec<i32>,
}

/// `POST /api/master-key/rotate` (202): the rotation task, queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RotateMasterKeyResponse {
    /// The `master-key-rotation` task doing the work; follow it under `/api/tasks`.
    pub task_id: i64,
    /// The version being made active, under which every value ends up.
    pub version: i32,
    /// Values under older versions when the rotation was asked for.
    pub secrets_to_rotate: u64,
}
