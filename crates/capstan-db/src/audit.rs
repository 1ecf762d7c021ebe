//! The audit log's rows. A change appends its row with the executor of its own
//! transaction, so the row commits with the change or not at all.

use capstan_core::audit::{ActorKind, AuthMethod};
use time::{Date, OffsetDateTime};

use crate::DbError;

/// Who made a change and how they proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's or agent's id.
    pub id: Option<i64>,
    pub name: String,
    pub method: AuthMethod,
    /// The public part of the credential (an API key's id, a session's id); never a
    /// secret.
    pub credential: Option<String>,
    /// The client's address through the trusted proxies.
    pub address: Option<String>,
}

impl Actor {
    /// Capstan acting by itself; `name` says which part of it (`lifecycle`,
    /// `release-retention`, `automatic rollback on node N`, …).
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
            name: name.into(),
            method: AuthMethod::None,
            credential: None,
            address: None,
        }
    }
}

/// One audit row to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub actor: &'a Actor,
    /// `<object kind>.<verb>`, e.g. `project.create`, `deployment.cancel`,
    /// `login.failed`.
    pub action: &'a str,
    pub object_kind: &'a str,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    /// Null for a create; sensitive values already replaced.
    pub before: Option<serde_json::Value>,
    /// Null for a delete; sensitive values already replaced.
    pub after: Option<serde_json::Value>,
}

/// Appends one row; returns its id.
pub async fn append<'e>(
    db: impl sqlx::PgExecutor<'e>,
    event: &NewEvent<'_>,
) -> Result<i64, DbError> {
    let id = sqlx::query_scalar(
        "INSERT INTO audit_events (actor_kind, actor_id, actor_name, auth_method, credential,
             address, action, object_kind, object_id, object_name, project_id, environment_id,
             before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING id",
    )
    .bind(event.actor.kind.as_str())
    .bind(event.actor.id)
    .bind(&event.actor.name)
    .bind(event.actor.method.as_str())
    .bind(&event.actor.credential)
    .bind(&event.actor.address)
    .bind(event.action)
    .bind(event.object_kind)
    .bind(&event.object_id)
    .bind(&event.object_name)
    .bind(event.project_id)
    .bind(event.environment_id)
    .bind(&event.before)
    .bind(&event.after)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// One stored row, as the list and the archive read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub auth_method: String,
    pub credential: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

const EVENT: &str = "SELECT id, at, actor_kind, actor_id, actor_name, auth_method, credential,
        address, action, object_kind, object_id, object_name, project_id, environment_id,
        before, after
    FROM audit_events";

/// What a list keeps; every field left `None` keeps all rows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor_kind: Option<ActorKind>,
    pub actor_id: Option<i64>,
    /// A whole actor name, in any case.
    pub actor_name: Option<String>,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    /// A whole action (`project.update`) or every action on a kind (`project`).
    pub action: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// Rows newest first, with ids below `before_id`.
pub async fn list(
    db: impl sqlx::PgExecutor<'_>,
    filter: &Filter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{EVENT}
         WHERE ($1::text IS NULL OR actor_kind = $1)
           AND ($2::bigint IS NULL OR actor_id = $2)
           AND ($3::text IS NULL OR lower(actor_name) = lower($3))
           AND ($4::text IS NULL OR object_kind = $4)
           AND ($5::text IS NULL OR object_id = $5)
           AND ($6::bigint IS NULL OR project_id = $6)
           AND ($7::bigint IS NULL OR environment_id = $7)
           AND ($8::text IS NULL OR action = $8 OR split_part(action, '.', 1) = $8)
           AND ($9::timestamptz IS NULL OR at >= $9)
           AND ($10::timestamptz IS NULL OR at < $10)
           AND ($11::bigint IS NULL OR id < $11)
         ORDER BY id DESC LIMIT $12"
    ))
    .bind(filter.actor_kind.map(ActorKind::as_str))
    .bind(filter.actor_id)
    .bind(&filter.actor_name)
    .bind(&filter.object_kind)
    .bind(&filter.object_id)
    .bind(filter.project_id)
    .bind(filter.environment_id)
    .bind(&filter.action)
    .bind(filter.since)
    .bind(filter.until)
    .bind(before_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The oldest UTC day holding a row older than `cutoff`, if any: the next day the
/// retention archives.
pub async fn oldest_day_before(
    db: impl sqlx::PgExecutor<'_>,
    cutoff: OffsetDateTime,
) -> Result<Option<Date>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT (min(at) AT TIME ZONE 'UTC')::date FROM audit_events WHERE at < $1",
    )
    .bind(cutoff)
    .fetch_one(db)
    .await?)
}

/// Rows of one UTC day with ids above `after`, by id, at most `limit`: a day is read in
/// pages, so the retention never holds a busy day in memory.
pub async fn day_page(
    db: impl sqlx::PgExecutor<'_>,
    day: Date,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{EVENT}
         WHERE at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
           AND at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
           AND id > $2
         ORDER BY id LIMIT $3"
    ))
    .bind(day)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Deletes these rows of one UTC day (those its archive holds); returns how many.
pub async fn delete_archived(
    db: impl sqlx::PgExecutor<'_>,
    day: Date,
    ids: &[i64],
) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "DELETE FROM audit_events
         WHERE at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
           AND at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
           AND id = ANY($2)",
    )
    .bind(day)
    .bind(ids)
    .execute(db)
    .await?
    .rows_affected())
}
