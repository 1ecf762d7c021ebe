//! Streams a request body into a new blob: hashed and sized on the way, in parts, with
//! a size limit, recorded in `blob_uploads` while it runs. Whatever ends the upload
//! early (a client that disconnects, a body over the limit, a store that fails, a
//! request future that is dropped) cleans up the parts it stored.

use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use capstan_blob::{BlobWriter, ObjectError, Written};
use capstan_core::format_size;
use capstan_db::blobs;
use futures::{Stream, StreamExt};

use crate::{http::ApiError, node::NodeContext};

/// A blob that is complete but not yet pointed to by a row. Commit the row (which
/// also ends the upload record), then call [`Received::keep`]; dropped without that,
/// the blob is deleted.
pub(crate) struct Received {
    pub written: Written,
    guard: Cleanup,
}

impl Received {
    pub fn keep(mut self) {
        self.guard.armed = false;
    }
}

/// The uploads this node is receiving now. The sweep leaves their records alone and
/// takes any other record of this node as abandoned: the request of an upload can be
/// dropped at any await, even between writing its record and arming its cleanup.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<String>>);

impl InFlight {
    pub fn keys(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Cleanup {
    ctx: Arc<NodeContext>,
    key: String,
    /// Until it is finished: aborting through it ends the upload exactly once.
    writer: Option<BlobWriter>,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.ctx.uploads.lock().remove(&self.key);
        if !self.armed {
            return;
        }
        let (ctx, key, writer) = (self.ctx.clone(), self.key.clone(), self.writer.take());
        tokio::spawn(async move {
            let aborted = match writer {
                Some(writer) => writer.abort().await,
                None => Ok(()),
            };
            // A finished upload whose row was not committed left an object.
            match aborted.and(ctx.blob.delete(&key).await) {
                Ok(()) => {
                    if let Err(e) = blobs::end_upload(&ctx.pools.api, &key).await {
                        tracing::debug!("cannot forget upload {key}: {e}");
                    }
                }
                // The record stays, so the sweep retries once this node is gone.
                Err(e) => tracing::warn!("cannot clean up the upload {key}: {e}"),
            }
        });
    }
}

/// Maps a blob store failure to the answer a client gets, and tells the operator: the
/// client sees a 503, the node's log says which store failed and why.
pub(crate) fn store_error(e: &ObjectError) -> ApiError {
    tracing::warn!("the blob store failed a request: {e}");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Receives `body` into a new blob at `key`, refusing more than `max` bytes.
pub(crate) async fn receive<S, E>(
    ctx: &Arc<NodeContext>,
    key: String,
    body: S,
    max: u64,
) -> Result<Received, ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error + 'static,
{
    let writer = ctx.blob.writer(&key).await.map_err(|e| store_error(&e))?;
    let upload_id = writer.upload_id().map(str::to_owned);
    ctx.uploads.lock().insert(key.clone());
    let mut guard = Cleanup {
        ctx: ctx.clone(),
        key: key.clone(),
        writer: Some(writer),
        armed: true,
    };
    blobs::start_upload(&ctx.pools.api, &key, upload_id.as_deref(), ctx.state.id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let writer = guard
        .writer
        .as_mut()
        .expect("the writer is taken only to finish");

    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            crate::http::too_slow(&e).unwrap_or_else(|| {
                ApiError::bad_request(format!(
                    "the upload was cut off after {} bytes: {e}",
                    writer.size()
                ))
            })
        })?;
        if writer.size() + chunk.len() as u64 > max {
            return Err(too_large(max));
        }
        ctx.metrics
            .blob_bytes_received
            .increment(chunk.len() as u64);
        writer.write(chunk).await.map_err(|e| store_error(&e))?;
    }
    let writer = guard
        .writer
        .take()
        .expect("the writer is taken only to finish");
    let written = writer.finish().await.map_err(|e| store_error(&e))?;
    Ok(Received { written, guard })
}

/// A client that declares a body over the limit is told before it sends it.
pub(crate) fn refuse_declared_oversize(
    ctx: &NodeContext,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) if length > ctx.settings.max_upload_size => {
            Err(too_large(ctx.settings.max_upload_size))
        }
        _ => Ok(()),
    }
}

/// The 413 for a body over the node's upload limit.
fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than this node accepts ({}, CAPSTAN_MAX_UPLOAD_SIZE)",
            format_size(max)
        ),
    )
}
