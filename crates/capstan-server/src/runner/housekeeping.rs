//! What every node does for the whole cluster, once per heartbeat interval: rescue
//! tasks whose lease expired, queue periodic tasks whose period began, and refresh the
//! queue gauges. Any node may do each of these; the database makes sure each happens
//! once (SKIP LOCKED for rescue, a unique key per period for periodic tasks).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use capstan_db::queue::{self, RescueScope};
use tokio::time::MissedTickBehavior;

use super::kinds::{BLOB_RETENTION, BlobRetention, TASK_HISTORY_RETENTION, TaskHistoryRetention};
use crate::node::NodeContext;

/// How often the queue gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// A system task queued once per period across the cluster.
struct Periodic {
    kind: &'static str,
    every: Duration,
    args: serde_json::Value,
    last_period: Option<u128>,
    tries_left: u8,
}

impl Periodic {
    fn new(kind: &'static str, every: Duration, args: serde_json::Value) -> Self {
        Self {
            kind,
            every,
            args,
            last_period: None,
            tries_left: 0,
        }
    }

    /// Queues the task if its period began. The database's clock decides the period;
    /// the local clock only says when a new one may have begun, and trying on two
    /// ticks covers a small clock skew.
    async fn enqueue_if_due(&mut self, ctx: &NodeContext) {
        let period = local_period(self.every);
        if self.last_period != Some(period) {
            self.last_period = Some(period);
            self.tries_left = 2;
        }
        if self.tries_left == 0 {
            return;
        }
        match queue::enqueue_periodic(&ctx.pools.liveness, self.kind, &self.args, self.every).await
        {
            Ok(Some(id)) => {
                tracing::debug!(task.id = id, "queued {} for this period", self.kind);
                self.tries_left = 0;
            }
            Ok(None) => self.tries_left -= 1,
            Err(e) => tracing::warn!("cannot queue {}: {e}", self.kind),
        }
    }
}

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(ctx.state.heartbeat_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let settings = &ctx.settings;
    let mut periodic = [
        Periodic::new(
            TASK_HISTORY_RETENTION,
            settings.task_history_retention_every,
            TaskHistoryRetention::args(settings.task_history_retention),
        ),
        Periodic::new(
            BLOB_RETENTION,
            settings.blob_retention_every,
            BlobRetention::args(
                settings.package_retention_versions,
                settings.task_blob_retention,
            ),
        ),
    ];
    let mut stats_at: Option<Instant> = None;
    loop {
        ticker.tick().await;
        rescue_expired(&ctx).await;
        for task in &mut periodic {
            task.enqueue_if_due(&ctx).await;
        }

        if stats_at.is_none_or(|at| at.elapsed() >= STATS_EVERY) {
            match queue::stats(&ctx.pools.liveness).await {
                Ok(stats) => {
                    ctx.metrics.record_queue(stats);
                    stats_at = Some(Instant::now());
                }
                Err(e) => tracing::debug!("cannot read queue stats: {e}"),
            }
        }
    }
}

/// Rescues every task whose lease expired.
async fn rescue_expired(ctx: &NodeContext) {
    match queue::rescue(&ctx.pools.liveness, RescueScope::Expired).await {
        Ok(rescued) => {
            for task in &rescued {
                ctx.metrics.record_rescued(&task.state);
                tracing::warn!(
                    task.id = task.id,
                    lost_node = %task.lost_node,
                    "rescued task {} from lost node {}: now {}",
                    task.id, task.lost_node, task.state
                );
            }
        }
        Err(e) => tracing::debug!("rescue skipped: {e}"),
    }
}

fn local_period(every: Duration) -> u128 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() / every.as_millis().max(1)
}
