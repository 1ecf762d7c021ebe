//! The engine: runs a deployment's steps on its targets, storing every cell as it
//! changes so that another node can take over where a dead one stopped.
//!
//! A run starts from the grid as stored: cells that succeeded are not run again, a
//! cell that was sent is adopted (its command is watched, not sent again), a failed
//! cell goes through its step's policy, and a question asked before is not asked
//! twice. See docs/deployments.md for the rules.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use capstan_api::deployments::{BlockedBy, DeploymentOptions};
use capstan_api::{PackageVersionRef, releases::ReleasePackage};
use capstan_core::{
    CommandState,
    deployment::{
        CellState, DeploymentState, FailureBudget, InterventionAnswer, InterventionKind,
        OfflineTargets, step_groups,
    },
    process::{Action, FailurePolicy, LockScope, RunCondition, Step},
};
use capstan_db::{
    DbError,
    deployments::{self as db, Acquired, CellRow, Fence, NewIntervention},
    mailbox::Delivery,
};
use futures::{StreamExt, stream::FuturesUnordered};
use time::OffsetDateTime;

use super::actions::{DeployTarget, Outputs, Release, reported_outputs};
use super::dispatch::{Dispatcher, Ended};
use crate::{node::NodeContext, runner::TaskLog};

/// How often a waiting target asks again for its lock or mutex.
const LOCK_RETRY: Duration = Duration::from_millis(200);
/// How often an open question is checked for an answer.
const ANSWER_POLL: Duration = Duration::from_millis(300);
/// An agent with an open command not heard from for this long has gone offline.
const OFFLINE_AFTER: Duration = Duration::from_secs(90);
/// How long a deployment with nothing running but a question waits for the answer
/// before it parks (gives its slot back and leaves the queue's claimers to bring it
/// back once answered). Quick answers need no round trip through the queue.
const PARK_AFTER: Duration = Duration::from_secs(3);

/// Why the engine stopped without finishing the deployment.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Another node runs the deployment now; this run must write nothing more.
    #[error("the deployment's task moved to another node")]
    Fenced,
    /// Nothing runs and a question waits: the run parks until it is answered.
    #[error("awaiting an operator's answer")]
    Park,
    #[error("{0}")]
    Db(DbError),
    #[error("{0}")]
    Broken(String),
}

impl From<DbError> for EngineError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Fenced => Self::Fenced,
            other => Self::Db(other),
        }
    }
}

/// How the deployment ended.
pub struct Finished {
    pub state: DeploymentState,
    pub error: Option<String>,
}

type Key = (usize, i64, usize);

/// How one target's part of one step ended.
#[derive(Debug, Clone)]
enum TargetEnd {
    Done,
    Skipped,
    /// Took out of the step (offline, excluded by an operator).
    Excluded,
    Failed {
        action: usize,
        error: String,
    },
    /// An operator answered `fail`.
    FailStep,
}

struct RunState {
    failed: bool,
    failures: Vec<String>,
    excluded: HashSet<i64>,
    open_questions: usize,
    /// Targets running their actions now, in every step.
    in_flight: usize,
}

pub struct Engine {
    ctx: Arc<NodeContext>,
    fence: Fence,
    id: i64,
    log: TaskLog,
    steps: Vec<Step>,
    targets: Vec<DeployTarget>,
    environment_id: i64,
    project: String,
    version: String,
    environment: String,
    rows: Vec<capstan_db::projects::VariableRow>,
    opened: Vec<capstan_core::variables::ScopedVariable>,
    packages: Vec<ReleasePackage>,
    options: DeploymentOptions,
    cells: Mutex<HashMap<Key, CellRow>>,
    outputs: Mutex<Outputs>,
    state: Mutex<RunState>,
    /// Per resource, how many of this deployment's targets hold it.
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<usize>>>>,
    /// Package actions fetching now, by (step, action), for acquisition parallelism.
    fetching: Mutex<HashMap<(usize, usize), usize>>,
    dispatcher: Dispatcher,
}

/// Everything a run starts from.
pub struct Loaded {
    pub ctx: Arc<NodeContext>,
    pub fence: Fence,
    pub id: i64,
    pub log: TaskLog,
    pub steps: Vec<Step>,
    pub targets: Vec<DeployTarget>,
    pub environment_id: i64,
    pub project: String,
    pub version: String,
    pub environment: String,
    pub rows: Vec<capstan_db::projects::VariableRow>,
    pub opened: Vec<capstan_core::variables::ScopedVariable>,
    pub packages: Vec<ReleasePackage>,
    pub options: DeploymentOptions,
    pub cells: Vec<CellRow>,
}

impl Engine {
    pub fn new(loaded: Loaded) -> Self {
        let dispatcher = Dispatcher::start(
            loaded.ctx.clone(),
            loaded.fence.task_id,
            loaded.log.clone(),
            OFFLINE_AFTER,
        );
        let mut outputs = Outputs::new();
        for cell in &loaded.cells {
            if cell.state == CellState::Succeeded {
                let found = reported_outputs(&cell.outputs);
                if let Some(step) = loaded.steps.get(cell.step as usize)
                    && !found.is_empty()
                {
                    outputs
                        .entry(step.name.clone())
                        .or_default()
                        .entry(cell.target.clone())
                        .or_default()
                        .extend(found);
                }
            }
        }
        let cells = loaded
            .cells
            .into_iter()
            .map(|c| ((c.step as usize, c.agent_id, c.action as usize), c))
            .collect();
        Self {
            ctx: loaded.ctx,
            fence: loaded.fence,
            id: loaded.id,
            log: loaded.log,
            steps: loaded.steps,
            targets: loaded.targets,
            environment_id: loaded.environment_id,
            project: loaded.project,
            version: loaded.version,
            environment: loaded.environment,
            rows: loaded.rows,
            opened: loaded.opened,
            packages: loaded.packages,
            options: loaded.options,
            cells: Mutex::new(cells),
            outputs: Mutex::new(outputs),
            state: Mutex::new(RunState {
                failed: false,
                failures: Vec::new(),
                excluded: HashSet::new(),
                open_questions: 0,
                in_flight: 0,
            }),
            held: Mutex::default(),
            fetching: Mutex::default(),
            dispatcher,
        }
    }

    fn release(&self) -> Release<'_> {
        Release {
            task_id: self.fence.task_id,
            deployment_id: self.id,
            project: &self.project,
            version: &self.version,
            environment: &self.environment,
            rows: &self.rows,
            opened: &self.opened,
            packages: &self.packages,
        }
    }

    /// Runs every step group in order; returns how the deployment ended.
    pub async fn run(&self) -> Result<Finished, EngineError> {
        for group in step_groups(&self.steps) {
            let runs = group.iter().map(|&s| self.run_step(s));
            for result in futures::future::join_all(runs).await {
                result?;
            }
        }
        let state = self.state.lock().expect("state lock");
        Ok(if state.failed {
            Finished {
                state: DeploymentState::Failed,
                error: Some(state.failures.join("; ")),
            }
        } else {
            Finished {
                state: DeploymentState::Succeeded,
                error: None,
            }
        })
    }

    fn fail_deployment(&self, why: String) {
        let mut state = self.state.lock().expect("state lock");
        state.failed = true;
        state.failures.push(why);
    }

    async fn run_step(&self, s: usize) -> Result<(), EngineError> {
        let step = &self.steps[s];
        let name = &step.name;
        let targets: Vec<&DeployTarget> = self
            .targets
            .iter()
            .filter(|t| {
                t.tags
                    .iter()
                    .any(|tag| step.target_tags.iter().any(|w| w.eq_ignore_ascii_case(tag)))
            })
            .collect();
        if self
            .options
            .skip_steps
            .iter()
            .any(|skip| skip.eq_ignore_ascii_case(name))
        {
            self.log.info(format!("step `{name}`: skipped by request"));
            self.finish_all(s, &targets, CellState::Skipped, "skipped by request")
                .await?;
            return Ok(());
        }
        if targets.is_empty() {
            self.log.warn(format!(
                "step `{name}`: no target of the deployment carries any of the tags {}; nothing to run",
                step.target_tags.join(", ")
            ));
            return Ok(());
        }
        let failed_before = self.state.lock().expect("state lock").failed;
        let runs = match &step.run_condition {
            RunCondition::Success => (!failed_before)
                .then_some(())
                .ok_or("an earlier step failed"),
            RunCondition::Failure => failed_before.then_some(()).ok_or("no earlier step failed"),
            RunCondition::Always | RunCondition::Variable { .. } => Ok(()),
        };
        if let Err(why) = runs {
            self.log.info(format!(
                "step `{name}`: skipped, its run condition says no ({why})"
            ));
            self.finish_all(s, &targets, CellState::Skipped, why)
                .await?;
            return Ok(());
        }
        let excluded = self.state.lock().expect("state lock").excluded.clone();
        let (out, active): (Vec<&DeployTarget>, Vec<&DeployTarget>) = targets
            .into_iter()
            .partition(|t| excluded.contains(&t.agent_id));
        self.finish_all(s, &out, CellState::Excluded, "excluded from the deployment")
            .await?;
        if !self.manual_interventions(s, &active).await? {
            return Ok(());
        }
        self.log.info(format!(
            "step `{name}`: running on {} target(s){}",
            active.len(),
            match self.window(step) {
                Some(w) => format!(", at most {w} at once"),
                None => String::new(),
            }
        ));
        self.run_targets(s, active).await
    }

    /// Each action's time on its agent: checked when the process was saved, so a value
    /// that does not read (an older release) falls back to the default.
    fn action_timeout(&self, step: &Step) -> Duration {
        step.action_timeout()
            .unwrap_or(capstan_core::process::DEFAULT_ACTION_TIMEOUT)
    }

    /// Most targets at once: the window, bounded by max parallelism.
    fn window(&self, step: &Step) -> Option<usize> {
        match (step.window_size, step.max_parallelism) {
            (Some(w), Some(p)) => Some(w.min(p) as usize),
            (Some(w), None) => Some(w as usize),
            (None, Some(p)) => Some(p as usize),
            (None, None) => None,
        }
    }

    fn policy(&self, step: &Step) -> FailurePolicy {
        if self.options.guided_failure {
            FailurePolicy::Guided
        } else {
            step.failure_policy.clone()
        }
    }

    async fn run_targets(&self, s: usize, targets: Vec<&DeployTarget>) -> Result<(), EngineError> {
        type Job<'a> =
            Pin<Box<dyn Future<Output = (i64, Result<TargetEnd, EngineError>)> + Send + 'a>>;
        let step = &self.steps[s];
        let total = targets.len();
        let window = self.window(step).unwrap_or(usize::MAX).max(1);
        let policy = self.policy(step);
        let by_id: HashMap<i64, &DeployTarget> = targets.iter().map(|t| (t.agent_id, *t)).collect();
        // Every cell of the step exists from the start, so the grid shows what is to
        // come; those beyond the window say they wait for it.
        let full = BlockedBy::Window {
            running: u32::try_from(window.min(total)).unwrap_or(u32::MAX),
            limit: u32::try_from(window).unwrap_or(u32::MAX),
        };
        let mut fresh = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            for a in 0..step.actions.len() {
                if self.cell(s, target.agent_id, a).is_some() {
                    continue;
                }
                let waits = i >= window && a == 0;
                fresh.push(CellRow {
                    state: if waits {
                        CellState::Waiting
                    } else {
                        CellState::Pending
                    },
                    waiting_for: waits.then(|| serde_json::to_value(&full).ok()).flatten(),
                    ..self.blank(s, target, a)
                });
            }
        }
        self.write(fresh).await?;
        let mut queue: VecDeque<&DeployTarget> = targets.into_iter().collect();
        let mut running: FuturesUnordered<Job<'_>> = FuturesUnordered::new();
        let mut asking: FuturesUnordered<Job<'_>> = FuturesUnordered::new();
        let mut stop_new: Option<String> = None;
        let mut failed: Vec<String> = Vec::new();
        loop {
            while stop_new.is_none() && running.len() < window {
                let Some(target) = queue.pop_front() else {
                    break;
                };
                running.push(Box::pin(async move {
                    self.state.lock().expect("state lock").in_flight += 1;
                    let ended = self.run_target(s, target, 0).await;
                    self.state.lock().expect("state lock").in_flight -= 1;
                    (target.agent_id, ended)
                }));
            }
            let next = tokio::select! {
                Some(done) = running.next() => Some(done),
                Some(done) = asking.next() => Some(done),
                else => None,
            };
            let Some((agent_id, end)) = next else { break };
            let target = by_id[&agent_id];
            match end? {
                TargetEnd::Done | TargetEnd::Skipped | TargetEnd::Excluded => {}
                TargetEnd::FailStep => {
                    let why = format!(
                        "{} failed and an operator chose to fail the step",
                        target.name
                    );
                    failed.push(target.name.clone());
                    stop_new.get_or_insert(why);
                }
                TargetEnd::Failed { action, error } => match &policy {
                    FailurePolicy::Fail => {
                        failed.push(target.name.clone());
                        stop_new.get_or_insert(format!("{}: {error}", target.name));
                    }
                    FailurePolicy::Continue { max_failed_targets } => {
                        failed.push(target.name.clone());
                        self.state
                            .lock()
                            .expect("state lock")
                            .excluded
                            .insert(agent_id);
                        let budget: FailureBudget = max_failed_targets.0;
                        if budget.allows(failed.len(), total) {
                            self.log.warn(format!(
                                "step `{}`: {} failed ({error}); it is left out of later steps, and the others carry on ({} of {total} failed)",
                                step.name,
                                target.name,
                                failed.len()
                            ));
                        } else {
                            stop_new.get_or_insert(format!(
                                "{} of {total} targets failed, past the budget of {}",
                                failed.len(),
                                describe_budget(budget)
                            ));
                        }
                    }
                    FailurePolicy::Guided => {
                        asking.push(Box::pin(async move {
                            (agent_id, self.guided(s, target, action, error).await)
                        }));
                    }
                },
            }
        }
        // Targets never started because the step stopped.
        let never: Vec<&DeployTarget> = queue.into_iter().collect();
        if let Some(why) = stop_new {
            self.finish_all(
                s,
                &never,
                CellState::Skipped,
                "the step failed before this machine's turn",
            )
            .await?;
            let message = format!(
                "step `{}` failed: {why} (failed: {})",
                step.name,
                failed.join(", ")
            );
            self.log.error(&message);
            self.fail_deployment(message);
        } else if !failed.is_empty() {
            self.log.warn(format!(
                "step `{}` finished with {} failed target(s) within its budget: {}",
                step.name,
                failed.len(),
                failed.join(", ")
            ));
        } else {
            self.log.info(format!("step `{}` succeeded", step.name));
        }
        Ok(())
    }

    /// Asks an operator about a failed target and acts on the answer.
    async fn guided(
        &self,
        s: usize,
        target: &DeployTarget,
        action: usize,
        error: String,
    ) -> Result<TargetEnd, EngineError> {
        let step = &self.steps[s];
        let mut error = error;
        let mut action = action;
        loop {
            let question = format!(
                "`{}` failed on {} in step `{}`: {error}. Retry, ignore, exclude the machine, or fail?",
                step.actions[action].display_name(action),
                target.name,
                step.name
            );
            let failed_at = self
                .cell(s, target.agent_id, action)
                .and_then(|c| c.finished_at);
            let answer = self
                .ask(
                    InterventionKind::GuidedFailure,
                    s,
                    Some(target),
                    Some(action),
                    &question,
                    None,
                    failed_at,
                )
                .await?;
            match answer {
                InterventionAnswer::Retry => {
                    self.log.info(format!(
                        "{}: retrying step `{}` from `{}`",
                        target.name,
                        step.name,
                        step.actions[action].display_name(action)
                    ));
                    self.reset_from(s, target, action).await?;
                    self.state.lock().expect("state lock").in_flight += 1;
                    let ended = self.run_target(s, target, action).await;
                    self.state.lock().expect("state lock").in_flight -= 1;
                    match ended? {
                        TargetEnd::Failed {
                            action: a,
                            error: e,
                        } => {
                            action = a;
                            error = e;
                        }
                        other => return Ok(other),
                    }
                }
                InterventionAnswer::Ignore => {
                    self.log.warn(format!(
                        "{}: the failure in step `{}` is ignored; carrying on",
                        target.name, step.name
                    ));
                    return Ok(TargetEnd::Done);
                }
                InterventionAnswer::Exclude => {
                    self.log.warn(format!(
                        "{}: excluded from the rest of the deployment",
                        target.name
                    ));
                    self.state
                        .lock()
                        .expect("state lock")
                        .excluded
                        .insert(target.agent_id);
                    return Ok(TargetEnd::Excluded);
                }
                InterventionAnswer::Fail | InterventionAnswer::Abort => {
                    return Ok(TargetEnd::FailStep);
                }
                InterventionAnswer::Proceed => return Ok(TargetEnd::Done),
            }
        }
    }

    /// Runs the step's manual interventions, once per step before its targets run.
    /// False when one was aborted (the step then fails).
    async fn manual_interventions(
        &self,
        s: usize,
        targets: &[&DeployTarget],
    ) -> Result<bool, EngineError> {
        let step = &self.steps[s];
        for (a, action) in step.actions.iter().enumerate() {
            let Action::ManualIntervention {
                instructions,
                responsible_role,
                ..
            } = action
            else {
                continue;
            };
            let answer = self
                .ask(
                    InterventionKind::Manual,
                    s,
                    None,
                    Some(a),
                    instructions,
                    responsible_role.as_deref(),
                    None,
                )
                .await?;
            let now = OffsetDateTime::now_utc();
            let (state, error) = match answer {
                InterventionAnswer::Proceed => (CellState::Succeeded, None),
                _ => (CellState::Failed, Some("aborted by an operator".to_owned())),
            };
            let cells: Vec<CellRow> = targets
                .iter()
                .map(|t| CellRow {
                    state,
                    started_at: Some(now),
                    finished_at: Some(now),
                    error: error.clone(),
                    ..self.blank(s, t, a)
                })
                .collect();
            self.write(cells).await?;
            if state == CellState::Failed {
                let why = format!(
                    "step `{}` was aborted at its manual intervention",
                    step.name
                );
                self.log.error(&why);
                let rest: Vec<&DeployTarget> = targets.to_vec();
                self.finish_all(s, &rest, CellState::Skipped, "the step was aborted")
                    .await?;
                self.fail_deployment(why);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Asks a question (or finds the one asked before this cell last failed) and waits
    /// for its answer.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        kind: InterventionKind,
        s: usize,
        target: Option<&DeployTarget>,
        action: Option<usize>,
        question: &str,
        role: Option<&str>,
        not_before: Option<OffsetDateTime>,
    ) -> Result<InterventionAnswer, EngineError> {
        let db = &self.ctx.pools.api;
        let agent_id = target.map(|t| t.agent_id);
        // Asked before (by an earlier run of this deployment) and still current?
        let earlier = db::interventions(db, self.id)
            .await?
            .into_iter()
            .rfind(|i| {
                i.step == s as i32
                    && i.agent_id == agent_id
                    && i.action == action.map(|a| a as i32)
                    && not_before.is_none_or(|t| i.asked_at >= t)
            });
        let id = match earlier {
            Some(row) => {
                if let Some(answer) = row.answer()? {
                    return Ok(answer);
                }
                row.id
            }
            None => {
                let id = db::ask(
                    db,
                    self.fence,
                    self.id,
                    &NewIntervention {
                        kind,
                        step: s as i32,
                        agent_id,
                        target: target.map(|t| t.name.as_str()),
                        action: action.map(|a| a as i32),
                        question,
                        responsible_role: role,
                    },
                )
                .await?;
                self.log.warn(format!(
                    "awaiting an operator (intervention {id}): {question} (answer with `capstan deployments intervene {} {id} --<answer>`)",
                    self.id
                ));
                id
            }
        };
        self.question_opened().await?;
        let asked = tokio::time::Instant::now();
        let answered = loop {
            tokio::time::sleep(ANSWER_POLL).await;
            let idle = self.state.lock().expect("state lock").in_flight == 0;
            if idle && asked.elapsed() >= PARK_AFTER {
                return Err(EngineError::Park);
            }
            if let Some(row) = db::intervention(db, id).await?
                && let Some(answer) = row.answer()?
            {
                let by = row
                    .answered_by
                    .as_ref()
                    .and_then(|b| b.get("who"))
                    .and_then(|w| w.as_str())
                    .unwrap_or("someone")
                    .to_owned();
                self.log.info(format!(
                    "intervention {id} answered `{answer}` by {by}{}",
                    if row.note.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", row.note)
                    }
                ));
                break answer;
            }
        };
        self.question_closed().await?;
        Ok(answered)
    }

    async fn question_opened(&self) -> Result<(), EngineError> {
        let first = {
            let mut state = self.state.lock().expect("state lock");
            state.open_questions += 1;
            state.open_questions == 1
        };
        if first {
            db::set_state(
                &self.ctx.pools.api,
                self.fence,
                self.id,
                DeploymentState::AwaitingIntervention,
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn question_closed(&self) -> Result<(), EngineError> {
        let last = {
            let mut state = self.state.lock().expect("state lock");
            state.open_questions -= 1;
            state.open_questions == 0
        };
        if last {
            db::set_state(
                &self.ctx.pools.api,
                self.fence,
                self.id,
                DeploymentState::Running,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// One target's part of a step, from action `from` on: takes its lock and the
    /// machine mutex, runs its actions in order, stops at its first failure.
    async fn run_target(
        &self,
        s: usize,
        target: &DeployTarget,
        from: usize,
    ) -> Result<TargetEnd, EngineError> {
        let step = &self.steps[s];
        let release = self.release();
        let runnable: Vec<usize> = (from..step.actions.len())
            .filter(|&a| !matches!(step.actions[a], Action::ManualIntervention { .. }))
            .collect();
        let pending: Vec<usize> = runnable
            .iter()
            .copied()
            .filter(|&a| {
                self.cell(s, target.agent_id, a)
                    .is_none_or(|c| !matches!(c.state, CellState::Succeeded | CellState::Skipped))
            })
            .collect();
        let Some(&first) = pending.first() else {
            return Ok(TargetEnd::Done);
        };
        // A cell that failed in an earlier run goes to the step's policy as it is.
        if let Some(cell) = self.cell(s, target.agent_id, first)
            && matches!(
                cell.state,
                CellState::Failed | CellState::Unknown | CellState::Cancelled
            )
            && from == 0
        {
            return Ok(TargetEnd::Failed {
                action: first,
                error: cell.error.clone().unwrap_or_else(|| "failed".to_owned()),
            });
        }
        if let RunCondition::Variable { expression } = &step.run_condition {
            let outputs = self.outputs.lock().expect("outputs lock").clone();
            match release.condition(expression, step, target, &outputs) {
                Ok(true) => {}
                Ok(false) => {
                    self.finish_all(
                        s,
                        &[target],
                        CellState::Skipped,
                        "its run condition is false on this machine",
                    )
                    .await?;
                    self.log.info(format!(
                        "{}: step `{}` skipped, its run condition is false on this machine",
                        target.name, step.name
                    ));
                    return Ok(TargetEnd::Skipped);
                }
                Err(error) => {
                    let error = format!("its run condition cannot be evaluated: {error}");
                    self.finish_cell(s, target, first, CellState::Failed, &error)
                        .await?;
                    return Ok(TargetEnd::Failed {
                        action: first,
                        error,
                    });
                }
            }
        }
        let resources = self.resources(step, target);
        for (resource, label) in &resources {
            self.take(s, target, first, resource, label).await?;
        }
        let ended = self.run_actions(s, target, &pending).await;
        // A run fenced off gives nothing back: the next attempt holds it now.
        if !matches!(ended, Err(EngineError::Fenced)) {
            for (resource, _) in resources.iter().rev() {
                self.give_back(resource).await?;
            }
        }
        ended
    }

    async fn run_actions(
        &self,
        s: usize,
        target: &DeployTarget,
        pending: &[usize],
    ) -> Result<TargetEnd, EngineError> {
        let step = &self.steps[s];
        for (i, &a) in pending.iter().enumerate() {
            let ended = self.run_action(s, target, a).await?;
            let action_name = step.actions[a].display_name(a);
            if ended.state == CommandState::Succeeded {
                continue;
            }
            if ended.offline && self.options.offline_targets == OfflineTargets::Skip {
                self.log.warn(format!(
                    "{}: went offline during step `{}`; skipped from now on, as the deployment asks",
                    target.name, step.name
                ));
                self.state
                    .lock()
                    .expect("state lock")
                    .excluded
                    .insert(target.agent_id);
                let rest: Vec<usize> = pending[i + 1..].to_vec();
                self.skip_cells(s, target, &rest, "the machine went offline")
                    .await?;
                return Ok(TargetEnd::Excluded);
            }
            let error = ended
                .error
                .unwrap_or_else(|| ended.state.in_words().to_owned());
            let rest: Vec<usize> = pending[i + 1..].to_vec();
            self.skip_cells(
                s,
                target,
                &rest,
                &format!("`{action_name}` failed on this machine"),
            )
            .await?;
            return Ok(TargetEnd::Failed {
                action: a,
                error: format!("`{action_name}`: {error}"),
            });
        }
        Ok(TargetEnd::Done)
    }

    /// Runs (or adopts) one action on one target and waits for it to end.
    async fn run_action(
        &self,
        s: usize,
        target: &DeployTarget,
        a: usize,
    ) -> Result<Ended, EngineError> {
        let step = &self.steps[s];
        // Sent by an earlier run (a cell is only ever `running` with its command, both
        // written by one statement): watch it instead of sending it again.
        let adopted = self
            .cell(s, target.agent_id, a)
            .filter(|cell| cell.state == CellState::Running)
            .and_then(|cell| cell.command_id);
        let command_id = match adopted {
            Some(id) => {
                self.log.info(format!(
                    "{}: `{}` was sent before this run; waiting for it (command {id})",
                    target.name,
                    step.actions[a].display_name(a)
                ));
                id
            }
            None => match self.send(s, target, a).await? {
                Ok(id) => id,
                Err(error) => {
                    self.finish_cell(s, target, a, CellState::Failed, &error)
                        .await?;
                    return Ok(Ended {
                        state: CommandState::Failed,
                        exit_code: None,
                        error: Some(error),
                        outputs: serde_json::json!({}),
                        offline: false,
                    });
                }
            },
        };
        let waited = self
            .dispatcher
            .watch(
                command_id,
                target.agent_id,
                &target.name,
                self.action_timeout(step) + Duration::from_secs(10),
            )
            .await;
        self.stop_fetching(s, a);
        let ended =
            waited.map_err(|_| EngineError::Broken("the command watcher stopped".to_owned()))?;
        let state = match ended.state {
            CommandState::Succeeded => CellState::Succeeded,
            CommandState::Cancelled => CellState::Cancelled,
            CommandState::TimedOut if ended.offline => CellState::Unknown,
            _ => CellState::Failed,
        };
        let found = reported_outputs(&ended.outputs);
        if state == CellState::Succeeded && !found.is_empty() {
            self.outputs
                .lock()
                .expect("outputs lock")
                .entry(step.name.clone())
                .or_default()
                .entry(target.name.clone())
                .or_default()
                .extend(found);
        }
        let started = self.cell(s, target.agent_id, a).and_then(|c| c.started_at);
        self.write(vec![CellRow {
            state,
            command_id: Some(command_id),
            started_at: started,
            finished_at: Some(OffsetDateTime::now_utc()),
            exit_code: ended.exit_code,
            outputs: ended.outputs.clone(),
            error: ended.error.clone(),
            ..self.blank(s, target, a)
        }])
        .await?;
        let line = format!(
            "{}: `{}` in step `{}` {}",
            target.name,
            step.actions[a].display_name(a),
            step.name,
            match &ended.error {
                Some(e) => format!("{}: {e}", ended.state.in_words()),
                None => ended.state.in_words().to_owned(),
            }
        );
        if state == CellState::Succeeded {
            self.log.info(line);
        } else {
            self.log.error(line);
        }
        Ok(ended)
    }

    /// Builds and sends the action's command. The inner error is why it cannot be run.
    async fn send(
        &self,
        s: usize,
        target: &DeployTarget,
        a: usize,
    ) -> Result<Result<i64, String>, EngineError> {
        let step = &self.steps[s];
        let release = self.release();
        let package = match &step.actions[a] {
            Action::Package {
                acquisition_parallelism,
                ..
            } => {
                let Some(frozen) = release.package_of(step, a) else {
                    return Ok(Err(
                        "the release froze no package version for this action".to_owned()
                    ));
                };
                self.wait_to_fetch(s, target, a, *acquisition_parallelism)
                    .await?;
                match crate::packages::pin(
                    &self.ctx,
                    &[PackageVersionRef {
                        id: frozen.package_id.clone(),
                        version: frozen.version.clone(),
                    }],
                )
                .await
                {
                    Ok(mut pinned) => pinned.pop(),
                    Err(crate::packages::PackageError::Db(e)) => return Err(e.into()),
                    Err(e) => {
                        self.stop_fetching(s, a);
                        return Ok(Err(format!(
                            "{e} (the release froze {} {}; it was deleted from the feed since)",
                            frozen.package_id, frozen.version
                        )));
                    }
                }
            }
            _ => None,
        };
        let outputs = self.outputs.lock().expect("outputs lock").clone();
        let built = match release.command(step, a, target, &outputs, package) {
            Ok(built) => built,
            Err(error) => {
                self.stop_fetching(s, a);
                return Ok(Err(error));
            }
        };
        let body = built.body;
        let started = OffsetDateTime::now_utc();
        let timeout_ms = i64::try_from(self.action_timeout(step).as_millis()).unwrap_or(i64::MAX);
        // Polls this node holds answer from what is handed over, not when the NOTIFY
        // comes back.
        let sending = self.ctx.agents.mailboxes.sending([target.agent_id]);
        let id = db::send_cell(
            &self.ctx.pools.api,
            self.fence,
            self.id,
            &db::CellCommand {
                step: s as i32,
                agent_id: target.agent_id,
                action: a as i32,
                target: &target.name,
                body: &body,
                timeout_ms,
                started_at: started,
            },
        )
        .await?;
        sending.handed_over(vec![(
            target.agent_id,
            Delivery {
                id,
                task_id: self.fence.task_id,
                body: Some(body),
                timeout_ms,
                cancel: false,
            },
        )]);
        self.cells.lock().expect("cells lock").insert(
            (s, target.agent_id, a),
            CellRow {
                state: CellState::Running,
                command_id: Some(id),
                started_at: Some(started),
                ..self.blank(s, target, a)
            },
        );
        Ok(Ok(id))
    }

    /// Waits until fewer than `limit` targets fetch this action's package.
    async fn wait_to_fetch(
        &self,
        s: usize,
        target: &DeployTarget,
        a: usize,
        limit: Option<u32>,
    ) -> Result<(), EngineError> {
        let Some(limit) = limit else {
            self.fetching
                .lock()
                .expect("fetching lock")
                .entry((s, a))
                .and_modify(|n| *n += 1)
                .or_insert(1);
            return Ok(());
        };
        let mut shown = false;
        loop {
            {
                let mut fetching = self.fetching.lock().expect("fetching lock");
                let now = fetching.entry((s, a)).or_insert(0);
                if *now < limit as usize {
                    *now += 1;
                    return Ok(());
                }
            }
            if !shown {
                shown = true;
                self.write(vec![CellRow {
                    state: CellState::Waiting,
                    waiting_for: serde_json::to_value(BlockedBy::Window {
                        running: limit,
                        limit,
                    })
                    .ok(),
                    ..self.blank(s, target, a)
                }])
                .await?;
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    fn stop_fetching(&self, s: usize, a: usize) {
        if let Some(n) = self
            .fetching
            .lock()
            .expect("fetching lock")
            .get_mut(&(s, a))
        {
            *n = n.saturating_sub(1);
        }
    }

    /// The resources a step needs on a target, named lock first: a target never holds
    /// the machine while waiting for a lock, so two deployments cannot wait on each
    /// other.
    fn resources(&self, step: &Step, target: &DeployTarget) -> Vec<(String, BlockedLabel)> {
        let mut resources = Vec::new();
        if let Some(lock) = &step.lock {
            let (resource, scope) = match lock.scope {
                LockScope::Machine => (
                    format!(
                        "lock:{}:machine:{}",
                        lock.name.to_lowercase(),
                        target.agent_id
                    ),
                    "machine",
                ),
                LockScope::Environment => (
                    format!(
                        "lock:{}:environment:{}",
                        lock.name.to_lowercase(),
                        self.environment_id
                    ),
                    "environment",
                ),
            };
            resources.push((
                resource,
                BlockedLabel::Lock {
                    name: lock.name.clone(),
                    scope,
                },
            ));
        }
        if !step.bypass_machine_mutex {
            resources.push((
                format!("machine:{}", target.agent_id),
                BlockedLabel::Machine {
                    machine: target.name.clone(),
                },
            ));
        }
        resources
    }

    /// The count of this deployment's targets holding `resource`, behind its own async
    /// mutex: every change of the count and the database row it stands for happens
    /// under it, so no target can take the row as held while another is deleting it.
    fn holding(&self, resource: &str) -> Arc<tokio::sync::Mutex<usize>> {
        self.held
            .lock()
            .expect("held lock")
            .entry(resource.to_owned())
            .or_default()
            .clone()
    }

    /// Takes a resource for the deployment (again, if it already holds it), showing
    /// in the cell what it waits for meanwhile.
    async fn take(
        &self,
        s: usize,
        target: &DeployTarget,
        a: usize,
        resource: &str,
        label: &BlockedLabel,
    ) -> Result<(), EngineError> {
        let holding = self.holding(resource);
        let mut shown: Option<i64> = None;
        loop {
            {
                let mut count = holding.lock().await;
                if *count > 0 {
                    *count += 1;
                    return Ok(());
                }
                match db::acquire(&self.ctx.pools.api, self.fence, self.id, resource).await? {
                    Acquired::Held => {
                        *count = 1;
                        return Ok(());
                    }
                    Acquired::Waiting(holder) if shown != Some(holder.deployment_id) => {
                        shown = Some(holder.deployment_id);
                        let waiting = label.blocked(&holder);
                        self.log
                            .info(format!("{}: {}", target.name, waiting.in_words()));
                        self.write(vec![CellRow {
                            state: CellState::Waiting,
                            waiting_for: serde_json::to_value(&waiting).ok(),
                            ..self.blank(s, target, a)
                        }])
                        .await?;
                    }
                    Acquired::Waiting(_) | Acquired::Retry => {}
                }
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    async fn give_back(&self, resource: &str) -> Result<(), EngineError> {
        let holding = self.holding(resource);
        let mut count = holding.lock().await;
        match *count {
            0 => {}
            1 => {
                db::release(&self.ctx.pools.api, self.id, resource).await?;
                *count = 0;
            }
            _ => *count -= 1,
        }
        Ok(())
    }

    /// Resets a target's cells from `action` on, for a retry.
    async fn reset_from(
        &self,
        s: usize,
        target: &DeployTarget,
        action: usize,
    ) -> Result<(), EngineError> {
        let cells: Vec<CellRow> = (action..self.steps[s].actions.len())
            .map(|a| self.blank(s, target, a))
            .collect();
        self.write(cells).await
    }

    async fn skip_cells(
        &self,
        s: usize,
        target: &DeployTarget,
        actions: &[usize],
        why: &str,
    ) -> Result<(), EngineError> {
        let now = OffsetDateTime::now_utc();
        let cells = actions
            .iter()
            .map(|&a| CellRow {
                state: CellState::Skipped,
                finished_at: Some(now),
                error: Some(why.to_owned()),
                ..self.blank(s, target, a)
            })
            .collect();
        self.write(cells).await
    }

    async fn finish_cell(
        &self,
        s: usize,
        target: &DeployTarget,
        a: usize,
        state: CellState,
        why: &str,
    ) -> Result<(), EngineError> {
        let now = OffsetDateTime::now_utc();
        self.write(vec![CellRow {
            state,
            started_at: Some(now),
            finished_at: Some(now),
            error: Some(why.to_owned()),
            ..self.blank(s, target, a)
        }])
        .await?;
        self.log.error(format!("{}: {why}", target.name));
        Ok(())
    }

    /// Gives every not yet finished cell of these targets in step `s` a final state.
    async fn finish_all(
        &self,
        s: usize,
        targets: &[&DeployTarget],
        state: CellState,
        why: &str,
    ) -> Result<(), EngineError> {
        let now = OffsetDateTime::now_utc();
        let mut cells = Vec::new();
        for target in targets {
            for a in 0..self.steps[s].actions.len() {
                if self
                    .cell(s, target.agent_id, a)
                    .is_some_and(|c| c.state.is_finished())
                {
                    continue;
                }
                cells.push(CellRow {
                    state,
                    finished_at: Some(now),
                    error: Some(why.to_owned()),
                    ..self.blank(s, target, a)
                });
            }
        }
        self.write(cells).await
    }

    fn blank(&self, s: usize, target: &DeployTarget, a: usize) -> CellRow {
        CellRow {
            step: s as i32,
            agent_id: target.agent_id,
            action: a as i32,
            target: target.name.clone(),
            state: CellState::Pending,
            waiting_for: None,
            command_id: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            outputs: serde_json::json!({}),
            error: None,
        }
    }

    fn cell(&self, s: usize, agent_id: i64, a: usize) -> Option<CellRow> {
        self.cells
            .lock()
            .expect("cells lock")
            .get(&(s, agent_id, a))
            .cloned()
    }

    /// Stores cells under the fence, then keeps them in memory.
    async fn write(&self, cells: Vec<CellRow>) -> Result<(), EngineError> {
        if cells.is_empty() {
            return Ok(());
        }
        db::write_cells(&self.ctx.pools.api, self.fence, self.id, &cells).await?;
        let mut memory = self.cells.lock().expect("cells lock");
        for cell in cells {
            memory.insert(
                (cell.step as usize, cell.agent_id, cell.action as usize),
                cell,
            );
        }
        Ok(())
    }

    /// Relays the agents' output still waiting for the log.
    pub async fn flush_output(&self) {
        self.dispatcher
            .flush(&self.ctx, self.fence.task_id, &self.log)
            .await;
    }

    /// Gives back every lock and mutex the deployment holds.
    pub async fn release_everything(&self) -> Result<(), EngineError> {
        self.held.lock().expect("held lock").clear();
        db::release_all(&self.ctx.pools.api, self.id).await?;
        Ok(())
    }
}

/// What a resource is, for saying what a cell waits for.
enum BlockedLabel {
    Lock { name: String, scope: &'static str },
    Machine { machine: String },
}

impl BlockedLabel {
    fn blocked(&self, holder: &db::Holder) -> BlockedBy {
        match self {
            Self::Lock { name, scope } => BlockedBy::Lock {
                name: name.clone(),
                scope: (*scope).to_owned(),
                deployment_id: holder.deployment_id,
                project: holder.project.clone(),
                since: holder.since,
            },
            Self::Machine { machine } => BlockedBy::MachineMutex {
                machine: machine.clone(),
                deployment_id: holder.deployment_id,
                project: holder.project.clone(),
                since: holder.since,
            },
        }
    }
}

fn describe_budget(budget: FailureBudget) -> String {
    match budget {
        FailureBudget::Count(n) => format!("{n} target(s)"),
        FailureBudget::Percent(p) => format!("under {p}% of the step's targets"),
    }
}

/// The targets stored by the first run, or picked now from the environment's agents:
/// enabled and not unhealthy, carrying a tag of some step, as the options filter them.
pub fn pick_targets(
    agents: Vec<db::EnvironmentAgent>,
    steps: &[Step],
    options: &DeploymentOptions,
    warn: &dyn Fn(String),
) -> Vec<DeployTarget> {
    let wanted: HashSet<String> = options.targets.iter().map(|t| t.to_lowercase()).collect();
    let unwanted: HashSet<String> = options
        .exclude_targets
        .iter()
        .map(|t| t.to_lowercase())
        .collect();
    let tags: HashSet<String> = steps
        .iter()
        .filter(|s| {
            !options
                .skip_steps
                .iter()
                .any(|skip| skip.eq_ignore_ascii_case(&s.name))
        })
        .flat_map(|s| s.target_tags.iter().map(|t| t.to_lowercase()))
        .collect();
    let mut picked = Vec::new();
    for agent in agents {
        let key = agent.name.to_lowercase();
        if (!wanted.is_empty() && !wanted.contains(&key)) || unwanted.contains(&key) {
            continue;
        }
        if !agent.tags.iter().any(|t| tags.contains(&t.to_lowercase())) {
            continue;
        }
        if agent.disabled {
            warn(format!("{}: skipped, the agent is disabled", agent.name));
            continue;
        }
        if agent.health == "unhealthy" {
            warn(format!(
                "{}: skipped, the agent is unhealthy ({})",
                agent.name,
                agent.health_reason.as_deref().unwrap_or("no reason given")
            ));
            continue;
        }
        picked.push(DeployTarget {
            agent_id: agent.id,
            name: agent.name,
            tags: agent.tags,
        });
    }
    picked
}
