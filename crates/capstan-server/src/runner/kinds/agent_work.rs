//! Running commands on agents for a task: at most `max_parallel` at once, their
//! output copied into the task's log as it arrives (prefixed by the agent's name), each
//! agent's outcome collected. The agents may poll any node; output and results reach
//! this node through the database, woken by NOTIFY and checked every second anyway.
//!
//! A task whose node-lost policy is `resume` keeps its commands when its node is lost:
//! the next attempt adopts them. Finished ones count as done, open ones are waited for
//! (their output relayed, their deadline counted from the adoption), and only targets
//! that never got a command are sent one. What was sent is never sent again.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use capstan_core::CommandState;
use capstan_db::{
    agents::Target,
    mailbox::{self, Delivery, NewCommand, Outcome},
};
use tokio::time::Instant;

use super::{StopCause, TaskRun};
use crate::{agents::Sending, node::NodeContext};

/// Time on top of a command's timeout for the agent to hear of it and report: as
/// long as the timeout itself, at most this.
const MAX_REPORT_GRACE: Duration = Duration::from_secs(10);
/// How often progress is read when no notification comes.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// One command for one agent.
pub struct AgentJob {
    pub target: Target,
    pub body: serde_json::Value,
}

/// How one agent's command ended.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub target: Target,
    /// Succeeded, failed, timed out or cancelled.
    pub state: CommandState,
    pub error: Option<String>,
    pub outputs: serde_json::Value,
}

impl JobOutcome {
    /// "succeeded", "failed: the script exited with code 3", ...
    pub fn describe(&self) -> String {
        match &self.error {
            Some(error) => format!("{}: {error}", self.state.in_words()),
            None => self.state.in_words().to_owned(),
        }
    }
}

/// Commands that the statement claiming the task already put in agents' mailboxes:
/// the first jobs of its run, in order. The run hands them to the polls this node holds
/// once it listens for their results, so no report can come before it does.
pub struct SentWithClaim {
    pub sending: Sending,
    /// (agent id, command id), in the order of the run's jobs.
    pub commands: Vec<(i64, i64)>,
}

/// Ends the task's open commands if the run stops before they finish (cancelled,
/// failed, dropped), so no agent goes on working for a task that is over.
///
/// Not when the run was fenced: the task is no longer this run's. Rescue decides, and
/// either housekeeping closes the commands (the task does not resume) or the next
/// attempt adopts them (it does).
struct CloseOnDrop {
    ctx: Arc<NodeContext>,
    task_id: i64,
    attempt: i32,
    cause: StopCause,
    armed: bool,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if !self.armed || self.cause.fenced() {
            return;
        }
        let ctx = self.ctx.clone();
        let (task_id, attempt) = (self.task_id, self.attempt);
        tokio::spawn(async move {
            let why = "the task was stopped";
            if let Err(e) =
                mailbox::cancel_task_commands(&ctx.pools.api, task_id, attempt, why).await
            {
                // Housekeeping closes them within a heartbeat anyway.
                tracing::warn!(
                    task.id = task_id,
                    "cannot cancel the task's agent commands: {e}"
                );
            }
        });
    }
}

/// Runs `jobs`, at most `max_parallel` at once, each allowed `timeout` on its agent.
/// Jobs that the claim already sent (`run.sent`) are taken as sent, and so are those an
/// earlier attempt of a resumable task sent.
pub async fn run_on_agents(
    run: &mut TaskRun,
    jobs: Vec<AgentJob>,
    max_parallel: usize,
    timeout: Duration,
) -> Result<Vec<JobOutcome>, String> {
    let sent = run.sent.take();
    let run: &TaskRun = run;
    let ctx = &run.ctx;
    let mut guard = CloseOnDrop {
        ctx: ctx.clone(),
        task_id: run.id,
        attempt: run.attempt,
        cause: run.cause.clone(),
        armed: true,
    };
    let mut waker = ctx.agents.tasks.subscribe(run.id);
    let mut waiting: VecDeque<AgentJob> = jobs.into();
    let mut in_flight: HashMap<i64, (Target, Instant)> = HashMap::new();
    let mut outcomes = Vec::new();
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let allowed = timeout + timeout.min(MAX_REPORT_GRACE);
    if run.attempt > 1 {
        adopt(run, &mut waiting, allowed, &mut in_flight, &mut outcomes).await?;
    }
    if let Some(sent) = sent {
        let mut taken = Vec::with_capacity(sent.commands.len());
        for (agent_id, id) in sent.commands {
            let job = waiting
                .pop_front()
                .filter(|job| job.target.id == agent_id)
                .ok_or("the commands sent with the claim do not match the task's agents")?;
            taken.push((id, job));
        }
        let deadline = Instant::now() + allowed;
        in_hand(
            run.id,
            sent.sending,
            taken,
            timeout_ms,
            deadline,
            &mut in_flight,
        );
    }
    loop {
        let room = max_parallel.max(1).saturating_sub(in_flight.len());
        if room > 0 && !waiting.is_empty() {
            let batch: Vec<AgentJob> = waiting.drain(..room.min(waiting.len())).collect();
            let commands: Vec<NewCommand> = batch
                .iter()
                .map(|job| NewCommand {
                    agent_id: job.target.id,
                    body: job.body.clone(),
                    timeout_ms,
                })
                .collect();
            // Polls held by this node answer from what is handed over, not when the
            // NOTIFY comes back.
            let sending = ctx
                .agents
                .mailboxes
                .sending(commands.iter().map(|c| c.agent_id));
            let ids = mailbox::send(&ctx.pools.api, run.id, run.attempt, &commands)
                .await
                .map_err(|e| format!("cannot send commands to agents: {e}"))?;
            if ids.len() != commands.len() {
                return Err(format!(
                    "attempt {} no longer holds the task (its lease was lost); no command was sent",
                    run.attempt
                ));
            }
            let deadline = Instant::now() + allowed;
            let taken = ids.into_iter().zip(batch).collect();
            in_hand(run.id, sending, taken, timeout_ms, deadline, &mut in_flight);
        }
        if in_flight.is_empty() {
            break;
        }
        let next_deadline = in_flight.values().map(|(_, d)| *d).min();
        let wake_at = (Instant::now() + FALLBACK_POLL).min(next_deadline.unwrap_or(Instant::now()));
        tokio::select! {
            _ = waker.changes.changed() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }

        let ids: Vec<i64> = in_flight.keys().copied().collect();
        let finished = mailbox::finished(&ctx.pools.api, &ids)
            .await
            .map_err(|e| format!("cannot read the agents' results: {e}"))?;
        relay_output(run, |id| in_flight.get(&id).map(|(t, _)| t.name.as_str())).await?;
        for done in finished {
            if let Some((target, _)) = in_flight.remove(&done.id) {
                outcomes.push(report(run, target, done));
            }
        }
        let now = Instant::now();
        let expired: Vec<i64> = in_flight
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if !expired.is_empty() {
            let why = format!(
                "the agent did not report within {} (offline, or cut off from the cluster)",
                humantime::format_duration(allowed)
            );
            mailbox::expire(&ctx.pools.api, &expired, &why)
                .await
                .map_err(|e| format!("cannot time out agent commands: {e}"))?;
            for id in expired {
                if let Some((target, _)) = in_flight.remove(&id) {
                    outcomes.push(report(
                        run,
                        target,
                        Outcome {
                            id,
                            state: CommandState::TimedOut,
                            exit_code: None,
                            error: Some(why.clone()),
                            outputs: serde_json::json!({}),
                        },
                    ));
                }
            }
        }
    }
    guard.armed = false;
    Ok(outcomes)
}

/// Takes over the commands earlier attempts sent, if the task resumes: a finished one
/// is its job's outcome, an open one is in flight from now, and either way its job is
/// not sent again.
async fn adopt(
    run: &TaskRun,
    waiting: &mut VecDeque<AgentJob>,
    allowed: Duration,
    in_flight: &mut HashMap<i64, (Target, Instant)>,
    outcomes: &mut Vec<JobOutcome>,
) -> Result<(), String> {
    let found = mailbox::of_task_for_resume(&run.ctx.pools.api, run.id)
        .await
        .map_err(|e| format!("cannot read the commands earlier attempts sent: {e}"))?;
    if found.is_empty() {
        return Ok(());
    }
    // Oldest first, so an agent's latest command is the one kept.
    let mut by_agent: HashMap<i64, mailbox::Adopted> =
        found.into_iter().map(|c| (c.agent_id, c)).collect();
    let deadline = Instant::now() + allowed;
    let (mut open, mut finished) = (0, Vec::new());
    let mut unsent = VecDeque::with_capacity(waiting.len());
    for job in waiting.drain(..) {
        match by_agent.remove(&job.target.id) {
            Some(command) if command.outcome.state.is_open() => {
                open += 1;
                in_flight.insert(command.outcome.id, (job.target, deadline));
            }
            Some(command) => finished.push((job.target, command.outcome)),
            None => unsent.push_back(job),
        }
    }
    *waiting = unsent;
    let done = finished.len();
    run.log.info(format!(
        "attempt {} resumes the commands sent before: {done} finished, {open} still running, {} not sent yet",
        run.attempt,
        waiting.len()
    ));
    // Output of commands that finished while no attempt ran is still waiting; it goes
    // into the log before their outcomes, as it would have.
    let finished_names: HashMap<i64, &str> = finished
        .iter()
        .map(|(t, o)| (o.id, t.name.as_str()))
        .collect();
    relay_output(run, |id| {
        in_flight
            .get(&id)
            .map(|(t, _)| t.name.as_str())
            .or_else(|| finished_names.get(&id).copied())
    })
    .await?;
    for (target, outcome) in finished {
        outcomes.push(report(run, target, outcome));
    }
    Ok(())
}

/// Committed commands, each with its job: in flight until `deadline`, and handed to the
/// polls this node holds.
fn in_hand(
    task_id: i64,
    sending: Sending,
    committed: Vec<(i64, AgentJob)>,
    timeout_ms: i64,
    deadline: Instant,
    in_flight: &mut HashMap<i64, (Target, Instant)>,
) {
    let mut handed = Vec::with_capacity(committed.len());
    for (id, job) in committed {
        handed.push((
            job.target.id,
            Delivery {
                id,
                task_id,
                body: Some(job.body),
                timeout_ms,
                cancel: false,
            },
        ));
        in_flight.insert(id, (job.target, deadline));
    }
    sending.handed_over(handed);
}

/// Copies output that arrived for the task into its log, each line under the name of
/// its command's agent.
async fn relay_output<'a>(
    run: &TaskRun,
    agent_of: impl Fn(i64) -> Option<&'a str>,
) -> Result<(), String> {
    let lines = mailbox::take_output(&run.ctx.pools.api, run.id)
        .await
        .map_err(|e| format!("cannot read the agents' output: {e}"))?;
    for line in lines {
        let agent = agent_of(line.command_id).unwrap_or("agent");
        let text = format!("{agent}: {}", line.text);
        match line.stream.as_str() {
            "stderr" => run.log.warn(text),
            _ => run.log.info(text),
        }
    }
    Ok(())
}

fn report(run: &TaskRun, target: Target, done: Outcome) -> JobOutcome {
    let outcome = JobOutcome {
        target,
        state: done.state,
        error: done.error,
        outputs: done.outputs,
    };
    let line = format!("{}: {}", outcome.target.name, outcome.describe());
    if outcome.state == CommandState::Succeeded {
        run.log.info(line);
    } else {
        run.log.error(line);
    }
    outcome
}
