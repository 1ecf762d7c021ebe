//! Files a task attached (`task_artifacts`). Deleting a task deletes its rows by
//! cascade, and the trigger hands their blobs to housekeeping.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::DbError;

/// A row of `task_artifacts`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRow {
    pub task_id: i64,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub blob_key: String,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "task_id, name, size, sha256, blob_key, created_at";

/// Commits an uploaded artifact and forgets its upload. `None` if the task already
/// has an artifact of that name (the new blob goes to housekeeping); `NotFound` if
/// the task is gone.
pub async fn insert(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    task_id: i64,
    name: &str,
    size: i64,
    sha256: &str,
    blob_key: &str,
) -> Result<Option<ArtifactRow>, DbError> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as::<_, ArtifactRow>(&format!(
        "INSERT INTO task_artifacts (task_id, name, size, sha256, blob_key)
         SELECT id, $2, $3, $4, $5 FROM tasks WHERE id = $1
         ON CONFLICT (task_id, name) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(task_id)
    .bind(name)
    .bind(size)
    .bind(sha256)
    .bind(blob_key)
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_none() {
        crate::blobs::discard(&mut *tx, blob_key).await?;
    }
    crate::blobs::end_upload(&mut *tx, blob_key).await?;
    tx.commit().await?;
    Ok(row)
}

/// One artifact.
pub async fn get(
    db: impl PgExecutor<'_>,
    task_id: i64,
    name: &str,
) -> Result<ArtifactRow, DbError> {
    sqlx::query_as::<_, ArtifactRow>(&format!(
        "SELECT {COLUMNS} FROM task_artifacts WHERE task_id = $1 AND name = $2"
    ))
    .bind(task_id)
    .bind(name)
    .fetch_optional(db)
    .await?
    .ok_or(DbError::NotFound)
}

/// A task's artifacts by name, at most `limit`.
pub async fn list(
    db: impl PgExecutor<'_>,
    task_id: i64,
    limit: i64,
) -> Result<Vec<ArtifactRow>, DbError> {
    let rows = sqlx::query_as::<_, ArtifactRow>(&format!(
        "SELECT {COLUMNS} FROM task_artifacts WHERE task_id = $1 ORDER BY name LIMIT $2"
    ))
    .bind(task_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Deletes the artifacts of tasks that finished before `cutoff`, at most `limit`;
/// their blobs go to housekeeping. Returns how many were deleted.
pub async fn delete_of_tasks_finished_before(
    db: impl PgExecutor<'_>,
    cutoff: OffsetDateTime,
    limit: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM task_artifacts a USING (
            SELECT a.task_id, a.name FROM task_artifacts a JOIN tasks t ON t.id = a.task_id
            WHERE t.finished_at < $1 LIMIT $2) old
         WHERE a.task_id = old.task_id AND a.name = old.name",
    )
    .bind(cutoff)
    .bind(limit)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
