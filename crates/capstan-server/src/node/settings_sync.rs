//! Hears through LISTEN/NOTIFY that another node changed this node's task cap or
//! draining flag, and applies it within a second instead of at the next heartbeat.

use std::sync::Arc;

use capstan_db::listen::{ListenEvent, listen};
use tokio::sync::mpsc;

use super::NodeContext;

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let listener = tokio::spawn(listen(
        ctx.pools.listen_config.clone(),
        vec![capstan_db::NODES_CHANNEL],
        events_tx,
    ));
    let own_id = ctx.state.id.to_string();
    while let Some(event) = events_rx.recv().await {
        let relevant = match &event {
            ListenEvent::Connected => true,
            ListenEvent::Notification { payload, .. } => *payload == own_id,
        };
        if !relevant {
            continue;
        }
        match capstan_db::liveness::read_settings(&ctx.pools.liveness, ctx.state.id).await {
            Ok(Some(settings)) => ctx.state.apply(settings),
            // Deleted: the next heartbeat writes the row back with the current settings.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(node.name = %ctx.state.name, "cannot read changed node settings: {e}")
            }
        }
    }
    listener.abort();
}
