//! The ordered shutdown: drain, wait for running tasks, stop HTTP, stop the loops, mark
//! the node stopped. Each step says what it waited for and how long.

use capstan_core::TaskState;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::NodeContext;
use crate::background::NamedTasks;

/// How long a single database write during shutdown may take; the database may be the
/// reason we are stopping.
const DB_STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open HTTP requests get to finish once the listener closes.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn drain_and_stop(
    ctx: &NodeContext,
    mut tasks: NamedTasks,
    http_stop: CancellationToken,
    mut server: JoinHandle<std::io::Result<()>>,
) {
    let name = &ctx.state.name;
    let started = Instant::now();
    ctx.state.begin_shutdown();
    tracing::info!(node.name = %name, "shutting down: draining (ping answers 418, no new tasks)");
    match tokio::time::timeout(
        DB_STEP_TIMEOUT,
        capstan_db::liveness::set_draining(&ctx.pools.liveness, ctx.state.id),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(node.name = %name, "could not record draining in the database: {e}")
        }
        Err(_) => {
            tracing::warn!(node.name = %name, "could not record draining in the database: no answer within 2s")
        }
    }

    let grace = ctx.settings.shutdown_grace;
    let mut last_report = Instant::now();
    while ctx.state.running_tasks() > 0 && started.elapsed() < grace {
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                node.name = %name,
                running_tasks = ctx.state.running_tasks(),
                "waiting for {} running task(s), {}s of {}s grace left",
                ctx.state.running_tasks(),
                grace.saturating_sub(started.elapsed()).as_secs(),
                grace.as_secs()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left_running = ctx.state.running_tasks() > 0;
    if left_running {
        let stopped = ctx
            .runner
            .abandon_all("the node is stopping and its shutdown grace ran out");
        tracing::warn!(
            node.name = %name,
            running_tasks = stopped,
            "shutdown grace of {}s ran out with {stopped} task(s) still running; stopping them and handing them back",
            grace.as_secs(),
        );
    } else {
        tracing::info!(node.name = %name, waited_ms = started.elapsed().as_millis() as u64, "no running tasks");
    }

    http_stop.cancel();
    match tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut server).await {
        Ok(_) => tracing::info!(node.name = %name, "HTTP server stopped"),
        Err(_) => {
            tracing::warn!(node.name = %name, "open HTTP requests did not finish within 10s; closing them");
            server.abort();
        }
    }
    tasks.shutdown().await;

    if left_running {
        // Each kind's node-lost policy applies now rather than after the lease.
        match tokio::time::timeout(
            DB_STEP_TIMEOUT,
            capstan_db::queue::rescue(
                &ctx.pools.liveness,
                capstan_db::queue::RescueScope::Released(ctx.state.id),
            ),
        )
        .await
        {
            Ok(Ok(handed)) => {
                let requeued = handed
                    .iter()
                    .filter(|t| t.state == TaskState::Queued)
                    .count();
                tracing::info!(
                    node.name = %name,
                    "handed back {} task(s): {requeued} queued again, {} failed or cancelled",
                    handed.len(),
                    handed.len() - requeued
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(node.name = %name, "could not hand tasks back ({e}); other nodes rescue them when their leases expire")
            }
            Err(_) => {
                tracing::warn!(node.name = %name, "could not hand tasks back in 2s; other nodes rescue them when their leases expire")
            }
        }
    }

    match tokio::time::timeout(
        DB_STEP_TIMEOUT,
        capstan_db::liveness::mark_stopped(&ctx.pools.liveness, ctx.state.id),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(node.name = %name, "could not mark the node stopped: {e}"),
        Err(_) => {
            tracing::warn!(node.name = %name, "could not mark the node stopped: no answer within 2s")
        }
    }
    ctx.pools.api.close().await;
    tracing::info!(node.name = %name, took_ms = started.elapsed().as_millis() as u64, "node stopped");
}
