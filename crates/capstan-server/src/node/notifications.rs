//! Hears through LISTEN/NOTIFY what other nodes changed: this node's task cap or
//! draining flag (applied within a second instead of at the next heartbeat), tasks
//! queued (wake the claim loop), and cancellations of tasks this node runs.

use std::sync::Arc;

use capstan_db::{
    NODES_CHANNEL, TASKS_CHANNEL,
    agents::AGENTS_CHANNEL,
    listen::{ListenEvent, listen},
};
use tokio::sync::mpsc;

use super::NodeContext;

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let (events_tx, mut events_rx) = mpsc::channel(1024);
    let listener = tokio::spawn(listen(
        ctx.pools.listen_config.clone(),
        vec![NODES_CHANNEL, TASKS_CHANNEL, AGENTS_CHANNEL],
        events_tx,
    ));
    let own_id = ctx.state.id.to_string();
    while let Some(event) = events_rx.recv().await {
        match event {
            // Anything may have changed while LISTEN was not in place.
            ListenEvent::Connected => {
                ctx.agents.resync();
                refresh_settings(&ctx).await;
                ctx.runner.wake();
            }
            ListenEvent::Notification { channel, payload } if channel == NODES_CHANNEL => {
                if payload == own_id {
                    refresh_settings(&ctx).await;
                    // A raised cap or an undrain may free slots.
                    ctx.runner.wake();
                }
            }
            ListenEvent::Notification { channel, payload } if channel == AGENTS_CHANNEL => {
                ctx.agents.notified(&payload);
            }
            ListenEvent::Notification { payload, .. } => {
                if let Some(id) = payload.strip_prefix("cancel:") {
                    if let Ok(id) = id.parse::<i64>() {
                        if ctx.runner.cancel(id) {
                            tracing::info!(node.name = %ctx.state.name, task.id = id, "cancelling task {id} as requested");
                        }
                    }
                } else if payload.strip_prefix("queued:") != Some(own_id.as_str()) {
                    // Tasks this node queued woke its claimer already.
                    ctx.runner.wake_for_others();
                }
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
