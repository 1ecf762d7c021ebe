//! What must hold before a deployment starts, checked when it is queued and again each
//! time a node claims it until it has started. A gate that is shut holds the deployment
//! parked in the queue, holding no slot, with `blocked_by` saying why; one that can
//! never open cancels it.

use capstan_api::BlockedBy;
use capstan_db::{DbError, deployments::DeploymentRow, held};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::approvals;
use crate::node::NodeContext;

/// What the gates say about a deployment that has not started.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// It may start now.
    Open,
    /// It waits: until `until` has come (the node claims it again then), or until
    /// what holds it lets it go (`None`).
    Hold {
        reason: BlockedBy,
        until: Option<OffsetDateTime>,
    },
    /// It will never start: it is cancelled with this reason.
    Cancel { why: String },
}

/// Asks every gate in turn; the first that is shut answers.
pub async fn check(
    ctx: &NodeContext,
    conn: &mut PgConnection,
    row: &DeploymentRow,
) -> Result<Gate, DbError> {
    if let Some(gate) = super::schedule::gate(ctx, conn, row).await? {
        return Ok(gate);
    }
    if let Some(gate) = approvals::gate(ctx, conn, row).await? {
        return Ok(gate);
    }
    if let Some(gate) = super::freezes::gate(ctx, conn, row).await? {
        return Ok(gate);
    }
    Ok(Gate::Open)
}

/// Checks the gates of a deployment just queued in `conn`'s transaction and parks its
/// task if one is shut. A gate that would cancel it is returned for the caller to
/// refuse the request with.
pub async fn at_queue(
    ctx: &NodeContext,
    conn: &mut PgConnection,
    deployment_id: i64,
) -> Result<Gate, DbError> {
    let row = capstan_db::deployments::get(&mut *conn, deployment_id).await?;
    let gate = check(ctx, conn, &row).await?;
    if let Gate::Hold { reason, until } = &gate {
        let reason = serde_json::to_value(reason).map_err(|e| DbError::Other(Box::new(e)))?;
        held::hold_queued(&mut *conn, deployment_id, &reason, *until).await?;
    }
    Ok(gate)
}

/// Checks the gates of a deployment a node has just claimed. A deployment that started
/// before (a later attempt, or one back from an operator's answer) is never held again.
pub async fn at_claim(ctx: &NodeContext, deployment_id: i64) -> Result<Gate, DbError> {
    let mut conn = ctx.pools.api.acquire().await?;
    if held::has_started(&mut *conn, deployment_id).await? {
        return Ok(Gate::Open);
    }
    let row = capstan_db::deployments::get(&mut *conn, deployment_id).await?;
    let gate = check(ctx, &mut conn, &row).await?;
    let reason = match &gate {
        Gate::Hold { reason, .. } => {
            Some(serde_json::to_value(reason).map_err(|e| DbError::Other(Box::new(e)))?)
        }
        Gate::Open | Gate::Cancel { .. } => None,
    };
    held::record(&mut *conn, deployment_id, reason.as_ref()).await?;
    Ok(gate)
}
