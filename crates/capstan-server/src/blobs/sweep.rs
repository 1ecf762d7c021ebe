//! Deletes blobs nobody needs: uploads abandoned by nodes that died (or by this node's
//! previous run), and blobs whose rows were deleted or replaced, once per heartbeat
//! interval. Any node may do it; deleting twice is harmless.

use std::sync::Arc;

use capstan_db::blobs;

use crate::node::NodeContext;

const BATCH: i64 = 500;
const GIVE_UP_AFTER: time::Duration = time::Duration::hours(25);

pub(crate) async fn run(ctx: Arc<NodeContext>) {
    loop {
        let uploads = sweep_uploads(&ctx).await;
        let garbage = sweep_garbage(&ctx).await;
        // A full batch means there may be more: go on at once.
        let more = matches!(uploads, Ok(n) if n as i64 == BATCH)
            || matches!(garbage, Ok(n) if n as i64 == BATCH);
        if !more {
            tokio::select! {
                () = tokio::time::sleep(ctx.state.heartbeat_interval) => {}
                () = ctx.blob_sweep.notified() => {}
            }
        }
    }
}

async fn sweep_uploads(ctx: &NodeContext) -> Result<usize, ()> {
    let in_flight = ctx.uploads.keys();
    let stale = blobs::stale_uploads(&ctx.pools.api, ctx.state.id, &in_flight, BATCH)
        .await
        .map_err(|e| tracing::debug!("cannot look for abandoned uploads: {e}"))?;
    for upload in &stale {
        match ctx
            .blob
            .discard_upload(&upload.blob_key, upload.upload_id.as_deref())
            .await
        {
            Ok(()) => {
                tracing::info!("cleaned up abandoned upload {}", upload.blob_key);
                if let Err(e) = blobs::end_upload(&ctx.pools.api, &upload.blob_key).await {
                    tracing::debug!("cannot forget upload {}: {e}", upload.blob_key);
                }
            }
            // Some stores refuse to abort an upload they no longer know; after a
            // while stop trying, and say what an operator may want to check.
            Err(e) if time::OffsetDateTime::now_utc() - upload.started_at > GIVE_UP_AFTER => {
                tracing::warn!(
                    "giving up cleaning up upload {} (store upload id {:?}) after {}: {e}",
                    upload.blob_key,
                    upload.upload_id,
                    humantime::format_duration(GIVE_UP_AFTER.unsigned_abs())
                );
                if let Err(e) = blobs::end_upload(&ctx.pools.api, &upload.blob_key).await {
                    tracing::debug!("cannot forget upload {}: {e}", upload.blob_key);
                }
            }
            Err(e) => {
                tracing::warn!("cannot clean up abandoned upload {}: {e}", upload.blob_key);
                return Err(());
            }
        }
    }
    Ok(stale.len())
}

async fn sweep_garbage(ctx: &NodeContext) -> Result<usize, ()> {
    let keys = blobs::garbage(&ctx.pools.api, BATCH)
        .await
        .map_err(|e| tracing::debug!("cannot read the blobs to delete: {e}"))?;
    let mut deleted = Vec::with_capacity(keys.len());
    for key in keys {
        match ctx.blob.delete(&key).await {
            Ok(()) => deleted.push(key),
            Err(e) => {
                tracing::warn!("cannot delete blob {key}: {e}");
                break;
            }
        }
    }
    let n = deleted.len();
    if !deleted.is_empty() {
        blobs::forget_garbage(&ctx.pools.api, &deleted)
            .await
            .map_err(|e| tracing::debug!("cannot forget deleted blobs: {e}"))?;
    }
    Ok(n)
}
