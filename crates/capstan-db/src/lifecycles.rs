//! Lifecycles, their phases and environments, projects' choice of one, and the
//! successes of a release the promotion check counts.

use std::collections::HashSet;

use capstan_core::lifecycle::{Phase, PhaseEnvironment, ProgressRule};
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::DbError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LifecycleRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

/// A lifecycle with its phases in order.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub row: LifecycleRow,
    pub phases: Vec<Phase>,
}

/// A phase to store: environments by id.
#[derive(Debug, Clone)]
pub struct NewPhase {
    pub name: String,
    pub rule: ProgressRule,
    pub environment_ids: Vec<i64>,
}

/// Stores a lifecycle and its phases (in the caller's transaction).
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    description: &str,
    phases: &[NewPhase],
) -> Result<Lifecycle, DbError> {
    let row: LifecycleRow =
        sqlx::query_as("INSERT INTO lifecycles (name, description) VALUES ($1, $2) RETURNING *")
            .bind(name)
            .bind(description)
            .fetch_one(&mut *conn)
            .await?;
    for (position, phase) in phases.iter().enumerate() {
        let min_count = match phase.rule {
            ProgressRule::AtLeast(n) => Some(i32::try_from(n).unwrap_or(i32::MAX)),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO lifecycle_phases (lifecycle_id, position, name, rule, min_count) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&phase.name)
        .bind(phase.rule.kind())
        .bind(min_count)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO lifecycle_phase_environments (lifecycle_id, position, environment_id) \
             SELECT $1, $2, unnest($3::bigint[])",
        )
        .bind(row.id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&phase.environment_ids)
        .execute(&mut *conn)
        .await?;
    }
    get(&mut *conn, row.id).await
}

/// Lifecycles by name, with their phases.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Lifecycle>, DbError> {
    let rows: Vec<LifecycleRow> =
        sqlx::query_as("SELECT * FROM lifecycles ORDER BY lower(name) LIMIT 1000")
            .fetch_all(&mut *conn)
            .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut phases = phases_of(&mut *conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| Lifecycle {
            phases: phases.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect())
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Lifecycle, DbError> {
    let row: LifecycleRow = sqlx::query_as("SELECT * FROM lifecycles WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let phases = phases_of(&mut *conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok(Lifecycle { row, phases })
}

/// Deletes a lifecycle; `Conflict { constraint: "projects_lifecycle" }` while a project
/// uses it.
pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let done = sqlx::query("DELETE FROM lifecycles WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// lifecycle, name, rule, min count, environment ids and names.
type PhaseRow = (i64, String, String, Option<i32>, Vec<i64>, Vec<String>);

/// The phases of each lifecycle of `ids`, in order, with environment names.
async fn phases_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<Phase>>, DbError> {
    let rows: Vec<PhaseRow> = sqlx::query_as(
        "SELECT p.lifecycle_id, p.name, p.rule, p.min_count, \
                coalesce(array_agg(e.id ORDER BY lower(e.name)) FILTER (WHERE e.id IS NOT NULL), '{}'), \
                coalesce(array_agg(e.name ORDER BY lower(e.name)) FILTER (WHERE e.id IS NOT NULL), '{}') \
         FROM lifecycle_phases p \
         LEFT JOIN lifecycle_phase_environments pe \
           ON pe.lifecycle_id = p.lifecycle_id AND pe.position = p.position \
         LEFT JOIN environments e ON e.id = pe.environment_id \
         WHERE p.lifecycle_id = ANY($1) \
         GROUP BY p.lifecycle_id, p.position, p.name, p.rule, p.min_count \
         ORDER BY p.lifecycle_id, p.position",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut phases: std::collections::HashMap<i64, Vec<Phase>> = Default::default();
    for (lifecycle, name, rule, min_count, env_ids, env_names) in rows {
        let rule = ProgressRule::from_parts(&rule, min_count.and_then(|n| u32::try_from(n).ok()))
            .ok_or_else(|| DbError::Corrupt {
            what: format!("lifecycle {lifecycle}: rule `{rule}`"),
        })?;
        phases.entry(lifecycle).or_default().push(Phase {
            name,
            rule,
            environments: env_ids
                .into_iter()
                .zip(env_names)
                .map(|(id, name)| PhaseEnvironment { id, name })
                .collect(),
        });
    }
    Ok(phases)
}

/// The lifecycle of a project, if it has one.
pub async fn of_project(
    conn: &mut PgConnection,
    project_id: i64,
) -> Result<Option<Lifecycle>, DbError> {
    let id: Option<i64> = sqlx::query_scalar("SELECT lifecycle_id FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_one(&mut *conn)
        .await?;
    match id {
        Some(id) => Ok(Some(get(conn, id).await?)),
        None => Ok(None),
    }
}

/// Sets (or with `None` clears) a project's lifecycle; returns the one it had.
pub async fn set_project_lifecycle(
    conn: &mut PgConnection,
    project_id: i64,
    lifecycle_id: Option<i64>,
) -> Result<Option<i64>, DbError> {
    let before: Option<i64> =
        sqlx::query_scalar("SELECT lifecycle_id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(project_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("UPDATE projects SET lifecycle_id = $2 WHERE id = $1")
        .bind(project_id)
        .bind(lifecycle_id)
        .execute(&mut *conn)
        .await?;
    Ok(before)
}

/// The environments where release `release_id` has succeeded.
pub async fn succeeded_environments(
    db: impl PgExecutor<'_>,
    release_id: i64,
) -> Result<HashSet<i64>, DbError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT environment_id FROM deployments \
         WHERE release_id = $1 AND state = 'succeeded'",
    )
    .bind(release_id)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().collect())
}
