//! What a deployment is, independent of where it is stored or run: its states, the
//! state of each step × target × action cell of its grid, the questions it asks an
//! operator and their answers, and the pure rules the engine follows (step groups,
//! failure budgets).

use serde::{Deserialize, Serialize};

use crate::process::{StartTrigger, Step};

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Waiting in the queue (see `blocked_by`).
    Queued,
    Running,
    /// Paused until an operator answers a question (a guided failure or a manual
    /// intervention). Once nothing else of it runs, it parks and holds no slot of any
    /// node's task cap while it waits.
    AwaitingIntervention,
    Succeeded,
    Failed,
    /// Stopped by an operator.
    Cancelled,
    /// A cancel that could not complete (an agent never confirmed), closed by an
    /// operator after the grace period.
    Abandoned,
    /// Its task ended without the deployment recording how: it could not start (no
    /// target left, a release that cannot be read) or its run stopped on an error of
    /// its own. Distinct from `failed` (a verdict on its steps) and `cancelled`.
    Aborted,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 8] = [
        Self::Queued,
        Self::Running,
        Self::AwaitingIntervention,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Abandoned,
        Self::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::AwaitingIntervention => "awaiting_intervention",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Abandoned => "abandoned",
            Self::Aborted => "aborted",
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            Self::Queued | Self::Running | Self::AwaitingIntervention
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a deployment state; use queued, running, awaiting_intervention, succeeded, failed, cancelled, abandoned or aborted"
)]
pub struct UnknownDeploymentState(pub String);

state_text!(DeploymentState, UnknownDeploymentState);

/// Where one action on one target of one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Not due yet.
    Pending,
    /// Due, held back by a lock, the machine mutex, the window or an operator: the
    /// cell's `waiting_for` says which.
    Waiting,
    Running,
    Succeeded,
    Failed,
    /// Its run condition said no, or an earlier failure on the target stopped it.
    Skipped,
    /// The target left the deployment (an operator excluded it, or it failed under a
    /// `continue` policy).
    Excluded,
    Cancelled,
    /// Sent to the agent, and neither the agent nor the database knows how it ended.
    Unknown,
}

impl CellState {
    pub const ALL: [CellState; 9] = [
        Self::Pending,
        Self::Waiting,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Excluded,
        Self::Cancelled,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Excluded => "excluded",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// True once the cell will not change by itself (a retry may still reset it).
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Waiting | Self::Running)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a cell state; use pending, waiting, running, succeeded, failed, skipped, excluded, cancelled or unknown"
)]
pub struct UnknownCellState(pub String);

state_text!(CellState, UnknownCellState);

/// What a deployment asks an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InterventionKind {
    /// A target failed in a step with the `guided` policy: retry, ignore, exclude or
    /// fail.
    GuidedFailure,
    /// A manual intervention action: proceed or abort.
    Manual,
}

impl InterventionKind {
    pub const ALL: [InterventionKind; 2] = [Self::GuidedFailure, Self::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuidedFailure => "guided_failure",
            Self::Manual => "manual",
        }
    }

    /// The answers this kind of question takes.
    pub fn answers(self) -> &'static [InterventionAnswer] {
        match self {
            Self::GuidedFailure => &[
                InterventionAnswer::Retry,
                InterventionAnswer::Ignore,
                InterventionAnswer::Exclude,
                InterventionAnswer::Fail,
            ],
            Self::Manual => &[InterventionAnswer::Proceed, InterventionAnswer::Abort],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an intervention kind; use guided_failure or manual")]
pub struct UnknownInterventionKind(pub String);

state_text!(InterventionKind, UnknownInterventionKind);

/// An operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InterventionAnswer {
    /// Run the failed action again on that target, and the rest of its actions.
    Retry,
    /// Count the target as done for this step and go on.
    Ignore,
    /// Take the target out of this step and every later one.
    Exclude,
    /// Fail the step, as the `fail` policy would have.
    Fail,
    /// Go on past a manual intervention.
    Proceed,
    /// Stop at a manual intervention: the deployment fails.
    Abort,
}

impl InterventionAnswer {
    pub const ALL: [InterventionAnswer; 6] = [
        Self::Retry,
        Self::Ignore,
        Self::Exclude,
        Self::Fail,
        Self::Proceed,
        Self::Abort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Ignore => "ignore",
            Self::Exclude => "exclude",
            Self::Fail => "fail",
            Self::Proceed => "proceed",
            Self::Abort => "abort",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an answer; use retry, ignore, exclude, fail, proceed or abort")]
pub struct UnknownInterventionAnswer(pub String);

state_text!(InterventionAnswer, UnknownInterventionAnswer);

/// What a deployment does with a target that goes offline while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfflineTargets {
    /// Its action fails (and the step's failure policy decides).
    #[default]
    Fail,
    /// It is skipped from then on, with a line in the log.
    Skip,
}

/// Groups of steps that run together: each group is a step and the `with_previous`
/// steps right after it, as indexes into `steps`.
pub fn step_groups(steps: &[Step]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match (step.start_trigger, groups.last_mut()) {
            (StartTrigger::WithPrevious, Some(group)) => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// How many targets of a step may fail before the deployment fails, under a
/// `continue` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureBudget {
    /// At most this many.
    Count(u32),
    /// Failures must stay under this share of the step's targets: `5%` of 20 targets
    /// allows none, `10%` allows one.
    Percent(u8),
}

impl FailureBudget {
    /// Whether `failed` of `total` targets is still within the budget.
    pub fn allows(self, failed: usize, total: usize) -> bool {
        match self {
            Self::Count(n) => failed <= n as usize,
            Self::Percent(p) => failed == 0 || failed * 100 < usize::from(p) * total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Action, FailurePolicy, RunCondition};

    fn step(name: &str, trigger: StartTrigger) -> Step {
        Step {
            name: name.to_owned(),
            target_tags: vec!["web".to_owned()],
            start_trigger: trigger,
            run_condition: RunCondition::Success,
            window_size: None,
            max_parallelism: None,
            failure_policy: FailurePolicy::Fail,
            bypass_machine_mutex: false,
            lock: None,
            timeout: None,
            actions: vec![Action::Script {
                name: None,
                syntax: crate::script::ScriptSyntax::Bash,
                body: "true".to_owned(),
            }],
        }
    }

    #[test]
    fn with_previous_steps_join_the_group_before_them() {
        use StartTrigger::{AfterPrevious as A, WithPrevious as W};
        let steps = [step("a", A), step("b", W), step("c", A), step("d", A)];
        assert_eq!(step_groups(&steps), vec![vec![0, 1], vec![2], vec![3]]);
        assert!(step_groups(&[]).is_empty());
    }

    #[test]
    fn budgets_count_inclusively_and_percentages_strictly() {
        assert!(FailureBudget::Count(1).allows(1, 20));
        assert!(!FailureBudget::Count(1).allows(2, 20));
        assert!(!FailureBudget::Percent(5).allows(1, 20));
        assert!(FailureBudget::Percent(10).allows(1, 20));
        assert!(!FailureBudget::Percent(10).allows(2, 20));
        assert!(FailureBudget::Percent(5).allows(0, 20));
    }

    #[test]
    fn states_read_back_as_written() {
        for state in CellState::ALL {
            assert_eq!(state.as_str().parse::<CellState>(), Ok(state));
        }
        for state in DeploymentState::ALL {
            assert_eq!(state.as_str().parse::<DeploymentState>(), Ok(state));
        }
        assert!("paused".parse::<DeploymentState>().is_err());
    }
}
