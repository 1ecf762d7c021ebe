//! Agents' mailboxes: commands a task sends, what a poll hands over, acknowledgements,
//! output on its way to the task log, and results.
//!
//! Whether an unfinished command still works for its task is one SQL function,
//! `agent_command_live` (migration `20261206000002_task_resume.sql`), that every
//! statement here applies: a command belongs to the attempt that sent it, or, when its
//! task's node-lost policy is `resume`, to the task while it is queued or running.

use capstan_core::CommandState;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

use crate::{DbError, agents::AGENTS_CHANNEL, notify::AgentNotice};

/// A command to put in an agent's mailbox.
#[derive(Debug, Clone)]
pub struct NewCommand {
    pub agent_id: i64,
    pub body: serde_json::Value,
    pub timeout_ms: i64,
}

/// Commands as the arrays an `unnest($agents, $bodies, $timeouts)` insert reads.
pub(crate) struct Columns<'a> {
    pub agents: Vec<i64>,
    pub bodies: Vec<&'a serde_json::Value>,
    pub timeouts: Vec<i64>,
}

impl<'a> Columns<'a> {
    pub fn of(commands: &'a [NewCommand]) -> Self {
        Self {
            agents: commands.iter().map(|c| c.agent_id).collect(),
            bodies: commands.iter().map(|c| &c.body).collect(),
            timeouts: commands.iter().map(|c| c.timeout_ms).collect(),
        }
    }
}

/// Puts commands in their agents' mailboxes and wakes whichever node each agent polls,
/// if attempt `attempt` of the task still runs; otherwise sends nothing and returns no
/// ids.
pub async fn send(
    db: &PgPool,
    task_id: i64,
    attempt: i32,
    commands: &[NewCommand],
) -> Result<Vec<i64>, DbError> {
    let Columns {
        agents,
        bodies,
        timeouts,
    } = Columns::of(commands);
    // One statement, so one round trip and one commit: the agent's wait is this long.
    // Ids are drawn in the order rows are inserted, and the insert reads the ordered
    // input, so sorted ids line up with `commands`.
    //
    // The share lock on the task row fences the send: a claim of a later attempt waits
    // for it or makes it insert nothing. A resumed attempt reads what was sent after its
    // claim, so it sees every command a fenced node sent and never sends one again.
    let ids: Vec<(i64,)> = sqlx::query_as(
        "WITH held AS (
            SELECT id FROM tasks WHERE id = $1 AND attempt = $2 AND state = 'running'
            FOR SHARE
         ), inserted AS (
            INSERT INTO agent_commands (agent_id, task_id, task_attempt, body, timeout_ms)
            SELECT c.agent_id, $1, $2, c.body, c.timeout_ms
            FROM held, unnest($3::bigint[], $4::jsonb[], $5::bigint[]) WITH ORDINALITY
                 AS c(agent_id, body, timeout_ms, n)
            ORDER BY c.n
            RETURNING id
         ), woken AS (
            SELECT count(pg_notify($6, 'mail:' || a)) AS n
            FROM (SELECT DISTINCT unnest($3::bigint[]) AS a) d, held
         )
         SELECT id FROM inserted, woken ORDER BY id",
    )
    .bind(task_id)
    .bind(attempt)
    .bind(&agents)
    .bind(&bodies)
    .bind(&timeouts)
    .bind(AGENTS_CHANNEL)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// One `mail:<agent>` notification per agent, however many of its commands changed.
async fn notify_mail(db: impl PgExecutor<'_>, agents: &[i64]) -> Result<(), DbError> {
    let agents: std::collections::BTreeSet<i64> = agents.iter().copied().collect();
    let payloads: Vec<String> = agents
        .into_iter()
        .map(|agent| AgentNotice::Mail(agent).encode())
        .collect();
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) p")
        .bind(AGENTS_CHANNEL)
        .bind(&payloads)
        .execute(db)
        .await?;
    Ok(())
}

/// A command handed to its agent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub task_id: i64,
    pub body: Option<serde_json::Value>,
    pub timeout_ms: i64,
    /// A running command to stop rather than one to run.
    pub cancel: bool,
}

/// Hands over every command not yet acknowledged (counting the delivery), and names
/// the running ones to cancel, in one statement.
///
/// The delivery mark is committed without waiting for the WAL flush: the agent is
/// waiting for this answer, and the mark is only a count for operators. Should a
/// PostgreSQL crash lose it, the command is pending again and is handed over again, as
/// any command not yet acknowledged is; a later durable commit (the acknowledgement)
/// flushes it with everything before it.
pub async fn poll(db: impl PgExecutor<'_>, agent_id: i64) -> Result<Vec<Delivery>, DbError> {
    Ok(sqlx::query_as(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
         handed AS (
            UPDATE agent_commands SET state = 'delivered', deliveries = deliveries + 1
            WHERE agent_id = $1 AND state IN ('pending', 'delivered')
              AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = task_id
                          AND agent_command_live(t.state, t.attempt, t.on_node_lost,
                                                 task_attempt))
            RETURNING id, task_id, body, timeout_ms
         )
         SELECT id, task_id, body, timeout_ms, false AS cancel FROM relaxed, handed
         UNION ALL
         SELECT id, task_id, NULL, timeout_ms, true FROM agent_commands
         WHERE agent_id = $1 AND state = 'running' AND cancel_requested
         ORDER BY id LIMIT 1000",
    )
    .bind(agent_id)
    .fetch_all(db)
    .await?)
}

/// Counts the delivery of commands a node handed to their agent's poll from memory,
/// as [`poll`] does for those it reads; committed without waiting for the WAL flush
/// for the same reason.
pub async fn mark_delivered(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), DbError> {
    sqlx::query(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
         UPDATE agent_commands SET deliveries = deliveries + 1,
             state = CASE state WHEN 'pending' THEN 'delivered' ELSE state END
         FROM relaxed WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Where a command stands when an agent asks to run it or report on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The agent may go on.
    Open,
    /// Not this agent's, or gone.
    Unknown,
    /// Finished, or cancelled (a requested cancel counts as done): its state.
    Closed(CommandState),
    /// Not finished, but its task no longer needs it (the attempt that sent it is over
    /// and the task does not resume): as good as cancelled, and closed as such shortly.
    TaskEnded,
}

/// Marks a command running: the agent acknowledged it. Acknowledging again is fine.
pub async fn ack(
    db: impl PgExecutor<'_> + Copy,
    agent_id: i64,
    id: i64,
) -> Result<Standing, DbError> {
    let done = sqlx::query(
        "UPDATE agent_commands c SET state = 'running', started_at = coalesce(started_at, now())
         WHERE id = $1 AND agent_id = $2 AND state IN ('pending', 'delivered', 'running')
           AND NOT cancel_requested
           AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = c.task_id
                       AND agent_command_live(t.state, t.attempt, t.on_node_lost,
                                              c.task_attempt))",
    )
    .bind(id)
    .bind(agent_id)
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(Standing::Open);
    }
    standing(db, agent_id, id).await
}

async fn standing(db: impl PgExecutor<'_>, agent_id: i64, id: i64) -> Result<Standing, DbError> {
    let row: Option<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.state, c.cancel_requested,
                coalesce(agent_command_live(t.state, t.attempt, t.on_node_lost,
                                            c.task_attempt), false)
         FROM agent_commands c LEFT JOIN tasks t ON t.id = c.task_id
         WHERE c.id = $1 AND c.agent_id = $2",
    )
    .bind(id)
    .bind(agent_id)
    .fetch_optional(db)
    .await?;
    let Some((state, cancel_requested, task_runs)) = row else {
        return Ok(Standing::Unknown);
    };
    let state: CommandState = state.parse()?;
    Ok(if cancel_requested {
        Standing::Closed(CommandState::Cancelled)
    } else if state.is_open() && !task_runs {
        Standing::TaskEnded
    } else {
        Standing::Closed(state)
    })
}

/// What an agent's report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub standing: Standing,
    /// The task whose waiting run the report concerns, when it changed something:
    /// the NOTIFY went out, and a node running that task itself can wake it at once.
    pub changed_task: Option<i64>,
}

impl From<Standing> for Report {
    fn from(standing: Standing) -> Self {
        Report {
            standing,
            changed_task: None,
        }
    }
}

/// A line of output, as the agent numbered it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutputRow {
    pub command_id: i64,
    pub seq: i64,
    pub stream: String,
    pub text: String,
    pub at: OffsetDateTime,
}

/// What became of a batch of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored, or refused for where the command stands.
    Report(Report),
    /// A line is numbered more than the allowed lead past `last_seq`, the last line
    /// stored: nothing was stored.
    TooFarAhead { last_seq: i64 },
}

/// Stores output lines not stored before (by `seq`) and wakes the node running the
/// command's task. Output of a finished command is refused: it would never be read.
/// So is a batch numbering a line more than `lead` past the last stored, since lines
/// numbered up to it would be taken for stored and skipped.
pub async fn store_output(
    db: &PgPool,
    agent_id: i64,
    id: i64,
    seqs: &[i64],
    streams: &[String],
    texts: &[String],
    lead: i64,
) -> Result<Stored, DbError> {
    let mut tx = db.begin().await?;
    let command: Option<(i64, String, i64)> = sqlx::query_as(
        "SELECT task_id, state, last_seq FROM agent_commands
         WHERE id = $1 AND agent_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(agent_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((task_id, state, last_seq)) = command else {
        return Ok(Stored::Report(Standing::Unknown.into()));
    };
    let state: CommandState = state.parse()?;
    if !state.is_open() {
        return Ok(Stored::Report(Standing::Closed(state).into()));
    }
    let newest = seqs.iter().copied().max().unwrap_or(0);
    if newest > last_seq.saturating_add(lead) {
        return Ok(Stored::TooFarAhead { last_seq });
    }
    let stored = newest > last_seq;
    if stored {
        sqlx::query(
            "INSERT INTO agent_command_output (command_id, task_id, seq, stream, text)
             SELECT $1, $2, l.seq, l.stream, l.text
             FROM unnest($3::bigint[], $4::text[], $5::text[]) AS l(seq, stream, text)
             WHERE l.seq > $6
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(task_id)
        .bind(seqs)
        .bind(streams)
        .bind(texts)
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE agent_commands SET last_seq = $2 WHERE id = $1")
            .bind(id)
            .bind(newest)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(AGENTS_CHANNEL)
            .bind(AgentNotice::Output(task_id).encode())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Stored::Report(Report {
        standing: Standing::Open,
        changed_task: stored.then_some(task_id),
    }))
}

/// How a command ended.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// Succeeded, failed, timed out or cancelled.
    pub state: CommandState,
    pub exit_code: Option<i32>,
    pub error: Option<&'a str>,
    pub outputs: serde_json::Value,
}

/// Records a command's outcome and wakes the node running its task. Reporting a
/// finished command again changes nothing and is not an error.
pub async fn finish(
    db: impl PgExecutor<'_> + Copy,
    agent_id: i64,
    id: i64,
    finish: &Finish<'_>,
) -> Result<Report, DbError> {
    let done: Option<(i64,)> = sqlx::query_as(
        "WITH closed AS (
            UPDATE agent_commands SET state = $3, exit_code = $4, error = $5, outputs = $6,
                finished_at = now(), started_at = coalesce(started_at, now())
            WHERE id = $1 AND agent_id = $2 AND state IN ('pending', 'delivered', 'running')
            RETURNING task_id
         )
         SELECT task_id FROM closed, pg_notify($7, 'done:' || task_id) AS n",
    )
    .bind(id)
    .bind(agent_id)
    .bind(finish.state.as_str())
    .bind(finish.exit_code)
    .bind(finish.error)
    .bind(&finish.outputs)
    .bind(AGENTS_CHANNEL)
    .fetch_optional(db)
    .await?;
    if let Some((task_id,)) = done {
        return Ok(Report {
            standing: Standing::Open,
            changed_task: Some(task_id),
        });
    }
    Ok(match standing(db, agent_id, id).await? {
        // Reported before: the same report again is an answer that got lost.
        Standing::Closed(_) | Standing::TaskEnded => Standing::Open,
        other => other,
    }
    .into())
}

/// Ends commands of a task that have not finished, as attempt `attempt` stops: those
/// not yet acknowledged at once (the agent will be refused when it tries), running
/// ones by asking their agents to stop them. Returns how many were running.
///
/// A task that resumes keeps its commands once rescue moved it past `attempt` (queued
/// again, or claimed by a later attempt): they belong to the next attempt, not to a
/// run that merely learnt late that it was fenced.
pub async fn cancel_task_commands(
    db: &PgPool,
    task_id: i64,
    attempt: i32,
    reason: &str,
) -> Result<u64, DbError> {
    let mut tx = db.begin().await?;
    let owned: Option<(bool,)> = sqlx::query_as(
        "SELECT on_node_lost <> 'resume' OR (attempt = $2 AND state <> 'queued')
         FROM tasks WHERE id = $1 FOR SHARE",
    )
    .bind(task_id)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    if matches!(owned, Some((false,))) {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE agent_commands SET state = 'cancelled', error = $2, finished_at = now()
         WHERE task_id = $1 AND state IN ('pending', 'delivered')",
    )
    .bind(task_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    let running: Vec<(i64,)> = sqlx::query_as(
        "UPDATE agent_commands SET cancel_requested = true, cancel_requested_at = now()
         WHERE task_id = $1 AND state = 'running' AND NOT cancel_requested
         RETURNING agent_id",
    )
    .bind(task_id)
    .fetch_all(&mut *tx)
    .await?;
    let agents: Vec<i64> = running.iter().map(|(a,)| *a).collect();
    notify_mail(&mut *tx, &agents).await?;
    tx.commit().await?;
    Ok(agents.len() as u64)
}

/// Ends commands that outlived their deadline without their agent reporting.
pub async fn expire(db: impl PgExecutor<'_>, ids: &[i64], error: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE agent_commands SET state = 'timed_out', error = $2, finished_at = now()
         WHERE id = ANY($1) AND state IN ('pending', 'delivered', 'running')",
    )
    .bind(ids)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes the output waiting for a task's log, in order.
pub async fn take_output(db: impl PgExecutor<'_>, task_id: i64) -> Result<Vec<OutputRow>, DbError> {
    let mut rows: Vec<OutputRow> = sqlx::query_as(
        "DELETE FROM agent_command_output WHERE task_id = $1
         RETURNING command_id, seq, stream, text, at",
    )
    .bind(task_id)
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|r| (r.at, r.command_id, r.seq));
    Ok(rows)
}

/// A command's outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outcome {
    pub id: i64,
    #[sqlx(try_from = "crate::StateColumn<CommandState>")]
    pub state: CommandState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: serde_json::Value,
}

/// Outcomes of those of `ids` that have finished.
pub async fn finished(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<Outcome>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, state, exit_code, error, outputs FROM agent_commands
         WHERE id = ANY($1) AND state IN ('succeeded', 'failed', 'timed_out', 'cancelled')",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// A command a resumed attempt finds: sent by an earlier attempt of its task.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Adopted {
    pub agent_id: i64,
    /// Its state and, once finished, how it ended.
    #[sqlx(flatten)]
    pub outcome: Outcome,
}

/// Every command of a task whose node-lost policy is `resume`, whatever attempt sent
/// it, oldest first; none for a task that does not resume, whose earlier attempts'
/// commands were cancelled with them.
pub async fn of_task_for_resume(
    db: impl PgExecutor<'_>,
    task_id: i64,
) -> Result<Vec<Adopted>, DbError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.agent_id, c.state, c.exit_code, c.error, c.outputs
         FROM agent_commands c JOIN tasks t ON t.id = c.task_id
         WHERE c.task_id = $1 AND t.on_node_lost = 'resume'
         ORDER BY c.id",
    )
    .bind(task_id)
    .fetch_all(db)
    .await?)
}

/// A command as `GET /api/tasks/{id}/commands` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRow {
    pub id: i64,
    pub agent_id: i64,
    pub agent_name: String,
    #[sqlx(try_from = "crate::StateColumn<CommandState>")]
    pub state: CommandState,
    pub deliveries: i32,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: serde_json::Value,
    pub queued_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

/// A task's commands by agent name (at most `limit`).
pub async fn of_task(
    db: impl PgExecutor<'_>,
    task_id: i64,
    limit: i64,
) -> Result<Vec<CommandRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.agent_id, a.name AS agent_name, c.state, c.deliveries, c.exit_code,
                c.error, c.outputs, c.queued_at, c.started_at, c.finished_at
         FROM agent_commands c JOIN agents a ON a.id = c.agent_id
         WHERE c.task_id = $1 ORDER BY lower(a.name), c.id LIMIT $2",
    )
    .bind(task_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// How long an agent has to confirm it stopped a command before it is closed anyway.
const CANCEL_CONFIRM_WITHIN_SECS: f64 = 60.0;

/// Closes commands their task no longer needs (the attempt that sent them is over and
/// the task does not resume: its node died, it was cancelled or it finished without
/// them): those not yet acknowledged at once, running ones by
/// asking their agents to stop, and those asked long ago for good (their agent is
/// gone). Returns how many were closed or asked.
pub async fn close_orphans(db: &PgPool) -> Result<u64, DbError> {
    let mut tx = db.begin().await?;
    let orphans: Vec<(i64, i64, bool, bool)> = sqlx::query_as(
        "SELECT c.id, c.agent_id, c.state = 'running', c.cancel_requested
         FROM agent_commands c LEFT JOIN tasks t ON t.id = c.task_id
         WHERE c.state IN ('pending', 'delivered', 'running')
           AND agent_command_live(t.state, t.attempt, t.on_node_lost, c.task_attempt)
               IS NOT TRUE
           AND (c.state <> 'running' OR NOT c.cancel_requested
                OR c.cancel_requested_at < now() - make_interval(secs => $1))
         ORDER BY c.id LIMIT 1000
         FOR UPDATE OF c SKIP LOCKED",
    )
    .bind(CANCEL_CONFIRM_WITHIN_SECS)
    .fetch_all(&mut *tx)
    .await?;
    if orphans.is_empty() {
        return Ok(0);
    }
    let (ask, close): (Vec<&(i64, i64, bool, bool)>, Vec<_>) = orphans
        .iter()
        .partition(|(_, _, running, asked)| *running && !asked);
    let close: Vec<i64> = close.iter().map(|(id, ..)| *id).collect();
    sqlx::query(
        "UPDATE agent_commands SET state = 'cancelled', finished_at = now(),
             error = coalesce(error, CASE WHEN state = 'running'
                 THEN 'its task ended and the agent never confirmed that it stopped'
                 ELSE 'its task is no longer running' END)
         WHERE id = ANY($1)",
    )
    .bind(&close)
    .execute(&mut *tx)
    .await?;
    let ask_ids: Vec<i64> = ask.iter().map(|(id, ..)| *id).collect();
    let agents: Vec<i64> = ask.iter().map(|(_, agent, ..)| *agent).collect();
    sqlx::query(
        "UPDATE agent_commands SET cancel_requested = true, cancel_requested_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&ask_ids)
    .execute(&mut *tx)
    .await?;
    notify_mail(&mut *tx, &agents).await?;
    tx.commit().await?;
    Ok(orphans.len() as u64)
}

/// The body of one of an agent's commands, with its state, for fetching its packages.
pub async fn body(
    db: impl PgExecutor<'_>,
    agent_id: i64,
    id: i64,
) -> Result<Option<(CommandState, serde_json::Value)>, DbError> {
    let row: Option<(String, serde_json::Value)> =
        sqlx::query_as("SELECT state, body FROM agent_commands WHERE id = $1 AND agent_id = $2")
            .bind(id)
            .bind(agent_id)
            .fetch_optional(db)
            .await?;
    row.map(|(state, body)| Ok((state.parse()?, body)))
        .transpose()
}
