//! Whether the blob store works, as last seen by a probe once per heartbeat interval.
//! Ping reads it, so the load balancer takes a node out when its store stops working,
//! and puts it back when the store returns; probing on every ping would cost three
//! store requests per load-balancer check (billed requests, on S3).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::node::NodeContext;

/// A probe slower than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of the latest probe: `None` when it passed, else the reason.
#[derive(Debug, Default, Clone)]
pub struct BlobHealth(Arc<Mutex<Option<String>>>);

impl BlobHealth {
    pub fn failure(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, failure: Option<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }
}

/// Probes the store until the node stops, logging each change of state once.
pub(crate) async fn watch(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(ctx.state.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let failure = match tokio::time::timeout(PROBE_TIMEOUT, ctx.blob.probe()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("blob store {e}")),
            Err(_) => Some(format!(
                "blob store {}: unreachable: a probe took longer than {}s",
                ctx.blob.url(),
                PROBE_TIMEOUT.as_secs()
            )),
        };
        let before = ctx.blob_health.failure();
        match (&before, &failure) {
            (None, Some(reason)) => tracing::error!("{reason}"),
            (Some(_), None) => tracing::info!("blob store {} works again", ctx.blob.url()),
            _ => {}
        }
        ctx.metrics
            .blob_store_up
            .set(if failure.is_none() { 1.0 } else { 0.0 });
        ctx.blob_health.set(failure);
    }
}
