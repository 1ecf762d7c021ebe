//! Running a claimed task: a supervisor turns however its run ends (success, error,
//! panic, cancel, lost lease) into a [`Finished`] for the claim loop, once the run's
//! log is stored. Both claimers
//! (the claim loop, and queueing with a free slot) hand their tasks here.

use std::sync::{Arc, Mutex};

use capstan_core::TaskState;
use capstan_db::queue::ClaimedTask;
use tokio_util::sync::CancellationToken;

use super::{
    Finished, Running, StopReason, TaskLog,
    kinds::{Ran, SentWithClaim, StopCause, TaskRun},
};
use crate::node::NodeContext;

/// Starts one claimed task under a supervisor that turns its end (success, error,
/// panic, cancel, fence) into a [`Finished`]. The caller holds a reservation for it.
/// `sent`: commands the claim's own statement sent for the run.
pub(crate) fn start(ctx: &Arc<NodeContext>, task: ClaimedTask, sent: Option<SentWithClaim>) {
    let runner = &ctx.runner;
    let wait = (task.started_at - task.queued_at).as_seconds_f64().max(0.0);
    ctx.metrics.queue_wait.record(wait);
    ctx.metrics.tasks_claimed.increment(1);
    let stop = CancellationToken::new();
    let reason = Arc::new(Mutex::new(None));
    runner.hold(
        task.id,
        Running {
            attempt: task.attempt,
            stop: stop.clone(),
            reason: reason.clone(),
        },
    );
    let Some(kind) = runner.kinds.get(&task.kind).cloned() else {
        // Claims name only known kinds, so this is a bug; fail loudly, not silently.
        let _ = runner.finished_tx.send(Finished {
            id: task.id,
            attempt: task.attempt,
            kind: task.kind.clone(),
            outcome: Some((
                TaskState::Failed,
                Some(format!(
                    "node {} does not know task kind `{}`",
                    ctx.state.name, task.kind
                )),
            )),
            parked_until: None,
            logged: false,
        });
        return;
    };
    let log = TaskLog::new(ctx.clone(), task.id, task.attempt);
    let run = TaskRun {
        ctx: ctx.clone(),
        id: task.id,
        attempt: task.attempt,
        args: task.args,
        stop: stop.clone(),
        log: log.clone(),
        sent,
        cause: StopCause::new(reason.clone()),
    };
    let finished_tx = runner.finished_tx.clone();
    let node_name = ctx.state.name.clone();
    let grace = kind.cancel_grace();
    tokio::spawn(async move {
        tracing::debug!(task.id = task.id, task.kind = %task.kind, task.attempt = task.attempt, "task started");
        let mut work = tokio::spawn(kind.run(run));
        let ended = tokio::select! {
            joined = &mut work => Some(joined),
            () = stop.cancelled() => {
                let cancelled = matches!(*reason.lock().expect("reason lock"), Some(StopReason::Cancelled));
                // A cancelled run of a kind that cleans up gets its grace; a fenced one
                // must write nothing more, so it is dropped at once.
                if cancelled && !grace.is_zero() {
                    let _ = tokio::time::timeout(grace, &mut work).await;
                }
                work.abort();
                None
            }
        };
        let stop_reason = reason.lock().expect("reason lock").clone();
        let mut parked_until = None;
        let outcome = match (ended, stop_reason) {
            (_, Some(StopReason::Fenced(why))) => {
                tracing::warn!(node.name = %node_name, task.id = task.id, task.attempt = task.attempt, "abandoned task {}: {why}", task.id);
                None
            }
            (Some(Ok(Ok(Ran::Done))), _) => Some((TaskState::Succeeded, None)),
            // Back to the queue until an operator answers; the slot is freed with it.
            (Some(Ok(Ok(Ran::Parked { why, until }))), _) => {
                parked_until = until;
                Some((TaskState::Queued, Some(why)))
            }
            (Some(Ok(Ok(Ran::Cancelled { why }))), _) => Some((TaskState::Cancelled, Some(why))),
            (Some(Ok(Err(reason))), _) => Some((TaskState::Failed, Some(reason))),
            (Some(Err(join)), _) if join.is_panic() => {
                tracing::error!(task.id = task.id, "task {} panicked: {join}", task.id);
                Some((
                    TaskState::Failed,
                    Some(format!(
                        "the task panicked on node {node_name}; the cause is in that node's log"
                    )),
                ))
            }
            (_, Some(StopReason::Cancelled)) | (None, None) | (Some(Err(_)), None) => Some((
                TaskState::Cancelled,
                Some("cancelled by request".to_owned()),
            )),
        };
        // The log is complete before the outcome says the task is finished, so a reader
        // that sees the outcome sees every line; a fenced run may add nothing.
        let logged = match outcome {
            Some(_) => log.finish().await,
            None => {
                log.abandon();
                false
            }
        };
        let _ = finished_tx.send(Finished {
            id: task.id,
            attempt: task.attempt,
            kind: task.kind,
            outcome,
            parked_until,
            logged,
        });
    });
}
