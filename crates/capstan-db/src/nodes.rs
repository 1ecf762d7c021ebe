//! The `nodes` table as the API reads and changes it.
//!
//! A node's own heartbeat writes live in [`crate::liveness`]; this module is what any
//! node does on behalf of an operator.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DbError, NODES_CHANNEL, notify::NodeNotice};

/// A row of `nodes`, with `online` computed from the node's own heartbeat interval and
/// `running_tasks` counted from the tasks the node holds now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub url: String,
    pub task_cap: i32,
    pub draining: bool,
    /// Tasks in state running whose owner is this node: what an operator waiting for a
    /// drain must wait on. Counted by the query, not read from the column a heartbeat
    /// writes, which lags a claim by up to an interval.
    pub running_tasks: i32,
    pub last_seen: OffsetDateTime,
    pub online: bool,
}

/// The most nodes a list returns; a cluster of more is not one we plan for.
pub const LIST_LIMIT: i64 = 1000;

/// When a row of `nodes` is online: not stopped, and seen within three of the node's
/// own heartbeat intervals. A macro so statements can `concat!` it.
macro_rules! online {
    () => {
        "(nodes.stopped_at IS NULL
          AND nodes.last_seen > now() - 3 * nodes.heartbeat_interval_ms * interval '1 millisecond')"
    };
}
pub(crate) use online;

const SELECT_NODE: &str = concat!(
    "SELECT id, name, version, url, task_cap, draining,
        (SELECT count(*)::int4 FROM tasks
         WHERE tasks.state = 'running' AND tasks.node_id = nodes.id) AS running_tasks,
        last_seen, ",
    online!(),
    " AS online FROM nodes"
);

/// Every node, by name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<NodeRow>, DbError> {
    let rows = sqlx::query_as::<_, NodeRow>(&format!("{SELECT_NODE} ORDER BY name LIMIT $1"))
        .bind(LIST_LIMIT)
        .fetch_all(db)
        .await?;
    Ok(rows)
}

/// One node by id.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<NodeRow, DbError> {
    let row = sqlx::query_as::<_, NodeRow>(&format!("{SELECT_NODE} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.ok_or(DbError::NotFound)
}

/// The node, locked until the caller's transaction ends: the real "before" of a change.
pub async fn get_for_update(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<NodeRow, DbError> {
    let row = sqlx::query_as::<_, NodeRow>(&format!("{SELECT_NODE} WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.ok_or(DbError::NotFound)
}

/// Changes a node's task cap and/or draining flag and tells the cluster, in one
/// transaction (a savepoint in the caller's) so the notification is never sent for a
/// change that did not commit.
pub async fn update(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: Uuid,
    task_cap: Option<u32>,
    draining: Option<bool>,
) -> Result<NodeRow, DbError> {
    let mut tx = db.begin().await?;
    let updated = sqlx::query(
        "UPDATE nodes SET task_cap = COALESCE($2, task_cap), draining = COALESCE($3, draining)
         WHERE id = $1",
    )
    .bind(id)
    .bind(task_cap.map(|c| c as i32))
    .bind(draining)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    notify_changed(&mut *tx, id).await?;
    let row = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes a node's row. A node that is still alive writes it back on its next heartbeat.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    let deleted = sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

async fn notify_changed(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NODES_CHANNEL)
        .bind(NodeNotice::Changed(id).encode())
        .execute(db)
        .await?;
    Ok(())
}

/// A live node and the master key versions it holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeKeyVersionsRow {
    pub id: Uuid,
    pub name: String,
    pub key_versions: Vec<i32>,
}

/// The key versions of every online node, by name. Offline nodes are left out: they
/// seal nothing until they start again, and at start they check their keys anew.
pub async fn live_key_versions(
    db: impl PgExecutor<'_>,
) -> Result<Vec<NodeKeyVersionsRow>, DbError> {
    let rows = sqlx::query_as::<_, NodeKeyVersionsRow>(
        "SELECT id, name, key_versions FROM nodes
         WHERE stopped_at IS NULL
           AND last_seen > now() - 3 * heartbeat_interval_ms * interval '1 millisecond'
         ORDER BY name LIMIT $1",
    )
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await?;
    Ok(rows)
}
