//! Projects, their process document and their variables.

use sqlx::{Acquire, PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub process_version: i64,
    pub variables_version: i64,
    pub created_at: OffsetDateTime,
}

const PROJECT: &str =
    "SELECT id, name, description, process_version, variables_version, created_at FROM projects";

/// A stored variable: `value` for a clear one, `secret_id` for a sensitive one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VariableRow {
    pub id: Uuid,
    pub name: String,
    pub value: Option<String>,
    pub secret_id: Option<Uuid>,
    pub scope: serde_json::Value,
}

/// What a save that named an outdated version finds instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved(i64),
    /// Someone saved first; this is the version now.
    Outdated(i64),
}

pub async fn create(
    db: impl PgExecutor<'_>,
    name: &str,
    description: &str,
) -> Result<ProjectRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO projects (name, description) VALUES ($1, $2)
         RETURNING id, name, description, process_version, variables_version, created_at",
    )
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await?)
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<ProjectRow, DbError> {
    Ok(sqlx::query_as(&format!("{PROJECT} WHERE id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// The project, locked until the caller's transaction ends: the real "before" of a
/// change.
pub async fn get_for_update(conn: &mut PgConnection, id: i64) -> Result<ProjectRow, DbError> {
    Ok(
        sqlx::query_as(&format!("{PROJECT} WHERE id = $1 FOR UPDATE"))
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}

/// Projects by id after `after`; `name` matches a whole name and `search` a part, in
/// any case. Only those `viewer` may view.
pub async fn list(
    db: impl PgExecutor<'_>,
    viewer: crate::access::Viewer,
    name: Option<&str>,
    search: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<ProjectRow>, DbError> {
    let pattern = search.map(crate::contains_pattern);
    Ok(sqlx::query_as(&format!(
        "{PROJECT}
         WHERE ($1::text IS NULL OR lower(name) = lower($1))
           AND ($2::text IS NULL OR name ILIKE $2)
           AND ($3::bigint IS NULL OR id > $3)
           AND {}
         ORDER BY id LIMIT $4",
        crate::access::visible(5, Some("projects.id"), None)
    ))
    .bind(name)
    .bind(pattern)
    .bind(after)
    .bind(limit)
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<ProjectRow, DbError> {
    Ok(sqlx::query_as(
        "UPDATE projects SET name = coalesce($2, name), description = coalesce($3, description)
         WHERE id = $1
         RETURNING id, name, description, process_version, variables_version, created_at",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await?)
}

/// Projects whose variables are scoped to this environment (at most 20 names).
pub async fn scoping_environment(
    db: impl PgExecutor<'_>,
    environment: i64,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT p.name FROM environments e, project_variables v
             JOIN projects p ON p.id = v.project_id,
             jsonb_array_elements_text(coalesce(v.scope->'environments', '[]')) AS scoped
         WHERE e.id = $1 AND lower(scoped) = lower(e.name)
         ORDER BY p.name LIMIT 20",
    )
    .bind(environment)
    .fetch_all(db)
    .await?)
}

/// Deletes a project with its variables and releases, and the secrets they held, in
/// the caller's transaction.
pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    delete_with_secrets(
        conn,
        id,
        "SELECT secret_id FROM project_variables WHERE project_id = $1 AND secret_id IS NOT NULL
         UNION ALL
         SELECT v.secret_id FROM release_variables v JOIN releases r ON r.id = v.release_id
         WHERE r.project_id = $1 AND v.secret_id IS NOT NULL",
        "DELETE FROM projects WHERE id = $1",
    )
    .await
}

/// Runs `delete` (which cascades to variable rows) and deletes the secrets that
/// `secrets` found those rows pointing at, in one transaction (a savepoint within the
/// caller's): the rows are gone once the cascade has run, so the secrets are collected
/// first.
pub(crate) async fn delete_with_secrets(
    conn: &mut PgConnection,
    id: i64,
    secrets: &str,
    delete: &str,
) -> Result<(), DbError> {
    let mut tx = conn.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(secrets)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let done = sqlx::query(delete).bind(id).execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    delete_secrets(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes secret rows nothing points at any more.
pub async fn delete_secrets(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), DbError> {
    if !ids.is_empty() {
        sqlx::query("DELETE FROM secrets WHERE id = ANY($1)")
            .bind(ids)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The process document and its version.
pub async fn process(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<(i64, serde_json::Value), DbError> {
    Ok(
        sqlx::query_as("SELECT process_version, process FROM projects WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

/// Stores the process if it is still at `expected`.
pub async fn save_process(
    conn: &mut PgConnection,
    id: i64,
    expected: i64,
    steps: &serde_json::Value,
) -> Result<SaveOutcome, DbError> {
    let saved: Option<i64> = sqlx::query_scalar(
        "UPDATE projects SET process = $3, process_version = process_version + 1
         WHERE id = $1 AND process_version = $2 RETURNING process_version",
    )
    .bind(id)
    .bind(expected)
    .bind(steps)
    .fetch_optional(&mut *conn)
    .await?;
    match saved {
        Some(version) => Ok(SaveOutcome::Saved(version)),
        None => Ok(SaveOutcome::Outdated(get(conn, id).await?.process_version)),
    }
}

/// Locks the project's variables for a save and returns their version.
pub async fn lock_variables(conn: &mut PgConnection, id: i64) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT variables_version FROM projects WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}

pub async fn variables(db: impl PgExecutor<'_>, project: i64) -> Result<Vec<VariableRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, name, value, secret_id, scope FROM project_variables
         WHERE project_id = $1 ORDER BY position",
    )
    .bind(project)
    .fetch_all(db)
    .await?)
}

/// Replaces the project's variables (locked by [`lock_variables`]) and raises their
/// version.
pub async fn replace_variables(
    conn: &mut PgConnection,
    project: i64,
    rows: &[VariableRow],
) -> Result<i64, DbError> {
    sqlx::query("DELETE FROM project_variables WHERE project_id = $1")
        .bind(project)
        .execute(&mut *conn)
        .await?;
    insert_variables(conn, "project_variables", "project_id", project, rows).await?;
    Ok(sqlx::query_scalar(
        "UPDATE projects SET variables_version = variables_version + 1 WHERE id = $1
         RETURNING variables_version",
    )
    .bind(project)
    .fetch_one(conn)
    .await?)
}

/// Inserts variable rows in their order, in one statement.
pub(crate) async fn insert_variables(
    conn: &mut PgConnection,
    table: &str,
    owner_column: &str,
    owner: i64,
    rows: &[VariableRow],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let id_column = if table == "release_variables" {
        "variable_id"
    } else {
        "id"
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let values: Vec<Option<&str>> = rows.iter().map(|r| r.value.as_deref()).collect();
    let secrets: Vec<Option<Uuid>> = rows.iter().map(|r| r.secret_id).collect();
    let scopes: Vec<serde_json::Value> = rows.iter().map(|r| r.scope.clone()).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} ({owner_column}, position, {id_column}, name, value, secret_id, scope)
         SELECT $1, (n - 1)::integer, id, name, value, secret_id, scope
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::jsonb[])
              WITH ORDINALITY AS v (id, name, value, secret_id, scope, n)"
    ))
    .bind(owner)
    .bind(&ids)
    .bind(&names)
    .bind(&values)
    .bind(&secrets)
    .bind(&scopes)
    .execute(conn)
    .await?;
    Ok(())
}
