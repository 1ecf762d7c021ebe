//! A node's own writes to its row, on the liveness pool: register, heartbeat, ping,
//! stop. These must keep working while the API pool is saturated.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DbError, NODES_CHANNEL};

/// What a node announces about itself.
#[derive(Debug, Clone)]
pub struct NodeAnnouncement<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub version: &'a str,
    pub url: &'a str,
    pub task_cap: u32,
    pub draining: bool,
    pub running_tasks: u32,
    pub heartbeat_interval: Duration,
    /// The master key versions the node can decrypt.
    pub key_versions: &'a [i32],
}

/// The settings the cluster holds for a node, as read back by that node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSettings {
    pub task_cap: u32,
    pub draining: bool,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub settings: NodeSettings,
    pub last_seen: OffsetDateTime,
    /// The row had been deleted and this heartbeat wrote it back.
    pub re_added: bool,
}

/// Registers a node at start. A node restarting under a known name keeps its id; its
/// task cap is the stored one unless `task_cap` says otherwise.
pub async fn register(
    pool: &deadpool_postgres::Pool,
    node: &NodeAnnouncement<'_>,
    task_cap: Option<u32>,
) -> Result<(Uuid, Heartbeat), DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO nodes (id, name, version, url, task_cap, draining, running_tasks,
                                heartbeat_interval_ms, key_versions, started_at, last_seen)
             VALUES ($1, $2, $3, $4, COALESCE($5::int, $6::int), $7, 0, $8, $9, now(), now())
             ON CONFLICT (name) DO UPDATE SET
                version = EXCLUDED.version, url = EXCLUDED.url,
                task_cap = COALESCE($5::int, nodes.task_cap), draining = EXCLUDED.draining,
                running_tasks = 0, heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms,
                key_versions = EXCLUDED.key_versions,
                started_at = now(), last_seen = now(), stopped_at = NULL
             RETURNING id, task_cap, draining, last_seen",
            &[
                &node.id,
                &node.name,
                &node.version,
                &node.url,
                &task_cap.map(|c| c as i32),
                &(node.task_cap as i32),
                &node.draining,
                &interval_ms(node.heartbeat_interval),
                &node.key_versions,
            ],
        )
        .await?;
    let heartbeat = Heartbeat {
        settings: NodeSettings {
            task_cap: row.get::<_, i32>(1) as u32,
            draining: row.get(2),
        },
        last_seen: row.get(3),
        re_added: false,
    };
    Ok((row.get(0), heartbeat))
}

/// Records that the node is alive and reads back the settings others may have changed.
/// If an operator deleted the row, it is written back with the node's current settings.
pub async fn heartbeat(
    pool: &deadpool_postgres::Pool,
    node: &NodeAnnouncement<'_>,
) -> Result<Heartbeat, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO nodes (id, name, version, url, task_cap, draining, running_tasks,
                                heartbeat_interval_ms, key_versions, started_at, last_seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now())
             ON CONFLICT (id) DO UPDATE SET
                version = EXCLUDED.version, url = EXCLUDED.url,
                running_tasks = EXCLUDED.running_tasks,
                heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms,
                key_versions = EXCLUDED.key_versions,
                last_seen = now(), stopped_at = NULL
             RETURNING task_cap, draining, last_seen, (xmax = 0) AS inserted",
            &[
                &node.id,
                &node.name,
                &node.version,
                &node.url,
                &(node.task_cap as i32),
                &node.draining,
                &(node.running_tasks as i32),
                &interval_ms(node.heartbeat_interval),
                &node.key_versions,
            ],
        )
        .await?;
    Ok(Heartbeat {
        settings: NodeSettings {
            task_cap: row.get::<_, i32>(0) as u32,
            draining: row.get(1),
        },
        last_seen: row.get(2),
        re_added: row.get(3),
    })
}

/// Reads the node's settings, after a notification said they changed.
pub async fn read_settings(
    pool: &deadpool_postgres::Pool,
    id: Uuid,
) -> Result<Option<NodeSettings>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT task_cap, draining FROM nodes WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|row| NodeSettings {
        task_cap: row.get::<_, i32>(0) as u32,
        draining: row.get(1),
    }))
}

/// Marks the node as draining, for everyone to see, when it begins to shut down.
pub async fn set_draining(pool: &deadpool_postgres::Pool, id: Uuid) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            "WITH changed AS (UPDATE nodes SET draining = true WHERE id = $1 RETURNING id)
             SELECT pg_notify($2, id::text) FROM changed",
            &[&id, &NODES_CHANNEL],
        )
        .await?;
    Ok(())
}

/// Marks the node stopped at the end of a clean shutdown, so it shows offline at once.
pub async fn mark_stopped(pool: &deadpool_postgres::Pool, id: Uuid) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE nodes SET stopped_at = now(), running_tasks = 0 WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Proves the database answers: the check behind `/api/nodes/ping`.
pub async fn check(pool: &deadpool_postgres::Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

fn interval_ms(interval: Duration) -> i32 {
    i32::try_from(interval.as_millis()).unwrap_or(i32::MAX)
}
