//! Leases: renewed with every heartbeat; a node that cannot renew them stops its
//! tasks' work before they can expire (self-fencing), so no task ever runs on two
//! nodes at once.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use capstan_db::queue::{self, Claimer};

use super::StopReason;
use crate::node::NodeContext;

/// Renews the leases of every task this node holds. Called by the heartbeat, after it
/// reached the database. Tasks the database no longer gives this node (rescued while
/// the node was unreachable) are abandoned; tasks whose cancellation is pending are
/// stopped, in case the notification was lost.
pub(crate) async fn renew(ctx: &NodeContext, sent: Instant) -> Result<(), capstan_db::DbError> {
    let runner = &ctx.runner;
    let held = runner.held_attempts();
    let claimer = Claimer {
        node_id: ctx.state.id,
        lease_ttl: runner.lease_ttl(),
        kinds: &[],
    };
    let renewed = queue::renew_leases(&ctx.pools.liveness, claimer, &held).await?;
    runner.record_renewal(sent);
    for (id, attempt) in held {
        match renewed.iter().find(|r| r.id == id) {
            Some(r) if r.cancel_requested => {
                runner.cancel(id);
            }
            Some(_) => {}
            None => {
                // It may simply have finished between reading `held` and the renewal;
                // only a task still held for the same attempt was lost.
                if runner.held_attempts().contains(&(id, attempt))
                    && runner.stop(
                        id,
                        StopReason::Fenced(format!(
                            "attempt {attempt} is no longer this node's: its lease expired and another node took the task over"
                        )),
                    )
                {
                    ctx.metrics.tasks_fenced.increment(1);
                }
            }
        }
    }
    Ok(())
}

/// Watches the age of the last renewal. Once the leases may be about to expire, every
/// running task is stopped without writing anything: from that moment another node may
/// rescue them.
pub(crate) async fn watchdog(ctx: Arc<NodeContext>) {
    let runner = &ctx.runner;
    // Checked often enough that the stop lands well inside the last heartbeat interval
    // before the lease could expire.
    let check_every =
        (runner.fence_after() / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut fenced = false;
    loop {
        tokio::time::sleep(check_every).await;
        if runner.leases_trusted() {
            if fenced {
                tracing::info!(node.name = %ctx.state.name, "leases renewed again; taking tasks again");
                fenced = false;
            }
            continue;
        }
        let held = runner.held_attempts();
        if !fenced {
            tracing::error!(
                node.name = %ctx.state.name,
                running_tasks = held.len(),
                "leases not renewed for {:.1}s (lease TTL {}s): stopping {} task(s) and taking no new ones until the database answers",
                runner.since_renewal().as_secs_f64(),
                runner.lease_ttl().as_secs_f64(),
                held.len()
            );
            fenced = true;
        }
        for (id, attempt) in held {
            let why = format!(
                "the lease of attempt {attempt} could not be renewed for {:.1}s; another node may take the task over",
                runner.since_renewal().as_secs_f64()
            );
            if runner.stop(id, StopReason::Fenced(why)) {
                ctx.metrics.tasks_fenced.increment(1);
            }
        }
    }
}
