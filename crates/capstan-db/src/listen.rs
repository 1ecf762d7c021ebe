//! LISTEN on a connection of its own, reconnecting with backoff.
//!
//! Notifications are hints, never the source of truth: a connection that drops loses
//! whatever was sent meanwhile, so every (re)connect is reported as
//! [`ListenEvent::Connected`] and the consumer re-reads what it cares about. For the
//! same reason a payload that does not parse as its channel's [`Notice`] is logged and
//! dropped: the consumer loses a hint, not a change.

use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use capstan_core::error_chain as describe_chain;

use crate::notify::Notice;

/// What the listener saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// LISTEN is in place (at start or after a reconnect): anything may have changed.
    Connected,
    /// A NOTIFY arrived.
    Notice(Notice),
}

/// Listens on `channels` until `events` is closed. Runs forever otherwise: connection
/// failures are logged and retried with capped exponential backoff.
pub async fn listen(
    config: tokio_postgres::Config,
    channels: Vec<&'static str>,
    events: mpsc::Sender<ListenEvent>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&config, &channels, &events).await {
            Ok(()) => return,
            Err(reason) => {
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "listen connection lost: {reason}"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if events.is_closed() {
            return;
        }
    }
}

/// One connection's life. `Ok` means the consumer went away; `Err` says why the
/// connection ended.
async fn listen_once(
    config: &tokio_postgres::Config,
    channels: &[&'static str],
    events: &mpsc::Sender<ListenEvent>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| describe_chain(&e))?;
    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
    let statements: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    let subscribe = client.batch_execute(&statements);
    tokio::pin!(subscribe);
    // The connection only makes progress while it is polled, so drive it while the
    // LISTEN statements run.
    loop {
        tokio::select! {
            done = &mut subscribe => {
                done.map_err(|e| describe_chain(&e))?;
                break;
            }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(describe_chain(&e)),
                None => return Err("connection closed".to_owned()),
            },
        }
    }
    if events.send(ListenEvent::Connected).await.is_err() {
        return Ok(());
    }
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    match Notice::parse(n.channel(), n.payload()) {
                        Ok(notice) => {
                            if events.send(ListenEvent::Notice(notice)).await.is_err() {
                                return Ok(());
                            }
                        }
                        Err(unknown) => tracing::warn!(
                            channel = n.channel(),
                            payload = n.payload(),
                            "ignoring a notification: {unknown}"
                        ),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(describe_chain(&e)),
                None => return Err("connection closed".to_owned()),
            },
            () = events.closed() => return Ok(()),
        }
    }
}
