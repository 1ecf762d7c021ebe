//! The `tasks` table as the API reads and changes it: create, list, show, cancel.
//!
//! Claims, completions, lease renewals and rescue run on the liveness pool and live in
//! [`crate::queue`]; [`create_one`], which may claim too, runs on the enqueue pool.

use capstan_core::TaskState;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::{
    DbError, TASKS_CHANNEL,
    agents::AGENTS_CHANNEL,
    mailbox::{Columns, NewCommand},
    notify::TaskNotice,
};

/// A row of `tasks`, with the name of the node that holds or held it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub kind: String,
    pub args: serde_json::Value,
    #[sqlx(try_from = "crate::StateColumn<TaskState>")]
    pub state: TaskState,
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
    pub state: Option<TaskState>,
    pub kind: Option<String>,
    pub node_id: Option<Uuid>,
    pub before: Option<i64>,
    pub limit: i64,
    /// Only the tasks this viewer may view: a deployment's by its project and
    /// environment, any other only through a grant scoped to everything.
    pub viewer: crate::access::Viewer,
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

/// A node that will run the task it queues if nothing older waits.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOnCreate<'a> {
    pub node_name: &'a str,
    pub lease_ttl: std::time::Duration,
    /// The kinds the node runs: only queued tasks of these come before the new one.
    pub kinds: &'a [String],
    /// Commands the task's run would send first, put in the agents' mailboxes by the
    /// same statement when the task is claimed: one commit instead of two before an
    /// agent has its work. Nothing is sent when the task is only queued.
    pub commands: &'a [NewCommand],
}

/// A task as inserted, with the ids of the commands sent with its claim, in the order
/// they were given (empty unless claimed).
#[derive(Debug, Clone)]
pub struct Created {
    pub task: TaskRow,
    pub command_ids: Vec<i64>,
}

/// Inserts the task, claimed for node $6 when `take` says so. `OFFSET 0` keeps `take`
/// a subquery of its own, so its test runs once rather than once per column reading it.
macro_rules! insert_task {
    () => {
        "INSERT INTO tasks (kind, args, on_node_lost, concurrency_key, state, node_id,
                            attempt, started_at, lease_expires_at)
         SELECT $1, $2, $3, $4,
             CASE WHEN yes THEN 'running' ELSE 'queued' END,
             CASE WHEN yes THEN $6::uuid END,
             CASE WHEN yes THEN 1 ELSE 0 END,
             CASE WHEN yes THEN statement_timestamp() END,
             CASE WHEN yes THEN statement_timestamp() + $9::float8 * interval '1 millisecond' END
         FROM (
             SELECT $7::bool AND NOT EXISTS (
                 SELECT 1 FROM tasks
                 WHERE state = 'queued' AND array_position($10::text[], kind) IS NOT NULL
             ) AS yes
             OFFSET 0
         ) take"
    };
}

/// The inserted task as the API shows it.
macro_rules! created_columns {
    () => {
        "id, kind, args, state, on_node_lost, concurrency_key, node_id,
         CASE WHEN state = 'running' THEN $8::text END, attempt, cancel_requested,
         queued_at, started_at, finished_at, error"
    };
}

/// [`create_one`] without commands. No CTE: the statement a stream of tasks repeats
/// stays a plain insert.
const CREATE_ONE: &str = concat!(
    insert_task!(),
    " RETURNING ",
    created_columns!(),
    ", '{}'::bigint[],
       CASE WHEN state = 'queued' THEN pg_notify($5, 'queued:' || $6::text) END"
);

/// [`create_one`] with commands, sent only if the task is claimed. Command ids are
/// drawn in the order rows are inserted, and that insert reads the ordered input, so
/// sorted ids line up with the commands given (as in `mailbox::send`).
const CREATE_ONE_SENDING: &str = concat!(
    "WITH inserted AS (",
    insert_task!(),
    " RETURNING *
     ), woken AS (
        SELECT pg_notify($5, 'queued:' || $6::text) FROM inserted WHERE state = 'queued'
     ), sent AS (
        INSERT INTO agent_commands (agent_id, task_id, task_attempt, body, timeout_ms,
                                    queued_at)
        SELECT c.agent_id, i.id, i.attempt, c.body, c.timeout_ms, i.started_at
        FROM inserted i,
             unnest($11::bigint[], $12::jsonb[], $13::bigint[]) WITH ORDINALITY
                 AS c(agent_id, body, timeout_ms, n)
        -- Only a claimed task sends (not `agent_command_live`, which also keeps a
        -- resumable task's commands while it is queued): the run that starts now
        -- takes these commands as its own.
        WHERE i.state = 'running'
        ORDER BY c.n
        RETURNING id, agent_id
     ), mailed AS (
        SELECT count(pg_notify($14, 'mail:' || a)) AS n
        FROM (SELECT DISTINCT agent_id AS a FROM sent) d
     )
     SELECT ",
    created_columns!(),
    ", ARRAY(SELECT id FROM sent ORDER BY id)
     FROM inserted LEFT JOIN woken ON true CROSS JOIN mailed"
);

/// The audit row of the change that queued the task, from the task inserted, as a CTE
/// whose parameters start at `$first`: the row commits with the task in one statement.
macro_rules! audited_cte {
    ($a:literal, $b:literal, $c:literal, $d:literal, $e:literal, $f:literal, $g:literal,
     $h:literal, $i:literal, $j:literal, $k:literal, $l:literal, $m:literal, $n:literal) => {
        concat!(
            "audited AS (
                INSERT INTO audit_events (actor_kind, actor_id, actor_name, auth_method,
                    credential, address, action, object_kind, object_id, object_name,
                    project_id, environment_id, before, after)
                SELECT ",
            $a,
            "::text, ",
            $b,
            "::bigint, ",
            $c,
            "::text, ",
            $d,
            "::text, ",
            $e,
            "::text, ",
            $f,
            "::text, ",
            $g,
            "::text, ",
            $h,
            "::text, coalesce(",
            $i,
            "::text, id::text), ",
            $j,
            "::text, ",
            $k,
            "::bigint, ",
            $l,
            "::bigint, ",
            $m,
            "::jsonb, ",
            $n,
            "::jsonb
                FROM inserted
             )"
        )
    };
}

/// [`CREATE_ONE`] with the audit row of the change that queued the task.
const CREATE_ONE_AUDITED: &str = concat!(
    "WITH inserted AS (",
    insert_task!(),
    " RETURNING *
     ), ",
    audited_cte!(
        "$11", "$12", "$13", "$14", "$15", "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23",
        "$24"
    ),
    " SELECT ",
    created_columns!(),
    ", '{}'::bigint[],
       CASE WHEN state = 'queued' THEN pg_notify($5, 'queued:' || $6::text) END
     FROM inserted"
);

/// [`CREATE_ONE_SENDING`] with the audit row of the change that queued the task.
const CREATE_ONE_SENDING_AUDITED: &str = concat!(
    "WITH inserted AS (",
    insert_task!(),
    " RETURNING *
     ), woken AS (
        SELECT pg_notify($5, 'queued:' || $6::text) FROM inserted WHERE state = 'queued'
     ), sent AS (
        INSERT INTO agent_commands (agent_id, task_id, task_attempt, body, timeout_ms,
                                    queued_at)
        SELECT c.agent_id, i.id, i.attempt, c.body, c.timeout_ms, i.started_at
        FROM inserted i,
             unnest($11::bigint[], $12::jsonb[], $13::bigint[]) WITH ORDINALITY
                 AS c(agent_id, body, timeout_ms, n)
        WHERE i.state = 'running'
        ORDER BY c.n
        RETURNING id, agent_id
     ), mailed AS (
        SELECT count(pg_notify($14, 'mail:' || a)) AS n
        FROM (SELECT DISTINCT agent_id AS a FROM sent) d
     ), ",
    audited_cte!(
        "$15", "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24", "$25", "$26", "$27",
        "$28"
    ),
    " SELECT ",
    created_columns!(),
    ", ARRAY(SELECT id FROM sent ORDER BY id)
     FROM inserted LEFT JOIN woken ON true CROSS JOIN mailed"
);

/// Queues one task on behalf of node `queued_by` and returns it as inserted.
///
/// With `claim`, and when no claimable task is queued, the task is claimed by that node
/// in the same statement: inserted as running, attempt 1, leased. The caller must have
/// reserved a slot and must start it. This saves a commit and a round trip per task
/// and keeps FIFO: anything already waiting goes first. Otherwise the task is queued
/// and the other nodes are notified.
///
/// It runs on the enqueue pool ([`crate::Pools::enqueue`]), not the API pool: it is
/// the one API statement per task that a stream of tasks repeats, and sqlx's pool
/// follows every statement with a round trip of its own when it takes the connection
/// back.
pub async fn create_one(
    pool: &deadpool_postgres::Pool,
    task: &NewTask,
    queued_by: Uuid,
    claim: Option<ClaimOnCreate<'_>>,
) -> Result<Created, DbError> {
    create_one_audited(pool, task, queued_by, claim, None).await
}

/// [`create_one`] with the audit row of the change that queued the task, appended by
/// the same statement (no transaction, no second commit); the row's object is the new
/// task unless the event names one.
pub async fn create_one_audited(
    pool: &deadpool_postgres::Pool,
    task: &NewTask,
    queued_by: Uuid,
    claim: Option<ClaimOnCreate<'_>>,
    audit: Option<&crate::audit::NewEvent<'_>>,
) -> Result<Created, DbError> {
    let lease_ms = claim.map_or(0.0, |c| c.lease_ttl.as_secs_f64() * 1000.0);
    let kinds: &[String] = claim.map_or(&[], |c| c.kinds);
    let node_name = claim.map(|c| c.node_name);
    let commands: &[NewCommand] = claim.map_or(&[], |c| c.commands);
    let claiming = claim.is_some();
    let columns = Columns::of(commands);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &task.kind,
        &task.args,
        &task.on_node_lost,
        &task.concurrency_key,
        &TASKS_CHANNEL,
        &queued_by,
        &claiming,
        &node_name,
        &lease_ms,
        &kinds,
    ];
    if !commands.is_empty() {
        params.extend([
            &columns.agents as &(dyn ToSql + Sync),
            &columns.bodies,
            &columns.timeouts,
            &AGENTS_CHANNEL,
        ]);
    }
    let sql = match (commands.is_empty(), audit.is_some()) {
        (true, false) => CREATE_ONE,
        (false, false) => CREATE_ONE_SENDING,
        (true, true) => CREATE_ONE_AUDITED,
        (false, true) => CREATE_ONE_SENDING_AUDITED,
    };
    let actor_kind = audit.map(|e| e.actor.kind.as_str());
    let method = audit.map(|e| e.actor.method.as_str());
    if let Some(event) = audit {
        params.extend([
            &actor_kind as &(dyn ToSql + Sync),
            &event.actor.id,
            &event.actor.name,
            &method,
            &event.actor.credential,
            &event.actor.address,
            &event.action,
            &event.object_kind,
            &event.object_id,
            &event.object_name,
            &event.project_id,
            &event.environment_id,
            &event.before,
            &event.after,
        ]);
    }
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await?;
    let row = client.query_one(&statement, &params).await?;
    Ok(Created {
        task: TaskRow {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            args: row.try_get(2)?,
            state: row.try_get::<_, String>(3)?.parse()?,
            on_node_lost: row.try_get(4)?,
            concurrency_key: row.try_get(5)?,
            node_id: row.try_get(6)?,
            node_name: row.try_get(7)?,
            attempt: row.try_get(8)?,
            cancel_requested: row.try_get(9)?,
            queued_at: row.try_get(10)?,
            started_at: row.try_get(11)?,
            finished_at: row.try_get(12)?,
            error: row.try_get(13)?,
        },
        command_ids: row.try_get(14)?,
    })
}

/// One task, locked until the caller's transaction ends: the real "before" of a change.
pub async fn get_for_update(conn: &mut sqlx::PgConnection, id: i64) -> Result<TaskRow, DbError> {
    sqlx::query_as::<_, TaskRow>(&format!("{SELECT_TASK} WHERE t.id = $1 FOR UPDATE OF t"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(DbError::NotFound)
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
           AND ($6::bigint IS NULL OR EXISTS (
               SELECT 1 FROM deployments d WHERE d.task_id = t.id
                 AND {}) OR (NOT EXISTS (SELECT 1 FROM deployments d WHERE d.task_id = t.id)
                 AND {}))
         ORDER BY t.id DESC LIMIT $5",
        crate::access::visible(6, Some("d.project_id"), Some("d.environment_id")),
        crate::access::visible(6, None, None)
    ))
    .bind(filter.state.map(TaskState::as_str))
    .bind(&filter.kind)
    .bind(filter.node_id)
    .bind(filter.before)
    .bind(filter.limit)
    .bind(filter.viewer.user_id())
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Every attempt of a task, oldest first. An attempt that rescue took over (`lost`) is
/// a row of `task_attempts`; the task's latest attempt, running or finished, is read
/// from the task itself, so a task that ran once costs no extra row.
/// `NotFound` if the task does not exist.
pub async fn attempts(db: &sqlx::PgPool, id: i64) -> Result<Vec<AttemptRow>, DbError> {
    let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    if exists.is_none() {
        return Err(DbError::NotFound);
    }
    let rows = sqlx::query_as::<_, AttemptRow>(
        "SELECT * FROM (
            SELECT attempt, node_id, node_name, started_at, finished_at, outcome
            FROM task_attempts WHERE task_id = $1
            UNION ALL
            SELECT t.attempt, t.node_id, coalesce(n.name, t.node_id::text), t.started_at,
                   t.finished_at, CASE WHEN t.state = 'running' THEN NULL ELSE t.state END
            FROM tasks t LEFT JOIN nodes n ON n.id = t.node_id
            WHERE t.id = $1 AND t.attempt > 0 AND t.state <> 'queued'
              AND t.node_id IS NOT NULL AND t.started_at IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM task_attempts a WHERE a.task_id = t.id AND a.attempt = t.attempt)
         ) a
         ORDER BY attempt LIMIT $2",
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
pub async fn cancel(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
) -> Result<Cancelled, DbError> {
    let mut tx = db.begin().await?;
    // The answer is the task as this change left it: a node may stop a running task
    // before the caller reads it again.
    let changed = sqlx::query_as::<_, TaskRow>(
        "WITH changed AS (
            UPDATE tasks SET
                state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
                error = CASE WHEN state = 'queued' THEN 'cancelled before it started'
                             ELSE error END,
                cancel_requested = true
            WHERE id = $1 AND state IN ('queued', 'running')
            RETURNING *
         )
         SELECT t.id, t.kind, t.args, t.state, t.on_node_lost, t.concurrency_key,
                t.node_id, n.name AS node_name, t.attempt, t.cancel_requested, t.queued_at,
                t.started_at, t.finished_at, t.error
         FROM changed t LEFT JOIN nodes n ON n.id = t.node_id",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if changed
        .as_ref()
        .is_some_and(|row| row.state == TaskState::Running)
    {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TASKS_CHANNEL)
            .bind(TaskNotice::Cancel(id).encode())
            .execute(&mut *tx)
            .await?;
    }
    let cancelled = match changed {
        Some(row) if row.state == TaskState::Running => Cancelled::Requested(row),
        Some(row) => Cancelled::Now(row),
        None => Cancelled::AlreadyFinished(get(&mut *tx, id).await?),
    };
    tx.commit().await?;
    Ok(cancelled)
}
