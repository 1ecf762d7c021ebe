//! Automatic phases: the success of a deployment that lets its release into an
//! automatic phase of its project's lifecycle queues a deployment of the release to
//! each environment of that phase the release has no deployment to yet.
//!
//! It happens in the transaction that records the success, with the release's row
//! locked: successes of one release are recorded one at a time, each sees those before
//! it, and exactly one of them is the success that lets the release in, whichever
//! nodes they finish on. A unique index on automatic deployments backs this up. A
//! deployment that cannot be queued (no agent to run it, a gate that refuses it) never
//! undoes the success: the reason goes to the task log and to an audit row
//! `deployment.auto_skipped`.

use capstan_api::deployments::{DeploymentOptions, DeploymentTrigger};
use capstan_core::{
    NodeLostPolicy,
    deployment::DeploymentState,
    lifecycle::{PhaseEnvironment, automatic_entries},
};
use capstan_db::{
    DbError,
    audit::Actor,
    deployments::{self as db, DeploymentRow, Fence, NewDeployment},
    lifecycles, releases,
};
use sqlx::{Acquire, PgConnection};

use super::{gates, no_targets, queued_by_system, steps_of};
use crate::{audit::Change, node::NodeContext, runner::TaskLog};

/// The actor name of automatic deployments' audit rows.
pub const LIFECYCLE_ACTOR: &str = "lifecycle";

/// Records that deployment `id` succeeded, and queues the automatic deployments its
/// success lets its release into, in one transaction.
pub async fn record_success(
    ctx: &NodeContext,
    fence: Fence,
    id: i64,
    log: &TaskLog,
) -> Result<(), DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let row = db::get(&mut *tx, id).await?;
    let lifecycle = lifecycles::of_project(&mut tx, row.project_id)
        .await?
        .filter(|l| l.phases.iter().any(|p| p.automatic));
    let Some(lifecycle) = lifecycle else {
        db::set_state(&mut *tx, fence, id, DeploymentState::Succeeded, None).await?;
        tx.commit().await?;
        return Ok(());
    };
    lifecycles::lock_release(&mut tx, row.release_id).await?;
    let before = lifecycles::succeeded_environments(&mut *tx, row.release_id).await?;
    db::set_state(&mut *tx, fence, id, DeploymentState::Succeeded, None).await?;
    let mut after = before.clone();
    after.insert(row.environment_id);
    let entries = automatic_entries(&lifecycle.phases, &before, &after);
    if entries.is_empty() {
        tx.commit().await?;
        return Ok(());
    }
    let ids: Vec<i64> = entries.iter().map(|(_, e)| e.id).collect();
    let already = lifecycles::deployed_environments(&mut *tx, row.release_id, &ids).await?;
    let release = releases::get(&mut *tx, row.release_id).await?;
    let mut queued = 0;
    for (phase, environment) in entries {
        let phase = &lifecycle.phases[phase].name;
        if already.contains(&environment.id) {
            log.info(format!(
                "release {} entered automatic phase {phase}; it already has a deployment to {}, so none is queued there",
                row.release, environment.name
            ));
            continue;
        }
        let entry = Entry {
            after: &row,
            release: &release,
            phase,
            environment,
        };
        match queue(ctx, &mut tx, &entry).await? {
            Ok(queued_id) => {
                queued += 1;
                log.info(format!(
                    "release {} entered automatic phase {phase}: queued deployment {queued_id} to {}",
                    row.release, environment.name
                ));
            }
            Err(reason) => {
                log.warn(format!(
                    "release {} entered automatic phase {phase}, but its deployment to {} was not queued: {reason}",
                    row.release, environment.name
                ));
                skipped(&mut tx, &entry, &reason).await?;
            }
        }
    }
    tx.commit().await?;
    if queued > 0 {
        ctx.runner.wake();
    }
    Ok(())
}

/// A deployment the lifecycle is about to queue.
struct Entry<'a> {
    /// The deployment whose success let the release in.
    after: &'a DeploymentRow,
    release: &'a releases::ReleaseRow,
    phase: &'a str,
    environment: &'a PhaseEnvironment,
}

impl Entry<'_> {
    fn describe(&self) -> String {
        format!(
            "{} {} to {}",
            self.after.project, self.release.version, self.environment.name
        )
    }
}

/// Queues the deployment of `entry` within a savepoint: `Ok(Err(reason))` when it
/// cannot be, leaving nothing of it behind.
async fn queue(
    ctx: &NodeContext,
    tx: &mut PgConnection,
    entry: &Entry<'_>,
) -> Result<Result<i64, String>, DbError> {
    let steps = match steps_of(entry.release) {
        Ok(steps) => steps,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let options = DeploymentOptions::default();
    let agents = db::environment_agents(&mut *tx, entry.environment.id).await?;
    if let Some(why) = no_targets(agents, &steps, &options, &entry.environment.name) {
        return Ok(Err(why));
    }
    let trigger = serde_json::to_value(DeploymentTrigger::Lifecycle {
        phase: entry.phase.to_owned(),
        after_deployment: entry.after.id,
    })
    .map_err(|e| DbError::Other(Box::new(e)))?;
    let options = serde_json::to_value(options).map_err(|e| DbError::Other(Box::new(e)))?;
    let mut savepoint = tx.begin().await?;
    let attempt = async {
        let (id, _task) = db::queue(
            &mut *savepoint,
            &NewDeployment {
                project_id: entry.after.project_id,
                release_id: entry.release.id,
                environment_id: entry.environment.id,
                options,
                on_node_lost: NodeLostPolicy::Resume.as_str(),
                // An automatic deployment supersedes the pair's older queued ones, so a
                // run of successes upstream leaves one deployment of the newest here.
                ..NewDeployment::default()
            },
            ctx.state.id,
        )
        .await?;
        lifecycles::set_trigger(&mut *savepoint, id, &trigger).await?;
        if let gates::Gate::Cancel { why } = gates::at_queue(ctx, &mut savepoint, id).await? {
            return Ok(Err(why));
        }
        let created = db::get(&mut *savepoint, id).await?;
        queued_by_system(&created, "")
            .record(&mut *savepoint, &Actor::system(LIFECYCLE_ACTOR))
            .await?;
        Ok::<_, DbError>(Ok(id))
    }
    .await;
    match attempt {
        Ok(Ok(id)) => {
            savepoint.commit().await?;
            Ok(Ok(id))
        }
        Ok(Err(why)) => {
            savepoint.rollback().await?;
            Ok(Err(why))
        }
        Err(DbError::Conflict { constraint }) if constraint == "deployments_automatic_once" => {
            savepoint.rollback().await?;
            Ok(Err(
                "the release already has an automatic deployment there".to_owned()
            ))
        }
        Err(e) => {
            savepoint.rollback().await?;
            Ok(Err(format!("queueing it failed: {e}")))
        }
    }
}

/// The audit row of an automatic deployment that was not queued, with the reason.
async fn skipped(tx: &mut PgConnection, entry: &Entry<'_>, reason: &str) -> Result<(), DbError> {
    Change::new("deployment.auto_skipped")
        .object_name(entry.describe())
        .project(entry.after.project_id)
        .environment(entry.environment.id)
        .after(&serde_json::json!({
            "release_id": entry.release.id,
            "release": entry.release.version,
            "environment": entry.environment.name,
            "phase": entry.phase,
            "after_deployment": entry.after.id,
            "reason": reason,
        }))
        .record(&mut *tx, &Actor::system(LIFECYCLE_ACTOR))
        .await?;
    Ok(())
}
