//! `audit-retention`: rows older than `CAPSTAN_AUDIT_RETENTION` go to the blob store as
//! one JSON Lines file per UTC day, `audit/YYYY/MM/DD.jsonl`, and are then deleted.
//!
//! A day is archived only once all of it is past the retention, oldest day first. Its
//! file is written whole (nothing shows at the key until the upload is complete), read
//! back and compared by size and sha256 before a single row goes, and the rows deleted
//! are exactly those the file holds (by id). The key depends only on the day, and a
//! file already there is carried over, not replaced: a run that died between the upload
//! and the delete is simply repeated, and neither loses nor repeats a row.
//! Queued by every node's scheduler once per period, so one node runs it at a time.

use std::{collections::BTreeSet, time::Duration};

use bytes::Bytes;
use capstan_blob::{BlobStore, BlobWriter, ObjectError, Written};
use capstan_core::NodeLostPolicy;
use capstan_db::{DbError, audit};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::{Date, OffsetDateTime, Time};

use crate::runner::kinds::{Prepared, Ran, TaskKind, TaskRun, parse_args};

pub const AUDIT_RETENTION: &str = "audit-retention";

/// The shortest retention a node accepts: a day, since rows go by whole days.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The most days one run archives, so a first run over years of rows ends in time and
/// the next period goes on.
const MAX_DAYS_PER_RUN: usize = 366;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionArgs {
    /// Archive and delete rows older than this many milliseconds.
    pub older_than_ms: u64,
}

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("reading the audit log failed: {0}")]
    Db(#[from] DbError),
    #[error("writing the archive of {day} failed: {source}")]
    Blob { day: Date, source: ObjectError },
    #[error("the archive of {day} read back differs from what was written; its rows are kept")]
    Unverified { day: Date },
    #[error("the archive of {day} already there is not JSON Lines of audit rows: {why}")]
    Unreadable { day: Date, why: String },
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    pub days: Vec<Date>,
    pub rows: u64,
}

pub struct AuditRetention;

impl AuditRetention {
    pub fn args(older_than: Duration) -> serde_json::Value {
        serde_json::json!({ "older_than_ms": older_than.as_millis() as u64 })
    }
}

impl TaskKind for AuditRetention {
    fn name(&self) -> &'static str {
        AUDIT_RETENTION
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: RetentionArgs = parse_args(args)?;
        if Duration::from_millis(parsed.older_than_ms) < MIN_RETENTION {
            return Err(format!(
                "`older_than_ms` must be at least {} (a day)",
                MIN_RETENTION.as_millis()
            ));
        }
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: RetentionArgs = parse_args(&run.args)?;
            let older_than = Duration::from_millis(args.older_than_ms);
            let age = humantime::format_duration(older_than);
            let archived = archive_old(&run.ctx.pools.api, &run.ctx.blob, older_than)
                .await
                .map_err(|e| e.to_string())?;
            run.log.info(format!(
                "archived and deleted {} audit row(s) of {} day(s) older than {age}",
                archived.rows,
                archived.days.len()
            ));
            if archived.rows > 0 {
                tracing::info!(
                    task.id = run.id,
                    rows = archived.rows,
                    days = archived.days.len(),
                    "audit retention archived {} row(s) older than {age}",
                    archived.rows
                );
            }
            Ok(Ran::Done)
        }
        .boxed()
    }
}

/// Where the rows of `day` are archived.
pub fn archive_key(day: Date) -> String {
    format!(
        "audit/{:04}/{:02}/{:02}.jsonl",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Archives, then deletes, every whole UTC day older than `older_than`.
pub async fn archive_old(
    db: &PgPool,
    blob: &BlobStore,
    older_than: Duration,
) -> Result<Archived, RetentionError> {
    let cutoff = OffsetDateTime::now_utc() - older_than;
    // Only days wholly before the cutoff: the cutoff's own day still has young rows.
    let first_kept_day = cutoff.date().with_time(Time::MIDNIGHT).assume_utc();
    let mut archived = Archived::default();
    while archived.days.len() < MAX_DAYS_PER_RUN {
        let Some(day) = audit::oldest_day_before(db, first_kept_day).await? else {
            break;
        };
        archived.rows += archive_day(db, blob, day).await?;
        archived.days.push(day);
    }
    Ok(archived)
}

/// Writes the day's file (a file a previous run left first, then the rows it lacks),
/// verifies it, and deletes the rows it holds; returns how many rows were deleted.
/// Rows and the old file are streamed through, so a busy day costs little memory: the
/// ids written are all that is kept.
async fn archive_day(db: &PgPool, blob: &BlobStore, day: Date) -> Result<u64, RetentionError> {
    let key = archive_key(day);
    let blob_error = |source| RetentionError::Blob { day, source };
    let mut file = Lines::new(blob.writer(&key).await.map_err(blob_error)?);
    let mut written = BTreeSet::new();
    match blob.stream(&key, None).await {
        Ok(mut left) => {
            let mut pending = Vec::new();
            while let Some(chunk) = left.next().await {
                pending.extend_from_slice(&chunk.map_err(blob_error)?);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    copy_line(day, &line[..end], &mut file, &mut written).await?;
                }
            }
            copy_line(day, &pending, &mut file, &mut written).await?;
        }
        Err(e) if e.is_not_found() => {}
        Err(source) => return Err(blob_error(source)),
    }
    let mut after = 0;
    loop {
        let rows = audit::day_page(db, day, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            if written.insert(row.id) {
                let line = serde_json::to_string(&super::event_response(row)).map_err(|e| {
                    RetentionError::Unreadable {
                        day,
                        why: e.to_string(),
                    }
                })?;
                file.push(line.as_bytes()).await.map_err(blob_error)?;
            }
        }
        if !full {
            break;
        }
    }
    if written.is_empty() {
        file.abort().await;
        return Ok(0);
    }
    let stored = file.finish().await.map_err(blob_error)?;
    verify(blob, &key, day, &stored).await?;
    let ids: Vec<i64> = written.into_iter().collect();
    let mut deleted = 0;
    for chunk in ids.chunks(PAGE as usize) {
        deleted += audit::delete_archived(db, day, chunk).await?;
    }
    Ok(deleted)
}

/// Rows read, and ids deleted, per statement.
const PAGE: i64 = 5000;
/// Bytes gathered before they are handed to the upload.
const CHUNK: usize = 1 << 20;

/// An archive being written: lines gathered into chunks for the upload.
struct Lines {
    writer: BlobWriter,
    buffer: Vec<u8>,
}

impl Lines {
    fn new(writer: BlobWriter) -> Self {
        Self {
            writer,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    async fn push(&mut self, line: &[u8]) -> Result<(), ObjectError> {
        self.buffer.extend_from_slice(line);
        self.buffer.push(b'\n');
        if self.buffer.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
            self.writer.write(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Written, ObjectError> {
        if !self.buffer.is_empty() {
            self.writer.write(Bytes::from(self.buffer)).await?;
        }
        self.writer.finish().await
    }

    async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::debug!("cannot abandon an empty audit archive: {e}");
        }
    }
}

/// Copies one line of the file a previous run left, noting its row's id.
async fn copy_line(
    day: Date,
    line: &[u8],
    file: &mut Lines,
    written: &mut BTreeSet<i64>,
) -> Result<(), RetentionError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    let Id { id } = serde_json::from_slice(line).map_err(|e| RetentionError::Unreadable {
        day,
        why: e.to_string(),
    })?;
    if written.insert(id) {
        file.push(line)
            .await
            .map_err(|source| RetentionError::Blob { day, source })?;
    }
    Ok(())
}

/// Reads the stored file back and compares its size and sha256 with what was sent.
async fn verify(
    blob: &BlobStore,
    key: &str,
    day: Date,
    stored: &Written,
) -> Result<(), RetentionError> {
    let blob_error = |source| RetentionError::Blob { day, source };
    let mut read = blob.stream(key, None).await.map_err(blob_error)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = read.next().await {
        let chunk = chunk.map_err(blob_error)?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    if size != stored.size || format!("{:x}", hasher.finalize()) != stored.sha256 {
        return Err(RetentionError::Unverified { day });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::archive_key;

    #[test]
    fn days_are_archived_under_their_date() {
        assert_eq!(archive_key(date!(2026 - 03 - 07)), "audit/2026/03/07.jsonl");
    }
}
