//! The cluster task queue: caps, FIFO, exactly-once runs, cancel, concurrency keys,
//! drain and cap changes (in-process nodes), lost nodes (real processes), and task logs.

mod bad_input;
mod blocked;
mod log_pages;
mod logs;
mod lost_nodes;
mod node_lost_commands;
mod notifications;
mod queue;
mod release;
mod unknown_states;

/// An agent row, `web-1` in a new environment `prod`, written straight into `db` for
/// tests of the statements themselves; returns its id.
async fn agent_row(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "WITH env AS (INSERT INTO environments (name) VALUES ('prod') RETURNING id)
         INSERT INTO agents (name, environment_id, version, credential_digest)
         SELECT 'web-1', id, '0.0.0', '\\x00'::bytea FROM env RETURNING id",
    )
    .fetch_one(db)
    .await
    .unwrap()
}
