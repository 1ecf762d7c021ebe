//! The audit log's rows. A change appends its row with the executor of its own
//! transaction, so the row commits with the change or not at all.

use capstan_core::audit::{ActorKind, AuthMethod};

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
