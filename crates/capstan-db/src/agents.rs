//! Environments, registration tokens and agents. Secrets arrive here only as digests.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::{DbError, notify::AgentNotice};

pub use crate::notify::AGENTS_CHANNEL;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

pub async fn create_environment(
    db: impl PgExecutor<'_>,
    name: &str,
    description: &str,
) -> Result<EnvironmentRow, DbError> {
    let row =
        sqlx::query_as("INSERT INTO environments (name, description) VALUES ($1, $2) RETURNING *")
            .bind(name)
            .bind(description)
            .fetch_one(db)
            .await?;
    Ok(row)
}

/// Environments by name; only those `viewer` may view.
pub async fn list_environments(
    db: impl PgExecutor<'_>,
    viewer: crate::access::Viewer,
) -> Result<Vec<EnvironmentRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT * FROM environments WHERE {} ORDER BY lower(name) LIMIT 10000",
        crate::access::visible(1, None, Some("environments.id"))
    ))
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

pub async fn get_environment(db: impl PgExecutor<'_>, id: i64) -> Result<EnvironmentRow, DbError> {
    Ok(sqlx::query_as("SELECT * FROM environments WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// The environment of a name, in any case.
pub async fn find_environment(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<EnvironmentRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT * FROM environments WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn update_environment(
    db: impl PgExecutor<'_>,
    id: i64,
    name: &str,
    description: &str,
) -> Result<EnvironmentRow, DbError> {
    Ok(sqlx::query_as(
        "UPDATE environments SET name = $2, description = $3 WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await?)
}

/// Deletes an environment; `Conflict` while agents belong to it.
/// The environment, locked until the caller's transaction ends.
pub async fn get_environment_for_update(
    conn: &mut PgConnection,
    id: i64,
) -> Result<EnvironmentRow, DbError> {
    Ok(
        sqlx::query_as("SELECT * FROM environments WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}

pub async fn delete_environment(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let done = sqlx::query("DELETE FROM environments WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub prefix: String,
    pub note: Option<String>,
    pub uses_left: i32,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
}

const TOKEN_COLUMNS: &str = "id, prefix, note, uses_left, expires_at, created_at";

pub async fn create_token(
    db: impl PgExecutor<'_>,
    digest: &[u8],
    prefix: &str,
    note: Option<&str>,
    uses: i32,
    expires_at: OffsetDateTime,
) -> Result<TokenRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO registration_tokens (digest, prefix, note, uses_left, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(digest)
    .bind(prefix)
    .bind(note)
    .bind(uses)
    .bind(expires_at)
    .fetch_one(db)
    .await?)
}

/// Tokens that can still register an agent, newest first.
pub async fn list_tokens(db: impl PgExecutor<'_>) -> Result<Vec<TokenRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM registration_tokens
         WHERE uses_left > 0 AND expires_at > now() ORDER BY id DESC LIMIT 1000"
    ))
    .fetch_all(db)
    .await?)
}

/// A token, locked until the caller's transaction ends: the real "before" of a change.
pub async fn get_token_for_update(conn: &mut PgConnection, id: i64) -> Result<TokenRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM registration_tokens WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// The id of the token with this digest: the public name of the credential an agent
/// registered with.
pub async fn token_id(db: impl PgExecutor<'_>, digest: &[u8]) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM registration_tokens WHERE digest = $1")
            .bind(digest)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn delete_token(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let done = sqlx::query("DELETE FROM registration_tokens WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the registration token is not valid")]
    UnknownToken,
    #[error("the registration token expired at {0}")]
    Expired(OffsetDateTime),
    #[error("the registration token has been used as many times as it allows")]
    UsedUp,
    #[error("there is no environment `{0}`")]
    NoEnvironment(String),
    #[error("an agent named `{0}` is already registered")]
    NameTaken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// An agent about to be registered.
#[derive(Debug)]
pub struct NewAgent<'a> {
    pub name: &'a str,
    pub environment: &'a str,
    pub tags: &'a [String],
    pub version: &'a str,
    pub credential_digest: &'a [u8],
}

/// Whether a registration token may register an agent now, checked before the request's
/// body is read; [`register`] checks again under a lock as it spends a use.
pub async fn check_registration_token(
    db: impl PgExecutor<'_>,
    token_digest: &[u8],
) -> Result<(), RegisterError> {
    token_standing(db, token_digest, "").await
}

async fn token_standing(
    db: impl PgExecutor<'_>,
    token_digest: &[u8],
    lock: &str,
) -> Result<(), RegisterError> {
    let token: Option<(i32, OffsetDateTime, bool)> = sqlx::query_as(&format!(
        "SELECT uses_left, expires_at, expires_at > now() FROM registration_tokens
         WHERE digest = $1 {lock}"
    ))
    .bind(token_digest)
    .fetch_optional(db)
    .await
    .map_err(DbError::from)?;
    match token {
        None => Err(RegisterError::UnknownToken),
        Some((_, expires_at, false)) => Err(RegisterError::Expired(expires_at)),
        Some((0, _, _)) => Err(RegisterError::UsedUp),
        Some(_) => Ok(()),
    }
}

/// Spends one use of a registration token and adds the agent, in one transaction (a
/// savepoint in the caller's).
pub async fn register(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    token_digest: &[u8],
    agent: &NewAgent<'_>,
) -> Result<AgentRow, RegisterError> {
    let mut tx = db.begin().await.map_err(DbError::from)?;
    token_standing(&mut *tx, token_digest, "FOR UPDATE").await?;
    let environment = find_environment(&mut *tx, agent.environment)
        .await?
        .ok_or_else(|| RegisterError::NoEnvironment(agent.environment.to_owned()))?;
    let inserted: Result<(i64,), sqlx::Error> = sqlx::query_as(
        "INSERT INTO agents (name, environment_id, tags, version, credential_digest)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(agent.name)
    .bind(environment.id)
    .bind(agent.tags)
    .bind(agent.version)
    .bind(agent.credential_digest)
    .fetch_one(&mut *tx)
    .await;
    let (id,) = match inserted.map_err(DbError::from) {
        Err(DbError::Conflict { constraint }) if constraint == "agents_name" => {
            return Err(RegisterError::NameTaken(agent.name.to_owned()));
        }
        other => other?,
    };
    sqlx::query("UPDATE registration_tokens SET uses_left = uses_left - 1 WHERE digest = $1")
        .bind(token_digest)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let row = get_agent(&mut *tx, id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(row)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub version: String,
    pub last_seen: Option<OffsetDateTime>,
    pub last_node: Option<String>,
    pub health: String,
    pub health_reason: Option<String>,
    pub health_checked_at: Option<OffsetDateTime>,
    pub disabled: bool,
    pub registered_at: OffsetDateTime,
}

const SELECT_AGENT: &str = "SELECT a.id, a.name, e.name AS environment, a.tags, a.version,
        a.last_seen, a.last_node, a.health, a.health_reason, a.health_checked_at,
        a.disabled, a.registered_at
    FROM agents a JOIN environments e ON e.id = a.environment_id";

/// The agent, locked until the caller's transaction ends.
pub async fn get_agent_for_update(conn: &mut PgConnection, id: i64) -> Result<AgentRow, DbError> {
    Ok(
        sqlx::query_as(&format!("{SELECT_AGENT} WHERE a.id = $1 FOR UPDATE OF a"))
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}

pub async fn get_agent(db: impl PgExecutor<'_>, id: i64) -> Result<AgentRow, DbError> {
    Ok(sqlx::query_as(&format!("{SELECT_AGENT} WHERE a.id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// The agent of a name, in any case.
pub async fn find_agent(db: impl PgExecutor<'_>, name: &str) -> Result<Option<AgentRow>, DbError> {
    Ok(
        sqlx::query_as(&format!("{SELECT_AGENT} WHERE lower(a.name) = lower($1)"))
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

/// Which of these tags at least one agent carries.
pub async fn carried_tags(
    db: impl PgExecutor<'_>,
    tags: &[String],
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT tag FROM agents, unnest(tags) AS tag WHERE tag = ANY($1)",
    )
    .bind(tags)
    .fetch_all(db)
    .await?)
}

/// Filters of the agent list; `None` matches anything.
#[derive(Debug, Default)]
pub struct AgentFilter<'a> {
    pub environment_id: Option<i64>,
    pub tag: Option<&'a str>,
    pub health: Option<&'a str>,
    pub after: Option<i64>,
    pub limit: i64,
    /// Only the agents this viewer may view.
    pub viewer: crate::access::Viewer,
}

pub async fn list_agents(
    db: impl PgExecutor<'_>,
    filter: &AgentFilter<'_>,
) -> Result<Vec<AgentRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT_AGENT}
         WHERE ($1::bigint IS NULL OR a.environment_id = $1)
           AND ($2::text IS NULL OR a.tags @> ARRAY[$2::text])
           AND ($3::text IS NULL OR a.health = $3)
           AND ($4::bigint IS NULL OR a.id > $4)
           AND {}
         ORDER BY a.id LIMIT $5",
        crate::access::visible(6, None, Some("a.environment_id"))
    ))
    .bind(filter.environment_id)
    .bind(filter.tag)
    .bind(filter.health)
    .bind(filter.after)
    .bind(filter.limit)
    .bind(filter.viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// Changes what is given and announces it, so every node drops what it cached of
/// the agent (a disabled agent is refused at once).
pub async fn update_agent(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
    environment_id: Option<i64>,
    tags: Option<&[String]>,
    disabled: Option<bool>,
) -> Result<AgentRow, DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE agents SET environment_id = coalesce($2, environment_id),
             tags = coalesce($3, tags), disabled = coalesce($4, disabled)
         WHERE id = $1",
    )
    .bind(id)
    .bind(environment_id)
    .bind(tags)
    .bind(disabled)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce_revoked(&mut *tx, id).await?;
    let row = get_agent(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes an agent with its mailbox; every node refuses its credential at once.
pub async fn delete_agent(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce_revoked(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(())
}

async fn announce_revoked(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(AGENTS_CHANNEL)
        .bind(AgentNotice::Revoked(id).encode())
        .execute(db)
        .await?;
    Ok(())
}

/// Who a credential belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentIdentity {
    pub id: i64,
    pub name: String,
    pub disabled: bool,
}

pub async fn authenticate(
    db: impl PgExecutor<'_>,
    credential_digest: &[u8],
) -> Result<Option<AgentIdentity>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, name, disabled FROM agents WHERE credential_digest = $1")
            .bind(credential_digest)
            .fetch_optional(db)
            .await?,
    )
}

/// Records that agents polled `node`, in one statement for all of them.
pub async fn record_seen(
    db: impl PgExecutor<'_>,
    node: &str,
    ids: &[i64],
    versions: &[String],
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE agents a SET last_seen = now(), last_node = $1, version = v.version
         FROM unnest($2::bigint[], $3::text[]) AS v(id, version) WHERE a.id = v.id",
    )
    .bind(node)
    .bind(ids)
    .bind(versions)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_health(
    db: impl PgExecutor<'_>,
    id: i64,
    health: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE agents SET health = $2, health_reason = $3, health_checked_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(health)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// An agent a task sends commands to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub id: i64,
    pub name: String,
    /// The name of its environment.
    pub environment: String,
    pub tags: Vec<String>,
}

/// Enabled agents matching every filter given (names, all tags, an environment), by
/// name. With no filter at all, every enabled agent.
pub async fn targets(
    db: impl PgExecutor<'_>,
    names: &[String],
    tags: &[String],
    environment_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Target>, DbError> {
    let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    Ok(sqlx::query_as(
        "SELECT a.id, a.name, e.name AS environment, a.tags
         FROM agents a JOIN environments e ON e.id = a.environment_id
         WHERE NOT a.disabled
           AND (cardinality($1::text[]) = 0 OR lower(a.name) = ANY($1))
           AND a.tags @> $2::text[]
           AND ($3::bigint IS NULL OR a.environment_id = $3)
         ORDER BY lower(a.name) LIMIT $4",
    )
    .bind(&lower)
    .bind(tags)
    .bind(environment_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
