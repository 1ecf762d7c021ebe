//! `task_logs` and `task_log_segments`: which blob objects hold a task's log, in order.
//!
//! A run adds segments only while it holds its attempt, like every other write it
//! makes: a node that lost the task cannot add to its log. Readers get the task's
//! state and the objects to read in one statement, so they see one consistent moment:
//! a finished task's segments were all recorded before its outcome.

use std::time::Duration;

use capstan_core::TaskState;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::DbError;

/// Where a run's log continues: what the task's earlier attempts wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStart {
    pub bytes: i64,
    pub segments: i32,
    pub truncated: bool,
}

/// Makes sure the task has a log row before a run stores its first object, and says
/// where the log continues. `None` if the attempt is no longer this node's.
pub async fn open(
    db: impl PgExecutor<'_>,
    task_id: i64,
    attempt: i32,
    node_id: Uuid,
) -> Result<Option<LogStart>, DbError> {
    let row: Option<(i64, i32, bool)> = sqlx::query_as(
        "WITH holder AS (
            SELECT id FROM tasks
            WHERE id = $1 AND attempt = $2 AND node_id = $3 AND state = 'running'
         )
         INSERT INTO task_logs (task_id) SELECT id FROM holder
         ON CONFLICT (task_id) DO UPDATE SET task_id = excluded.task_id
         RETURNING bytes, segments, truncated",
    )
    .bind(task_id)
    .bind(attempt)
    .bind(node_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(bytes, segments, truncated)| LogStart {
        bytes,
        segments,
        truncated,
    }))
}

/// A segment a run has stored and wants recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewSegment<'a> {
    pub task_id: i64,
    pub attempt: i32,
    pub node_id: Uuid,
    pub seq: i32,
    pub first_byte: i64,
    pub bytes: i64,
    pub blob_key: &'a str,
    /// The log reached its cap with this segment.
    pub truncated: bool,
}

/// Records a stored segment if the run still holds its attempt; false if it does not
/// (the segment's object is then left for the task's deletion to remove). Recording the
/// same segment again, after an answer was lost, changes nothing. The log's row is
/// created by the first segment when [`open`] was not needed (a first attempt).
///
/// The task row is share-locked for the statement, so a claim or rescue that moves the
/// task on waits for the segment or makes it miss: a segment is never recorded for an
/// attempt that has already lost the task.
pub async fn add_segment(
    db: impl PgExecutor<'_>,
    segment: NewSegment<'_>,
) -> Result<bool, DbError> {
    let held: bool = sqlx::query_scalar(
        "WITH holder AS (
            SELECT id FROM tasks
            WHERE id = $1 AND attempt = $2 AND node_id = $3 AND state = 'running'
            FOR SHARE
         ), added AS (
            INSERT INTO task_log_segments (task_id, seq, attempt, first_byte, bytes, blob_key)
            SELECT id, $4, $2, $5, $6, $7 FROM holder
            ON CONFLICT (task_id, seq) DO NOTHING
            RETURNING task_id
         ), summed AS (
            INSERT INTO task_logs AS l (task_id, bytes, segments, truncated)
            SELECT task_id, $5 + $6, $4, $8 FROM added
            ON CONFLICT (task_id) DO UPDATE SET bytes = excluded.bytes,
                segments = excluded.segments, truncated = l.truncated OR excluded.truncated
            RETURNING l.task_id
         )
         SELECT EXISTS (SELECT 1 FROM holder)",
    )
    .bind(segment.task_id)
    .bind(segment.attempt)
    .bind(segment.node_id)
    .bind(segment.seq)
    .bind(segment.first_byte)
    .bind(segment.bytes)
    .bind(segment.blob_key)
    .bind(segment.truncated)
    .fetch_one(db)
    .await?;
    Ok(held)
}

/// One segment of a log: `bytes` bytes starting at `first_byte`, in object `blob_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    pub seq: i32,
    pub first_byte: i64,
    pub bytes: i64,
    pub blob_key: String,
}

impl SegmentRow {
    /// The offset just past the segment.
    pub fn end(&self) -> i64 {
        self.first_byte + self.bytes
    }
}

/// A task's log and state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    /// The task's state; once finished, the log is complete.
    pub state: TaskState,
    pub error: Option<String>,
    /// The log's length so far (0 if the task never logged).
    pub bytes: i64,
    /// Set once the log is one object; there are no segments then.
    pub compacted_key: Option<String>,
    /// The segments that end after the offset asked for, in order.
    pub segments: Vec<SegmentRow>,
}

type ViewRow = (
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// The task's state and where its log lies from byte `from` on. `NotFound` if there is
/// no such task. Finding the segment that holds `from` is one index lookup, so a
/// follower polling a long log reads only the segments it has not seen.
pub async fn view(db: impl PgExecutor<'_>, task_id: i64, from: i64) -> Result<LogView, DbError> {
    view_between(db, task_id, from, i64::MAX).await
}

/// Like [`view`], but only the segments that hold bytes before `to` as well: the
/// objects to read for the bytes `from..to`, however long the log is.
pub async fn view_between(
    db: impl PgExecutor<'_>,
    task_id: i64,
    from: i64,
    to: i64,
) -> Result<LogView, DbError> {
    let rows: Vec<ViewRow> = sqlx::query_as(
        "SELECT t.state, t.error, coalesce(l.bytes, 0), l.compacted_key,
                s.seq, s.first_byte, s.bytes, s.blob_key
         FROM tasks t
         LEFT JOIN task_logs l ON l.task_id = t.id
         LEFT JOIN task_log_segments s ON s.task_id = t.id AND l.compacted_key IS NULL
              AND s.first_byte >= coalesce((
                  SELECT max(h.first_byte) FROM task_log_segments h
                  WHERE h.task_id = t.id AND h.first_byte <= $2), 0)
              AND s.first_byte + s.bytes > $2
              AND s.first_byte < $3
         WHERE t.id = $1
         ORDER BY s.seq",
    )
    .bind(task_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else {
        return Err(DbError::NotFound);
    };
    let mut view = LogView {
        state: first.0.parse()?,
        error: first.1.clone(),
        bytes: first.2,
        compacted_key: first.3.clone(),
        segments: Vec::new(),
    };
    for row in rows {
        if let (Some(seq), Some(first_byte), Some(bytes), Some(blob_key)) =
            (row.4, row.5, row.6, row.7)
        {
            view.segments.push(SegmentRow {
                seq,
                first_byte,
                bytes,
                blob_key,
            });
        }
    }
    Ok(view)
}

/// The segments of a finished task's log that is still in segments, in order; empty
/// if the task has not finished, never logged, or its log is compacted already.
pub async fn segments_to_compact(
    db: impl PgExecutor<'_>,
    task_id: i64,
) -> Result<Vec<SegmentRow>, DbError> {
    let rows: Vec<(i32, i64, i64, String)> = sqlx::query_as(
        "SELECT s.seq, s.first_byte, s.bytes, s.blob_key
         FROM task_logs l
         JOIN tasks t ON t.id = l.task_id
         JOIN task_log_segments s ON s.task_id = l.task_id
         WHERE l.task_id = $1 AND l.compacted_key IS NULL
           AND t.state IN ('succeeded', 'failed', 'cancelled')
         ORDER BY s.seq",
    )
    .bind(task_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, first_byte, bytes, blob_key)| SegmentRow {
            seq,
            first_byte,
            bytes,
            blob_key,
        })
        .collect())
}

/// Points a log at its compacted object `key` and deletes its segment rows, in one
/// transaction, if the log is still exactly `segments` segments and `bytes` bytes long.
/// Returns the keys of the segment objects it replaced; `None` if the log changed
/// meanwhile (another node compacted it first, or the task was deleted), in which case
/// `key` is not referenced and the caller deletes it.
pub async fn switch_to_compacted(
    db: &PgPool,
    task_id: i64,
    key: &str,
    bytes: i64,
    segments: i32,
) -> Result<Option<Vec<String>>, DbError> {
    let mut tx = db.begin().await?;
    let switched = sqlx::query(
        "UPDATE task_logs SET compacted_key = $2, compact_after = NULL
         WHERE task_id = $1 AND compacted_key IS NULL AND bytes = $3 AND segments = $4",
    )
    .bind(task_id)
    .bind(key)
    .bind(bytes)
    .bind(segments)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if switched == 0 {
        return Ok(None);
    }
    let replaced: Vec<String> =
        sqlx::query_scalar("DELETE FROM task_log_segments WHERE task_id = $1 RETURNING blob_key")
            .bind(task_id)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Some(replaced))
}

/// Claims, for `hold`, up to `limit` logs still in segments whose task finished more
/// than `grace` ago: the node that ran it died before compacting it, or failed to.
/// Returns their task ids. Nodes never claim the same log at once.
pub async fn claim_uncompacted(
    db: impl PgExecutor<'_>,
    grace: Duration,
    hold: Duration,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE task_logs SET compact_after = now() + $2 * interval '1 millisecond'
         WHERE task_id IN (
            SELECT l.task_id FROM task_logs l JOIN tasks t ON t.id = l.task_id
            WHERE l.compacted_key IS NULL AND l.segments > 0
              AND t.state IN ('succeeded', 'failed', 'cancelled')
              AND t.finished_at < now() - $1 * interval '1 millisecond'
              AND (l.compact_after IS NULL OR l.compact_after < now())
            ORDER BY l.task_id LIMIT $3
            FOR UPDATE OF l SKIP LOCKED)
         RETURNING task_id",
    )
    .bind(millis(grace))
    .bind(millis(hold))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(ids)
}

/// A finished task with a log, as retention found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoomedLog {
    pub task_id: i64,
    /// What the log pointed at when found; the task is deleted only if it still does.
    pub compacted_key: Option<String>,
}

/// Up to `limit` tasks with a log that finished more than `older_than` ago.
pub async fn finished_with_logs(
    db: impl PgExecutor<'_>,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<DoomedLog>, DbError> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT l.task_id, l.compacted_key FROM task_logs l JOIN tasks t ON t.id = l.task_id
         WHERE t.state IN ('succeeded', 'failed', 'cancelled')
           AND t.finished_at < now() - $1 * interval '1 millisecond'
         ORDER BY l.task_id LIMIT $2",
    )
    .bind(millis(older_than))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task_id, compacted_key)| DoomedLog {
            task_id,
            compacted_key,
        })
        .collect())
}

/// What retention deletes once a log's objects are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDeletion {
    /// The task, with its attempts and log rows (task-history-retention).
    TaskAndLog,
    /// The log rows only; the task stays (blob-retention).
    LogOnly,
}

/// Deletes what `what` says for logs whose objects are gone, if the log is still as
/// found: a log compacted meanwhile has a new object that may not have been deleted,
/// so it stays for the next run. Returns how many went.
pub async fn delete_found_logs(
    db: impl PgExecutor<'_>,
    logs: &[DoomedLog],
    what: LogDeletion,
) -> Result<u64, DbError> {
    let ids: Vec<i64> = logs.iter().map(|l| l.task_id).collect();
    let keys: Vec<Option<&str>> = logs.iter().map(|l| l.compacted_key.as_deref()).collect();
    let statement = match what {
        LogDeletion::TaskAndLog => {
            "DELETE FROM tasks t
             USING task_logs l, unnest($1::bigint[], $2::text[]) AS d(task_id, compacted_key)
             WHERE t.id = d.task_id AND l.task_id = d.task_id
               AND l.compacted_key IS NOT DISTINCT FROM d.compacted_key"
        }
        LogDeletion::LogOnly => {
            "DELETE FROM task_logs l
             USING unnest($1::bigint[], $2::text[]) AS d(task_id, compacted_key)
             WHERE l.task_id = d.task_id
               AND l.compacted_key IS NOT DISTINCT FROM d.compacted_key"
        }
    };
    let deleted = sqlx::query(statement)
        .bind(&ids)
        .bind(&keys)
        .execute(db)
        .await?
        .rows_affected();
    Ok(deleted)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
