//! Lifecycles, their phases and environments, projects' choice of one, and the
//! successes of a release the promotion check counts.

use std::collections::HashSet;

use capstan_core::lifecycle::{Phase, PhaseEnvironment, ProgressRule, Retention};
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
    pub automatic: bool,
    pub retention: Option<Retention>,
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
    insert_phases(&mut *conn, row.id, phases).await?;
    get(&mut *conn, row.id).await
}

/// Locks a lifecycle until the transaction ends, so its `before` and `after` are read
/// from one change; `NotFound` when there is none.
pub async fn lock(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM lifecycles WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|_| ())
        .ok_or(DbError::NotFound)
}

/// Replaces a lifecycle's name, description and phases (in the caller's transaction);
/// `NotFound` when there is none.
pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    name: &str,
    description: &str,
    phases: &[NewPhase],
) -> Result<Lifecycle, DbError> {
    let done = sqlx::query("UPDATE lifecycles SET name = $2, description = $3 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(description)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    sqlx::query("DELETE FROM lifecycle_phases WHERE lifecycle_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    insert_phases(&mut *conn, id, phases).await?;
    get(&mut *conn, id).await
}

async fn insert_phases(
    conn: &mut PgConnection,
    lifecycle_id: i64,
    phases: &[NewPhase],
) -> Result<(), DbError> {
    for (position, phase) in phases.iter().enumerate() {
        let min_count = match phase.rule {
            ProgressRule::AtLeast(n) => Some(i32::try_from(n).unwrap_or(i32::MAX)),
            _ => None,
        };
        let (keep_releases, keep_days) = match phase.retention {
            Some(Retention::KeepReleases(n)) => (Some(i32::try_from(n).unwrap_or(i32::MAX)), None),
            Some(Retention::KeepDays(d)) => (None, Some(i32::try_from(d).unwrap_or(i32::MAX))),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO lifecycle_phases (lifecycle_id, position, name, rule, min_count, \
                                           automatic, keep_releases, keep_days) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(lifecycle_id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&phase.name)
        .bind(phase.rule.kind())
        .bind(min_count)
        .bind(phase.automatic)
        .bind(keep_releases)
        .bind(keep_days)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO lifecycle_phase_environments (lifecycle_id, position, environment_id) \
             SELECT $1, $2, unnest($3::bigint[])",
        )
        .bind(lifecycle_id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(&phase.environment_ids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
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

/// lifecycle, name, rule, min count, environment ids and names, automatic, keep
/// releases, keep days.
type PhaseRow = (
    i64,
    String,
    String,
    Option<i32>,
    Vec<i64>,
    Vec<String>,
    bool,
    Option<i32>,
    Option<i32>,
);

/// The phases of each lifecycle of `ids`, in order, with environment names.
async fn phases_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<Phase>>, DbError> {
    let rows: Vec<PhaseRow> = sqlx::query_as(
        "SELECT p.lifecycle_id, p.name, p.rule, p.min_count, \
                coalesce(array_agg(e.id ORDER BY lower(e.name)) FILTER (WHERE e.id IS NOT NULL), '{}'), \
                coalesce(array_agg(e.name ORDER BY lower(e.name)) FILTER (WHERE e.id IS NOT NULL), '{}'), \
                p.automatic, p.keep_releases, p.keep_days \
         FROM lifecycle_phases p \
         LEFT JOIN lifecycle_phase_environments pe \
           ON pe.lifecycle_id = p.lifecycle_id AND pe.position = p.position \
         LEFT JOIN environments e ON e.id = pe.environment_id \
         WHERE p.lifecycle_id = ANY($1) \
         GROUP BY p.lifecycle_id, p.position, p.name, p.rule, p.min_count, \
                  p.automatic, p.keep_releases, p.keep_days \
         ORDER BY p.lifecycle_id, p.position",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut phases: std::collections::HashMap<i64, Vec<Phase>> = Default::default();
    for (
        lifecycle,
        name,
        rule,
        min_count,
        env_ids,
        env_names,
        automatic,
        keep_releases,
        keep_days,
    ) in rows
    {
        let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        let retention = match (count(keep_releases), count(keep_days)) {
            (Some(n), _) => Some(Retention::KeepReleases(n)),
            (None, Some(d)) => Some(Retention::KeepDays(d)),
            (None, None) => None,
        };
        let rule = ProgressRule::from_parts(&rule, min_count.and_then(|n| u32::try_from(n).ok()))
            .ok_or_else(|| DbError::Corrupt {
            what: format!("lifecycle {lifecycle}: rule `{rule}`"),
        })?;
        phases.entry(lifecycle).or_default().push(Phase {
            name,
            rule,
            automatic,
            retention,
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

/// Locks release `release_id` until the transaction ends: successes of one release are
/// recorded one at a time, so each sees the others' and exactly one of them lets the
/// release into a phase. `NotFound` when it was deleted.
pub async fn lock_release(conn: &mut PgConnection, release_id: i64) -> Result<(), DbError> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM releases WHERE id = $1 FOR UPDATE")
        .bind(release_id)
        .fetch_optional(conn)
        .await?
        .map(|_| ())
        .ok_or(DbError::NotFound)
}

/// The environments among `environments` release `release_id` has a deployment to,
/// whatever its state.
pub async fn deployed_environments(
    db: impl PgExecutor<'_>,
    release_id: i64,
    environments: &[i64],
) -> Result<HashSet<i64>, DbError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT environment_id FROM deployments \
         WHERE release_id = $1 AND environment_id = ANY($2)",
    )
    .bind(release_id)
    .bind(environments)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Marks deployment `id` as queued by the lifecycle; `Conflict { constraint:
/// "deployments_automatic_once" }` when the release already has an automatic
/// deployment to its environment.
pub async fn set_trigger(
    db: impl PgExecutor<'_>,
    id: i64,
    trigger: &serde_json::Value,
) -> Result<(), DbError> {
    sqlx::query("UPDATE deployments SET trigger = $2 WHERE id = $1")
        .bind(id)
        .bind(trigger)
        .execute(db)
        .await?;
    Ok(())
}

/// The projects whose lifecycle has a phase with a retention: (project, lifecycle).
pub async fn projects_with_retention(db: impl PgExecutor<'_>) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.lifecycle_id FROM projects p \
         WHERE EXISTS (SELECT 1 FROM lifecycle_phases lp \
                       WHERE lp.lifecycle_id = p.lifecycle_id \
                         AND (lp.keep_releases IS NOT NULL OR lp.keep_days IS NOT NULL)) \
         ORDER BY p.id",
    )
    .fetch_all(db)
    .await?)
}

/// A release as retention sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetainedRelease {
    pub id: i64,
    pub version: String,
    /// Whole days since it was created.
    pub age_days: i64,
    /// The environments where it has succeeded.
    pub succeeded: Vec<i64>,
    /// Why it is never deleted, if it is not: `newest`, `deployed`, `shown` or `active`.
    pub protected_as: Option<String>,
}

/// Why a release may never be deleted, for a release `r` of project `$1`: the newest of
/// its project; the release of the latest successful deployment of a project ×
/// environment (what runs there now); that of the latest deployment of one, whatever
/// its state (what the dashboard shows, kept with its history); one with a deployment
/// queued, running or awaiting an answer.
const PROTECTED_AS: &str = "CASE
        WHEN r.id = (SELECT n.id FROM releases n WHERE n.project_id = r.project_id
                     ORDER BY n.version_key DESC, n.id DESC LIMIT 1) THEN 'newest'
        WHEN r.id IN (SELECT DISTINCT ON (d.environment_id) d.release_id FROM deployments d
                      WHERE d.project_id = r.project_id AND d.state = 'succeeded'
                      ORDER BY d.environment_id, d.id DESC) THEN 'deployed'
        WHEN r.id IN (SELECT DISTINCT ON (d.environment_id) d.release_id FROM deployments d
                      WHERE d.project_id = r.project_id
                      ORDER BY d.environment_id, d.id DESC) THEN 'shown'
        WHEN EXISTS (SELECT 1 FROM deployments d WHERE d.release_id = r.id
                     AND d.state IN ('queued', 'running', 'awaiting_intervention')) THEN 'active'
    END";

/// The releases of a project, newest first (at most `limit`), as retention judges them.
pub async fn releases_to_judge(
    db: impl PgExecutor<'_>,
    project_id: i64,
    limit: i64,
) -> Result<Vec<RetainedRelease>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT r.id, r.version,
                floor(extract(epoch FROM now() - r.created_at) / 86400)::bigint AS age_days,
                coalesce((SELECT array_agg(DISTINCT d.environment_id) FROM deployments d
                          WHERE d.release_id = r.id AND d.state = 'succeeded'), '{{}}') AS succeeded,
                {PROTECTED_AS} AS protected_as
         FROM releases r WHERE r.project_id = $1
         ORDER BY r.version_key DESC, r.id DESC LIMIT $2"
    ))
    .bind(project_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Why release `release_id` may not be deleted now (see [`releases_to_judge`]), read in
/// the transaction that holds its lock.
pub async fn protected_as(
    conn: &mut PgConnection,
    release_id: i64,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT {PROTECTED_AS} FROM releases r WHERE r.id = $1"
    ))
    .bind(release_id)
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// How many deployments the release has: deleting it deletes them.
pub async fn deployment_count(db: impl PgExecutor<'_>, release_id: i64) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM deployments WHERE release_id = $1")
            .bind(release_id)
            .fetch_one(db)
            .await?,
    )
}
