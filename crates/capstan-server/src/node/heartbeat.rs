//! The heartbeat: every interval the node records that it is alive, reads back the
//! settings other nodes may have changed, and renews the leases of its tasks.

use std::{sync::Arc, time::Instant};

use tokio::time::MissedTickBehavior;

use super::NodeContext;

/// Beats until the task is dropped. A failed beat is logged and retried on the next
/// tick: the database may come back, and a node must recover without a restart.
pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(ctx.state.heartbeat_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // registration just counted as a beat
    let mut failing = false;
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let beat = tokio::time::timeout(
            ctx.state.heartbeat_interval,
            capstan_db::liveness::heartbeat(&ctx.pools.liveness, &ctx.state.announcement()),
        )
        .await;
        ctx.metrics
            .heartbeat_duration
            .record(started.elapsed().as_secs_f64());
        match beat {
            Ok(Ok(beat)) => {
                if let Err(e) = crate::runner::renew_leases(&ctx, started).await {
                    ctx.metrics.heartbeat_failures.increment(1);
                    if !failing {
                        tracing::warn!(node.name = %ctx.state.name, "renewing task leases failed: {e}");
                    }
                    failing = true;
                    continue;
                }
                if failing {
                    tracing::info!(node.name = %ctx.state.name, "heartbeat recovered: the database answers again");
                    failing = false;
                }
                if beat.re_added {
                    tracing::info!(node.name = %ctx.state.name, "node row was deleted; added it back");
                }
                ctx.state.record_seen(beat.last_seen);
                ctx.state.apply(beat.settings);
                ctx.metrics.database_up.set(1.0);
            }
            Ok(Err(e)) => {
                ctx.metrics.heartbeat_failures.increment(1);
                ctx.metrics.database_up.set(0.0);
                if !failing {
                    tracing::warn!(node.name = %ctx.state.name, "heartbeat failed: {e}");
                }
                failing = true;
            }
            Err(_) => {
                ctx.metrics.heartbeat_failures.increment(1);
                ctx.metrics.database_up.set(0.0);
                if !failing {
                    tracing::warn!(node.name = %ctx.state.name, "heartbeat failed: the database did not answer within one interval");
                }
                failing = true;
            }
        }
    }
}
