//! `blob-retention`: keeps the newest N versions of each package and deletes the logs
//! and artifacts of tasks that finished more than a configured age ago (the tasks
//! stay, until task-history-retention). Package and artifact rows go first, their blobs
//! following through the sweep; a log's objects go before its rows. Either way a run
//! cut short loses nothing and leaves nothing orphaned. Queued by every node's
//! scheduler once per period.

use std::time::Duration;

use capstan_core::NodeLostPolicy;
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use capstan_db::task_logs::LogDeletion;

use super::{Prepared, Ran, TaskKind, TaskRun, parse_args, retention::delete_old_logs};

pub const BLOB_RETENTION: &str = "blob-retention";

/// Age past which a probe object is one a node left behind: a probe lasts seconds.
const STALE_PROBE: Duration = Duration::from_secs(3600);

/// Rows one statement deletes, so no statement holds locks for long.
const BATCH: i64 = 1000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRetentionArgs {
    /// Versions of each package to keep, newest first; 0 keeps all.
    pub keep_versions: u32,
    /// Delete artifacts of tasks that finished more than this many milliseconds ago.
    pub task_blobs_older_than_ms: u64,
}

pub struct BlobRetention;

impl BlobRetention {
    pub fn args(keep_versions: u32, task_blobs_older_than: Duration) -> serde_json::Value {
        serde_json::json!({
            "keep_versions": keep_versions,
            "task_blobs_older_than_ms": task_blobs_older_than.as_millis() as u64,
        })
    }
}

impl TaskKind for BlobRetention {
    fn name(&self) -> &'static str {
        BLOB_RETENTION
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: BlobRetentionArgs = parse_args(args)?;
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: BlobRetentionArgs = parse_args(&run.args)?;
            let db = &run.ctx.pools.api;
            let mut report = Vec::new();

            if args.keep_versions > 0 {
                let mut deleted = Vec::new();
                loop {
                    let batch = capstan_db::packages::delete_beyond_newest(
                        db,
                        i64::from(args.keep_versions),
                        BATCH,
                    )
                    .await
                    .map_err(|e| format!("deleting old package versions failed: {e}"))?;
                    let n = batch.len();
                    deleted.extend(
                        batch
                            .into_iter()
                            .map(|p| format!("{} {}", p.package_id, p.version)),
                    );
                    if n < BATCH as usize || run.stop.is_cancelled() {
                        break;
                    }
                }
                report.push(if deleted.is_empty() {
                    format!("no package has more than {} versions", args.keep_versions)
                } else {
                    format!(
                        "deleted {} package version(s) beyond the newest {} of each: {}",
                        deleted.len(),
                        args.keep_versions,
                        deleted.join(", ")
                    )
                });
            }

            let older_than = Duration::from_millis(args.task_blobs_older_than_ms);
            let cutoff = time::OffsetDateTime::now_utc()
                - time::Duration::try_from(older_than).unwrap_or(time::Duration::MAX);
            let mut artifacts = 0;
            loop {
                let n = capstan_db::artifacts::delete_of_tasks_finished_before(db, cutoff, BATCH)
                    .await
                    .map_err(|e| format!("deleting old artifacts failed after {artifacts}: {e}"))?;
                artifacts += n;
                if n < BATCH as u64 || run.stop.is_cancelled() {
                    break;
                }
            }
            let logs = delete_old_logs(&run, older_than, LogDeletion::LogOnly).await?;
            report.push(format!(
                "deleted the logs of {logs} and {artifacts} artifact(s) of tasks that finished more than {} ago",
                humantime::format_duration(older_than)
            ));
            let probes = run
                .ctx
                .blob
                .delete_stale_probes(STALE_PROBE)
                .await
                .map_err(|e| format!("deleting stale probe objects failed: {e}"))?;
            if probes > 0 {
                report.push(format!(
                    "deleted {probes} probe object(s) left by nodes stopped mid-probe"
                ));
            }
            run.ctx.blob_sweep.notify_one();
            for line in report {
                tracing::info!(task.id = run.id, "blob retention: {line}");
                run.log.info(line);
            }
            Ok(())
        }
        .map(|ran| ran.map(|()| Ran::Done))
        .boxed()
    }
}
