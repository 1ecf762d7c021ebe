//! What every node does for the whole cluster, once per heartbeat interval: rescue
//! tasks whose lease expired, cancel queued deployments past their `no_deploy_after`,
//! queue periodic tasks whose period began, compact the logs of finished tasks whose
//! node died before it could, and refresh the queue gauges.
//! Any node may do each of these; the database makes sure each happens once (SKIP
//! LOCKED for rescue and compaction, a unique key per period for periodic tasks).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use capstan_db::{
    queue::{self, RescueScope},
    task_logs,
};
use tokio::time::MissedTickBehavior;

use super::{
    kinds::{
        BLOB_RETENTION, BlobRetention, HEALTH_CHECK, HealthCheck, TASK_HISTORY_RETENTION,
        TaskHistoryRetention,
    },
    log_compaction,
};
use crate::{
    audit::retention::{AUDIT_RETENTION, AuditRetention},
    lifecycles::retention::{RELEASE_RETENTION, ReleaseRetention},
    node::NodeContext,
};

/// How often the queue gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// Heartbeats a finished task's own node has to compact its log before others may.
const COMPACT_GRACE_HEARTBEATS: u32 = 10;
/// Left-over logs are looked for every this many heartbeats: they are rare, and
/// nothing waits for them.
const COMPACT_EVERY_HEARTBEATS: u32 = 5;
/// How long a claimed compaction is left to its node before another may try.
const COMPACT_HOLD: Duration = Duration::from_secs(300);
/// Logs claimed for compaction per look.
const COMPACT_BATCH: i64 = 10;

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
    let mut periodic = vec![
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
        Periodic::new(
            AUDIT_RETENTION,
            settings.audit_retention_every,
            AuditRetention::args(settings.audit_retention),
        ),
        Periodic::new(
            RELEASE_RETENTION,
            settings.release_retention_every,
            ReleaseRetention::args(),
        ),
    ];
    if let Some(every) = settings.agent_health_check_every {
        periodic.push(Periodic::new(HEALTH_CHECK, every, HealthCheck::args()));
    }
    let mut stats_at: Option<Instant> = None;
    let mut ticks = 0u32;
    loop {
        ticker.tick().await;
        rescue_expired(&ctx).await;
        crate::agents::housekeeping(&ctx).await;
        ctx.api_keys.flush_uses(&ctx.pools.api).await;
        expire_overdue_deployments(&ctx).await;
        ticks = ticks.wrapping_add(1);
        if ticks % COMPACT_EVERY_HEARTBEATS == 0 {
            compact_left_over_logs(&ctx).await;
            free_finished_deployments_locks(&ctx).await;
        }
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

/// Frees the machine mutexes and named locks of deployments that ended without
/// giving them back (their run stopped on an error of its own).
async fn free_finished_deployments_locks(ctx: &NodeContext) {
    match capstan_db::deployments::release_finished(&ctx.pools.api).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("freed {n} lock(s) held by deployments that have ended"),
        Err(e) => tracing::debug!("cannot free the locks of ended deployments: {e}"),
    }
}

/// Cancels the queued deployments whose `no_deploy_after` passed before they started.
async fn expire_overdue_deployments(ctx: &NodeContext) {
    match crate::deployments::schedule::expire_overdue(ctx).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!("cancelled {n} deployment(s) not started before their no_deploy_after")
        }
        Err(e) => tracing::debug!("cannot look for expired deployments: {e}"),
    }
}

/// Rescues every task whose lease expired.
async fn rescue_expired(ctx: &NodeContext) {
    match queue::rescue(&ctx.pools.liveness, RescueScope::Expired).await {
        Ok(rescued) => {
            for task in &rescued {
                ctx.metrics.record_rescued(task.state.as_str());
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

/// Claims logs of tasks that finished a while ago and are still in segments, and
/// compacts them in the background. The node that ran a task compacts its log as soon
/// as the outcome is written, so this finds only what a dead or failing node left.
async fn compact_left_over_logs(ctx: &Arc<NodeContext>) {
    let every = ctx.state.heartbeat_interval;
    let grace = every * COMPACT_GRACE_HEARTBEATS;
    let claim = task_logs::claim_uncompacted(&ctx.pools.api, grace, COMPACT_HOLD, COMPACT_BATCH);
    // Rescue comes first: a busy API pool must not hold up the next heartbeat's.
    let Ok(claimed) = tokio::time::timeout(every, claim).await else {
        tracing::debug!("looking for logs to compact took over a heartbeat; skipped");
        return;
    };
    match claimed {
        Ok(ids) => {
            for id in ids {
                tracing::info!(
                    task.id = id,
                    "compacting the log of task {id}, which its node left in segments"
                );
                log_compaction::spawn(ctx, id);
            }
        }
        Err(e) => tracing::debug!("cannot look for logs to compact: {e}"),
    }
}

fn local_period(every: Duration) -> u128 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() / every.as_millis().max(1)
}
