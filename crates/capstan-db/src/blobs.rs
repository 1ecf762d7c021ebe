//! Bookkeeping that keeps the blob store free of orphans.
//!
//! An upload is recorded before its first byte is sent and forgotten when its row is
//! committed (or it is abandoned), so the upload of a node that died half way can be
//! found and cleaned up by any other node. Blobs that no row points to any more are
//! listed in `blob_garbage` by a trigger, in the transaction that let them go.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::DbError;

/// An upload whose node is gone, or that has run for more than a day.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleUpload {
    pub blob_key: String,
    pub upload_id: Option<String>,
    pub started_at: time::OffsetDateTime,
}

/// Records an upload in progress.
pub async fn start_upload(
    db: impl PgExecutor<'_>,
    blob_key: &str,
    upload_id: Option<&str>,
    node_id: Uuid,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO blob_uploads (blob_key, upload_id, node_id) VALUES ($1, $2, $3)")
        .bind(blob_key)
        .bind(upload_id)
        .bind(node_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets an upload: its row was committed, or its blob was cleaned up.
pub async fn end_upload(db: impl PgExecutor<'_>, blob_key: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM blob_uploads WHERE blob_key = $1")
        .bind(blob_key)
        .execute(db)
        .await?;
    Ok(())
}

/// Uploads nobody will finish: those of nodes that stopped or missed three heartbeats,
/// those of node `me` older than a few seconds that it is not running (`in_flight`;
/// its previous run's, or ones whose request was dropped mid-way), and any older than
/// a day.
pub async fn stale_uploads(
    db: impl PgExecutor<'_>,
    me: Uuid,
    in_flight: &[String],
    limit: i64,
) -> Result<Vec<StaleUpload>, DbError> {
    let rows = sqlx::query_as::<_, StaleUpload>(
        "SELECT u.blob_key, u.upload_id, u.started_at FROM blob_uploads u
         LEFT JOIN nodes n ON n.id = u.node_id
         WHERE (u.node_id = $1 AND u.started_at < now() - interval '5 seconds'
                AND u.blob_key <> ALL($2))
            OR u.started_at < now() - interval '1 day'
            OR n.id IS NULL
            OR n.stopped_at IS NOT NULL
            OR n.last_seen < now() - 3 * n.heartbeat_interval_ms * interval '1 millisecond'
         ORDER BY u.started_at LIMIT $3",
    )
    .bind(me)
    .bind(in_flight)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Hands a blob to housekeeping for deletion (an upload that lost a race).
pub async fn discard(db: impl PgExecutor<'_>, blob_key: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO blob_garbage (blob_key) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(blob_key)
        .execute(db)
        .await?;
    Ok(())
}

/// Blobs waiting to be deleted, oldest first.
pub async fn garbage(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<String>, DbError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT blob_key FROM blob_garbage ORDER BY since LIMIT $1")
            .bind(limit)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(key,)| key).collect())
}

/// Forgets blobs that were deleted from the store.
pub async fn forget_garbage(db: impl PgExecutor<'_>, blob_keys: &[String]) -> Result<(), DbError> {
    sqlx::query("DELETE FROM blob_garbage WHERE blob_key = ANY($1)")
        .bind(blob_keys)
        .execute(db)
        .await?;
    Ok(())
}
