//! The task queue's hot path, on the liveness pool: claim, complete, renew leases,
//! rescue, and enqueue periodic tasks.
//!
//! Every write a node makes to a task it runs names the attempt it claimed (the fencing
//! token) and its own id. Once rescue has moved a task on, those writes match no row:
//! the caller learns its lease is gone and must abandon the work.

use std::time::Duration;

use capstan_core::TaskState;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DbError, TASKS_CHANNEL};

/// A task this node just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub id: i64,
    pub kind: String,
    pub args: serde_json::Value,
    pub attempt: i32,
    pub queued_at: OffsetDateTime,
    pub started_at: OffsetDateTime,
}

/// How a run ended, to be written under the attempt's fencing token.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: i64,
    pub attempt: i32,
    /// Succeeded, failed or cancelled.
    pub state: TaskState,
    pub error: Option<String>,
    /// For a task handed back to the queue (`state` queued, parked): when a node may
    /// claim it again by itself; `None` waits for its service to un-park it.
    pub parked_until: Option<OffsetDateTime>,
}

/// What one claim cycle did.
#[derive(Debug, Default)]
pub struct Cycle {
    pub claimed: Vec<ClaimedTask>,
    /// Ids whose outcome was written. An outcome not listed was fenced off: the task
    /// had been rescued and belongs to someone else now.
    pub completed: Vec<i64>,
}

/// Who is claiming.
#[derive(Debug, Clone, Copy)]
pub struct Claimer<'a> {
    pub node_id: Uuid,
    pub lease_ttl: Duration,
    /// The task kinds the node knows; it claims no others.
    pub kinds: &'a [String],
}

/// Writes `outcomes` and claims up to `want` of the first claimable tasks in line
/// (`coalesce(queue_order, id)`: by id, unless one was moved to the front) in one
/// statement, so one round trip and one commit serve a whole cycle: the slots the
/// outcomes free are reused at the same commit, and a claim's `started_at` equals the
/// `finished_at` of the run whose slot it takes, never earlier.
///
/// The kind test is written as `array_position(...) IS NOT NULL` rather than
/// `kind = ANY(...)` on purpose: the planner guesses the latter matches almost nothing,
/// and then reads every queued row and sorts them instead of walking `tasks_queued_order`
/// in line order and stopping after `want` rows, which makes each claim cost O(queue).
///
/// A queued task is claimable when its kind is one the node knows, no task with its
/// concurrency key is running, and no task with that key is queued ahead of it. A keyed task
/// finishing here does not unblock the next one in this same statement (it still
/// reads as running); the notification sent for it wakes a claimer for that.
pub async fn complete_and_claim(
    pool: &deadpool_postgres::Pool,
    claimer: Claimer<'_>,
    outcomes: &[Outcome],
    want: u32,
) -> Result<Cycle, DbError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "WITH o AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],
                                     $10::timestamptz[])
                    AS o(id, attempt, state, error, parked_until)
             ), done AS (
                UPDATE tasks t SET state = o.state, lease_expires_at = NULL,
                    -- `queued`: parked until an operator answers (see `parked`).
                    error = CASE WHEN o.state = 'queued' THEN NULL ELSE o.error END,
                    finished_at = CASE WHEN o.state = 'queued' THEN NULL
                                       ELSE statement_timestamp() END,
                    node_id = CASE WHEN o.state = 'queued' THEN NULL ELSE t.node_id END,
                    -- A release noted while it ran (`held::release`) wins over parking.
                    parked = (o.state = 'queued' AND NOT t.release_requested),
                    parked_until = CASE WHEN o.state = 'queued' THEN o.parked_until END,
                    release_requested = false
                FROM o
                WHERE t.id = o.id AND t.attempt = o.attempt AND t.node_id = $5
                  AND t.state = 'running'
                RETURNING t.id, t.concurrency_key, t.state, t.attempt, t.started_at
             ), parked_attempts AS (
                INSERT INTO task_attempts (task_id, attempt, node_id, node_name, started_at,
                                           finished_at, outcome)
                SELECT d.id, d.attempt, $5, n.name, d.started_at, statement_timestamp(), 'parked'
                FROM done d JOIN nodes n ON n.id = $5 WHERE d.state = 'queued'
             ), woken AS (
                SELECT pg_notify($9, 'queued') FROM done
                WHERE concurrency_key IS NOT NULL LIMIT 1
             ), candidates AS (
                SELECT t.id FROM tasks t
                WHERE t.state = 'queued'
                  AND (NOT t.parked OR t.parked_until <= statement_timestamp())
                  AND array_position($8, t.kind) IS NOT NULL
                  AND (t.concurrency_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM tasks k
                        WHERE k.concurrency_key = t.concurrency_key
                          AND (k.state = 'running'
                               OR (k.state = 'queued'
                                   AND coalesce(k.queue_order, k.id)
                                       < coalesce(t.queue_order, t.id)))))
                ORDER BY coalesce(t.queue_order, t.id)
                LIMIT $6
                FOR UPDATE OF t SKIP LOCKED
             ), claimed AS (
                UPDATE tasks t SET state = 'running', node_id = $5, attempt = t.attempt + 1,
                    started_at = statement_timestamp(), parked = false, parked_until = NULL,
                    lease_expires_at = statement_timestamp() + $7 * interval '1 millisecond'
                FROM candidates c WHERE t.id = c.id
                RETURNING t.id, t.kind, t.args, t.attempt, t.queued_at, t.started_at
             )
             SELECT true, id, kind, args, attempt, queued_at, started_at FROM claimed
             UNION ALL
             SELECT false, id, NULL, NULL, NULL, NULL, NULL FROM done
             UNION ALL
             SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM woken",
        )
        .await?;
    let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempt).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state.as_str()).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let parked_until: Vec<Option<OffsetDateTime>> =
        outcomes.iter().map(|o| o.parked_until).collect();
    let rows = client
        .query(
            &statement,
            &[
                &ids,
                &attempts,
                &states,
                &errors,
                &claimer.node_id,
                &i64::from(want),
                &millis(claimer.lease_ttl),
                &claimer.kinds,
                &TASKS_CHANNEL,
                &parked_until,
            ],
        )
        .await?;
    let mut cycle = Cycle::default();
    for row in rows {
        match row.get::<_, Option<bool>>(0) {
            Some(true) => cycle.claimed.push(ClaimedTask {
                id: row.get(1),
                kind: row.get(2),
                args: row.get(3),
                attempt: row.get(4),
                queued_at: row.get(5),
                started_at: row.get(6),
            }),
            Some(false) => cycle.completed.push(row.get(1)),
            None => {}
        }
    }
    cycle.claimed.sort_by_key(|task| task.id);
    Ok(cycle)
}

/// A task this node holds, as its lease renewal saw it.
#[derive(Debug, Clone, Copy)]
pub struct Renewed {
    pub id: i64,
    pub cancel_requested: bool,
}

/// Extends the leases of the attempts this node runs. Tasks missing from the answer
/// are no longer this node's: rescue moved them on while the node was unreachable.
pub async fn renew_leases(
    pool: &deadpool_postgres::Pool,
    claimer: Claimer<'_>,
    held: &[(i64, i32)],
) -> Result<Vec<Renewed>, DbError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
    let attempts: Vec<i32> = held.iter().map(|(_, a)| *a).collect();
    let statement = client
        .prepare_cached(
            "UPDATE tasks t SET lease_expires_at = now() + $4 * interval '1 millisecond'
             FROM unnest($2::bigint[], $3::int[]) AS h(id, attempt)
             WHERE t.id = h.id AND t.attempt = h.attempt AND t.node_id = $1
               AND t.state = 'running'
             RETURNING t.id, t.cancel_requested",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &claimer.node_id,
                &ids,
                &attempts,
                &millis(claimer.lease_ttl),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| Renewed {
            id: row.get(0),
            cancel_requested: row.get(1),
        })
        .collect())
}

/// Which running tasks rescue takes over.
#[derive(Debug, Clone, Copy)]
pub enum RescueScope {
    /// Those whose lease expired, on any node.
    Expired,
    /// Those a node held and no longer runs: it restarted, or it is stopping and its
    /// shutdown grace ran out. Handed back at once instead of after the lease.
    Released(Uuid),
}

/// The most tasks one rescue transaction takes over, so none holds locks on a huge
/// backlog for long.
pub const RESCUE_BATCH: i64 = 500;

/// A task rescue took over.
#[derive(Debug, Clone)]
pub struct Rescued {
    pub id: i64,
    /// The state rescue left it in: queued, failed or cancelled.
    pub state: TaskState,
    pub lost_node: String,
}

/// Applies each rescued task's node-lost policy: `requeue` and `resume` put it back at
/// its place in line (`resume` leaving its agent commands running for the next attempt
/// to adopt), `fail` fails it with a reason naming the lost node; a task whose cancellation
/// was pending is cancelled. The lost attempt is recorded as `lost`.
///
/// Works in transactions of [`RESCUE_BATCH`] tasks until none is left. If a later batch
/// fails, what earlier batches committed is still returned; the rest waits for the next
/// call.
pub async fn rescue(
    pool: &deadpool_postgres::Pool,
    scope: RescueScope,
) -> Result<Vec<Rescued>, DbError> {
    let mut all = Vec::new();
    loop {
        match rescue_batch(pool, scope).await {
            Ok(batch) => {
                let more = batch.len() as i64 >= RESCUE_BATCH;
                all.extend(batch);
                if !more {
                    return Ok(all);
                }
            }
            Err(e) if all.is_empty() => return Err(e),
            Err(e) => {
                tracing::warn!("rescue stopped after {} task(s): {e}", all.len());
                return Ok(all);
            }
        }
    }
}

async fn rescue_batch(
    pool: &deadpool_postgres::Pool,
    scope: RescueScope,
) -> Result<Vec<Rescued>, DbError> {
    let restarted = match scope {
        RescueScope::Expired => None,
        RescueScope::Released(id) => Some(id),
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "WITH lost AS (
                SELECT t.id, t.attempt, t.node_id, t.on_node_lost, t.cancel_requested,
                       t.lease_expires_at, t.started_at
                FROM tasks t
                WHERE t.state = 'running'
                  AND CASE WHEN $1::uuid IS NULL THEN t.lease_expires_at < now()
                           ELSE t.node_id = $1 END
                ORDER BY t.id LIMIT $2
                FOR UPDATE OF t SKIP LOCKED
             ), decided AS (
                SELECT l.*, coalesce(n.name, l.node_id::text) AS node_name,
                    CASE WHEN l.cancel_requested THEN 'cancelled'
                         WHEN l.on_node_lost IN ('requeue', 'resume') THEN 'queued'
                         ELSE 'failed' END AS next_state
                FROM lost l LEFT JOIN nodes n ON n.id = l.node_id
             ), rescued AS (
                UPDATE tasks t SET
                    state = d.next_state,
                    node_id = CASE WHEN d.next_state = 'queued' THEN NULL ELSE t.node_id END,
                    lease_expires_at = NULL,
                    finished_at = CASE WHEN d.next_state = 'queued' THEN NULL ELSE now() END,
                    error = CASE
                        WHEN d.next_state = 'queued' THEN NULL
                        WHEN d.next_state = 'cancelled' THEN format(
                            'cancelled; node %s stopped before it could stop the task', d.node_name)
                        WHEN $1::uuid IS NOT NULL THEN format(
                            'node %s stopped or restarted while running attempt %s; tasks of kind %s are not retried because they must not run twice',
                            d.node_name, d.attempt, t.kind)
                        ELSE format(
                            'node %s was lost: it stopped renewing the lease of attempt %s, which expired at %s; tasks of kind %s are not retried because they must not run twice',
                            d.node_name, d.attempt,
                            to_char(d.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                            t.kind) END
                FROM decided d WHERE t.id = d.id
                RETURNING t.id, t.state, d.attempt, d.node_name, d.node_id AS lost_node_id,
                          d.started_at AS lost_started_at
             ), recorded AS (
                INSERT INTO task_attempts (task_id, attempt, node_id, node_name, started_at,
                                           finished_at, outcome)
                SELECT id, attempt, lost_node_id, node_name, lost_started_at, now(), 'lost'
                FROM rescued
             )
             SELECT id, state, node_name FROM rescued ORDER BY id",
        )
        .await?;
    let rows = tx.query(&statement, &[&restarted, &RESCUE_BATCH]).await?;
    let rescued = rows
        .into_iter()
        .map(|row| {
            Ok(Rescued {
                id: row.try_get(0)?,
                state: row.try_get::<_, String>(1)?.parse()?,
                lost_node: row.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    if rescued.iter().any(|r| r.state == TaskState::Queued) {
        tx.execute("SELECT pg_notify($1, 'queued')", &[&TASKS_CHANNEL])
            .await?;
    }
    tx.commit().await?;
    Ok(rescued)
}

/// Queues the periodic task `kind` for the current period unless some node already
/// did: the dedupe key is the kind and the period number, counted on the database's
/// clock so nodes with skewed clocks agree. Returns the new id if this call won.
pub async fn enqueue_periodic(
    pool: &deadpool_postgres::Pool,
    kind: &str,
    args: &serde_json::Value,
    period: Duration,
) -> Result<Option<i64>, DbError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "WITH period AS (
                SELECT $1 || '@' || floor(extract(epoch FROM now()) * 1000 / $3::float8)::bigint
                    AS dedupe_key
             ), inserted AS (
                INSERT INTO tasks (kind, args, on_node_lost, dedupe_key)
                SELECT $1, $2, 'requeue', p.dedupe_key FROM period p
                -- Checked first so losing nodes do not burn ids; the unique index
                -- settles a race.
                WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.dedupe_key = p.dedupe_key)
                ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                RETURNING id
             )
             SELECT id, pg_notify($4, 'queued') FROM inserted",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&kind, args, &millis(period), &TASKS_CHANNEL])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Deletes up to `batch` finished tasks (and their attempts) that finished more than
/// `older_than` ago. Returns how many went; call again until it returns less than
/// `batch`, so no single statement holds locks for long.
///
/// Tasks with a log are left alone: their log objects must go first (see
/// [`crate::task_logs::finished_with_logs`]), or nothing would say where they are.
pub async fn delete_finished(
    pool: &deadpool_postgres::Pool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let deleted = client
        .execute(
            "WITH doomed AS (
                SELECT id FROM tasks
                WHERE state IN ('succeeded', 'failed', 'cancelled')
                  AND finished_at < now() - $1 * interval '1 millisecond'
                  AND NOT EXISTS (SELECT 1 FROM task_logs l WHERE l.task_id = tasks.id)
                ORDER BY id LIMIT $2
                FOR UPDATE SKIP LOCKED
             )
             DELETE FROM tasks t USING doomed d WHERE t.id = d.id",
            &[&millis(older_than), &batch],
        )
        .await?;
    Ok(deleted)
}

/// The queue as a whole, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    /// Seconds the oldest queued task has waited.
    pub oldest_queued_age: f64,
}

/// Counts queued and running tasks; both are served by the partial indexes.
pub async fn stats(pool: &deadpool_postgres::Pool) -> Result<QueueStats, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT
                (SELECT count(*) FROM tasks WHERE state = 'queued'),
                (SELECT count(*) FROM tasks WHERE state = 'running'),
                coalesce(extract(epoch FROM now() - (
                    SELECT queued_at FROM tasks WHERE state = 'queued' ORDER BY id LIMIT 1
                ))::float8, 0)",
            &[],
        )
        .await?;
    Ok(QueueStats {
        queued: row.get(0),
        running: row.get(1),
        oldest_queued_age: row.get(2),
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
