//! Capstan's PostgreSQL layer: every SQL statement the cluster runs lives here.
//!
//! Three pools reach the same database. The API pool (sqlx) serves requests; the
//! liveness pool (deadpool-postgres) carries heartbeats, pings, claims, completions,
//! lease renewals and rescue, so API load can never starve a node into looking dead;
//! the enqueue pool (deadpool-postgres) queues single tasks for API requests. LISTEN
//! gets a connection of its own ([`listen`]). Modules are named after aggregates and
//! hold one verb-named function per statement. This crate must never import axum, hyper
//! or object_store: it knows tables, not HTTP.

pub mod agents;
pub mod artifacts;
pub mod blobs;
pub mod error;
pub mod listen;
pub mod liveness;
pub mod mailbox;
pub mod nodes;
pub mod packages;
pub mod pools;
pub mod projects;
pub mod queue;
pub mod releases;
pub mod secrets;
pub mod task_logs;
pub mod tasks;

pub use error::DbError;
pub use pools::{ConnectError, DatabaseUrl, Pools, SchemaStatus};

/// An `ILIKE` pattern matching names that contain `part`, its wildcards taken literally.
pub(crate) fn contains_pattern(part: &str) -> String {
    let escaped = part
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The schema migrations, embedded from `/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The NOTIFY channel on which node changes are announced; the payload is the node id.
pub const NODES_CHANNEL: &str = "capstan_nodes";

/// The NOTIFY channel that wakes claimers: `queued` when tasks may be claimable
/// (`queued:<node id>` when that node queued them through its API), `cancel:<id>` when
/// the node running that task must stop it.
pub const TASKS_CHANNEL: &str = "capstan_tasks";
