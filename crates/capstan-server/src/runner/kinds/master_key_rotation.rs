//! `master-key-rotation`: makes a master key version the active one, then re-encrypts
//! every value under an older version to it, in batches. Queued by
//! `POST /api/master-key/rotate`. Every step is idempotent (activating an active
//! version is a no-op; a batch only takes values not yet under the version), so a run
//! whose node is lost is simply queued again.

use std::time::{Duration, Instant};

use capstan_core::NodeLostPolicy;
use capstan_db::secrets as db;
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{Prepared, Ran, TaskKind, TaskRun, parse_args};

pub const MASTER_KEY_ROTATION: &str = "master-key-rotation";

/// Rotations run one at a time across the cluster.
pub const CONCURRENCY_KEY: &str = "master-key-rotation";

/// Values re-encrypted per transaction: small enough that row locks are brief.
const BATCH: i64 = 500;
/// How long to wait before looking again when every value left is locked by another
/// transaction (a concurrent write or delete of it).
const LOCKED_RETRY: Duration = Duration::from_millis(200);
/// How often the task log reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The names of live nodes that do not hold `version`.
pub(crate) async fn nodes_lacking(
    db: &sqlx::PgPool,
    version: i32,
) -> Result<Vec<String>, capstan_db::DbError> {
    Ok(capstan_db::nodes::live_key_versions(db)
        .await?
        .into_iter()
        .filter(|n| !n.key_versions.contains(&version))
        .map(|n| n.name)
        .collect())
}

/// Why a rotation to `version` must wait for `nodes`.
pub(crate) fn lacking_key(version: i32, nodes: &[String]) -> String {
    let names = nodes
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let (noun, verb) = if nodes.len() == 1 {
        ("node", "does")
    } else {
        ("nodes", "do")
    };
    format!(
        "{noun} {names} {verb} not hold master key version {version}: restart {} with \
         CAPSTAN_MASTER_KEY set to the new key and CAPSTAN_MASTER_KEY_PREVIOUS to the old one, \
         then rotate again (see docs/security.md)",
        if nodes.len() == 1 { "it" } else { "them" }
    )
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationArgs {
    /// The version to activate and re-encrypt every value to.
    pub version: i32,
}

pub struct MasterKeyRotation;

impl MasterKeyRotation {
    pub fn args(version: i32) -> serde_json::Value {
        serde_json::json!({ "version": version })
    }
}

impl TaskKind for MasterKeyRotation {
    fn name(&self) -> &'static str {
        MASTER_KEY_ROTATION
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: RotationArgs = parse_args(args)?;
        if parsed.version < 1 {
            return Err("`version` must be a key version (1 or more)".to_owned());
        }
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let RotationArgs { version } = parse_args(&run.args)?;
            let ctx = &run.ctx;
            let node = &ctx.state.name;
            if !ctx.secrets.holds(version) {
                return Err(format!(
                    "node `{node}` does not hold master key version {version}; restart it with \
                     that key in CAPSTAN_MASTER_KEY"
                ));
            }
            // Checked here as well as by the API: the task can be queued directly, and a
            // node may have started between the request and this run.
            let lacking = nodes_lacking(&ctx.pools.api, version)
                .await
                .map_err(|e| format!("reading the nodes' key versions failed: {e}"))?;
            if !lacking.is_empty() {
                return Err(lacking_key(version, &lacking));
            }
            let activated = db::activate(&ctx.pools.api, version)
                .await
                .map_err(|e| match e {
                    capstan_db::DbError::NotFound => {
                        format!("there is no master key version {version}")
                    }
                    other => format!("activating key version {version} failed: {other}"),
                })?;
            if activated {
                run.log.info(format!(
                    "activated master key version {version}: every node seals new values under it from now on"
                ));
                tracing::info!(
                    task.id = run.id,
                    key_version = version,
                    "activated master key version {version}"
                );
            } else {
                run.log
                    .info(format!("master key version {version} is already active"));
            }

            let count = |what: &'static str| async move {
                db::count_not_under(&ctx.pools.api, version)
                    .await
                    .map_err(|e| format!("{what}: {e}"))
            };
            let total = count("counting values to re-encrypt failed").await?;
            run.log.info(format!(
                "re-encrypting {total} value(s) under older versions to version {version}, {BATCH} per transaction"
            ));
            let started = Instant::now();
            let mut reported = Instant::now();
            let mut rotated: u64 = 0;
            let mut conn = ctx
                .pools
                .api
                .acquire()
                .await
                .map_err(|e| format!("no database connection: {e}"))?;
            loop {
                if run.stop.is_cancelled() {
                    return Err(format!(
                        "stopped after re-encrypting {rotated} value(s); rotate again to finish"
                    ));
                }
                let batch = ctx
                    .secrets
                    .rotate_batch(&mut conn, version, BATCH)
                    .await
                    .map_err(|e| format!("re-encrypting failed after {rotated} value(s): {e}"))?;
                rotated += batch.rotated;
                if batch.rotated == 0 {
                    let left = count("counting values left failed").await?;
                    if left == 0 {
                        break;
                    }
                    tokio::time::sleep(LOCKED_RETRY).await;
                }
                if reported.elapsed() >= PROGRESS_EVERY {
                    run.log
                        .info(format!("re-encrypted {rotated} of {total} value(s)"));
                    reported = Instant::now();
                }
            }
            run.log.info(format!(
                "done: re-encrypted {rotated} value(s) in {}; every value is under key version {version}",
                humantime::format_duration(Duration::from_millis(
                    started.elapsed().as_millis() as u64
                ))
            ));
            tracing::info!(
                task.id = run.id,
                key_version = version,
                rotated,
                "master key rotation to version {version} re-encrypted {rotated} value(s)"
            );
            Ok(())
        }
        .map(|ran| ran.map(|()| Ran::Done))
        .boxed()
    }
}
