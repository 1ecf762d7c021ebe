//! Which project × environment pairs ask for an automatic rollback when a deployment
//! there fails.

use sqlx::PgExecutor;

use crate::DbError;

/// The environments of project `project_id` that roll back automatically:
/// (environment id, name), by name.
pub async fn of_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.name FROM auto_rollbacks a JOIN environments e ON e.id = a.environment_id
         WHERE a.project_id = $1 ORDER BY e.name",
    )
    .bind(project_id)
    .fetch_all(db)
    .await?)
}

/// Replaces the environments of project `project_id` that roll back automatically.
/// `NotFound` when the project does not exist.
pub async fn set(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    project_id: i64,
    environment_ids: &[i64],
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(DbError::NotFound);
    }
    sqlx::query("DELETE FROM auto_rollbacks WHERE project_id = $1")
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO auto_rollbacks (project_id, environment_id)
         SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(environment_ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether deployments of `project_id` to `environment_id` roll back automatically.
pub async fn enabled(
    db: impl PgExecutor<'_>,
    project_id: i64,
    environment_id: i64,
) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM auto_rollbacks WHERE project_id = $1 AND environment_id = $2)",
    )
    .bind(project_id)
    .bind(environment_id)
    .fetch_one(db)
    .await?)
}
