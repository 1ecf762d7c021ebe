//! Deployments: a release run on an environment's machines (`/api/deployments`), its
//! grid of step × target × action cells, the questions it asks operators, and why
//! queued work has not started (`blocked_by`, shared with tasks).

use capstan_core::deployment::{
    CellState, DeploymentState, InterventionAnswer, InterventionKind, OfflineTargets,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /api/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    /// The release to deploy; absent for a rollback, which picks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<i64>,
    /// The project the release must belong to, when the caller knows it: a release of
    /// another project is then refused. Required for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// Redeploy the release of the newest successful deployment of this project ×
    /// environment that is older than the pair's latest deployment and of another
    /// release than it. Needs `project_id`, forbids `release_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The environment's name.
    pub environment: String,
    /// Only these agents (by name); every one must be a target of the environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Leave these agents out (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_targets: Vec<String>,
    /// Steps not to run, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_steps: Vec<String>,
    /// Ask an operator on every failure, whatever each step's policy says.
    #[serde(default)]
    pub guided_failure: bool,
    /// What a target that goes offline mid-run does: its action fails (default) or it
    /// is skipped from then on.
    #[serde(default)]
    pub offline_targets: OfflineTargets,
    /// When a freeze window holds the deployment now: wait for it to close (default),
    /// or refuse the request (409).
    #[serde(default, skip_serializing_if = "crate::freezes::IfFrozen::is_wait")]
    pub if_frozen: crate::freezes::IfFrozen,
    /// Start regardless of freeze windows; needs `override_freeze`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub override_freeze: bool,
    /// Do not start before this time (RFC 3339; at most a year ahead). It waits
    /// parked in the queue until then, holding no slot.
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deploy_at: Option<OffsetDateTime>,
    /// Do not start after this time (RFC 3339, in the future, after `deploy_at`): a
    /// deployment still queued then is cancelled.
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub no_deploy_after: Option<OffsetDateTime>,
    /// Leave the older queued deployments of this project × environment queued;
    /// by default they are superseded (cancelled) by this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_queued: bool,
}

/// A deployment in lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentSummary {
    pub id: i64,
    /// The task that runs it (its log is the deployment's log).
    pub task_id: i64,
    pub project_id: i64,
    pub project: String,
    pub release_id: i64,
    pub release: String,
    pub environment_id: i64,
    pub environment: String,
    pub state: DeploymentState,
    /// Why it failed, was cancelled, abandoned or aborted.
    pub error: Option<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub queued_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Set on a rollback: the deployment it rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
    /// A rollback the node queued by itself when `rollback_of` failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic_rollback: bool,
    /// It does not start before this time.
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deploy_at: Option<OffsetDateTime>,
    /// It is cancelled if it has not started by this time.
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub no_deploy_after: Option<OffsetDateTime>,
    /// The newer deployment of the same project × environment that replaced this one
    /// while it was queued (it was cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<i64>,
    /// Set when nobody asked for it: why Capstan queued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<DeploymentTrigger>,
}

/// Why Capstan queued a deployment nobody asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeploymentTrigger {
    /// Deployment `after_deployment` succeeded and let the release into `phase`, an
    /// automatic phase of the project's lifecycle.
    Lifecycle {
        phase: String,
        after_deployment: i64,
    },
}

impl DeploymentTrigger {
    pub fn in_words(&self) -> String {
        match self {
            Self::Lifecycle {
                phase,
                after_deployment,
            } => format!(
                "queued by the lifecycle: deployment {after_deployment} let the release into automatic phase {phase}"
            ),
        }
    }
}

/// `GET /api/deployments/{id}`: the deployment, its grid and its questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentResponse {
    #[serde(flatten)]
    pub summary: DeploymentSummary,
    pub options: DeploymentOptions,
    /// Set while queued: why it has not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Blocked>,
    /// Who cancelled or abandoned it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<Actor>,
    /// The release's steps, in order (the grid's `step` indexes them).
    pub steps: Vec<GridStep>,
    /// The targets, by name (the grid's `target` names them).
    pub targets: Vec<GridTarget>,
    /// One cell per step × target × action that the deployment has reached.
    pub grid: Vec<Cell>,
    pub interventions: Vec<Intervention>,
    /// Approvals and denials given, oldest first (see docs/approvals.md).
    #[serde(default)]
    pub approvals: Vec<crate::approvals::Approval>,
}

/// What the deployment was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentOptions {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub exclude_targets: Vec<String>,
    #[serde(default)]
    pub skip_steps: Vec<String>,
    #[serde(default)]
    pub guided_failure: bool,
    #[serde(default)]
    pub offline_targets: OfflineTargets,
}

/// A step as the grid shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GridStep {
    pub name: String,
    pub actions: Vec<String>,
}

/// A target machine of the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GridTarget {
    pub agent_id: i64,
    pub name: String,
}

/// One action on one target in one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    /// Index into `steps`.
    pub step: u32,
    pub target: String,
    /// Index into the step's actions.
    pub action: u32,
    pub state: CellState,
    /// What a `waiting` cell waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<BlockedBy>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    pub exit_code: Option<i32>,
    /// The agent command that ran it (`GET /api/tasks/{task}/commands`).
    pub command_id: Option<i64>,
    /// Output variables the action set (`##capstan[setVariable ...]`).
    #[schema(value_type = Object)]
    pub outputs: serde_json::Value,
    /// Why it failed, was skipped or excluded.
    pub error: Option<String>,
}

/// A question a deployment asks an operator, and its answer once given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Intervention {
    pub id: i64,
    pub kind: InterventionKind,
    pub step: u32,
    pub target: Option<String>,
    pub action: Option<u32>,
    /// The failure, or the manual intervention's instructions.
    pub question: String,
    /// The answers it takes.
    pub answers: Vec<InterventionAnswer>,
    /// The role expected to answer a manual intervention.
    pub responsible_role: Option<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub asked_at: OffsetDateTime,
    pub answer: Option<Answered>,
}

/// An answer given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answered {
    pub answer: InterventionAnswer,
    pub by: Actor,
    pub note: String,
}

/// Who did something, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// The credential that did it (`admin key` until users exist).
    pub who: String,
    /// The client's address, through trusted proxies.
    pub address: Option<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// `POST /api/deployments/{id}/interventions/{iid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    pub answer: InterventionAnswer,
    #[serde(default)]
    pub note: String,
}

/// `POST /api/deployments/{id}/cancel` and `/abandon`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    #[serde(default)]
    pub note: String,
}

/// One page of `GET /api/deployments`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentPage {
    pub items: Vec<DeploymentSummary>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /api/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    pub project_id: Option<i64>,
    /// The environment's name.
    pub environment: Option<String>,
    pub release_id: Option<i64>,
    pub state: Option<DeploymentState>,
    /// At most 500, default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Why queued work (a task, a deployment) or a grid cell has not started: every reason
/// that holds, and the place in line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Blocked {
    pub reasons: Vec<BlockedBy>,
    /// 1 for the first in line among the work it waits with.
    pub position: u32,
    /// The queued tasks ahead of it (at most 20).
    pub ahead: Vec<i64>,
    /// All of `reasons` in one sentence.
    pub summary: String,
}

/// One reason work waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum BlockedBy {
    /// Every node that could run it is at its task cap.
    TaskCap { nodes: Vec<NodeLoad> },
    /// No node that is up knows the task's kind.
    NoNodeForKind { kind: String },
    /// No node is up that claims tasks: none is up at all, or every one that is up is
    /// draining (named here).
    NoNodeUp { draining: Vec<String> },
    /// A task with the same concurrency key runs, or was queued earlier.
    ConcurrencyKey {
        key: String,
        task_id: i64,
        /// The deployment that task runs, if it is one.
        deployment_id: Option<i64>,
    },
    /// A named lock another deployment holds.
    Lock {
        name: String,
        /// `machine` or `environment`.
        scope: String,
        deployment_id: i64,
        project: String,
        #[serde(with = "crate::timestamp")]
        #[schema(value_type = String, format = DateTime)]
        since: OffsetDateTime,
    },
    /// The machine runs another deployment's step.
    MachineMutex {
        machine: String,
        deployment_id: i64,
        project: String,
        #[serde(with = "crate::timestamp")]
        #[schema(value_type = String, format = DateTime)]
        since: OffsetDateTime,
    },
    /// Its deployment waits for an operator.
    Intervention { intervention_id: i64 },
    /// The step's window or parallelism is full.
    Window { running: u32, limit: u32 },
    /// No enabled, healthy agent of the environment carries the step's tags.
    NoAgent {
        environment: String,
        tags: Vec<String>,
    },
    /// The deployment waits for approvals before it starts.
    AwaitingApproval {
        /// Approvals given so far.
        given: u32,
        /// Approvals it needs.
        needed: u32,
        /// The team whose members may approve.
        team: String,
        /// False when the person who queued the deployment may not approve it.
        deployer_may_approve: bool,
    },
    /// A freeze window is open where the deployment would run.
    Freeze {
        window: String,
        /// When the window closes and the deployment may start.
        #[serde(with = "crate::timestamp")]
        #[schema(value_type = String, format = DateTime)]
        until: OffsetDateTime,
    },
    /// The deployment was scheduled to start later.
    Scheduled {
        #[serde(with = "crate::timestamp")]
        #[schema(value_type = String, format = DateTime)]
        at: OffsetDateTime,
    },
}

/// A node's load, as the task cap sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeLoad {
    pub name: String,
    pub running: u32,
    pub cap: u32,
}

impl BlockedBy {
    /// The reason in words, for `capstan tasks why` and logs.
    pub fn in_words(&self) -> String {
        let at = |t: &OffsetDateTime| crate::timestamp::format(*t);
        match self {
            Self::TaskCap { nodes } => {
                let loads: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{} {}/{}", n.name, n.running, n.cap))
                    .collect();
                format!("every node is at its task cap ({})", loads.join(", "))
            }
            Self::NoNodeForKind { kind } => {
                format!("no node that is up can run tasks of kind `{kind}`")
            }
            Self::NoNodeUp { draining } if draining.is_empty() => "no node is up".to_owned(),
            Self::NoNodeUp { draining } => {
                format!(
                    "every node that is up is draining ({})",
                    draining.join(", ")
                )
            }
            Self::ConcurrencyKey {
                key,
                task_id,
                deployment_id,
            } => match deployment_id {
                Some(d) => format!(
                    "deployment {d} (task {task_id}) holds concurrency key `{key}` and goes first"
                ),
                None => format!("task {task_id} holds concurrency key `{key}` and goes first"),
            },
            Self::Lock {
                name,
                scope,
                deployment_id,
                project,
                since,
            } => format!(
                "waiting for lock `{name}` (per {scope}) held by deployment {deployment_id} (project {project}) since {}",
                at(since)
            ),
            Self::MachineMutex {
                machine,
                deployment_id,
                project,
                since,
            } => format!(
                "waiting for machine {machine}, which runs deployment {deployment_id} (project {project}) since {}",
                at(since)
            ),
            Self::Intervention { intervention_id } => {
                format!("awaiting an operator's answer to intervention {intervention_id}")
            }
            Self::Window { running, limit } => {
                format!("the step's window is full ({running} of {limit} targets running)")
            }
            Self::NoAgent { environment, tags } => format!(
                "no enabled, healthy agent of environment {environment} carries any of the tags {}",
                tags.join(", ")
            ),
            Self::AwaitingApproval {
                given,
                needed,
                team,
                deployer_may_approve,
            } => format!(
                "awaiting approval: {given} of {needed} from team {team}{}",
                if *deployer_may_approve {
                    ""
                } else {
                    ", not from the person who queued it"
                }
            ),
            Self::Freeze { window, until } => {
                format!("freeze window `{window}` is open until {}", at(until))
            }
            Self::Scheduled { at: when } => format!("scheduled to start at {}", at(when)),
        }
    }
}
