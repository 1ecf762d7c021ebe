//! `audit-retention`: rows older than `CAPSTAN_AUDIT_RETENTION` go to the blob store as
//! one JSON Lines file per UTC day, `audit/YYYY/MM/DD.jsonl`, and are then deleted.
//!
//! A day is archived only once all of it is past the retention, oldest day first. Its
//! file is written whole, read back and compared before a single row goes, and the
//! rows deleted are exactly those the file holds (by id). The key depends only on the
//! day, and a file already there is merged with, not replaced: a run that died between
//! the upload and the delete is simply repeated, and neither loses nor repeats a row.
//! Queued by every node's scheduler once per period, so one node runs it at a time.

use std::{collections::BTreeSet, time::Duration};

use bytes::Bytes;
use capstan_api::AuditEvent;
use capstan_blob::{BlobStore, ObjectError};
use capstan_core::NodeLostPolicy;
use capstan_db::{DbError, audit};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
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

/// Writes the day's file (merged with one a previous run left), verifies it, and
/// deletes the rows it holds; returns how many rows were deleted.
async fn archive_day(db: &PgPool, blob: &BlobStore, day: Date) -> Result<u64, RetentionError> {
    let key = archive_key(day);
    let rows = audit::day(db, day).await?;
    let Some(last_id) = rows.last().map(|row| row.id) else {
        return Ok(0);
    };
    let mut lines: Vec<(i64, String)> = match blob.get(&key).await {
        Ok(existing) => parse_archive(day, &existing)?,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(source) => return Err(RetentionError::Blob { day, source }),
    };
    let known: BTreeSet<i64> = lines.iter().map(|(id, _)| *id).collect();
    for row in rows {
        if !known.contains(&row.id) {
            let id = row.id;
            let event = super::event_response(row);
            let line = serde_json::to_string(&event).map_err(|e| RetentionError::Unreadable {
                day,
                why: e.to_string(),
            })?;
            lines.push((id, line));
        }
    }
    lines.sort_by_key(|(id, _)| *id);
    let mut body = String::new();
    for (_, line) in &lines {
        body.push_str(line);
        body.push('\n');
    }
    let body = Bytes::from(body);
    blob.put(&key, body.clone())
        .await
        .map_err(|source| RetentionError::Blob { day, source })?;
    let read_back = blob
        .get(&key)
        .await
        .map_err(|source| RetentionError::Blob { day, source })?;
    if read_back != body {
        return Err(RetentionError::Unverified { day });
    }
    Ok(audit::delete_day(db, day, last_id).await?)
}

/// The rows of a file a previous run wrote, by id.
fn parse_archive(day: Date, bytes: &[u8]) -> Result<Vec<(i64, String)>, RetentionError> {
    let text = std::str::from_utf8(bytes).map_err(|e| RetentionError::Unreadable {
        day,
        why: e.to_string(),
    })?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let event: AuditEvent =
                serde_json::from_str(line).map_err(|e| RetentionError::Unreadable {
                    day,
                    why: e.to_string(),
                })?;
            Ok((event.id, line.to_owned()))
        })
        .collect()
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
