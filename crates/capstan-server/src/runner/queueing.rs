//! Queueing a task through this node. With a slot free and nothing claimable waiting,
//! the node claims the task in the same statement and starts it at once (one commit,
//! no NOTIFY); otherwise it is queued and the claimers are woken.

use std::sync::Arc;

use capstan_core::TaskState;
use capstan_db::{
    DbError,
    mailbox::NewCommand,
    queue::ClaimedTask,
    tasks::{self, ClaimOnCreate, NewTask, TaskRow},
};

use super::{kinds::SentWithClaim, supervise::start};
use crate::{audit::Change, node::NodeContext};
use capstan_db::audit::Actor;

/// Queues one task and returns it as stored: `running` if this node took it.
pub async fn queue_one(ctx: Arc<NodeContext>, task: NewTask) -> Result<TaskRow, DbError> {
    queue_one_sending(ctx, task, Vec::new(), None).await
}

/// [`queue_one`] for a change made through the API: its audit row is appended in the
/// task's own transaction (the row's object is the task unless the change names one).
pub async fn queue_one_audited(
    ctx: Arc<NodeContext>,
    task: NewTask,
    audited: Audited,
) -> Result<TaskRow, DbError> {
    queue_one_sending(ctx, task, Vec::new(), Some(audited)).await
}

/// Who made a change and the change, to record with the task it queues.
pub type Audited = (Actor, Change);

/// [`queue_one`] for a task whose run starts by sending `commands` to agents: if this
/// node claims the task, the claim's statement sends them too and the run takes them
/// as sent. A queued task sends nothing; its run sends them when it starts.
pub async fn queue_one_sending(
    ctx: Arc<NodeContext>,
    task: NewTask,
    commands: Vec<NewCommand>,
    audited: Option<Audited>,
) -> Result<TaskRow, DbError> {
    // Spawned, so a caller that goes away (a client hanging up) cannot strand a task
    // claimed for this node between its commit and its start.
    tokio::spawn(queue_and_maybe_start(ctx, task, commands, audited))
        .await
        .unwrap_or_else(|e| Err(DbError::Other(Box::new(e))))
}

/// Queues tasks in order in one transaction, with the audit row of the change that
/// queued them; the claimers take them from there.
pub async fn queue_many(
    ctx: &NodeContext,
    tasks: &[NewTask],
    actor: &Actor,
    change: impl FnOnce(&[i64]) -> Change,
) -> Result<Vec<i64>, DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let ids = tasks::create(&mut *tx, tasks, ctx.state.id).await?;
    change(&ids).record(&mut *tx, actor).await?;
    tx.commit().await?;
    ctx.runner.wake();
    Ok(ids)
}

async fn queue_and_maybe_start(
    ctx: Arc<NodeContext>,
    task: NewTask,
    commands: Vec<NewCommand>,
    audited: Option<Audited>,
) -> Result<TaskRow, DbError> {
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
        commands: &commands,
    });
    // Taken before the statement, so the NOTIFY it sends is known for this node's own.
    let sending = (claim.is_some() && !commands.is_empty()).then(|| {
        ctx.agents
            .mailboxes
            .sending(commands.iter().map(|c| c.agent_id))
    });
    let event = audited.as_ref().map(|(actor, change)| change.event(actor));
    let created = tasks::create_one_audited(
        &ctx.pools.enqueue,
        &task,
        ctx.state.id,
        claim,
        event.as_ref(),
    )
    .await;
    if let Ok(created) = &created {
        let row = &created.task;
        if row.state == TaskState::Running {
            let sent = sending.map(|sending| SentWithClaim {
                sending,
                commands: commands
                    .iter()
                    .map(|c| c.agent_id)
                    .zip(created.command_ids.iter().copied())
                    .collect(),
            });
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
                sent,
            );
        } else {
            runner.wake();
        }
    }
    runner.unreserve(reserved);
    created.map(|c| c.task)
}
