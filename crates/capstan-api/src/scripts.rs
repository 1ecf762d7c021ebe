//! Ad-hoc scripts (`POST /api/scripts`) and what each agent did with a task's commands
//! (`GET /api/tasks/{id}/commands`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::agents::{CommandVariable, ScriptSyntax};

/// `POST /api/scripts`: run a script on the agents picked by names, tags and environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunScriptRequest {
    pub script: String,
    #[serde(default)]
    pub syntax: ScriptSyntax,
    /// Agents by name. With tags or an environment, an agent must match all given.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Agents having every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Agents of this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Agents running it at once (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// How long each agent may run it, e.g. `30s`, `1h` (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub variables: Vec<CommandVariable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Packages of the built-in feed to fetch first.
    #[serde(default)]
    pub packages: Vec<PackageVersionRef>,
}

/// A package version by id and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageVersionRef {
    pub id: String,
    pub version: String,
}

/// What one agent did with one command of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandResponse {
    pub id: i64,
    pub agent_id: i64,
    pub agent_name: String,
    pub state: capstan_core::CommandState,
    /// How many times a node handed it to the agent.
    pub deliveries: u32,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub queued_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

/// `GET /api/tasks/{id}/commands`, by agent name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandList {
    pub items: Vec<CommandResponse>,
}
