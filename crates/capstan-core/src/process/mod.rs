//! A project's deployment process: ordered steps, each run on the targets its tags pick,
//! each made of actions (child steps) run in order on every target.
//!
//! These types are the stored form and the wire form at once, so what an editor sends
//! is exactly what a release snapshots. [`validate`] checks everything that needs no
//! database; the server adds what does (packages in the feed, tags in the fleet).

mod validate;
mod version_rule;

use serde::{Deserialize, Serialize};

use crate::deployment::FailureBudget;
use crate::script::ScriptSyntax;

pub use validate::{ProcessIssue, validate};
pub use version_rule::{VersionRule, VersionRuleError};

/// Most steps in one process.
pub const MAX_STEPS: usize = 200;
/// Most actions in one step.
pub const MAX_ACTIONS: usize = 20;
/// Longest script body, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// One step of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique in the process, in any case; output variables name it.
    pub name: String,
    /// The step runs on every target of the deployment's environment that carries any
    /// of these tags.
    pub target_tags: Vec<String>,
    #[serde(default)]
    pub start_trigger: StartTrigger,
    #[serde(default)]
    pub run_condition: RunCondition,
    /// Rolling deployment: at most this many targets run the step at once, each
    /// finishing all actions before the window moves on. None: all targets at once
    /// (bounded by `max_parallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_size: Option<u32>,
    /// Most targets running this step at once; None: no limit beyond the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Run without taking the per-machine mutex that keeps deployments to one target
    /// one at a time.
    #[serde(default)]
    pub bypass_machine_mutex: bool,
    /// A named lock held while the step runs on a target, per machine or per
    /// environment, across every project that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<NamedLock>,
    /// How long each action may run on its agent, e.g. `90s`, `30m` (1 s to 24 h;
    /// default 1 h). An action past it fails as timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Child steps, run in order on each target.
    pub actions: Vec<Action>,
}

/// The longest an action may be given, and what it gets when its step says nothing.
pub const MAX_ACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
pub const DEFAULT_ACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Step {
    /// The time each action of this step may run, once its `timeout` is checked.
    pub fn action_timeout(&self) -> Result<std::time::Duration, String> {
        let Some(text) = &self.timeout else {
            return Ok(DEFAULT_ACTION_TIMEOUT);
        };
        let timeout = crate::duration::parse_duration(text).map_err(|e| e.to_string())?;
        if timeout < std::time::Duration::from_secs(1) || timeout > MAX_ACTION_TIMEOUT {
            return Err(format!("`{text}` is not between 1s and 24h"));
        }
        Ok(timeout)
    }
}

/// When a step starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StartTrigger {
    /// After every earlier step has finished.
    #[default]
    AfterPrevious,
    /// Together with the step before it (which must not be the first of its group
    /// to depend on it).
    WithPrevious,
}

/// Whether a step runs, decided when it is due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "when", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunCondition {
    /// Only if every earlier step succeeded.
    #[default]
    Success,
    /// Only if an earlier step failed.
    Failure,
    /// Whatever happened before.
    Always,
    /// If the template renders to a truthy value (see docs/variables.md), e.g.
    /// `#{if Capstan.Action[Check].Output.Ready}true#{/if}`.
    Variable { expression: String },
}

/// What a failed target does to the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum FailurePolicy {
    /// The step, and so the deployment, fails.
    #[default]
    Fail,
    /// The deployment pauses and asks an operator: retry, skip the target, or fail.
    Guided,
    /// Carry on with the other targets while the failures stay within
    /// `max_failed_targets`: a count (`3`) or a share of the step's targets (`"5%"`).
    /// Failed targets are left out of later steps.
    Continue {
        /// A count such as `3`, or a percentage such as `"5%"`.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        max_failed_targets: MaxFailedTargets,
    },
}

/// A failure budget as written: a count, or a percentage as a string (`"5%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BudgetText", into = "BudgetText")]
pub struct MaxFailedTargets(pub FailureBudget);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BudgetText {
    Count(u32),
    Text(String),
}

impl TryFrom<BudgetText> for MaxFailedTargets {
    type Error = String;
    fn try_from(text: BudgetText) -> Result<Self, Self::Error> {
        match text {
            BudgetText::Count(n) => Ok(Self(FailureBudget::Count(n))),
            BudgetText::Text(text) => {
                let percent = text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<u8>().ok())
                    .filter(|n| (1..=100).contains(n));
                match (percent, text.trim().parse::<u32>()) {
                    (Some(p), _) => Ok(Self(FailureBudget::Percent(p))),
                    (None, Ok(n)) => Ok(Self(FailureBudget::Count(n))),
                    (None, Err(_)) => Err(format!(
                        "`{text}` is not a failure budget: give a count such as 3 or a percentage from 1% to 100%"
                    )),
                }
            }
        }
    }
}

impl From<MaxFailedTargets> for BudgetText {
    fn from(budget: MaxFailedTargets) -> Self {
        match budget.0 {
            FailureBudget::Count(n) => Self::Count(n),
            FailureBudget::Percent(p) => Self::Text(format!("{p}%")),
        }
    }
}

/// A named lock a step holds on each target while it runs there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamedLock {
    pub name: String,
    pub scope: LockScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// One holder per target machine.
    Machine,
    /// One holder per environment.
    Environment,
}

/// A child step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Run a script on the target.
    Script {
        /// Unique in its step; default `<kind> <position>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        syntax: ScriptSyntax,
        /// The script; `#{...}` is substituted before it runs.
        body: String,
    },
    /// Fetch a package from the built-in feed onto the target, then run a script
    /// that deploys it (the package's path is in `$CAPSTAN_PACKAGE_<ID>`).
    Package {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        package_id: String,
        /// An exact version; releases deploy it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// A rule such as `>=1.2, <2` or `1.4.*`; releases take the newest version
        /// matching it. Neither `version` nor `version_rule`: the newest version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_rule: Option<String>,
        #[serde(default)]
        syntax: ScriptSyntax,
        #[serde(default)]
        deploy_script: String,
        /// Most targets fetching this package at once (default: no limit beyond the
        /// step's own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acquisition_parallelism: Option<u32>,
    },
    /// Pause the deployment until an operator proceeds or aborts, with a note.
    ManualIntervention {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// What the operator is asked to do or check.
        instructions: String,
        /// The role expected to answer (informative until roles exist).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        responsible_role: Option<String>,
    },
}

impl Action {
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Script { name, .. }
            | Self::Package { name, .. }
            | Self::ManualIntervention { name, .. } => name.as_deref(),
        }
    }

    /// The name, or `<kind> <position>` (1-based) when none was given.
    pub fn display_name(&self, index: usize) -> String {
        match self.name() {
            Some(name) => name.to_owned(),
            None => match self {
                Self::Script { .. } => format!("script {}", index + 1),
                Self::Package { .. } => format!("package {}", index + 1),
                Self::ManualIntervention { .. } => {
                    format!("manual intervention {}", index + 1)
                }
            },
        }
    }
}
