//! One automatic rollback when a deployment fails, where its project × environment asks
//! for it: queued in the transaction that records the failure, so it happens exactly
//! once whichever node records it, and never for a rollback.

use capstan_core::NodeLostPolicy;
use capstan_db::{
    DbError, audit::Actor, auto_rollbacks, deployments as db, deployments::NewDeployment,
};
use sqlx::PgConnection;

use super::{gates, no_targets, queued_by_system};
use crate::node::NodeContext;

/// What became of a failed deployment's automatic rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Its project × environment does not ask for one.
    NotAsked,
    /// Asked for, but not queued, for this reason (in words).
    Skipped(String),
    /// Queued: this deployment redeploys `release`.
    Queued { deployment_id: i64, release: String },
}

/// Queues the automatic rollback of deployment `failed`, which `conn`'s transaction has
/// just recorded as failed, if its project × environment asks for one.
pub async fn after_failure(
    ctx: &NodeContext,
    conn: &mut PgConnection,
    failed: i64,
) -> Result<AfterFailure, DbError> {
    let row = db::get(&mut *conn, failed).await?;
    if !auto_rollbacks::enabled(&mut *conn, row.project_id, row.environment_id).await? {
        return Ok(AfterFailure::NotAsked);
    }
    if let Some(of) = row.rollback_of {
        return Ok(AfterFailure::Skipped(format!(
            "deployment {failed} is itself a rollback (of deployment {of}); a rollback is never rolled back"
        )));
    }
    let release_id =
        match db::rollback_target(&mut *conn, row.project_id, row.environment_id).await? {
            Some((current, _)) if current != failed => {
                return Ok(AfterFailure::Skipped(format!(
                    "deployment {current} of {} to {} was queued after it and goes next",
                    row.project, row.environment
                )));
            }
            Some((_, Some(release_id))) => release_id,
            _ => {
                return Ok(AfterFailure::Skipped(format!(
                    "no earlier deployment of {} to {} succeeded with another release",
                    row.project, row.environment
                )));
            }
        };
    let release = capstan_db::releases::get(&mut *conn, release_id).await?;
    let options = capstan_api::deployments::DeploymentOptions::default();
    match super::steps_of(&release) {
        Err(e) => return Ok(AfterFailure::Skipped(e.to_string())),
        Ok(steps) => {
            let agents = db::environment_agents(&mut *conn, row.environment_id).await?;
            if let Some(why) = no_targets(agents, &steps, &options, &row.environment) {
                return Ok(AfterFailure::Skipped(why));
            }
        }
    }
    let options = serde_json::to_value(options).map_err(|e| DbError::Other(Box::new(e)))?;
    let (id, _task) = db::queue(
        &mut *conn,
        &NewDeployment {
            project_id: row.project_id,
            release_id,
            environment_id: row.environment_id,
            options,
            on_node_lost: NodeLostPolicy::Resume.as_str(),
            rollback_of: Some(failed),
            automatic_rollback: true,
            ..NewDeployment::default()
        },
        ctx.state.id,
    )
    .await?;
    gates::at_queue(ctx, conn, id).await?;
    let created = db::get(&mut *conn, id).await?;
    queued_by_system(&created, "automatic rollback: ")
        .record(
            &mut *conn,
            &Actor::system(format!("automatic rollback on node {}", ctx.state.name)),
        )
        .await?;
    Ok(AfterFailure::Queued {
        deployment_id: id,
        release: created.release,
    })
}
