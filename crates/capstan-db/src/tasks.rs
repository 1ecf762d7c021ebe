//! The `tasks` table as the API reads and changes it: create, list, show, cancel.
//!
//! Claims, completions, lease renewals and rescue run on the liveness pool and live in
//! [`crate::queue`].

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DbError, TASKS_CHANNEL};

/// A row of `tasks`, with the name of the node that holds or held it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub kind: String,
    pub args: serde_json::Value,
    pub state: String,
    pub on_node_lost: String,
    pub concurrency_key: Option<String>,
    pub node_id: Option<Uuid>,
    pub node_name: Option<String>,
    pub attempt: i32,
    pub cancel_requested: bool,
    pub queued_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub error: Option<String>,
}

/// A row of `task_attempts`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub node_id: Uuid,
    pub node_name: String,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub outcome: Option<String>,
}

/// A task to queue, already validated by its kind.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: String,
    pub args: serde_json::Value,
    pub on_node_lost: &'static str,
    pub concurrency_key: Option<String>,
}

/// Filters of a task list; `before` is the keyset cursor (an id).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub node_id: Option<Uuid>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// The most attempts a task shows; one requeued more often than this is a loop.
pub const ATTEMPTS_LIMIT: i64 = 1000;

const SELECT_TASK: &str = "SELECT t.id, t.kind, t.args, t.state, t.on_node_lost, t.concurrency_key,
        t.node_id, n.name AS node_name, t.attempt, t.cancel_requested, t.queued_at,
        t.started_at, t.finished_at, t.error
    FROM tasks t LEFT JOIN nodes n ON n.id = t.node_id";

/// Queues tasks in the given order in one statement, wakes the nodes, and returns the
/// new ids in the same order. The notification names the node that queued them
/// (`queued:<node id>`), which has already woken its own claimer.
pub async fn create(
    db: impl PgExecutor<'_>,
    tasks: &[NewTask],
    queued_by: Uuid,
) -> Result<Vec<i64>, DbError> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
    let args: Vec<sqlx::types::Json<&serde_json::Value>> =
        tasks.iter().map(|t| sqlx::types::Json(&t.args)).collect();
    let policies: Vec<&str> = tasks.iter().map(|t| t.on_node_lost).collect();
    let keys: Vec<Option<&str>> = tasks.iter().map(|t| t.concurrency_key.as_deref()).collect();
    // WITH ORDINALITY keeps the ids in the order given: identity values are drawn in
    // the order rows are inserted, and the insert reads the ordered input.
    let ids: Vec<(i64,)> = sqlx::query_as(
        "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[])
                WITH ORDINALITY AS i(kind, args, on_node_lost, concurrency_key, n)
         ), inserted AS (
            INSERT INTO tasks (kind, args, on_node_lost, concurrency_key)
            SELECT kind, args, on_node_lost, concurrency_key FROM input ORDER BY n
            RETURNING id
         ), woken AS (SELECT pg_notify($5, 'queued:' || $6::text))
         SELECT id FROM inserted, woken ORDER BY id",
    )
    .bind(&kinds)
    .bind(&args)
    .bind(&policies)
    .bind(&keys)
    .bind(TASKS_CHANNEL)
    .bind(queued_by)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Queues one task; returns it as inserted. With `wake_others` the other nodes are
/// notified as by [`create`]; without, the caller claims it itself (it had a free slot)
/// and the commit skips NOTIFY's cluster-wide lock and every listener's wake-up.
pub async fn create_one(
    db: impl PgExecutor<'_>,
    task: &NewTask,
    queued_by: Uuid,
    wake_others: bool,
) -> Result<TaskRow, DbError> {
    let row = sqlx::query_as::<_, TaskRow>(
        "WITH inserted AS (
            INSERT INTO tasks (kind, args, on_node_lost, concurrency_key)
            VALUES ($1, $2, $3, $4)
            RETURNING *
         ), woken AS (
            SELECT pg_notify($5, 'queued:' || $6::text) WHERE $7
         )
         SELECT id, kind, args, state, on_node_lost, concurrency_key, node_id,
                NULL::text AS node_name, attempt, cancel_requested, queued_at, started_at,
                finished_at, error
         FROM inserted LEFT JOIN woken ON true",
    )
    .bind(&task.kind)
    .bind(sqlx::types::Json(&task.args))
    .bind(task.on_node_lost)
    .bind(&task.concurrency_key)
    .bind(TASKS_CHANNEL)
    .bind(queued_by)
    .bind(wake_others)
    .fetch_one(db)
    .await?;
    Ok(row)
}

/// One task by id.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<TaskRow, DbError> {
    sqlx::query_as::<_, TaskRow>(&format!("{SELECT_TASK} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(DbError::NotFound)
}

/// A page of tasks, newest first.
pub async fn list(db: impl PgExecutor<'_>, filter: &TaskFilter) -> Result<Vec<TaskRow>, DbError> {
    let rows = sqlx::query_as::<_, TaskRow>(&format!(
        "{SELECT_TASK}
         WHERE ($1::text IS NULL OR t.state = $1)
           AND ($2::text IS NULL OR t.kind = $2)
           AND ($3::uuid IS NULL OR t.node_id = $3)
           AND ($4::bigint IS NULL OR t.id < $4)
         ORDER BY t.id DESC LIMIT $5"
    ))
    .bind(&filter.state)
    .bind(&filter.kind)
    .bind(filter.node_id)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Every attempt of a task, oldest first. `NotFound` if the task does not exist.
pub async fn attempts(db: &sqlx::PgPool, id: i64) -> Result<Vec<AttemptRow>, DbError> {
    let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    if exists.is_none() {
        return Err(DbError::NotFound);
    }
    let rows = sqlx::query_as::<_, AttemptRow>(
        "SELECT attempt, node_id, node_name, started_at, finished_at, outcome
         FROM task_attempts WHERE task_id = $1 ORDER BY attempt LIMIT $2",
    )
    .bind(id)
    .bind(ATTEMPTS_LIMIT)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// The task was queued and is now cancelled.
    Now(TaskRow),
    /// The task is running; its node has been told and stops it shortly.
    Requested(TaskRow),
    /// The task had already finished in this state; nothing changed.
    AlreadyFinished(TaskRow),
}

/// Cancels a queued task at once, or asks the node running it to stop it. The
/// notification names the task so only its node acts; the node's lease renewal picks
/// the request up as well, should the notification be lost.
pub async fn cancel(db: &sqlx::PgPool, id: i64) -> Result<Cancelled, DbError> {
    let mut tx = db.begin().await?;
    let changed: Option<(String,)> = sqlx::query_as(
        "UPDATE tasks SET
            state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
            finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
            error = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE error END,
            cancel_requested = true
         WHERE id = $1 AND state IN ('queued', 'running')
         RETURNING state",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if changed.as_ref().is_some_and(|(state,)| state == "running") {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TASKS_CHANNEL)
            .bind(format!("cancel:{id}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let row = get(db, id).await?;
    Ok(match changed {
        Some((state,)) if state == "running" => Cancelled::Requested(row),
        Some(_) => Cancelled::Now(row),
        None => Cancelled::AlreadyFinished(row),
    })
}
