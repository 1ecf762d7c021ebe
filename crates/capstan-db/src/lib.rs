//! Capstan's PostgreSQL layer: every SQL statement the cluster runs lives here.
//!
//! Three pools reach the same database. The API pool (sqlx) serves requests; the
//! liveness pool (deadpool-postgres) carries heartbeats, pings, claims, completions,
//! lease renewals and rescue, so API load can never starve a node into looking dead;
//! the enqueue pool (deadpool-postgres) queues single tasks for API requests. LISTEN
//! gets a connection of its own ([`listen`]), and what each channel carries is typed in
//! [`notify`]. Modules are named after aggregates and hold one verb-named function per
//! statement. This crate must never import axum, hyper
//! or object_store: it knows tables, not HTTP.

pub mod access;
pub mod agents;
pub mod approvals;
pub mod artifacts;
pub mod audit;
pub mod auto_rollbacks;
pub mod blobs;
pub mod blocked;
pub mod dashboard;
pub mod deployments;
pub mod error;
pub mod freezes;
pub mod held;
pub mod lifecycles;
pub mod listen;
pub mod liveness;
pub mod mailbox;
pub mod nodes;
pub mod notify;
pub mod packages;
pub mod pools;
pub mod projects;
pub mod queue;
pub mod releases;
pub mod schedule;
pub mod secrets;
pub mod sessions;
pub mod task_logs;
pub mod tasks;
pub mod users;

pub use error::DbError;
pub use notify::{NODES_CHANNEL, TASKS_CHANNEL};
pub use pools::{ConnectError, DatabaseUrl, Pools, SchemaStatus};

/// A state column as a row reads it: decoded through the enum's `FromStr`, so a value
/// the enum lacks fails the read as [`DbError::Corrupt`] (naming the column) instead of
/// becoming some other state. Rows name it in `#[sqlx(try_from = "StateColumn<..>")]`.
#[doc(hidden)]
pub struct StateColumn<T>(T);

impl<T> sqlx::Type<sqlx::Postgres> for StateColumn<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r, T> sqlx::Decode<'r, sqlx::Postgres> for StateColumn<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self(text.parse()?))
    }
}

impl From<StateColumn<capstan_core::TaskState>> for capstan_core::TaskState {
    fn from(column: StateColumn<capstan_core::TaskState>) -> Self {
        column.0
    }
}

impl From<StateColumn<capstan_core::CommandState>> for capstan_core::CommandState {
    fn from(column: StateColumn<capstan_core::CommandState>) -> Self {
        column.0
    }
}

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
