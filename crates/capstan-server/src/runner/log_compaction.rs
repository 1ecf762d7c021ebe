//! Compaction: once a task has finished, its log's segments are copied into one object,
//! the log's row is switched to it in one transaction, and then the segment objects are
//! deleted. The node that ran the task does it as soon as the outcome is written;
//! housekeeping does it for logs whose node died first.
//!
//! Readers may be reading a segment while it is deleted: they re-read where the log
//! lies and continue at the same offset in the compacted object.

use std::sync::Arc;

use bytes::BytesMut;
use capstan_blob::{ObjectError, task_log};
use capstan_db::task_logs::{self, SegmentRow};
use futures::TryStreamExt;

use crate::node::NodeContext;

/// Logs up to this size are copied in memory and written in one request; longer ones
/// are streamed.
const IN_MEMORY_BYTES: i64 = 8 * 1024 * 1024;
/// The most objects one listing of a log's prefix returns.
const LIST_LIMIT: usize = 10_000;

/// Compacts the log of a task this node just finished, in the background; at most a
/// few compactions run at once per node.
pub(crate) fn spawn(ctx: &Arc<NodeContext>, task_id: i64) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let Ok(_permit) = ctx.runner.log_compactions.acquire().await else {
            return;
        };
        match compact(&ctx, task_id).await {
            Ok(Some(bytes)) => {
                ctx.metrics.task_logs_compacted.increment(1);
                tracing::debug!(
                    task.id = task_id,
                    size_bytes = bytes,
                    "compacted the log of task {task_id}"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                task.id = task_id,
                "cannot compact the log of task {task_id}: {e}; housekeeping tries again later"
            ),
        }
    });
}

/// Compacts a finished task's log if it is still in segments. Returns the compacted
/// size, or `None` when there was nothing to do or another node did it first.
pub(crate) async fn compact(ctx: &NodeContext, task_id: i64) -> Result<Option<u64>, String> {
    let segments = task_logs::segments_to_compact(&ctx.pools.api, task_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = segments.last() else {
        return Ok(None);
    };
    let mut expected = 0;
    for segment in &segments {
        if segment.first_byte != expected {
            return Err(format!(
                "segment {} starts at byte {}, not {expected}",
                segment.seq, segment.first_byte
            ));
        }
        expected = segment.end();
    }
    let key = task_log::compacted_key(task_id);
    let written = if expected <= IN_MEMORY_BYTES {
        copy_in_memory(ctx, &segments, &key).await
    } else {
        copy_streamed(ctx, &segments, &key).await
    };
    match written {
        Ok(()) => {}
        // A segment is gone: another node compacted the log meanwhile.
        Err(CopyError::Gone) => return Ok(None),
        Err(CopyError::Failed(e)) => return Err(e),
    }
    let switched =
        task_logs::switch_to_compacted(&ctx.pools.api, task_id, &key, expected, last.seq).await;
    let replaced = match switched {
        Ok(Some(replaced)) => replaced,
        Ok(None) => {
            delete_quietly(ctx, &key).await;
            return Ok(None);
        }
        // The switch may have committed without our hearing of it, so the object stays;
        // it goes with the task if it is not the log's.
        Err(e) => return Err(e.to_string()),
    };
    for old in &replaced {
        delete_quietly(ctx, old).await;
    }
    // Objects no row names: segments of a run that lost its lease, uploads retried.
    match ctx.blob.list(&task_log::prefix(task_id), LIST_LIMIT).await {
        Ok(found) => {
            for stray in found.iter().filter(|k| **k != key && !replaced.contains(k)) {
                delete_quietly(ctx, stray).await;
            }
        }
        Err(e) => tracing::debug!(
            task.id = task_id,
            "cannot list the log objects of task {task_id}: {e}"
        ),
    }
    Ok(Some(expected as u64))
}

/// Why copying the segments stopped.
enum CopyError {
    /// A segment's object is gone.
    Gone,
    Failed(String),
}

impl From<ObjectError> for CopyError {
    fn from(e: ObjectError) -> Self {
        if e.is_not_found() {
            Self::Gone
        } else {
            Self::Failed(e.to_string())
        }
    }
}

async fn copy_in_memory(
    ctx: &NodeContext,
    segments: &[SegmentRow],
    key: &str,
) -> Result<(), CopyError> {
    let total: i64 = segments.iter().map(|s| s.bytes).sum();
    let mut whole = BytesMut::with_capacity(total as usize);
    for segment in segments {
        let bytes = ctx.blob.get(&segment.blob_key).await?;
        check_size(segment, bytes.len() as u64)?;
        whole.extend_from_slice(&bytes);
    }
    Ok(ctx.blob.put(key, whole.freeze()).await?)
}

async fn copy_streamed(
    ctx: &NodeContext,
    segments: &[SegmentRow],
    key: &str,
) -> Result<(), CopyError> {
    let mut writer = ctx.blob.writer(key).await?;
    for segment in segments {
        let copied = async {
            let mut stream = ctx.blob.stream(&segment.blob_key, None).await?;
            let mut size = 0u64;
            while let Some(chunk) = stream.try_next().await? {
                size += chunk.len() as u64;
                writer.write(chunk).await?;
            }
            check_size(segment, size)
        }
        .await;
        if let Err(e) = copied {
            // The segments stay the log; a failed abort leaves only parts the store
            // expires, never a visible object.
            if let Err(abort) = writer.abort().await {
                tracing::debug!("cannot abort a compaction upload: {abort}");
            }
            return Err(e);
        }
    }
    writer.finish().await?;
    Ok(())
}

fn check_size(segment: &SegmentRow, size: u64) -> Result<(), CopyError> {
    if size == segment.bytes as u64 {
        return Ok(());
    }
    Err(CopyError::Failed(format!(
        "{} has {size} bytes where its row says {}",
        segment.blob_key, segment.bytes
    )))
}

async fn delete_quietly(ctx: &NodeContext, key: &str) {
    if let Err(e) = ctx.blob.delete(key).await {
        tracing::debug!("cannot delete {key}: {e}; it goes with its task");
    }
}
