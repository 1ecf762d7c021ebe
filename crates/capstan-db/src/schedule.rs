//! When queued work runs: deployments superseded by a newer one of the same project ×
//! environment, deployments that expired before they could start, and tasks moved to
//! the front of the queue.
//!
//! A task's place in line is `coalesce(queue_order, id)` (see the migration): every
//! statement that orders queued tasks writes that expression exactly so, which is what
//! lets it walk the `tasks_queued_order` index.

use capstan_core::TaskState;
use time::OffsetDateTime;

use crate::{
    DbError,
    audit::{self, Actor, NewEvent},
};

/// The audit actor name of deployments superseded or expired.
pub const SYSTEM_ACTOR: &str = "capstan";

/// The most deployments one expiry sweep cancels, so no transaction holds many locks.
pub const EXPIRE_BATCH: i64 = 100;

/// A queued deployment that never started and was cancelled without running.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stopped {
    pub id: i64,
    pub task_id: Option<i64>,
    pub project_id: i64,
    pub environment_id: i64,
    /// `project release to environment`, as audit rows name a deployment.
    pub name: String,
    pub error: String,
}

/// Cancels the older deployments of `new`'s project × environment that are still
/// queued and have never started: each names `new` in `superseded_by` and gets a
/// `deployment.supersede` audit row, all in the caller's transaction.
///
/// Never superseded: a deployment that started (running, or parked on an operator's
/// answer: its task is then queued again but `started_at` is set), one whose task a
/// node holds right now (it may be starting), and a rollback, unless `new` is a
/// rollback too: fixing forward must not silently drop the way back.
pub async fn supersede(conn: &mut sqlx::PgConnection, new: i64) -> Result<Vec<Stopped>, DbError> {
    // Rows are locked oldest first, so two of these on one pair cannot deadlock; a
    // task a claimer has locked is waited for and then seen running.
    let stopped: Vec<Stopped> = sqlx::query_as(
        "WITH new AS (
            SELECT d.id, d.project_id, d.environment_id, d.rollback_of IS NOT NULL AS rollback,
                   r.version
            FROM deployments d JOIN releases r ON r.id = d.release_id WHERE d.id = $1
         ), doomed AS (
            SELECT o.id, o.task_id FROM deployments o
            JOIN new n ON o.project_id = n.project_id AND o.environment_id = n.environment_id
            JOIN tasks t ON t.id = o.task_id
            WHERE o.id < n.id AND o.state = 'queued' AND o.started_at IS NULL
              AND t.state = 'queued' AND (o.rollback_of IS NULL OR n.rollback)
            ORDER BY o.id
            FOR UPDATE OF o, t
         ), cancelled_tasks AS (
            UPDATE tasks t SET state = 'cancelled', finished_at = now(), parked = false,
                parked_until = NULL,
                error = format('superseded by deployment %s (release %s)', n.id, n.version)
            FROM doomed x, new n WHERE t.id = x.task_id
         )
         UPDATE deployments o SET state = 'cancelled', finished_at = now(), superseded_by = n.id,
             error = format('superseded by deployment %s (release %s)', n.id, n.version)
         FROM doomed x, new n, projects p, releases r, environments e
         WHERE o.id = x.id AND p.id = o.project_id AND r.id = o.release_id
           AND e.id = o.environment_id
         RETURNING o.id, o.task_id, o.project_id, o.environment_id,
             p.name || ' ' || r.version || ' to ' || e.name AS name, o.error",
    )
    .bind(new)
    .fetch_all(&mut *conn)
    .await?;
    let actor = Actor::system(SYSTEM_ACTOR);
    for old in &stopped {
        audit::append(
            &mut *conn,
            &event(
                &actor,
                "deployment.supersede",
                old,
                serde_json::json!({
                    "state": "cancelled",
                    "superseded_by": new,
                    "error": old.error,
                }),
            ),
        )
        .await?;
    }
    Ok(stopped)
}

/// Cancels up to [`EXPIRE_BATCH`] queued, never-started deployments whose
/// `no_deploy_after` has passed, whatever holds them (a gate, the deployment ahead of
/// them, a full cluster), with the reason `why` words from that time. Rows another
/// node is handling are skipped. The caller writes the audit rows in the same
/// transaction.
pub async fn expire(
    conn: &mut sqlx::PgConnection,
    why: &(dyn Fn(OffsetDateTime) -> String + Sync),
) -> Result<Vec<Stopped>, DbError> {
    let doomed: Vec<(i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT d.id, d.no_deploy_after FROM deployments d JOIN tasks t ON t.id = d.task_id
         WHERE d.state = 'queued' AND d.started_at IS NULL AND d.no_deploy_after IS NOT NULL
           AND d.no_deploy_after < now() AND t.state = 'queued'
         ORDER BY d.no_deploy_after LIMIT $1
         FOR UPDATE OF d, t SKIP LOCKED",
    )
    .bind(EXPIRE_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = doomed.iter().map(|(id, _)| *id).collect();
    let errors: Vec<String> = doomed.iter().map(|(_, at)| why(*at)).collect();
    Ok(sqlx::query_as(
        "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS x(id, error)),
         cancelled_tasks AS (
            UPDATE tasks t SET state = 'cancelled', finished_at = now(), parked = false,
                parked_until = NULL, error = x.error
            FROM x JOIN deployments d ON d.id = x.id WHERE t.id = d.task_id
         )
         UPDATE deployments o SET state = 'cancelled', finished_at = now(), error = x.error
         FROM x, projects p, releases r, environments e
         WHERE o.id = x.id AND p.id = o.project_id AND r.id = o.release_id
           AND e.id = o.environment_id
         RETURNING o.id, o.task_id, o.project_id, o.environment_id,
             p.name || ' ' || r.version || ' to ' || e.name AS name, o.error",
    )
    .bind(&ids)
    .bind(&errors)
    .fetch_all(&mut *conn)
    .await?)
}

fn event<'a>(
    actor: &'a Actor,
    action: &'a str,
    stopped: &Stopped,
    after: serde_json::Value,
) -> NewEvent<'a> {
    NewEvent {
        actor,
        action,
        object_kind: "deployment",
        object_id: Some(stopped.id.to_string()),
        object_name: Some(stopped.name.clone()),
        project_id: Some(stopped.project_id),
        environment_id: Some(stopped.environment_id),
        before: Some(serde_json::json!({ "state": "queued" })),
        after: Some(after),
    }
}

/// The audit row of a deployment [`expire`] cancelled.
pub fn expired_event<'a>(actor: &'a Actor, stopped: &Stopped) -> NewEvent<'a> {
    event(
        actor,
        "deployment.expire",
        stopped,
        serde_json::json!({ "state": "cancelled", "error": stopped.error }),
    )
}

/// What moving a task to the front did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Its place in line before and after (1 is the front), counted as
    /// [`crate::blocked::look_up`] counts them.
    Moved { from: i64, to: i64 },
    /// It is not queued (it runs or has finished).
    NotQueued(TaskState),
}

/// Puts queued task `id` ahead of every other queued task: the next claim that may
/// run it takes it first. Moves are serialised, so two at once cannot both be first.
pub async fn move_to_front(conn: &mut sqlx::PgConnection, id: i64) -> Result<Moved, DbError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tasks.move_to_front', 0))")
        .execute(&mut *conn)
        .await?;
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM tasks WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let state: TaskState = state.ok_or(DbError::NotFound)?.parse()?;
    if state != TaskState::Queued {
        return Ok(Moved::NotQueued(state));
    }
    let from = position(&mut *conn, id).await?;
    sqlx::query(
        "UPDATE tasks SET queue_order = (
             SELECT min(coalesce(queue_order, id)) - 1 FROM tasks WHERE state = 'queued')
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let to = position(&mut *conn, id).await?;
    Ok(Moved::Moved { from, to })
}

/// A queued task's place in line: 1 plus the queued tasks ahead of it that are not
/// parked (a parked task stands in no line).
pub async fn position(conn: &mut sqlx::PgConnection, id: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT 1 + count(*) FROM tasks t, (SELECT coalesce(queue_order, id) AS o FROM tasks
                                             WHERE id = $1) me
         WHERE t.state = 'queued' AND NOT t.parked AND t.id <> $1
           AND coalesce(t.queue_order, t.id) < me.o",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}
