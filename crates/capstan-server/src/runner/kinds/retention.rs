//! `task-history-retention`: deletes finished tasks, with their attempts and logs,
//! older than a configured age. Queued by every node's scheduler once per period;
//! idempotent, so a lost node's run is simply queued again.

use std::time::Duration;

use capstan_blob::{BlobStore, ObjectError, task_log};
use capstan_core::NodeLostPolicy;
use capstan_db::task_logs::{self, LogDeletion};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{Prepared, Ran, TaskKind, TaskRun, parse_args};

pub const TASK_HISTORY_RETENTION: &str = "task-history-retention";

/// How many rows one delete statement removes, so no statement holds locks for long.
const BATCH: i64 = 5000;
/// Tasks with logs deleted per round: each needs its objects deleted first.
const LOG_BATCH: i64 = 100;
/// The most objects one listing of a log's prefix returns.
const LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionArgs {
    /// Delete tasks that finished more than this many milliseconds ago.
    pub older_than_ms: u64,
}

pub struct TaskHistoryRetention;

impl TaskHistoryRetention {
    pub fn args(older_than: Duration) -> serde_json::Value {
        serde_json::json!({ "older_than_ms": older_than.as_millis() as u64 })
    }
}

impl TaskKind for TaskHistoryRetention {
    fn name(&self) -> &'static str {
        TASK_HISTORY_RETENTION
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: RetentionArgs = parse_args(args)?;
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: RetentionArgs = parse_args(&run.args)?;
            let older_than = Duration::from_millis(args.older_than_ms);
            let age = humantime::format_duration(older_than);
            let with_logs = delete_old_logs(&run, older_than, LogDeletion::TaskAndLog).await?;
            let mut deleted = 0;
            loop {
                let n =
                    capstan_db::queue::delete_finished(&run.ctx.pools.liveness, older_than, BATCH)
                        .await
                        .map_err(|e| format!("deleting old tasks failed after {deleted}: {e}"))?;
                deleted += n;
                if n < BATCH as u64 || run.stop.is_cancelled() {
                    break;
                }
            }
            run.log.info(format!(
                "deleted {} task(s) finished more than {age} ago, {with_logs} of them with their logs",
                deleted + with_logs
            ));
            tracing::info!(
                task.id = run.id,
                deleted = deleted + with_logs,
                "task history retention deleted {} task(s) finished more than {age} ago",
                deleted + with_logs
            );
            Ok(())
        }
        .map(|ran| ran.map(|()| Ran::Done))
        .boxed()
    }
}

/// Deletes the logs of tasks that finished more than `older_than` ago, and with
/// [`LogDeletion::TaskAndLog`] the tasks too: the log's objects first, then the rows,
/// so no object outlives the row that says where it is. A log whose objects cannot be
/// deleted now stays for the next run. Returns how many logs went.
pub(super) async fn delete_old_logs(
    run: &TaskRun,
    older_than: Duration,
    what: LogDeletion,
) -> Result<u64, String> {
    let ctx = &run.ctx;
    let mut deleted = 0;
    loop {
        let doomed = task_logs::finished_with_logs(&ctx.pools.api, older_than, LOG_BATCH)
            .await
            .map_err(|e| format!("finding old logs failed after {deleted}: {e}"))?;
        let mut cleared = Vec::with_capacity(doomed.len());
        for log in &doomed {
            match delete_log_objects(&ctx.blob, log.task_id).await {
                Ok(()) => cleared.push(log.clone()),
                Err(e) => run.log.warn(format!(
                    "kept the log of task {} for now: cannot delete it: {e}",
                    log.task_id
                )),
            }
        }
        deleted += task_logs::delete_found_logs(&ctx.pools.api, &cleared, what)
            .await
            .map_err(|e| format!("deleting old logs failed after {deleted}: {e}"))?;
        // Logs whose objects could not be deleted would come back first every time.
        if doomed.len() < LOG_BATCH as usize || cleared.is_empty() || run.stop.is_cancelled() {
            return Ok(deleted);
        }
    }
}

/// Deletes every object under a task's log prefix: segments, the compacted log, and
/// objects no row names (a fenced run's, a retried upload's).
async fn delete_log_objects(blob: &BlobStore, task_id: i64) -> Result<(), ObjectError> {
    let prefix = task_log::prefix(task_id);
    loop {
        let keys = blob.list(&prefix, LIST_LIMIT).await?;
        for key in &keys {
            blob.delete(key).await?;
        }
        if keys.len() < LIST_LIMIT {
            return Ok(());
        }
    }
}
