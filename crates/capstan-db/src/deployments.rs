//! Deployments, their grid cells, the questions they ask, and the machine mutexes and
//! named locks they hold.
//!
//! Every write the engine makes names the task attempt it runs under (the fence): once
//! rescue has moved the task to another node, the write matches nothing and the
//! engine learns it must stop.

use capstan_core::deployment::{CellState, DeploymentState, InterventionAnswer, InterventionKind};
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DbError, StateColumn, TASKS_CHANNEL};

/// The task kind that runs deployments.
pub const DEPLOY_KIND: &str = "deploy";

/// The condition every fenced write carries: the task still runs this attempt.
const FENCE: &str = "EXISTS (SELECT 1 FROM tasks t WHERE t.id = $1 AND t.attempt = $2
                             AND t.state = 'running')";

/// The attempt a write is made under.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    pub task_id: i64,
    pub attempt: i32,
}

/// A deployment about to be queued.
#[derive(Debug, Clone, Default)]
pub struct NewDeployment {
    pub project_id: i64,
    pub release_id: i64,
    pub environment_id: i64,
    pub options: serde_json::Value,
    pub on_node_lost: &'static str,
    /// The deployment this one rolls back, when it is a rollback.
    pub rollback_of: Option<i64>,
    /// A rollback a node queued by itself when `rollback_of` failed.
    pub automatic_rollback: bool,
    /// It may not start before this time.
    pub deploy_at: Option<OffsetDateTime>,
    /// It must not start after this time: it is cancelled instead.
    pub no_deploy_after: Option<OffsetDateTime>,
    /// Leave the older queued deployments of the pair alone instead of superseding
    /// them (see [`crate::schedule::supersede`]).
    pub keep_queued: bool,
}

/// Queues a deployment and the task that runs it in one transaction. The task's key
/// makes deployments of one project to one environment run one at a time, oldest
/// first. Unless `keep_queued`, the pair's older deployments that are still queued and
/// never started are superseded by it in the same transaction.
pub async fn queue(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    new: &NewDeployment,
    queued_by: Uuid,
) -> Result<(i64, i64), DbError> {
    let mut tx = db.begin().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO deployments (project_id, release_id, environment_id, options, rollback_of,
                                  automatic_rollback, deploy_at, no_deploy_after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(new.project_id)
    .bind(new.release_id)
    .bind(new.environment_id)
    .bind(&new.options)
    .bind(new.rollback_of)
    .bind(new.automatic_rollback)
    .bind(new.deploy_at)
    .bind(new.no_deploy_after)
    .fetch_one(&mut *tx)
    .await?;
    let key = format!("deploy:{}:{}", new.project_id, new.environment_id);
    let (task_id,): (i64,) = sqlx::query_as(
        "WITH inserted AS (
            INSERT INTO tasks (kind, args, on_node_lost, concurrency_key)
            VALUES ($1, jsonb_build_object('deployment_id', $2::bigint), $3, $4)
            RETURNING id
         ), woken AS (SELECT pg_notify($5, 'queued:' || $6::text))
         SELECT id FROM inserted, woken",
    )
    .bind(DEPLOY_KIND)
    .bind(id)
    .bind(new.on_node_lost)
    .bind(&key)
    .bind(TASKS_CHANNEL)
    .bind(queued_by)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE deployments SET task_id = $2 WHERE id = $1")
        .bind(id)
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
    if !new.keep_queued {
        crate::schedule::supersede(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok((id, task_id))
}

/// A deployment with the names of what it deploys, as lists and pages show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeploymentRow {
    pub id: i64,
    pub task_id: Option<i64>,
    pub project_id: i64,
    pub project: String,
    pub release_id: i64,
    pub release: String,
    pub environment_id: i64,
    pub environment: String,
    pub options: serde_json::Value,
    pub targets: serde_json::Value,
    /// The state as the engine wrote it, corrected by the task's when the task ended
    /// without the engine writing one (see [`effective_state`]).
    #[sqlx(try_from = "StateColumn<DeploymentState>")]
    pub state: DeploymentState,
    pub error: Option<String>,
    pub stopped_by: Option<serde_json::Value>,
    pub queued_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// The deployment this one rolls back, when it is a rollback.
    pub rollback_of: Option<i64>,
    /// The rollback was queued by a node when `rollback_of` failed.
    pub automatic_rollback: bool,
    pub deploy_at: Option<OffsetDateTime>,
    pub no_deploy_after: Option<OffsetDateTime>,
    /// The newer deployment that replaced this one while it was queued.
    pub superseded_by: Option<i64>,
    /// Why it was queued when nobody asked for it (lifecycle automation).
    pub trigger: Option<serde_json::Value>,
}

/// A deployment's state as readers see it: the engine's, unless its task ended
/// without the engine saying how (cancelled before it started, failed on an error
/// of the engine's own, or given up after losing too many nodes).
const SELECT_DEPLOYMENT: &str = "SELECT d.id, d.task_id, d.project_id, p.name AS project,
        d.release_id, r.version AS release, d.environment_id, e.name AS environment,
        d.options, d.targets,
        CASE WHEN d.state IN ('queued', 'running', 'awaiting_intervention')
                  AND t.state IS DISTINCT FROM 'queued' AND t.state IS DISTINCT FROM 'running'
             THEN CASE t.state WHEN 'cancelled' THEN 'cancelled' ELSE 'aborted' END
             ELSE d.state END AS state,
        coalesce(d.error, CASE WHEN d.state IN ('queued', 'running', 'awaiting_intervention')
                  THEN t.error END) AS error,
        d.stopped_by, d.queued_at,
        -- A held deployment's task was claimed only to find it may not start yet.
        coalesce(d.started_at, CASE WHEN d.held IS NULL THEN t.started_at END) AS started_at,
        coalesce(d.finished_at, CASE WHEN d.state IN ('queued', 'running', 'awaiting_intervention')
                  THEN t.finished_at END) AS finished_at,
        d.rollback_of, d.automatic_rollback, d.deploy_at, d.no_deploy_after, d.superseded_by,
        d.trigger
    FROM deployments d
    JOIN projects p ON p.id = d.project_id
    JOIN releases r ON r.id = d.release_id
    JOIN environments e ON e.id = d.environment_id
    LEFT JOIN tasks t ON t.id = d.task_id";

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<DeploymentRow, DbError> {
    sqlx::query_as::<_, DeploymentRow>(&format!("{SELECT_DEPLOYMENT} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(DbError::NotFound)
}

/// The deployment a task runs.
pub async fn of_task(db: impl PgExecutor<'_>, task_id: i64) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM deployments WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(db)
            .await?,
    )
}

/// The deployments the tasks `task_ids` run: (task id, deployment id).
pub async fn of_tasks(
    db: impl PgExecutor<'_>,
    task_ids: &[i64],
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(
        sqlx::query_as("SELECT task_id, id FROM deployments WHERE task_id = ANY($1)")
            .bind(task_ids)
            .fetch_all(db)
            .await?,
    )
}

/// The open questions of parked deployments among the tasks `task_ids`:
/// (task id, intervention id).
pub async fn parked_questions(
    db: impl PgExecutor<'_>,
    task_ids: &[i64],
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT t.id, i.id FROM tasks t
         JOIN deployments d ON d.task_id = t.id
         JOIN deployment_interventions i ON i.deployment_id = d.id AND i.answer IS NULL
         WHERE t.id = ANY($1) AND t.parked ORDER BY i.id",
    )
    .bind(task_ids)
    .fetch_all(db)
    .await?)
}

/// Filters of a list; `before` is the keyset cursor (an id). Newest first.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    pub release_id: Option<i64>,
    pub state: Option<DeploymentState>,
    pub before: Option<i64>,
    pub limit: i64,
    /// Only the deployments this viewer may view.
    pub viewer: crate::access::Viewer,
}

/// What a rollback of a project × environment redeploys: `(current, release)`, where
/// `current` is the pair's latest deployment whatever its state (the one rolled back)
/// and `release` the release of the newest successful deployment older than it whose
/// release differs from `current`'s (`None` when there is none). `None` when the pair
/// has no deployment at all.
pub async fn rollback_target(
    db: impl PgExecutor<'_>,
    project_id: i64,
    environment_id: i64,
) -> Result<Option<(i64, Option<i64>)>, DbError> {
    Ok(sqlx::query_as::<_, (i64, Option<i64>)>(
        "WITH current AS (
             SELECT id, release_id FROM deployments
              WHERE project_id = $1 AND environment_id = $2
              ORDER BY id DESC LIMIT 1)
         SELECT c.id,
                (SELECT d.release_id FROM deployments d
                  WHERE d.project_id = $1 AND d.environment_id = $2
                    AND d.id < c.id AND d.state = 'succeeded'
                    AND d.release_id <> c.release_id
                  ORDER BY d.id DESC LIMIT 1)
           FROM current c",
    )
    .bind(project_id)
    .bind(environment_id)
    .fetch_optional(db)
    .await?)
}

pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &DeploymentFilter,
) -> Result<Vec<DeploymentRow>, DbError> {
    Ok(sqlx::query_as::<_, DeploymentRow>(&format!(
        "SELECT * FROM ({SELECT_DEPLOYMENT}
            WHERE ($1::bigint IS NULL OR d.project_id = $1)
              AND ($2::bigint IS NULL OR d.environment_id = $2)
              AND ($3::bigint IS NULL OR d.release_id = $3)
              AND ($5::bigint IS NULL OR d.id < $5)
              AND {}) x
         WHERE ($4::text IS NULL OR x.state = $4)
         ORDER BY x.id DESC LIMIT $6",
        crate::access::visible(7, Some("d.project_id"), Some("d.environment_id"))
    ))
    .bind(filter.project_id)
    .bind(filter.environment_id)
    .bind(filter.release_id)
    .bind(filter.state.map(DeploymentState::as_str))
    .bind(filter.before)
    .bind(filter.limit)
    .bind(filter.viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// An agent of the environment, as the engine picks targets.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentAgent {
    pub id: i64,
    pub name: String,
    pub tags: Vec<String>,
    pub disabled: bool,
    pub health: String,
    pub health_reason: Option<String>,
    pub last_seen: Option<OffsetDateTime>,
}

/// Every agent of an environment, by name.
pub async fn environment_agents(
    db: impl PgExecutor<'_>,
    environment_id: i64,
) -> Result<Vec<EnvironmentAgent>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, name, tags, disabled, health, health_reason, last_seen FROM agents
         WHERE environment_id = $1 ORDER BY lower(name)",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// Whether each of `agents` is still enabled and has been heard from (or registered)
/// within `within_secs`: an agent that is not has gone offline. Polls reach
/// `last_seen` once per heartbeat, so a new agent counts from its registration.
pub async fn agents_online(
    db: impl PgExecutor<'_>,
    agents: &[i64],
    within_secs: f64,
) -> Result<Vec<(i64, bool)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT a.id, coalesce(NOT a.disabled
                AND coalesce(a.last_seen, a.registered_at) > now() - make_interval(secs => $2),
                false)
         FROM unnest($1::bigint[]) AS w(id) LEFT JOIN agents a ON a.id = w.id",
    )
    .bind(agents)
    .bind(within_secs)
    .fetch_all(db)
    .await?)
}

/// Marks the deployment started (once) with its targets, under the fence.
pub async fn start(
    db: impl PgExecutor<'_>,
    fence: Fence,
    id: i64,
    targets: &serde_json::Value,
) -> Result<(), DbError> {
    let done = sqlx::query(&format!(
        "UPDATE deployments SET state = 'running', started_at = coalesce(started_at, now()),
             targets = CASE WHEN targets = '[]'::jsonb THEN $4 ELSE targets END
         WHERE id = $3 AND {FENCE}"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(id)
    .bind(targets)
    .execute(db)
    .await?;
    fenced(done.rows_affected())
}

/// The targets stored when the deployment first started (empty before).
pub async fn stored_targets(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<serde_json::Value, DbError> {
    Ok(
        sqlx::query_scalar("SELECT targets FROM deployments WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

/// Sets the state (finished ones with the time and the reason), under the fence.
pub async fn set_state(
    db: impl PgExecutor<'_>,
    fence: Fence,
    id: i64,
    state: DeploymentState,
    error: Option<&str>,
) -> Result<(), DbError> {
    let done = sqlx::query(&format!(
        "UPDATE deployments SET state = $4, error = $5,
             finished_at = CASE WHEN $6 THEN now() END
         WHERE id = $3 AND {FENCE}"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(id)
    .bind(state.as_str())
    .bind(error)
    .bind(state.is_finished())
    .execute(db)
    .await?;
    fenced(done.rows_affected())
}

/// Records the end of a deployment whose run stopped without the engine (cancelled):
/// only if it has not ended already.
pub async fn finish_stopped(
    db: impl PgExecutor<'_>,
    id: i64,
    state: DeploymentState,
    error: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE deployments SET state = $2, error = coalesce(error, $3), finished_at = now()
         WHERE id = $1 AND state IN ('queued', 'running', 'awaiting_intervention')",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Who stopped it: written by a cancel or an abandon.
pub async fn set_stopped_by(
    db: impl PgExecutor<'_>,
    id: i64,
    actor: &serde_json::Value,
) -> Result<(), DbError> {
    sqlx::query("UPDATE deployments SET stopped_by = $2 WHERE id = $1")
        .bind(id)
        .bind(actor)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks a cancelled deployment abandoned: its leftover commands are closed.
pub async fn abandon(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
    task_id: Option<i64>,
    actor: &serde_json::Value,
) -> Result<u64, DbError> {
    let mut tx = db.begin().await?;
    let closed = match task_id {
        Some(task_id) => sqlx::query(
            "UPDATE agent_commands SET state = 'cancelled', finished_at = now(),
                     error = 'abandoned by an operator: the agent never confirmed that it stopped'
                 WHERE task_id = $1 AND state IN ('pending', 'delivered', 'running')",
        )
        .bind(task_id)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        None => 0,
    };
    sqlx::query(
        "UPDATE deployment_cells SET state = 'cancelled', finished_at = coalesce(finished_at, now()),
             error = coalesce(error, 'abandoned by an operator')
         WHERE deployment_id = $1 AND state IN ('pending', 'waiting', 'running', 'unknown')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE deployments SET state = 'abandoned', stopped_by = $2,
             finished_at = coalesce(finished_at, now())
         WHERE id = $1",
    )
    .bind(id)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    release_all(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(closed)
}

/// Commands of the task still open, and when the oldest cancel was asked of them.
pub async fn open_commands(
    db: impl PgExecutor<'_>,
    task_id: i64,
) -> Result<(i64, Option<OffsetDateTime>), DbError> {
    Ok(sqlx::query_as(
        "SELECT count(*), min(cancel_requested_at) FROM agent_commands
         WHERE task_id = $1 AND state IN ('pending', 'delivered', 'running')",
    )
    .bind(task_id)
    .fetch_one(db)
    .await?)
}

/// A cell's command about to be sent.
#[derive(Debug, Clone)]
pub struct CellCommand<'a> {
    pub step: i32,
    pub agent_id: i64,
    pub action: i32,
    pub target: &'a str,
    pub body: &'a serde_json::Value,
    pub timeout_ms: i64,
    pub started_at: OffsetDateTime,
}

/// Sends a cell's command to its agent and marks the cell running with it, in one
/// statement under the fence: one commit, and no moment when one is stored without
/// the other. Returns the command's id.
pub async fn send_cell(
    db: impl PgExecutor<'_>,
    fence: Fence,
    id: i64,
    cell: &CellCommand<'_>,
) -> Result<i64, DbError> {
    let sent: Option<i64> = sqlx::query_scalar(&format!(
        "WITH sent AS (
            INSERT INTO agent_commands (agent_id, task_id, task_attempt, body, timeout_ms)
            SELECT $4, $1, $2, $5, $6 WHERE {FENCE}
            RETURNING id
         ), cell AS (
            INSERT INTO deployment_cells (deployment_id, step, agent_id, action, target, state,
                command_id, started_at)
            SELECT $3, $7, $4, $8, $9, 'running', sent.id, $10 FROM sent
            ON CONFLICT (deployment_id, step, agent_id, action) DO UPDATE SET
                target = excluded.target, state = 'running', waiting_for = NULL,
                command_id = excluded.command_id, started_at = excluded.started_at,
                finished_at = NULL, exit_code = NULL, outputs = '{{}}', error = NULL
         ), woken AS (
            SELECT pg_notify($11, 'mail:' || $4::text) FROM sent
         )
         SELECT id FROM sent, (SELECT count(*) FROM woken) w"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(id)
    .bind(cell.agent_id)
    .bind(cell.body)
    .bind(cell.timeout_ms)
    .bind(cell.step)
    .bind(cell.action)
    .bind(cell.target)
    .bind(cell.started_at)
    .bind(crate::notify::AGENTS_CHANNEL)
    .fetch_optional(db)
    .await?;
    sent.ok_or(DbError::Fenced)
}

/// Closes the cells a cancelled run left open.
pub async fn cancel_open_cells(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE deployment_cells SET state = 'cancelled', finished_at = now(),
             waiting_for = NULL, error = coalesce(error, 'the deployment was cancelled')
         WHERE deployment_id = $1 AND state IN ('pending', 'waiting', 'running', 'unknown')",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// One cell as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CellRow {
    pub step: i32,
    pub agent_id: i64,
    pub action: i32,
    pub target: String,
    #[sqlx(try_from = "StateColumn<CellState>")]
    pub state: CellState,
    pub waiting_for: Option<serde_json::Value>,
    pub command_id: Option<i64>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub exit_code: Option<i32>,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
}

pub async fn cells(db: impl PgExecutor<'_>, id: i64) -> Result<Vec<CellRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT step, agent_id, action, target, state, waiting_for, command_id, started_at,
                finished_at, exit_code, outputs, error
         FROM deployment_cells WHERE deployment_id = $1
         ORDER BY step, lower(target), agent_id, action",
    )
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// Writes cells (inserted or replaced whole), under the fence.
///
/// Committed without waiting for the WAL flush: the one write a resumed run could not
/// do without, a cell going `running` with its command, is [`send_cell`]'s, which
/// waits. Should a PostgreSQL crash lose the last of these, a resumed run finds the
/// cell running and reads its command's outcome again (the agent's report is a
/// durable commit), or finds it pending and decides again what was decided from
/// durable inputs.
pub async fn write_cells(
    db: impl PgExecutor<'_>,
    fence: Fence,
    id: i64,
    cells: &[CellRow],
) -> Result<(), DbError> {
    if cells.is_empty() {
        return Ok(());
    }
    let steps: Vec<i32> = cells.iter().map(|c| c.step).collect();
    let agents: Vec<i64> = cells.iter().map(|c| c.agent_id).collect();
    let actions: Vec<i32> = cells.iter().map(|c| c.action).collect();
    let targets: Vec<&str> = cells.iter().map(|c| c.target.as_str()).collect();
    let states: Vec<&str> = cells.iter().map(|c| c.state.as_str()).collect();
    let waiting: Vec<Option<&serde_json::Value>> =
        cells.iter().map(|c| c.waiting_for.as_ref()).collect();
    let commands: Vec<Option<i64>> = cells.iter().map(|c| c.command_id).collect();
    let started: Vec<Option<OffsetDateTime>> = cells.iter().map(|c| c.started_at).collect();
    let finished: Vec<Option<OffsetDateTime>> = cells.iter().map(|c| c.finished_at).collect();
    let exits: Vec<Option<i32>> = cells.iter().map(|c| c.exit_code).collect();
    let outputs: Vec<&serde_json::Value> = cells.iter().map(|c| &c.outputs).collect();
    let errors: Vec<Option<&str>> = cells.iter().map(|c| c.error.as_deref()).collect();
    let done = sqlx::query(&format!(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
         INSERT INTO deployment_cells (deployment_id, step, agent_id, action, target, state,
             waiting_for, command_id, started_at, finished_at, exit_code, outputs, error)
         SELECT $3, c.* FROM relaxed, unnest($4::int[], $5::bigint[], $6::int[], $7::text[], $8::text[],
             $9::jsonb[], $10::bigint[], $11::timestamptz[], $12::timestamptz[], $13::int[],
             $14::jsonb[], $15::text[]) AS c
         WHERE {FENCE}
         ON CONFLICT (deployment_id, step, agent_id, action) DO UPDATE SET
             target = excluded.target, state = excluded.state,
             waiting_for = excluded.waiting_for, command_id = excluded.command_id,
             started_at = excluded.started_at, finished_at = excluded.finished_at,
             exit_code = excluded.exit_code, outputs = excluded.outputs, error = excluded.error"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(id)
    .bind(&steps)
    .bind(&agents)
    .bind(&actions)
    .bind(&targets)
    .bind(&states)
    .bind(&waiting)
    .bind(&commands)
    .bind(&started)
    .bind(&finished)
    .bind(&exits)
    .bind(&outputs)
    .bind(&errors)
    .execute(db)
    .await?;
    fenced(done.rows_affected())
}

/// A question as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InterventionRow {
    pub id: i64,
    pub deployment_id: i64,
    #[sqlx(try_from = "StateColumn<InterventionKind>")]
    pub kind: InterventionKind,
    pub step: i32,
    pub agent_id: Option<i64>,
    pub target: Option<String>,
    pub action: Option<i32>,
    pub question: String,
    pub responsible_role: Option<String>,
    pub asked_at: OffsetDateTime,
    pub answer: Option<String>,
    pub answered_by: Option<serde_json::Value>,
    pub note: String,
}

impl InterventionRow {
    /// The answer, once given.
    pub fn answer(&self) -> Result<Option<InterventionAnswer>, DbError> {
        self.answer
            .as_deref()
            .map(|a| {
                a.parse().map_err(|_| DbError::Corrupt {
                    what: format!("deployment_interventions.answer `{a}`"),
                })
            })
            .transpose()
    }
}

pub async fn interventions(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
) -> Result<Vec<InterventionRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT * FROM deployment_interventions WHERE deployment_id = $1 ORDER BY id",
    )
    .bind(deployment_id)
    .fetch_all(db)
    .await?)
}

pub async fn intervention(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<InterventionRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT * FROM deployment_interventions WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// A question about to be asked.
#[derive(Debug, Clone)]
pub struct NewIntervention<'a> {
    pub kind: InterventionKind,
    pub step: i32,
    pub agent_id: Option<i64>,
    pub target: Option<&'a str>,
    pub action: Option<i32>,
    pub question: &'a str,
    pub responsible_role: Option<&'a str>,
}

/// Asks a question under the fence, or returns the one already open for that cell
/// (a resumed run asking again).
pub async fn ask(
    db: &PgPool,
    fence: Fence,
    deployment_id: i64,
    new: &NewIntervention<'_>,
) -> Result<i64, DbError> {
    let inserted: Option<i64> = sqlx::query_scalar(&format!(
        "INSERT INTO deployment_interventions (deployment_id, kind, step, agent_id, target,
             action, question, responsible_role)
         SELECT $3, $4, $5, $6, $7, $8, $9, $10 WHERE {FENCE}
         ON CONFLICT (deployment_id, step, coalesce(agent_id, 0), coalesce(action, -1))
             WHERE answer IS NULL DO NOTHING
         RETURNING id"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(deployment_id)
    .bind(new.kind.as_str())
    .bind(new.step)
    .bind(new.agent_id)
    .bind(new.target)
    .bind(new.action)
    .bind(new.question)
    .bind(new.responsible_role)
    .fetch_optional(db)
    .await?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM deployment_interventions
         WHERE deployment_id = $1 AND step = $2 AND coalesce(agent_id, 0) = coalesce($3, 0)
           AND coalesce(action, -1) = coalesce($4, -1) AND answer IS NULL",
    )
    .bind(deployment_id)
    .bind(new.step)
    .bind(new.agent_id)
    .bind(new.action)
    .fetch_optional(db)
    .await?;
    open.ok_or(DbError::Fenced)
}

/// What answering did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answering {
    Answered,
    /// Answered before.
    AlreadyAnswered,
}

/// Records an answer unless one was given first. Wakes the deployment's task when it
/// was parked waiting for it.
pub async fn answer(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
    answer: InterventionAnswer,
    by: &serde_json::Value,
    note: &str,
) -> Result<Answering, DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE deployment_interventions SET answer = $2, answered_by = $3, note = $4
         WHERE id = $1 AND answer IS NULL",
    )
    .bind(id)
    .bind(answer.as_str())
    .bind(by)
    .bind(note)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Answering::AlreadyAnswered);
    }
    // A deployment parked waiting for this answer goes back in line.
    sqlx::query(
        "WITH woken AS (
            UPDATE tasks SET parked = false
            WHERE parked AND id = (SELECT d.task_id FROM deployments d
                                   JOIN deployment_interventions i ON i.deployment_id = d.id
                                   WHERE i.id = $2)
            RETURNING id
         )
         SELECT pg_notify($1, 'queued') FROM woken",
    )
    .bind(TASKS_CHANNEL)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Answering::Answered)
}

/// Who holds a resource.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Holder {
    pub deployment_id: i64,
    pub project: String,
    pub since: OffsetDateTime,
}

/// What asking for a resource got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Held by this deployment now (or already).
    Held,
    /// Held by another, or promised to an older waiter: this deployment waits in line.
    Waiting(Holder),
    /// It changed hands while being read: ask again.
    Retry,
}

/// Takes `resource` for the deployment if it is free and no older deployment waits
/// for it; otherwise records the deployment as waiting. Oldest first: a deployment
/// with a lower id always gets a freed resource before a newer one.
pub async fn acquire(
    db: &PgPool,
    fence: Fence,
    deployment_id: i64,
    resource: &str,
) -> Result<Acquired, DbError> {
    // The common case in one statement: free (or held by this deployment already)
    // and nobody older waiting. Two takers racing for a free resource are kept apart
    // by its primary key; the loser goes the long way below.
    let held: Option<i64> = sqlx::query_scalar(&format!(
        "WITH taken AS (
            INSERT INTO deployment_locks (resource, deployment_id)
            SELECT $4, $3 WHERE {FENCE} AND NOT EXISTS (
                SELECT 1 FROM deployment_lock_waiters w
                JOIN deployments d ON d.id = w.deployment_id
                WHERE w.resource = $4 AND w.deployment_id < $3
                  AND d.state IN ('queued', 'running', 'awaiting_intervention'))
            ON CONFLICT (resource) DO UPDATE SET since = deployment_locks.since
                WHERE deployment_locks.deployment_id = $3
            RETURNING deployment_id
         ), no_longer_waiting AS (
            DELETE FROM deployment_lock_waiters
            WHERE resource = $4 AND deployment_id = $3 AND EXISTS (SELECT 1 FROM taken)
         )
         SELECT deployment_id FROM taken"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(deployment_id)
    .bind(resource)
    .fetch_optional(db)
    .await?;
    if held.is_some() {
        return Ok(Acquired::Held);
    }
    let mut tx = db.begin().await?;
    // Serialises takers of this one resource, so "free and nobody older waits" holds
    // until the commit.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
        .bind(resource)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO deployment_locks (resource, deployment_id)
         SELECT $4, $3 WHERE {FENCE} AND NOT EXISTS (
             SELECT 1 FROM deployment_lock_waiters w JOIN deployments d ON d.id = w.deployment_id
             WHERE w.resource = $4 AND w.deployment_id < $3
               AND d.state IN ('queued', 'running', 'awaiting_intervention'))
         ON CONFLICT (resource) DO NOTHING"
    ))
    .bind(fence.task_id)
    .bind(fence.attempt)
    .bind(deployment_id)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    let holder: Option<Holder> = sqlx::query_as(
        "SELECT l.deployment_id, p.name AS project, l.since
         FROM deployment_locks l JOIN deployments d ON d.id = l.deployment_id
         JOIN projects p ON p.id = d.project_id WHERE l.resource = $1",
    )
    .bind(resource)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match holder {
        Some(holder) if holder.deployment_id == deployment_id => {
            sqlx::query(
                "DELETE FROM deployment_lock_waiters WHERE resource = $1 AND deployment_id = $2",
            )
            .bind(resource)
            .bind(deployment_id)
            .execute(&mut *tx)
            .await?;
            Acquired::Held
        }
        other => {
            sqlx::query(
                "INSERT INTO deployment_lock_waiters (resource, deployment_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(resource)
            .bind(deployment_id)
            .execute(&mut *tx)
            .await?;
            let holder = match other {
                Some(holder) => Some(holder),
                // Free, but promised to an older waiter: name that one.
                None => {
                    sqlx::query_as(
                        "SELECT w.deployment_id, p.name AS project, w.since
                         FROM deployment_lock_waiters w
                         JOIN deployments d ON d.id = w.deployment_id
                         JOIN projects p ON p.id = d.project_id
                         WHERE w.resource = $1 AND w.deployment_id < $2
                         ORDER BY w.deployment_id LIMIT 1",
                    )
                    .bind(resource)
                    .bind(deployment_id)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            match holder {
                Some(holder) => Acquired::Waiting(holder),
                // Neither held nor promised: the older waiter took it and gave it back
                // between these reads (it takes free resources without the advisory
                // lock), or this run's attempt no longer runs, so nothing was written.
                None => {
                    let runs: bool = sqlx::query_scalar(&format!("SELECT {FENCE}"))
                        .bind(fence.task_id)
                        .bind(fence.attempt)
                        .fetch_one(&mut *tx)
                        .await?;
                    if !runs {
                        return Err(DbError::Fenced);
                    }
                    Acquired::Retry
                }
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Gives a resource back. Committed without waiting for the WAL flush: should a
/// PostgreSQL crash lose it, the deployment holds the resource a little longer (until
/// it ends), which keeps others out but never lets two in.
pub async fn release(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
    resource: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
         DELETE FROM deployment_locks USING relaxed
         WHERE resource = $1 AND deployment_id = $2",
    )
    .bind(resource)
    .bind(deployment_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Gives back everything the deployment holds or waits for.
pub async fn release_all(db: impl PgExecutor<'_>, deployment_id: i64) -> Result<(), DbError> {
    sqlx::query(
        "WITH held AS (DELETE FROM deployment_locks WHERE deployment_id = $1)
         DELETE FROM deployment_lock_waiters WHERE deployment_id = $1",
    )
    .bind(deployment_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Frees what finished deployments still hold (a run that stopped without cleaning
/// up). Returns how many were freed.
pub async fn release_finished(db: &PgPool) -> Result<u64, DbError> {
    let locks = sqlx::query(
        "DELETE FROM deployment_locks l USING deployments d LEFT JOIN tasks t ON t.id = d.task_id
         WHERE d.id = l.deployment_id
           AND (d.state NOT IN ('queued', 'running', 'awaiting_intervention')
                OR t.state IS DISTINCT FROM 'queued' AND t.state IS DISTINCT FROM 'running')",
    )
    .execute(db)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM deployment_lock_waiters w USING deployments d LEFT JOIN tasks t ON t.id = d.task_id
         WHERE d.id = w.deployment_id
           AND (d.state NOT IN ('queued', 'running', 'awaiting_intervention')
                OR t.state IS DISTINCT FROM 'queued' AND t.state IS DISTINCT FROM 'running')",
    )
    .execute(db)
    .await?;
    Ok(locks)
}

fn fenced(rows: u64) -> Result<(), DbError> {
    if rows == 0 {
        Err(DbError::Fenced)
    } else {
        Ok(())
    }
}

impl From<StateColumn<DeploymentState>> for DeploymentState {
    fn from(column: StateColumn<DeploymentState>) -> Self {
        column.0
    }
}

impl From<StateColumn<CellState>> for CellState {
    fn from(column: StateColumn<CellState>) -> Self {
        column.0
    }
}

impl From<StateColumn<InterventionKind>> for InterventionKind {
    fn from(column: StateColumn<InterventionKind>) -> Self {
        column.0
    }
}
