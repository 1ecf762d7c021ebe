//! Queueing a task through this node. With a slot free and nothing claimable waiting,
//! the node claims the task in the same statement and starts it at once (one commit,
//! no NOTIFY); otherwise it is queued and the claimers are woken.

use std::sync::Arc;

use capstan_db::{
    DbError,
    queue::ClaimedTask,
    tasks::{self, ClaimOnCreate, NewTask, TaskRow},
};

use super::supervise::start;
use crate::node::NodeContext;

/// Queues one task and returns it as stored: `running` if this node took it.
pub async fn queue_one(ctx: Arc<NodeContext>, task: NewTask) -> Result<TaskRow, DbError> {
    // Spawned, so a caller that goes away (a client hanging up) cannot strand a task
    // claimed for this node between its commit and its start.
    tokio::spawn(queue_and_maybe_start(ctx, task))
        .await
        .unwrap_or_else(|e| Err(DbError::Other(Box::new(e))))
}

/// Queues tasks in order in one transaction; the claimers take them from there.
pub async fn queue_many(ctx: &NodeContext, tasks: &[NewTask]) -> Result<Vec<i64>, DbError> {
    let ids = tasks::create(&ctx.pools.api, tasks, ctx.state.id).await?;
    ctx.runner.wake();
    Ok(ids)
}

async fn queue_and_maybe_start(ctx: Arc<NodeContext>, task: NewTask) -> Result<TaskRow, DbError> {
    let runner = &ctx.runner;
    // A keyed task waits its turn behind its key, which only the claim query knows.
    let reserved = if task.concurrency_key.is_none() {
        runner.reserve(1, 0)
    } else {
        0
    };
    let claim = (reserved == 1).then(|| ClaimOnCreate {
        node_name: &ctx.state.name,
        lease_ttl: runner.lease_ttl(),
        kinds: runner.kind_names(),
    });
    let created = tasks::create_one(&ctx.pools.api, &task, ctx.state.id, claim).await;
    if let Ok(row) = &created {
        if row.state == "running" {
            start(
                &ctx,
                ClaimedTask {
                    id: row.id,
                    kind: row.kind.clone(),
                    args: row.args.clone(),
                    attempt: row.attempt,
                    queued_at: row.queued_at,
                    started_at: row.started_at.unwrap_or(row.queued_at),
                },
            );
        } else {
            runner.wake();
        }
    }
    runner.unreserve(reserved);
    created
}
