//! Why queued tasks have not started: their place in line, the task holding their
//! concurrency key, and the load of every node that is up, read in one statement for a
//! whole page of tasks.
//!
//! Nodes do not record which task kinds they know, so the line is every queued task,
//! whatever its kind, and "could run it" means "is up". A parked task (waiting for an
//! operator) stands in no line and is ahead of nobody.

use sqlx::PgExecutor;

use crate::{DbError, nodes::online};

/// The most ids of the tasks in front of the line that [`look_up`] returns.
pub const FRONT_LIMIT: i64 = 20;

/// A queued task's place in line and what holds its concurrency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub id: i64,
    /// 1 for the first in line (see [`crate::schedule`] for the order).
    pub position: i64,
    pub concurrency_key: Option<String>,
    /// The running task with the same key, or else the first queued one ahead of it.
    pub key_holder: Option<i64>,
}

/// A node that is up (started, not stopped, seen within three of its heartbeat
/// intervals), with the tasks it runs counted from the tasks it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub name: String,
    pub task_cap: i32,
    pub draining: bool,
    pub running_tasks: i32,
}

/// What [`look_up`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waiting {
    /// The tasks asked about that are still queued, by id; the others have started or
    /// finished since they were read.
    pub tasks: Vec<QueuedTask>,
    /// The first [`FRONT_LIMIT`] queued tasks that are not parked, in line order.
    pub front: Vec<i64>,
    /// The nodes that are up, by name.
    pub nodes: Vec<LiveNode>,
}

/// One row of the statement: `part` says which of the three it is.
#[derive(sqlx::FromRow)]
struct Part {
    part: String,
    id: Option<i64>,
    position: Option<i64>,
    concurrency_key: Option<String>,
    key_holder: Option<i64>,
    name: Option<String>,
    task_cap: Option<i32>,
    draining: Option<bool>,
    running_tasks: Option<i32>,
}

/// Reads why the tasks `ids` wait, in one statement whatever their number. The place in
/// line is counted in one walk of the queued tasks up to the newest of `ids`, not once
/// per task.
pub async fn look_up(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Waiting, DbError> {
    if ids.is_empty() {
        return Ok(Waiting::default());
    }
    let parts = sqlx::query_as::<_, Part>(concat!(
        "WITH page AS (
            SELECT id, concurrency_key, coalesce(queue_order, id) AS o FROM tasks
            WHERE id = ANY($1) AND state = 'queued'
         ), line AS (
            SELECT id, row_number() OVER (ORDER BY coalesce(queue_order, id)) AS position
            FROM tasks
            WHERE state = 'queued' AND coalesce(queue_order, id) <= (SELECT max(o) FROM page)
              AND (NOT parked OR id = ANY($1))
         )
         SELECT 'task' AS part, p.id, l.position, p.concurrency_key,
             COALESCE(
                 (SELECT k.id FROM tasks k
                  WHERE k.concurrency_key = p.concurrency_key AND k.state = 'running'
                  LIMIT 1),
                 (SELECT k.id FROM tasks k
                  WHERE k.concurrency_key = p.concurrency_key AND k.state = 'queued'
                    AND coalesce(k.queue_order, k.id) < p.o
                  ORDER BY coalesce(k.queue_order, k.id) LIMIT 1)) AS key_holder,
             NULL::text AS name, NULL::int4 AS task_cap, NULL::bool AS draining,
             NULL::int4 AS running_tasks
         FROM page p JOIN line l ON l.id = p.id
         UNION ALL
         SELECT 'front', f.id, f.o, NULL, NULL, NULL, NULL, NULL, NULL
         FROM (SELECT id, coalesce(queue_order, id) AS o FROM tasks
               WHERE state = 'queued' AND NOT parked
               ORDER BY coalesce(queue_order, id) LIMIT $2) f
         UNION ALL
         SELECT 'node', NULL, NULL, NULL, NULL, nodes.name, nodes.task_cap, nodes.draining,
             (SELECT count(*)::int4 FROM tasks
              WHERE tasks.state = 'running' AND tasks.node_id = nodes.id)
         FROM nodes WHERE ",
        online!()
    ))
    .bind(ids)
    .bind(FRONT_LIMIT)
    .fetch_all(db)
    .await?;

    let mut waiting = Waiting::default();
    let mut front = Vec::new();
    for part in parts {
        match (part.part.as_str(), part.id) {
            ("task", Some(id)) => waiting.tasks.push(QueuedTask {
                id,
                position: part.position.unwrap_or(1),
                concurrency_key: part.concurrency_key,
                key_holder: part.key_holder,
            }),
            ("front", Some(id)) => front.push((part.position.unwrap_or(id), id)),
            _ => {
                if let Some(name) = part.name {
                    waiting.nodes.push(LiveNode {
                        name,
                        task_cap: part.task_cap.unwrap_or(0),
                        draining: part.draining.unwrap_or(false),
                        running_tasks: part.running_tasks.unwrap_or(0),
                    });
                }
            }
        }
    }
    waiting.tasks.sort_by_key(|t| t.id);
    front.sort_unstable();
    waiting.front = front.into_iter().map(|(_, id)| id).collect();
    waiting.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(waiting)
}
