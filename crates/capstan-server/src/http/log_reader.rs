//! Reading a task's log from a byte offset, out of whichever objects hold it at that
//! moment: segments while the task runs, one object once it is compacted.
//!
//! Compaction deletes the segments it replaced, possibly while they are being read. A
//! reader that finds an object gone reads where the log lies now and carries on at the
//! same offset, which the compacted object keeps.

use bytes::Bytes;
use capstan_db::{
    DbError,
    task_logs::{self, LogView},
};
use futures::TryStreamExt;

use crate::node::NodeContext;

/// Objects found gone in a row, each followed by a fresh look at where the log lies,
/// before the read gives up: the log changes place once (compaction), and only
/// deletion of the task makes it vanish for good.
const MISSING_TRIES: u32 = 3;

/// Where the bytes of a log go.
pub(crate) trait LogSink {
    /// Takes the next bytes; false when the reader has gone and reading may stop.
    fn accept(&mut self, chunk: Bytes) -> impl Future<Output = bool> + Send;
}

/// Why a log could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Blob(String),
    #[error("the log's bytes from {offset} on are not in the blob store: {detail}")]
    Missing { offset: u64, detail: String },
}

/// Sends the log from `*offset` to the end `view` knows of, advancing `offset` past
/// every byte sent. If an object is gone, `view` is read again from the database and
/// the read continues; the caller finds in `view` the task's state as last read.
/// Returns false if the sink went away.
pub(crate) async fn read_to_end(
    ctx: &NodeContext,
    task_id: i64,
    view: &mut LogView,
    offset: &mut u64,
    sink: &mut impl LogSink,
) -> Result<bool, ReadError> {
    let mut missing = 0;
    loop {
        match send_view(ctx, view, offset, u64::MAX, sink).await {
            Ok(more) => return Ok(more),
            Err(Step::Gone(detail)) => {
                missing += 1;
                if missing > MISSING_TRIES {
                    return Err(ReadError::Missing {
                        offset: *offset,
                        detail,
                    });
                }
                *view = task_logs::view(&ctx.pools.api, task_id, *offset as i64).await?;
            }
            Err(Step::Failed(e)) => return Err(e),
        }
    }
}

enum Step {
    /// An object is gone: the log moved (compaction) or the task is being deleted.
    Gone(String),
    Failed(ReadError),
}

/// Reads the log bytes `range` into `sink` (fewer if the log is shorter), out of the
/// objects holding them only: a page of a long log reads a page's worth of it.
pub(crate) async fn read_range(
    ctx: &NodeContext,
    task_id: i64,
    range: std::ops::Range<u64>,
    sink: &mut impl LogSink,
) -> Result<bool, ReadError> {
    let mut offset = range.start;
    let mut missing = 0;
    loop {
        let view = task_logs::view_between(
            &ctx.pools.api,
            task_id,
            offset as i64,
            range.end.min(i64::MAX as u64) as i64,
        )
        .await?;
        match send_view(ctx, &view, &mut offset, range.end, sink).await {
            Ok(more) => return Ok(more),
            Err(Step::Gone(detail)) => {
                missing += 1;
                if missing > MISSING_TRIES {
                    return Err(ReadError::Missing { offset, detail });
                }
            }
            Err(Step::Failed(e)) => return Err(e),
        }
    }
}

/// Sends what `view` holds from `*offset` up to `until` (or its end).
async fn send_view(
    ctx: &NodeContext,
    view: &LogView,
    offset: &mut u64,
    until: u64,
    sink: &mut impl LogSink,
) -> Result<bool, Step> {
    if let Some(key) = &view.compacted_key {
        let end = (view.bytes.max(0) as u64).min(until);
        if *offset >= end {
            return Ok(true);
        }
        let clipped = end < view.bytes.max(0) as u64;
        return send_object(ctx, key, *offset..end, 0, clipped, offset, sink).await;
    }
    for segment in &view.segments {
        let first = segment.first_byte as u64;
        let end = (segment.end() as u64).min(until);
        if first >= until {
            break;
        }
        if end <= *offset {
            continue;
        }
        if first > *offset {
            return Err(Step::Failed(ReadError::Missing {
                offset: *offset,
                detail: format!("segment {} starts at byte {first}", segment.seq),
            }));
        }
        let clipped = end < segment.end() as u64;
        let more = send_object(
            ctx,
            &segment.blob_key,
            *offset..end,
            first,
            clipped,
            offset,
            sink,
        )
        .await?;
        if !more {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sends the log bytes `wanted` from the object `key`, whose first byte is log byte
/// `first`; `clipped` if `wanted` stops before the object's end.
#[allow(clippy::too_many_arguments)]
async fn send_object(
    ctx: &NodeContext,
    key: &str,
    wanted: std::ops::Range<u64>,
    first: u64,
    clipped: bool,
    offset: &mut u64,
    sink: &mut impl LogSink,
) -> Result<bool, Step> {
    let gone_or_failed = |e: capstan_blob::ObjectError| {
        if e.is_not_found() {
            Step::Gone(e.to_string())
        } else {
            Step::Failed(ReadError::Blob(e.to_string()))
        }
    };
    let range = (wanted.start - first)..(wanted.end - first);
    let whole = range.start == 0 && !clipped;
    let mut stream = ctx
        .blob
        .stream(key, (!whole).then_some(range))
        .await
        .map_err(gone_or_failed)?;
    while let Some(chunk) = stream.try_next().await.map_err(gone_or_failed)? {
        // A whole segment is read without a range; never send past what was asked for.
        let room = (wanted.end - *offset) as usize;
        let chunk = if chunk.len() > room {
            chunk.slice(..room)
        } else {
            chunk
        };
        if chunk.is_empty() {
            break;
        }
        *offset += chunk.len() as u64;
        if !sink.accept(chunk).await {
            return Ok(false);
        }
    }
    Ok(true)
}
