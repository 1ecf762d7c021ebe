//! `release-retention`: deletes the releases a phase's retention no longer keeps.
//!
//! A release is judged by the latest phase it reached (one that reached none by the
//! first phase). Never deleted: the project's newest release, the release running in
//! any project × environment now (its latest successful deployment), the release of
//! the latest deployment of a project × environment whatever its state (what the
//! dashboard shows), and one with a deployment queued, running or awaiting an answer.
//! Deleting a release deletes its deployments (they reference it); the rules above
//! keep every deployment the dashboard shows, and the audit row of each deletion
//! counts the deployments that went with it. Each deletion locks the release and
//! checks the rules again, so a deployment queued meanwhile keeps it.
//! Queued by every node's scheduler once per period, so one node runs it at a time.

use std::collections::HashSet;

use capstan_core::{
    NodeLostPolicy,
    lifecycle::{Judged, reached_phase, to_delete},
};
use capstan_db::{DbError, audit::Actor, lifecycles, releases};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use crate::{
    audit::Change,
    node::NodeContext,
    runner::{
        TaskLog,
        kinds::{Prepared, Ran, TaskKind, TaskRun, parse_args},
    },
};

pub const RELEASE_RETENTION: &str = "release-retention";

/// The actor name of retention's audit rows.
pub const RETENTION_ACTOR: &str = "release-retention";

/// The most releases of one project judged per run (the newest), and deleted per run,
/// so a first run over a long history ends in time and the next period goes on.
const MAX_JUDGED: i64 = 10_000;
const MAX_DELETED_PER_RUN: usize = 1_000;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRetentionArgs {}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub deleted: u64,
    /// Releases that became protected between the judgement and their deletion.
    pub kept: u64,
}

pub struct ReleaseRetention;

impl ReleaseRetention {
    pub fn args() -> serde_json::Value {
        serde_json::json!({})
    }
}

impl TaskKind for ReleaseRetention {
    fn name(&self) -> &'static str {
        RELEASE_RETENTION
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: ReleaseRetentionArgs = parse_args(args)?;
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let swept = sweep(&run.ctx, &run.log)
                .await
                .map_err(|e| format!("release retention stopped: {e}"))?;
            run.log.info(format!(
                "deleted {} release(s) no phase keeps any more",
                swept.deleted
            ));
            if swept.deleted > 0 {
                tracing::info!(
                    task.id = run.id,
                    deleted = swept.deleted,
                    "release retention deleted {} release(s)",
                    swept.deleted
                );
            }
            Ok(Ran::Done)
        }
        .boxed()
    }
}

/// Deletes, project by project, the releases their lifecycle's retentions no longer
/// keep.
pub async fn sweep(ctx: &NodeContext, log: &TaskLog) -> Result<Swept, DbError> {
    let db = &ctx.pools.api;
    let mut swept = Swept::default();
    for (project, lifecycle) in lifecycles::projects_with_retention(db).await? {
        let mut conn = db.acquire().await?;
        let phases = lifecycles::get(&mut conn, lifecycle).await?.phases;
        drop(conn);
        let rows = lifecycles::releases_to_judge(db, project, MAX_JUDGED).await?;
        let judged: Vec<Judged> = rows
            .iter()
            .map(|r| Judged {
                id: r.id,
                reached: reached_phase(&phases, &r.succeeded.iter().copied().collect()),
                age_days: u64::try_from(r.age_days).unwrap_or(0),
                protected: r.protected_as.is_some(),
            })
            .collect();
        let doomed: HashSet<i64> = to_delete(&phases, &judged).into_iter().collect();
        for (row, judged) in rows.iter().zip(&judged) {
            if !doomed.contains(&row.id) {
                continue;
            }
            if swept.deleted as usize >= MAX_DELETED_PER_RUN {
                log.info(format!(
                    "deleted {MAX_DELETED_PER_RUN} releases; the next run goes on"
                ));
                return Ok(swept);
            }
            let phase = phases
                .get(judged.reached.unwrap_or(0))
                .map_or("", |p| p.name.as_str());
            match delete(ctx, row.id, phase).await? {
                Deleted::Yes { deployments } => {
                    swept.deleted += 1;
                    log.info(format!(
                        "deleted release {} (id {}) of project {project}, latest phase {phase}, with {deployments} deployment(s) of its history",
                        row.version, row.id
                    ));
                }
                Deleted::Kept(why) => {
                    swept.kept += 1;
                    log.info(format!(
                        "kept release {} (id {}) of project {project}: it is {why} now",
                        row.version, row.id
                    ));
                }
                Deleted::Gone => {}
            }
        }
    }
    Ok(swept)
}

enum Deleted {
    Yes {
        deployments: i64,
    },
    /// Protected by the time its lock was taken.
    Kept(&'static str),
    /// Deleted by someone else meanwhile.
    Gone,
}

/// Deletes one release, audited, if it is still not protected once locked.
async fn delete(ctx: &NodeContext, id: i64, phase: &str) -> Result<Deleted, DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let row = match releases::get_for_update(&mut tx, id).await {
        Ok(row) => row,
        Err(DbError::NotFound) => return Ok(Deleted::Gone),
        Err(e) => return Err(e),
    };
    if let Some(why) = lifecycles::protected_as(&mut tx, id).await? {
        return Ok(Deleted::Kept(match why.as_str() {
            "newest" => "the project's newest release",
            "deployed" => "deployed",
            "shown" => "the latest deployment of an environment",
            _ => "being deployed",
        }));
    }
    let deployments = lifecycles::deployment_count(&mut *tx, id).await?;
    let variables = releases::variables(&mut *tx, id).await?;
    let mut before = crate::projects::releases::audited(&row, &variables);
    if let Some(fields) = before.as_object_mut() {
        fields.insert("latest_phase".to_owned(), phase.into());
        fields.insert("deployments_deleted".to_owned(), deployments.into());
    }
    releases::delete(&mut tx, id).await?;
    Change::new("release.delete")
        .object(id, &row.version)
        .project(row.project_id)
        .before(&before)
        .record(&mut *tx, &Actor::system(RETENTION_ACTOR))
        .await?;
    tx.commit().await?;
    Ok(Deleted::Yes { deployments })
}
