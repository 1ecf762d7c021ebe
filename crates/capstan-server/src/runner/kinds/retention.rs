//! `task-history-retention`: deletes finished tasks, and their attempts, older than a
//! configured age. Queued by every node's scheduler once per period; idempotent, so a
//! lost node's run is simply queued again.

use std::time::Duration;

use capstan_core::NodeLostPolicy;
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{Prepared, TaskKind, TaskRun, parse_args};

pub const TASK_HISTORY_RETENTION: &str = "task-history-retention";

/// How many rows one delete statement removes, so no statement holds locks for long.
const BATCH: i64 = 5000;

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

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<(), String>> {
        async move {
            let args: RetentionArgs = parse_args(&run.args)?;
            let older_than = Duration::from_millis(args.older_than_ms);
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
            tracing::info!(
                task.id = run.id,
                deleted,
                "task history retention deleted {deleted} task(s) finished more than {} ago",
                humantime::format_duration(older_than)
            );
            Ok(())
        }
        .boxed()
    }
}
