//! Releases and the variables they froze.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::DbError;
use crate::projects::{VariableRow, delete_with_secrets, insert_variables};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseRow {
    pub id: i64,
    pub project_id: i64,
    pub version: String,
    pub notes: String,
    pub process: serde_json::Value,
    pub process_version: i64,
    pub variables_version: i64,
    pub packages: serde_json::Value,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseSummaryRow {
    pub id: i64,
    pub project_id: i64,
    pub version: String,
    pub notes: String,
    pub created_at: OffsetDateTime,
}

/// A release about to be stored.
#[derive(Debug, Clone)]
pub struct NewRelease<'a> {
    pub project_id: i64,
    pub version: &'a str,
    pub version_key: &'a str,
    pub notes: &'a str,
    pub process: &'a serde_json::Value,
    pub process_version: i64,
    pub variables_version: i64,
    pub packages: &'a serde_json::Value,
}

/// The version of the project's newest release.
pub async fn newest_version(
    db: impl PgExecutor<'_>,
    project: i64,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT version FROM releases WHERE project_id = $1 ORDER BY version_key DESC LIMIT 1",
    )
    .bind(project)
    .fetch_optional(db)
    .await?)
}

/// Stores a release and its variables. A version the project already has is a
/// `Conflict` on `releases_version`.
pub async fn insert(
    conn: &mut PgConnection,
    release: &NewRelease<'_>,
    variables: &[VariableRow],
) -> Result<ReleaseRow, DbError> {
    let row: ReleaseRow = sqlx::query_as(
        "INSERT INTO releases (project_id, version, version_key, notes, process,
                               process_version, variables_version, packages)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(release.project_id)
    .bind(release.version)
    .bind(release.version_key)
    .bind(release.notes)
    .bind(release.process)
    .bind(release.process_version)
    .bind(release.variables_version)
    .bind(release.packages)
    .fetch_one(&mut *conn)
    .await?;
    insert_variables(conn, "release_variables", "release_id", row.id, variables).await?;
    Ok(row)
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<ReleaseRow, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, project_id, version, notes, process, process_version, variables_version,
                packages, created_at
         FROM releases WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await?)
}

/// The release, locked until the caller's transaction ends.
pub async fn get_for_update(conn: &mut PgConnection, id: i64) -> Result<ReleaseRow, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, project_id, version, notes, process, process_version, variables_version,
                packages, created_at
         FROM releases WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

pub async fn variables(db: impl PgExecutor<'_>, release: i64) -> Result<Vec<VariableRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT variable_id AS id, name, value, secret_id, scope FROM release_variables
         WHERE release_id = $1 ORDER BY position",
    )
    .bind(release)
    .fetch_all(db)
    .await?)
}

/// Releases newest first (by id), before `before`; only those `viewer` may view.
pub async fn list(
    db: impl PgExecutor<'_>,
    viewer: crate::access::Viewer,
    project: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ReleaseSummaryRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT id, project_id, version, notes, created_at FROM releases
         WHERE ($1::bigint IS NULL OR project_id = $1)
           AND ($2::bigint IS NULL OR id < $2)
           AND {}
         ORDER BY id DESC LIMIT $3",
        crate::access::visible(4, Some("releases.project_id"), None)
    ))
    .bind(project)
    .bind(before)
    .bind(limit)
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// Deletes a release and the secrets its variables held, in the caller's transaction.
pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    delete_with_secrets(
        conn,
        id,
        "SELECT secret_id FROM release_variables WHERE release_id = $1 AND secret_id IS NOT NULL",
        "DELETE FROM releases WHERE id = $1",
    )
    .await
}
