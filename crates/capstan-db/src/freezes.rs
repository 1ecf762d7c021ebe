//! Freeze windows, their scope, the deployments held by one, and deployments queued
//! with an override.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::DbError;

/// A window as stored, with its scope's names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WindowRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub cron: Option<String>,
    pub duration: Option<String>,
    pub time_zone: Option<String>,
    pub all_projects: bool,
    pub all_environments: bool,
    pub project_ids: Vec<i64>,
    pub project_names: Vec<String>,
    pub environment_ids: Vec<i64>,
    pub environment_names: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A window to store. `projects`/`environments` `None`: all of them.
#[derive(Debug, Clone)]
pub struct NewWindow {
    pub name: String,
    pub description: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub cron: Option<String>,
    pub duration: Option<String>,
    pub time_zone: Option<String>,
    pub projects: Option<Vec<i64>>,
    pub environments: Option<Vec<i64>>,
}

const SELECT: &str = "SELECT w.id, w.name, w.description, w.starts_at, w.ends_at, w.cron, \
        w.duration, w.time_zone, w.all_projects, w.all_environments, \
        coalesce((SELECT array_agg(p.id ORDER BY lower(p.name)) FROM freeze_window_projects wp \
                  JOIN projects p ON p.id = wp.project_id WHERE wp.window_id = w.id), '{}') AS project_ids, \
        coalesce((SELECT array_agg(p.name ORDER BY lower(p.name)) FROM freeze_window_projects wp \
                  JOIN projects p ON p.id = wp.project_id WHERE wp.window_id = w.id), '{}') AS project_names, \
        coalesce((SELECT array_agg(e.id ORDER BY lower(e.name)) FROM freeze_window_environments we \
                  JOIN environments e ON e.id = we.environment_id WHERE we.window_id = w.id), '{}') AS environment_ids, \
        coalesce((SELECT array_agg(e.name ORDER BY lower(e.name)) FROM freeze_window_environments we \
                  JOIN environments e ON e.id = we.environment_id WHERE we.window_id = w.id), '{}') AS environment_names, \
        w.created_at, w.updated_at \
    FROM freeze_windows w";

/// How many windows there are.
pub async fn count(db: impl PgExecutor<'_>) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM freeze_windows")
        .fetch_one(db)
        .await?)
}

/// Serialises changes to the set of windows, so that the limit on their number holds
/// against concurrent creators.
pub async fn lock(conn: &mut PgConnection) -> Result<(), DbError> {
    sqlx::query("LOCK TABLE freeze_windows IN SHARE ROW EXCLUSIVE MODE")
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a window (in the caller's transaction).
pub async fn create(conn: &mut PgConnection, window: &NewWindow) -> Result<WindowRow, DbError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO freeze_windows (name, description, starts_at, ends_at, cron, duration, \
             time_zone, all_projects, all_environments) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&window.name)
    .bind(&window.description)
    .bind(window.starts_at)
    .bind(window.ends_at)
    .bind(&window.cron)
    .bind(&window.duration)
    .bind(&window.time_zone)
    .bind(window.projects.is_none())
    .bind(window.environments.is_none())
    .fetch_one(&mut *conn)
    .await?;
    set_scope(conn, id, window).await?;
    get(conn, id).await
}

/// Replaces a window (in the caller's transaction).
pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    window: &NewWindow,
) -> Result<WindowRow, DbError> {
    let done = sqlx::query(
        "UPDATE freeze_windows SET name = $2, description = $3, starts_at = $4, ends_at = $5, \
             cron = $6, duration = $7, time_zone = $8, all_projects = $9, \
             all_environments = $10, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&window.name)
    .bind(&window.description)
    .bind(window.starts_at)
    .bind(window.ends_at)
    .bind(&window.cron)
    .bind(&window.duration)
    .bind(&window.time_zone)
    .bind(window.projects.is_none())
    .bind(window.environments.is_none())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    sqlx::query("DELETE FROM freeze_window_projects WHERE window_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM freeze_window_environments WHERE window_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    set_scope(conn, id, window).await?;
    get(conn, id).await
}

async fn set_scope(conn: &mut PgConnection, id: i64, window: &NewWindow) -> Result<(), DbError> {
    if let Some(projects) = &window.projects {
        sqlx::query(
            "INSERT INTO freeze_window_projects (window_id, project_id) \
             SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(projects)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(environments) = &window.environments {
        sqlx::query(
            "INSERT INTO freeze_window_environments (window_id, environment_id) \
             SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(environments)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Every window, by name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<WindowRow>, DbError> {
    Ok(
        sqlx::query_as(&format!("{SELECT} ORDER BY lower(w.name) LIMIT 1000"))
            .fetch_all(db)
            .await?,
    )
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<WindowRow, DbError> {
    sqlx::query_as(&format!("{SELECT} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(DbError::NotFound)
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let done = sqlx::query("DELETE FROM freeze_windows WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// The windows that apply to deploying project `project_id` to environment
/// `environment_id`.
pub async fn in_scope(
    db: impl PgExecutor<'_>,
    project_id: i64,
    environment_id: i64,
) -> Result<Vec<WindowRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT} WHERE (w.all_projects OR EXISTS (SELECT 1 FROM freeze_window_projects wp \
                      WHERE wp.window_id = w.id AND wp.project_id = $1)) \
           AND (w.all_environments OR EXISTS (SELECT 1 FROM freeze_window_environments we \
                      WHERE we.window_id = w.id AND we.environment_id = $2)) \
         ORDER BY w.id LIMIT 1000"
    ))
    .bind(project_id)
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// The ids of projects named `names` (in any case), `None` for each name unknown.
pub async fn project_ids(
    db: impl PgExecutor<'_>,
    names: &[String],
) -> Result<Vec<Option<i64>>, DbError> {
    let found: Vec<(String, i64)> =
        sqlx::query_as("SELECT lower(name), id FROM projects WHERE lower(name) = ANY($1)")
            .bind(names.iter().map(|n| n.to_lowercase()).collect::<Vec<_>>())
            .fetch_all(db)
            .await?;
    Ok(names
        .iter()
        .map(|n| {
            let n = n.to_lowercase();
            found.iter().find(|(name, _)| *name == n).map(|(_, id)| *id)
        })
        .collect())
}

/// Deployments not yet started that a freeze window holds now.
pub async fn held_by_freeze(db: impl PgExecutor<'_>) -> Result<Vec<i64>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM deployments \
         WHERE state = 'queued' AND started_at IS NULL AND held->>'reason' = 'freeze' \
         ORDER BY id LIMIT 10000",
    )
    .fetch_all(db)
    .await?)
}

/// Records that deployment `deployment_id` was queued with an override of the
/// windows named (those open then).
pub async fn record_override(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
    windows: &[String],
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO freeze_overrides (deployment_id, windows) VALUES ($1, $2)")
        .bind(deployment_id)
        .bind(windows)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether deployment `deployment_id` was queued with an override.
pub async fn has_override(db: impl PgExecutor<'_>, deployment_id: i64) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM freeze_overrides WHERE deployment_id = $1)",
    )
    .bind(deployment_id)
    .fetch_one(db)
    .await?)
}
