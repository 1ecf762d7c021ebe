//! The built-in feed's `packages` table. A row is written only once its blob is
//! complete; "this version exists" is decided here, never by the blob store.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::DbError;

/// A row of `packages`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackageRow {
    pub package_id: String,
    pub version: String,
    pub extension: String,
    pub size: i64,
    pub sha256: String,
    pub blob_key: String,
    pub uploaded_at: OffsetDateTime,
}

/// One package id with its newest version, for the feed's list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackageSummaryRow {
    pub package_id: String,
    pub latest_version: String,
    pub versions: i64,
    pub total_size: i64,
    pub last_uploaded_at: OffsetDateTime,
}

/// A package version whose blob is complete.
#[derive(Debug, Clone)]
pub struct NewPackage<'a> {
    pub package_id: &'a str,
    pub version: &'a str,
    pub sort_key: &'a str,
    pub extension: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub blob_key: &'a str,
}

const COLUMNS: &str = "package_id, version, extension, size, sha256, blob_key, uploaded_at";

/// Whether a version is already in the feed.
pub async fn exists(db: impl PgExecutor<'_>, id: &str, version: &str) -> Result<bool, DbError> {
    let found: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM packages WHERE package_id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .fetch_optional(db)
            .await?;
    Ok(found.is_some())
}

/// Commits an uploaded version and forgets its upload, in one transaction. Without
/// `replace`, an existing version is left alone and `None` comes back; with it, the
/// row points at the new blob and the old one goes to housekeeping.
pub async fn insert(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    new: &NewPackage<'_>,
    replace: bool,
) -> Result<Option<PackageRow>, DbError> {
    let mut tx = db.begin().await?;
    let on_conflict = if replace {
        "DO UPDATE SET sort_key = excluded.sort_key, extension = excluded.extension,
            size = excluded.size, sha256 = excluded.sha256, blob_key = excluded.blob_key,
            uploaded_at = excluded.uploaded_at"
    } else {
        "DO NOTHING"
    };
    let row = sqlx::query_as::<_, PackageRow>(&format!(
        "INSERT INTO packages (package_id, version, sort_key, extension, size, sha256, blob_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (package_id, version) {on_conflict}
         RETURNING {COLUMNS}"
    ))
    .bind(new.package_id)
    .bind(new.version)
    .bind(new.sort_key)
    .bind(new.extension)
    .bind(new.size)
    .bind(new.sha256)
    .bind(new.blob_key)
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_none() {
        crate::blobs::discard(&mut *tx, new.blob_key).await?;
    }
    crate::blobs::end_upload(&mut *tx, new.blob_key).await?;
    tx.commit().await?;
    Ok(row)
}

/// One version's row.
pub async fn get(db: impl PgExecutor<'_>, id: &str, version: &str) -> Result<PackageRow, DbError> {
    sqlx::query_as::<_, PackageRow>(&format!(
        "SELECT {COLUMNS} FROM packages WHERE package_id = $1 AND version = $2"
    ))
    .bind(id)
    .bind(version)
    .fetch_optional(db)
    .await?
    .ok_or(DbError::NotFound)
}

/// Package ids in order, each with its newest version; `search` matches a part of the
/// id (case-insensitive), `after` is the keyset cursor (an id).
pub async fn list(
    db: impl PgExecutor<'_>,
    search: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<PackageSummaryRow>, DbError> {
    let pattern = search.map(crate::contains_pattern);
    let rows = sqlx::query_as::<_, PackageSummaryRow>(
        "SELECT package_id,
                (array_agg(version ORDER BY sort_key DESC))[1] AS latest_version,
                count(*) AS versions, sum(size)::bigint AS total_size,
                max(uploaded_at) AS last_uploaded_at
         FROM packages
         WHERE ($1::text IS NULL OR package_id ILIKE $1)
           AND ($2::text IS NULL OR package_id > $2)
         GROUP BY package_id ORDER BY package_id LIMIT $3",
    )
    .bind(pattern)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// A package's versions, newest first; `before` is the keyset cursor (a sort key).
pub async fn versions(
    db: impl PgExecutor<'_>,
    id: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<(PackageRow, String)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        package: PackageRow,
        sort_key: String,
    }
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {COLUMNS}, sort_key FROM packages
         WHERE package_id = $1 AND ($2::text IS NULL OR sort_key < $2)
         ORDER BY sort_key DESC LIMIT $3"
    ))
    .bind(id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.package, r.sort_key)).collect())
}

/// Deletes a version; its blob goes to housekeeping. `NotFound` if there was none.
pub async fn delete(
    db: impl PgExecutor<'_>,
    id: &str,
    version: &str,
) -> Result<PackageRow, DbError> {
    sqlx::query_as::<_, PackageRow>(&format!(
        "DELETE FROM packages WHERE package_id = $1 AND version = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(version)
    .fetch_optional(db)
    .await?
    .ok_or(DbError::NotFound)
}

/// Deletes every version beyond the newest `keep` of each package, at most `limit`
/// at a time; returns what it deleted.
pub async fn delete_beyond_newest(
    db: impl PgExecutor<'_>,
    keep: i64,
    limit: i64,
) -> Result<Vec<PackageRow>, DbError> {
    let rows = sqlx::query_as::<_, PackageRow>(&format!(
        "DELETE FROM packages p USING (
            SELECT package_id, version FROM (
                SELECT package_id, version,
                       row_number() OVER (PARTITION BY package_id ORDER BY sort_key DESC) AS n
                FROM packages) ranked
            WHERE n > $1 LIMIT $2) old
         WHERE p.package_id = old.package_id AND p.version = old.version
         RETURNING {}",
        COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(keep)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Which of these package ids the feed holds at least one version of.
pub async fn known_ids(db: impl PgExecutor<'_>, ids: &[String]) -> Result<Vec<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT package_id FROM packages WHERE package_id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?,
    )
}

/// Every version of these package ids, as `(id, version)`.
pub async fn versions_of(
    db: impl PgExecutor<'_>,
    ids: &[String],
) -> Result<Vec<(String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT package_id, version FROM packages WHERE package_id = ANY($1) LIMIT 1000000",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}
