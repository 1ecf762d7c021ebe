//! Browser sessions, sign-ins pending at the OpenID provider, and recent failed logins.
//! Every node reads these rows on each request, so a session ended on one node is
//! refused by all of them at once, and a login flood is counted across the cluster.

use std::time::Duration;

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::DbError;

/// A session as stored: never its secret, only the digest of the cookie.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: i64,
    pub public_id: String,
    pub user_id: i64,
    /// `password` or `oidc`.
    pub login: String,
    pub address: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

const SESSION_COLUMNS: &str =
    "id, public_id, user_id, login, address, created_at, last_seen_at, expires_at, ended_at";

/// A live session and its owner, as a request's authentication needs them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionCheckRow {
    pub public_id: String,
    pub user_id: i64,
    pub user_name: String,
    pub login: String,
}

/// A new session; `digest` is the sha256 of the whole cookie value.
pub struct NewSession<'a> {
    pub public_id: &'a str,
    pub digest: &'a [u8],
    pub user_id: i64,
    pub login: &'a str,
    pub address: &'a str,
    pub expires_at: OffsetDateTime,
}

pub async fn create(
    db: impl PgExecutor<'_>,
    session: &NewSession<'_>,
) -> Result<SessionRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO sessions (public_id, digest, user_id, login, address, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {SESSION_COLUMNS}"
    ))
    .bind(session.public_id)
    .bind(session.digest)
    .bind(session.user_id)
    .bind(session.login)
    .bind(session.address)
    .bind(session.expires_at)
    .fetch_one(db)
    .await?)
}

/// The live session whose cookie has `digest`, touched as seen now: none when it
/// ended, passed its absolute end, sat idle longer than `idle`, or its owner is
/// disabled.
pub async fn check(
    db: impl PgExecutor<'_>,
    digest: &[u8],
    idle: Duration,
) -> Result<Option<SessionCheckRow>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE sessions s SET last_seen_at = now()
         FROM users u
         WHERE s.digest = $1 AND u.id = s.user_id AND NOT u.disabled
           AND s.ended_at IS NULL AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(secs => $2)
         RETURNING s.public_id, s.user_id, u.name AS user_name, s.login",
    )
    .bind(digest)
    .bind(idle.as_secs_f64())
    .fetch_optional(db)
    .await?)
}

/// Ends the session with public id `public_id` (a second end keeps the first time).
pub async fn end(db: impl PgExecutor<'_>, public_id: &str) -> Result<SessionRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE sessions SET ended_at = coalesce(ended_at, now())
         WHERE public_id = $1
         RETURNING {SESSION_COLUMNS}"
    ))
    .bind(public_id)
    .fetch_one(db)
    .await?)
}

/// Ends every live session of `user_id` but `keep` (a public id): a new password
/// signs out whoever held the old one. Returns how many ended.
pub async fn end_all_of(
    db: impl PgExecutor<'_>,
    user_id: i64,
    keep: Option<&str>,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE sessions SET ended_at = now()
         WHERE user_id = $1 AND ended_at IS NULL AND public_id IS DISTINCT FROM $2",
    )
    .bind(user_id)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes sessions that ended or expired before `before`.
pub async fn delete_stale(db: impl PgExecutor<'_>, before: OffsetDateTime) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR ended_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Records a sign-in sent to the provider, and forgets those whose time ran out.
/// `cli_port`: begun by `capstan login --browser`, whose listener waits there.
pub async fn begin_oidc(
    db: impl PgExecutor<'_>,
    state_digest: &[u8],
    browser_digest: &[u8],
    cli_port: Option<u16>,
    expires_at: OffsetDateTime,
) -> Result<(), DbError> {
    sqlx::query(
        "WITH gone AS (DELETE FROM oidc_logins WHERE expires_at < now())
         INSERT INTO oidc_logins (state_digest, browser_digest, cli_port, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(state_digest)
    .bind(browser_digest)
    .bind(cli_port.map(i32::from))
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (deletes) the pending sign-in whose state has `state_digest`: the digest of
/// the browser cookie that began it and the CLI's port, or none when it is unknown,
/// used or expired.
pub async fn take_oidc(
    db: impl PgExecutor<'_>,
    state_digest: &[u8],
) -> Result<Option<(Vec<u8>, Option<i32>)>, DbError> {
    Ok(sqlx::query_as(
        "DELETE FROM oidc_logins WHERE state_digest = $1 AND expires_at > now()
         RETURNING browser_digest, cli_port",
    )
    .bind(state_digest)
    .fetch_optional(db)
    .await?)
}

/// Records a failed login against `account` (a digest) from `address`, and forgets
/// failures older than `keep`.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    account: &[u8],
    address: &str,
    keep: Duration,
) -> Result<(), DbError> {
    sqlx::query(
        "WITH gone AS (DELETE FROM login_failures WHERE at < now() - make_interval(secs => $3))
         INSERT INTO login_failures (account, address) VALUES ($1, $2)",
    )
    .bind(account)
    .bind(address)
    .bind(keep.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Failed logins within `window`: against `account`, and from `address`.
pub async fn recent_failures(
    db: impl PgExecutor<'_>,
    account: &[u8],
    address: &str,
    window: Duration,
) -> Result<(i64, i64), DbError> {
    Ok(sqlx::query_as(
        "SELECT
            (SELECT count(*) FROM login_failures
             WHERE account = $1 AND at > now() - make_interval(secs => $3)),
            (SELECT count(*) FROM login_failures
             WHERE address = $2 AND at > now() - make_interval(secs => $3))",
    )
    .bind(account)
    .bind(address)
    .bind(window.as_secs_f64())
    .fetch_one(db)
    .await?)
}

/// Forgets the failures against `account` after a successful login.
pub async fn forget_failures(db: impl PgExecutor<'_>, account: &[u8]) -> Result<(), DbError> {
    sqlx::query("DELETE FROM login_failures WHERE account = $1")
        .bind(account)
        .execute(db)
        .await?;
    Ok(())
}

/// Records a one-time code (its digest) for `user_id`, and forgets expired ones.
pub async fn create_login_code(
    db: impl PgExecutor<'_>,
    digest: &[u8],
    user_id: i64,
    expires_at: OffsetDateTime,
) -> Result<(), DbError> {
    sqlx::query(
        "WITH gone AS (DELETE FROM login_codes WHERE expires_at < now())
         INSERT INTO login_codes (digest, user_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(digest)
    .bind(user_id)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (deletes) a live one-time code: its person.
pub async fn take_login_code(
    db: impl PgExecutor<'_>,
    digest: &[u8],
) -> Result<Option<i64>, DbError> {
    Ok(sqlx::query_scalar(
        "DELETE FROM login_codes WHERE digest = $1 AND expires_at > now() RETURNING user_id",
    )
    .bind(digest)
    .fetch_optional(db)
    .await?)
}
