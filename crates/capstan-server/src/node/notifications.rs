//! Hears through LISTEN/NOTIFY what other nodes changed: this node's task cap or
//! draining flag (applied within a second instead of at the next heartbeat), tasks
//! queued (wake the claim loop), and cancellations of tasks this node runs.

use std::sync::Arc;

use capstan_db::{
    listen::{ListenEvent, listen},
    notify::{NodeNotice, Notice, TaskNotice},
};
use tokio::sync::mpsc;

use super::NodeContext;

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let (events_tx, mut events_rx) = mpsc::channel(1024);
    let listener = tokio::spawn(listen(
        ctx.pools.listen_config.clone(),
        Notice::CHANNELS.to_vec(),
        events_tx,
    ));
    let own_id = ctx.state.id;
    while let Some(event) = events_rx.recv().await {
        match event {
            // Anything may have changed while LISTEN was not in place.
            ListenEvent::Connected => {
                ctx.agents.resync();
                ctx.api_keys.clear();
                ctx.access.clear();
                refresh_settings(&ctx).await;
                ctx.runner.wake();
            }
            ListenEvent::Notice(Notice::Node(NodeNotice::Changed(id))) => {
                if id == own_id {
                    refresh_settings(&ctx).await;
                    // A raised cap or an undrain may free slots.
                    ctx.runner.wake();
                }
            }
            ListenEvent::Notice(Notice::Agent(notice)) => ctx.agents.notified(notice),
            ListenEvent::Notice(Notice::User(notice)) => {
                ctx.api_keys.notified(notice);
                ctx.access.notified(notice);
            }
            ListenEvent::Notice(Notice::Task(TaskNotice::Cancel(id))) => {
                if ctx.runner.cancel(id) {
                    tracing::info!(node.name = %ctx.state.name, task.id = id, "cancelling task {id} as requested");
                }
            }
            // Tasks this node queued woke its claimer already.
            ListenEvent::Notice(Notice::Task(TaskNotice::QueuedBy(node))) if node == own_id => {}
            ListenEvent::Notice(Notice::Task(TaskNotice::Queued | TaskNotice::QueuedBy(_))) => {
                ctx.runner.wake_for_others();
            }
        }
    }
    listener.abort();
}

async fn refresh_settings(ctx: &NodeContext) {
    match capstan_db::liveness::read_settings(&ctx.pools.liveness, ctx.state.id).await {
        Ok(Some(settings)) => ctx.state.apply(settings),
        // Deleted: the next heartbeat writes the row back with the current settings.
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(node.name = %ctx.state.name, "cannot read changed node settings: {e}")
        }
    }
}
