//! Deployments that may not start yet: what holds each back (`deployments.held`, a
//! reason as the API words it) and its task parked in the queue meanwhile, until a
//! time (`tasks.parked_until`) or until the service that holds it lets it go.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::{DbError, TASKS_CHANNEL};

/// True once the deployment's engine has started it: gates are checked only before.
pub async fn has_started(db: impl PgExecutor<'_>, deployment_id: i64) -> Result<bool, DbError> {
    let started: Option<bool> =
        sqlx::query_scalar("SELECT started_at IS NOT NULL FROM deployments WHERE id = $1")
            .bind(deployment_id)
            .fetch_optional(db)
            .await?;
    started.ok_or(DbError::NotFound)
}

/// Holds a deployment whose task is queued: parks the task (claimable again at
/// `until`, if given) and records why. Used when a deployment is queued.
pub async fn hold_queued(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    deployment_id: i64,
    reason: &serde_json::Value,
    until: Option<OffsetDateTime>,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE deployments SET held = $2 WHERE id = $1")
        .bind(deployment_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE tasks SET parked = true, parked_until = $2
         WHERE state = 'queued' AND id = (SELECT task_id FROM deployments WHERE id = $1)",
    )
    .bind(deployment_id)
    .bind(until)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records why a deployment whose task runs now is about to be parked (the task's
/// outcome parks it).
pub async fn record(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
    reason: Option<&serde_json::Value>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE deployments SET held = $2 WHERE id = $1")
        .bind(deployment_id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(())
}

/// Lets a held deployment's task be claimed now (what held it was given), and wakes
/// the claimers. A task a node runs at this moment (claimed to ask its gates) has the
/// release noted instead, so its run's outcome leaves it claimable rather than parked.
/// False when its task is neither parked nor running.
pub async fn release(db: impl PgExecutor<'_>, deployment_id: i64) -> Result<bool, DbError> {
    released(
        db,
        "(SELECT task_id FROM deployments WHERE id = $2)",
        deployment_id,
    )
    .await
}

/// [`release`] of task `task_id`.
pub async fn release_task(db: impl PgExecutor<'_>, task_id: i64) -> Result<bool, DbError> {
    released(db, "$2", task_id).await
}

async fn released(db: impl PgExecutor<'_>, task: &str, id: i64) -> Result<bool, DbError> {
    let (released, _woken): (bool, i64) = sqlx::query_as(&format!(
        "WITH woken AS (
            UPDATE tasks SET parked = false, parked_until = NULL
            WHERE parked AND state = 'queued' AND id = {task}
            RETURNING id
         ), noted AS (
            UPDATE tasks SET release_requested = true
            WHERE state = 'running' AND id = {task}
            RETURNING id
         ), notified AS (SELECT pg_notify($1, 'queued') FROM woken)
         SELECT EXISTS (SELECT 1 FROM woken) OR EXISTS (SELECT 1 FROM noted),
                (SELECT count(*) FROM notified)"
    ))
    .bind(TASKS_CHANNEL)
    .bind(id)
    .fetch_one(db)
    .await?;
    Ok(released)
}

/// What holds back the parked deployments among the tasks `task_ids`:
/// (task id, reason).
pub async fn reasons(
    db: impl PgExecutor<'_>,
    task_ids: &[i64],
) -> Result<Vec<(i64, serde_json::Value)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT t.id, d.held FROM tasks t JOIN deployments d ON d.task_id = t.id
         WHERE t.id = ANY($1) AND t.parked AND t.state = 'queued' AND d.held IS NOT NULL",
    )
    .bind(task_ids)
    .fetch_all(db)
    .await?)
}
