//! Agents, their environments and registration tokens (operator API, admin key), and
//! the agent protocol under `/api/agent/` (agent credential).
//!
//! The protocol: an agent long-polls `GET /api/agent/commands`; a node answers at once
//! with every command of the agent's mailbox not yet acknowledged, or waits. The agent
//! acknowledges a command (`POST .../ack`) before it runs it, streams output in
//! numbered batches (`POST .../output`), and reports the outcome (`POST .../result`).
//! Every call is idempotent, so an agent retries any of them through another node.
//!
//! A poll names, in [`AGENT_CANCELLING_HEADER`], the commands the agent was told to
//! cancel and has not yet reported: a node answers at once only with what the agent
//! does not know yet, so a command slow to stop does not turn polls into a loop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use capstan_core::script::ScriptSyntax;

/// The header an agent sends its version in on every poll.
pub const AGENT_VERSION_HEADER: &str = "capstan-agent-version";

/// The header an agent lists, on every poll, the commands it was told to cancel and
/// still holds (their result not yet taken), as comma-separated ids. A header rather
/// than a query parameter: nodes of the previous release refuse unknown parameters
/// but ignore unknown headers, so a newer agent can poll any node during an upgrade.
pub const AGENT_CANCELLING_HEADER: &str = "capstan-agent-cancelling";

/// Longest a poll may wait, in milliseconds; longer requests are cut to this.
pub const MAX_POLL_WAIT_MS: u64 = 60_000;

/// Most lines, and bytes of text, in one output batch.
pub const MAX_OUTPUT_LINES: usize = 1_000;
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// `POST /api/agents/registration-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationTokenRequest {
    /// How long the token stays valid, e.g. `1h`, `7d` (default `24h`, at most `365d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// How many agents may register with it (default 1, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub uses: Option<u32>,
    /// What the token is for, for whoever reads the list later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A registration token. `token` is present only in the answer that created it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationTokenResponse {
    pub id: i64,
    /// The secret itself (`capreg_…`): shown once, stored only as a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Its first characters, to recognise it in a list.
    pub prefix: String,
    pub note: Option<String>,
    pub uses_left: u32,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// `GET /api/agents/registration-tokens`: unexpired tokens with uses left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationTokenList {
    pub items: Vec<RegistrationTokenResponse>,
}

/// `POST /api/agents/register`, authenticated by a registration token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    /// Unique in the cluster: letters, digits, `.`, `_`, `-`; at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The name of an existing environment.
    #[schema(min_length = 1, max_length = 100)]
    pub environment: String,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub tags: Vec<String>,
    /// The agent's version.
    pub version: String,
}

/// The answer to a registration: the agent and its credential, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterAgentResponse {
    pub agent: AgentResponse,
    /// `capagt_…`: the agent's own secret for the agent protocol.
    pub credential: String,
}

/// What the last health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentHealth {
    /// Not checked yet.
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

impl AgentHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl std::str::FromStr for AgentHealth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unknown" => Ok(Self::Unknown),
            "healthy" => Ok(Self::Healthy),
            "unhealthy" => Ok(Self::Unhealthy),
            other => Err(format!(
                "`{other}` is not a health; use unknown, healthy or unhealthy"
            )),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentResponse {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub version: String,
    /// When a node last heard from it (batched: up to one heartbeat late).
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<OffsetDateTime>,
    /// The node it last polled.
    pub last_node: Option<String>,
    pub health: AgentHealth,
    /// Why it is unhealthy, or what the last check saw.
    pub health_reason: Option<String>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub health_checked_at: Option<OffsetDateTime>,
    /// A disabled agent is refused by every node and gets no work.
    pub disabled: bool,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: OffsetDateTime,
}

/// One page of `GET /api/agents`, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentPage {
    pub items: Vec<AgentResponse>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /api/agents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only agents of this environment (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Only agents with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// unknown, healthy or unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<AgentHealth>)]
    pub health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `PATCH /api/agents/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100)]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// An environment: Development, Test, Production, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// `POST /api/environments`; also the body of `PUT /api/environments/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRequest {
    /// Unique; at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `GET /api/environments`, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentList {
    pub items: Vec<EnvironmentResponse>,
}

/// `GET /api/agent/commands`: what the agent must do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PollResponse {
    /// Commands not yet acknowledged, oldest first. A command seen before (its
    /// acknowledgement was lost) comes again: acknowledge it, do not run it twice.
    pub commands: Vec<AgentCommand>,
    /// Running commands to stop, other than those the poll named as being cancelled.
    pub cancel: Vec<i64>,
}

/// `GET /api/agent/commands?wait_ms=`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// How long to wait for a command, in milliseconds (default 30,000, at most 60,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// One command in an agent's mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentCommand {
    /// Unique in the cluster; the agent runs each id at most once.
    pub id: i64,
    /// The task the command belongs to.
    pub task_id: i64,
    /// The agent stops the command and reports it timed out after this long.
    pub timeout_ms: u64,
    #[serde(flatten)]
    pub body: CommandBody,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CommandBody {
    /// Fetch packages, then run a script.
    Script(ScriptCommand),
    /// Answer with the agent's facts.
    HealthCheck,
}

/// A script to run, with its variables as environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScriptCommand {
    pub syntax: ScriptSyntax,
    pub script: String,
    /// Set as environment variables of the script's process.
    #[serde(default)]
    pub variables: Vec<CommandVariable>,
    /// Where the script runs; default: a fresh directory under the agent's work dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Fetched into the agent's cache (verified by sha256) before the script starts;
    /// the script finds each at `$CAPSTAN_PACKAGE_<ID>` (id upper-cased, other than
    /// letters and digits turned into `_`).
    #[serde(default)]
    pub packages: Vec<PackageRef>,
}

/// A variable given to a script. Sensitive values are masked in its output.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandVariable {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub sensitive: bool,
}

impl std::fmt::Debug for CommandVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.sensitive { "***" } else { &self.value };
        f.debug_struct("CommandVariable")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// A package version a command needs, as stored in the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageRef {
    pub id: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    /// Where the agent downloads it (agent credential).
    pub download: String,
}

/// Which stream a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// Written by the agent itself: package fetches, warnings, the exit.
    Agent,
}

/// One line of a command's output, numbered from 1 in the order the agent saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputLine {
    pub seq: u64,
    pub stream: OutputStream,
    pub text: String,
}

/// `POST /api/agent/commands/{id}/output`. A line whose `seq` was stored before is
/// skipped, so a batch can be sent again safely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputBatch {
    pub lines: Vec<OutputLine>,
}

/// How a command ended on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl CommandOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `POST /api/agent/commands/{id}/result`, after the last output batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub outcome: CommandOutcome,
    /// The script's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Output variables set with `##capstan[set-output name='N' value='V']`.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// What a health check found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<AgentFacts>,
}

/// What an agent reports of itself in a health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFacts {
    pub version: String,
    pub os: String,
    pub hostname: String,
    /// Interpreters found: bash, sh, powershell.
    pub shells: Vec<ScriptSyntax>,
    /// Free bytes where the agent keeps its work and package cache.
    pub free_disk_bytes: Option<u64>,
}
