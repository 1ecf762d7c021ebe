//! The claim loop: one per node. Each cycle writes the outcomes of finished runs and
//! claims up to the free slots in one transaction, then starts what it claimed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use capstan_db::queue::{self, Claimer, Outcome};
use tokio::time::MissedTickBehavior;

use super::{Finished, log_compaction, supervise::start};
use crate::node::NodeContext;

/// How often the loop looks for work when no notification woke it: notifications are
/// hints and a dropped LISTEN connection loses them.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a notification from another node may wait for a cycle this node runs
/// anyway. Short against the latency targets, long against a claim per notification.
pub(crate) const OTHERS_DELAY: Duration = Duration::from_millis(1);
/// How long finished outcomes may wait for a claim to share their statement with,
/// while other tasks run here. Under load this halves the statements per task; a
/// busy node never waits, since it claims on every cycle anyway, a full one writes at
/// once, and so does one with nothing else running.
const OUTCOME_LINGER: Duration = Duration::from_millis(5);
/// Outcomes also linger when they come this soon after the node's last statement:
/// tasks are streaming through (created, claimed on create and finished one after
/// another), so more are about to join. Once lingering, each outcome comes right after
/// the statement before, so the batching holds for as long as the stream does. A lone
/// task, or scripts on agents run one after another (a few ms each), writes at once.
const STREAMING_WITHIN: Duration = Duration::from_millis(2);
/// Pause after a failed cycle, so an unreachable database is not hammered.
const RETRY_DELAY: Duration = Duration::from_millis(250);

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let runner = &ctx.runner;
    let mut finished_rx = runner
        .finished_rx
        .lock()
        .expect("finished_rx lock")
        .take()
        .expect("one claim loop per node");
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending: Vec<Outcome> = Vec::new();
    // The kind of each pending outcome, and whether its run stored a log.
    let mut pending_kinds: Vec<(String, bool)> = Vec::new();
    let mut look_for_work = true;
    let mut others_due: Option<tokio::time::Instant> = None;
    let mut outcomes_due: Option<tokio::time::Instant> = None;
    let mut failing = false;
    let mut last_cycle: Option<Instant> = None;
    loop {
        tokio::select! {
            finished = finished_rx.recv() => {
                let Some(finished) = finished else { return };
                accept(runner, finished, &mut pending, &mut pending_kinds);
            }
            () = runner.wake.notified() => look_for_work = true,
            () = runner.wake_for_others.notified(), if others_due.is_none() => {
                others_due = Some(tokio::time::Instant::now() + OTHERS_DELAY);
            }
            () = sleep_until_due(others_due) => {
                others_due = None;
                look_for_work = true;
            }
            () = sleep_until_due(outcomes_due) => {}
            _ = poll.tick() => look_for_work = true,
        }
        while let Ok(finished) = finished_rx.try_recv() {
            accept(runner, finished, &mut pending, &mut pending_kinds);
        }

        let want = if look_for_work {
            runner.reserve(u32::MAX, pending.len())
        } else {
            0
        };
        if pending.is_empty() && want == 0 {
            continue;
        }
        let slots_left = (runner.held() as u32) < ctx.state.task_cap();
        // With nothing else running here and no stream of tasks, no claim or outcome
        // is coming to share the statement with: a lone task (a script someone waits
        // for) finishes without the wait.
        let others_running = runner.held() > pending.len();
        let streaming = last_cycle.is_some_and(|at| at.elapsed() < STREAMING_WITHIN);
        if want == 0 && slots_left && (others_running || streaming) && !ctx.state.draining() {
            // Only outcomes to write, and room for new work meanwhile: give a claim a
            // moment to come along. A full node writes at once to free its slots.
            let due =
                *outcomes_due.get_or_insert_with(|| tokio::time::Instant::now() + OUTCOME_LINGER);
            if due > tokio::time::Instant::now() {
                continue;
            }
        }
        outcomes_due = None;
        if want > 0 {
            // This claim sees every task queued before it starts.
            others_due = None;
        }
        let claimer = Claimer {
            node_id: ctx.state.id,
            lease_ttl: runner.lease_ttl(),
            kinds: runner.kind_names(),
        };
        let started = Instant::now();
        last_cycle = Some(started);
        match queue::complete_and_claim(&ctx.pools.liveness, claimer, &pending, want).await {
            Ok(cycle) => {
                ctx.metrics
                    .claim_duration
                    .record(started.elapsed().as_secs_f64());
                if failing {
                    tracing::info!(node.name = %ctx.state.name, "task queue reachable again");
                    failing = false;
                }
                for (outcome, (kind, logged)) in pending.drain(..).zip(pending_kinds.drain(..)) {
                    runner.release(outcome.id);
                    if cycle.completed.contains(&outcome.id) {
                        ctx.metrics.record_finished(&kind, outcome.state.as_str());
                        // A parked task's log goes on with its next attempt.
                        if logged && outcome.state.is_finished() {
                            log_compaction::spawn(&ctx, outcome.id);
                        }
                    } else {
                        ctx.metrics.tasks_fenced.increment(1);
                        tracing::warn!(
                            node.name = %ctx.state.name,
                            task.id = outcome.id,
                            task.attempt = outcome.attempt,
                            "the outcome of task {} attempt {} was refused: the lease was lost and another node took the task over",
                            outcome.id, outcome.attempt
                        );
                    }
                }
                if want > 0 {
                    // Fewer than asked for means the queue has nothing more for us;
                    // wait for a notification or the poll.
                    look_for_work = cycle.claimed.len() as u32 == want;
                }
                for task in cycle.claimed {
                    start(&ctx, task, None);
                }
                runner.unreserve(want);
            }
            Err(e) => {
                runner.unreserve(want);
                if !failing {
                    tracing::warn!(node.name = %ctx.state.name, "claiming tasks failed: {e}; retrying");
                    failing = true;
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn accept(
    runner: &super::Runner,
    finished: Finished,
    pending: &mut Vec<Outcome>,
    pending_kinds: &mut Vec<(String, bool)>,
) {
    match finished.outcome {
        Some((state, error)) => {
            pending.push(Outcome {
                id: finished.id,
                attempt: finished.attempt,
                state,
                error,
                parked_until: finished.parked_until,
            });
            pending_kinds.push((finished.kind, finished.logged));
        }
        // Fenced: the task is someone else's now; only the slot is ours to free.
        None => runner.release(finished.id),
    }
}
