//! Encrypted values (`secrets`) and the versions of the master key they are encrypted
//! under (`master_keys`). This module only moves bytes: it never sees a key or a
//! plaintext, which stay in the server's `secrets` module.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;

/// A version of the master key, known by its key-check value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MasterKeyRow {
    pub version: i32,
    pub check_nonce: Vec<u8>,
    pub check_ciphertext: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub active: bool,
    /// Whether any secret is still encrypted under this version.
    pub has_secrets: bool,
}

/// One encrypted value as stored.
#[derive(Clone, sqlx::FromRow)]
pub struct SecretRow {
    pub id: Uuid,
    pub key_version: i32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Secrets under one key version.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct VersionCount {
    pub key_version: i32,
    pub secrets: i64,
}

/// Serialises nodes that register key versions at start, so two nodes starting with
/// the same new key cannot both add it. Held until the caller's transaction ends.
pub async fn lock_master_keys(conn: &mut PgConnection) -> Result<(), DbError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('capstan/master_keys'))")
        .execute(conn)
        .await?;
    Ok(())
}

/// Every key version, oldest first.
pub async fn list_master_keys(db: impl PgExecutor<'_>) -> Result<Vec<MasterKeyRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT m.version, m.check_nonce, m.check_ciphertext, m.created_at, m.activated_at,
                m.active,
                EXISTS (SELECT 1 FROM secrets s WHERE s.key_version = m.version) AS has_secrets
         FROM master_keys m ORDER BY m.version",
    )
    .fetch_all(db)
    .await?)
}

/// Adds a key version by its key-check value; `active` makes it the one new values
/// are sealed under (only ever for the first version, or when no value exists yet).
pub async fn register_master_key(
    conn: &mut PgConnection,
    version: i32,
    check_nonce: &[u8],
    check_ciphertext: &[u8],
    active: bool,
) -> Result<(), DbError> {
    if active {
        sqlx::query("UPDATE master_keys SET active = false WHERE active")
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO master_keys (version, check_nonce, check_ciphertext, active, activated_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $4 THEN now() END)",
    )
    .bind(version)
    .bind(check_nonce)
    .bind(check_ciphertext)
    .bind(active)
    .execute(conn)
    .await?;
    Ok(())
}

/// The active version, share-locked until the caller's transaction ends. A rotation
/// activating another version waits for that lock, so every value sealed under the old
/// version is committed, and visible to the rotation, before the switch. `None` when
/// no version is active, or when one was switched while this statement waited: ask
/// again.
pub async fn lock_active_version(conn: &mut PgConnection) -> Result<Option<i32>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM master_keys WHERE active FOR SHARE")
            .fetch_optional(conn)
            .await?,
    )
}

/// The active version, without a lock.
pub async fn active_version(db: impl PgExecutor<'_>) -> Result<Option<i32>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM master_keys WHERE active")
            .fetch_optional(db)
            .await?,
    )
}

/// Makes `version` the one new values are sealed under. Waits for transactions that
/// are sealing under the old version (see [`lock_active_version`]). Returns false if it
/// already was active; `NotFound` if there is no such version.
pub async fn activate(db: &sqlx::PgPool, version: i32) -> Result<bool, DbError> {
    let mut tx = db.begin().await?;
    let active: Option<i32> =
        sqlx::query_scalar("SELECT version FROM master_keys WHERE active FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await?;
    if active == Some(version) {
        return Ok(false);
    }
    sqlx::query("UPDATE master_keys SET active = false WHERE active")
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(
        "UPDATE master_keys SET active = true, activated_at = now() WHERE version = $1",
    )
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    tx.commit().await?;
    Ok(true)
}

/// Stores one encrypted value.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    key_version: i32,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO secrets (id, key_version, nonce, ciphertext) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(key_version)
        .bind(nonce)
        .bind(ciphertext)
        .execute(db)
        .await?;
    Ok(())
}

/// The rows of these ids that exist.
pub async fn get_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<SecretRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, key_version, nonce, ciphertext FROM secrets WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?,
    )
}

/// Deletes these secrets; returns how many there were.
pub async fn delete(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM secrets WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Gives these secrets to a task: they are deleted with it.
pub async fn belong_to_task(
    db: impl PgExecutor<'_>,
    task_id: i64,
    ids: &[Uuid],
) -> Result<(), DbError> {
    sqlx::query("UPDATE secrets SET task_id = $1 WHERE id = ANY($2)")
        .bind(task_id)
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// How many secrets each key version holds (versions without any are left out).
pub async fn count_by_version(db: impl PgExecutor<'_>) -> Result<Vec<VersionCount>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_version, count(*) AS secrets FROM secrets
         GROUP BY key_version ORDER BY key_version",
    )
    .fetch_all(db)
    .await?)
}

/// Takes up to `limit` secrets not under `version`, row-locked until the transaction
/// ends. Rows another transaction holds are skipped, so two rotations share the work
/// instead of queueing behind each other.
pub async fn claim_for_rotation(
    conn: &mut PgConnection,
    version: i32,
    limit: i64,
) -> Result<Vec<SecretRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, key_version, nonce, ciphertext FROM secrets
         WHERE key_version <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(version)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Writes re-encrypted values back (all under one version), marking them rotated.
pub async fn store_rotated(
    conn: &mut PgConnection,
    key_version: i32,
    rows: &[(Uuid, Vec<u8>, Vec<u8>)],
) -> Result<u64, DbError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let nonces: Vec<&[u8]> = rows.iter().map(|r| r.1.as_slice()).collect();
    let ciphertexts: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
    let done = sqlx::query(
        "UPDATE secrets s SET key_version = $1, nonce = r.nonce, ciphertext = r.ciphertext,
                              rotated_at = now()
         FROM UNNEST($2::uuid[], $3::bytea[], $4::bytea[]) AS r (id, nonce, ciphertext)
         WHERE s.id = r.id",
    )
    .bind(key_version)
    .bind(&ids)
    .bind(&nonces)
    .bind(&ciphertexts)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// How many secrets are not under `version`.
pub async fn count_not_under(db: impl PgExecutor<'_>, version: i32) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM secrets WHERE key_version <> $1")
            .bind(version)
            .fetch_one(db)
            .await?,
    )
}
