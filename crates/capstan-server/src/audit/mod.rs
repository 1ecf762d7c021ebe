//! The audit log: every change made through the API appends one row in the change's
//! own transaction, saying who (the request's principal and address), what (the
//! action and object) and how it looked before and after. Sensitive values are
//! replaced by [`CHANGED`] or [`UNCHANGED`] before a row is built, so neither a value
//! nor a reversible form of it ever reaches the table. Old rows are archived to the
//! blob store and deleted by [`retention`].

pub mod retention;
mod routes;

use axum::{extract::FromRequestParts, http::request::Parts};
use capstan_api::{AuditActor, AuditEvent, AuditObject};
use capstan_db::{
    DbError,
    audit::{self, Actor, EventRow, NewEvent},
};
use serde::Serialize;

pub use routes::{AUDITED_ROUTES, UNAUDITED_ROUTES};

use crate::{
    http::ApiError,
    identity::{ClientAddress, Principal},
};

/// What a sensitive value that was set or replaced reads as in a row.
pub const CHANGED: &str = "changed";
/// What a sensitive value that was kept reads as in a row.
pub const UNCHANGED: &str = "unchanged";

/// The actor of an authenticated request, from its principal and client address.
#[derive(Debug, Clone)]
pub struct ChangedBy(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for ChangedBy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let principal = parts.extensions.get::<Principal>().ok_or_else(|| {
            ApiError::internal(&std::io::Error::other(
                "a change reached its handler without a principal",
            ))
        })?;
        let address = parts
            .extensions
            .get::<ClientAddress>()
            .map(|address| address.0.clone());
        Ok(Self(principal.actor(address)))
    }
}

/// One change about to be recorded: built by the service that makes it, appended
/// with [`Change::record`] on the change's own transaction.
#[derive(Debug, Clone)]
pub struct Change {
    action: &'static str,
    object_id: Option<String>,
    object_name: Option<String>,
    project_id: Option<i64>,
    environment_id: Option<i64>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

impl Change {
    /// A change named `<object kind>.<verb>`.
    pub fn new(action: &'static str) -> Self {
        debug_assert!(action.contains('.'), "an action is `<object kind>.<verb>`");
        Self {
            action,
            object_id: None,
            object_name: None,
            project_id: None,
            environment_id: None,
            before: None,
            after: None,
        }
    }

    pub fn object(mut self, id: impl ToString, name: impl Into<String>) -> Self {
        self.object_id = Some(id.to_string());
        self.object_name = Some(name.into());
        self
    }

    /// Names the object; its id is the task the change queues.
    pub fn object_name(mut self, name: impl Into<String>) -> Self {
        self.object_name = Some(name.into());
        self
    }

    pub fn project(mut self, id: impl Into<Option<i64>>) -> Self {
        self.project_id = id.into();
        self
    }

    pub fn environment(mut self, id: impl Into<Option<i64>>) -> Self {
        self.environment_id = id.into();
        self
    }

    /// The object before the change, as the API shows it.
    pub fn before(mut self, object: &impl Serialize) -> Self {
        self.before = Some(as_json(object));
        self
    }

    /// The object after the change, as the API shows it.
    pub fn after(mut self, object: &impl Serialize) -> Self {
        self.after = Some(as_json(object));
        self
    }

    pub fn action(&self) -> &'static str {
        self.action
    }

    /// Appends the row on `db`, which must be the change's own transaction (or the
    /// single statement that made it), so the row commits with the change or not at
    /// all.
    pub async fn record(
        &self,
        db: impl sqlx::PgExecutor<'_>,
        actor: &Actor,
    ) -> Result<i64, DbError> {
        audit::append(db, &self.event(actor)).await
    }

    /// The row to append, for changes whose statement lives in `capstan-db`.
    pub fn event<'a>(&'a self, actor: &'a Actor) -> NewEvent<'a> {
        let object_kind = self
            .action
            .split_once('.')
            .map_or(self.action, |(kind, _)| kind);
        NewEvent {
            actor,
            action: self.action,
            object_kind,
            object_id: self.object_id.clone(),
            object_name: self.object_name.clone(),
            project_id: self.project_id,
            environment_id: self.environment_id,
            before: self.before.clone(),
            after: self.after.clone(),
        }
    }
}

fn as_json(object: &impl Serialize) -> serde_json::Value {
    // The API types serialize infallibly (string keys, no custom failures).
    serde_json::to_value(object).unwrap_or(serde_json::Value::Null)
}

/// A stored row as the API and the archives show it.
pub fn event_response(row: EventRow) -> AuditEvent {
    AuditEvent {
        id: row.id,
        at: row.at,
        actor: AuditActor {
            kind: row.actor_kind,
            id: row.actor_id,
            name: row.actor_name,
            method: row.auth_method,
            credential: row.credential,
            address: row.address,
        },
        action: row.action,
        object: AuditObject {
            kind: row.object_kind,
            id: row.object_id,
            name: row.object_name,
        },
        project_id: row.project_id,
        environment_id: row.environment_id,
        before: row.before,
        after: row.after,
    }
}

/// Begins the transaction a change and its row share.
pub async fn begin(
    db: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, DbError> {
    Ok(db.begin().await?)
}

/// Commits a change with its row.
pub async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), DbError> {
    Ok(tx.commit().await?)
}

/// The client's address through the trusted proxies, for the routes the API key layer
/// does not cover (an agent registering).
#[derive(Debug, Clone)]
pub struct RequestAddress(pub Option<String>);

impl FromRequestParts<std::sync::Arc<crate::node::NodeContext>> for RequestAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &std::sync::Arc<crate::node::NodeContext>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(
            crate::http::client_addr::of_request(
                peer,
                &parts.headers,
                &ctx.settings.trusted_proxies,
            )
            .map(|ip| ip.to_string()),
        ))
    }
}
