//! Users (people and service accounts) and their API keys. Every change that makes a
//! key stop working (a revocation, a disabled or deleted owner) announces itself on
//! [`crate::notify::USERS_CHANNEL`] in the same transaction, so every node drops its
//! cached copy at once.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::{
    DbError,
    notify::{USERS_CHANNEL, UserNotice},
};

/// A user as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub email: Option<String>,
    /// `person` or `service`.
    pub kind: String,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
}

const USER: &str = "SELECT id, name, display_name, email, kind, disabled, created_at FROM users";

/// An API key as stored: never its secret, only the secret's digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: i64,
    pub user_id: i64,
    pub purpose: String,
    pub key_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_address: Option<String>,
}

const API_KEY: &str = "SELECT id, user_id, purpose, key_id, created_at, expires_at, revoked_at,
    last_used_at, last_used_address FROM api_keys";

/// What authenticating a key needs: the key's digest and state, and its owner's.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyCheckRow {
    pub id: i64,
    pub key_id: String,
    pub digest: Vec<u8>,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
    pub user_id: i64,
    pub user_name: String,
    pub user_kind: String,
    pub user_disabled: bool,
}

/// A new user; `name` is already normalized.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub kind: &'a str,
}

pub async fn create(db: impl PgExecutor<'_>, user: &NewUser<'_>) -> Result<UserRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO users (name, display_name, email, kind) VALUES ($1, $2, $3, $4)
         RETURNING id, name, display_name, email, kind, disabled, created_at",
    )
    .bind(user.name)
    .bind(user.display_name)
    .bind(user.email)
    .bind(user.kind)
    .fetch_one(db)
    .await?)
}

/// The user, locked until the caller's transaction ends: the real "before" of a change.
pub async fn get_for_update(conn: &mut PgConnection, id: i64) -> Result<UserRow, DbError> {
    Ok(sqlx::query_as(&format!("{USER} WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_one(conn)
        .await?)
}

/// A user's key, locked until the caller's transaction ends.
pub async fn get_key_for_update(
    conn: &mut PgConnection,
    user_id: i64,
    key_id: &str,
) -> Result<ApiKeyRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "{API_KEY} WHERE user_id = $1 AND key_id = $2 FOR UPDATE"
    ))
    .bind(user_id)
    .bind(key_id)
    .fetch_one(conn)
    .await?)
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<UserRow, DbError> {
    Ok(sqlx::query_as(&format!("{USER} WHERE id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// Users by id after `after`; `name` matches a whole name in any case.
pub async fn list(
    db: impl PgExecutor<'_>,
    name: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<UserRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{USER} WHERE ($1::text IS NULL OR lower(name) = lower($1))
           AND ($2::bigint IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    ))
    .bind(name)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// What a `PATCH` changes: only the fields that are `Some`.
#[derive(Default)]
pub struct UserChange<'a> {
    pub disabled: Option<bool>,
    pub display_name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Changes a user; announces the change so nodes forget its cached keys.
pub async fn update(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
    change: &UserChange<'_>,
) -> Result<UserRow, DbError> {
    let mut tx = db.begin().await?;
    let row: UserRow = sqlx::query_as(
        "UPDATE users SET disabled = coalesce($2, disabled),
                          display_name = coalesce($3, display_name),
                          email = coalesce($4, email)
         WHERE id = $1
         RETURNING id, name, display_name, email, kind, disabled, created_at",
    )
    .bind(id)
    .bind(change.disabled)
    .bind(change.display_name)
    .bind(change.email)
    .fetch_one(&mut *tx)
    .await?;
    announce(&mut *tx, UserNotice::Changed(id)).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a user with its keys; announces it so its keys stop working at once.
pub async fn delete(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce(&mut *tx, UserNotice::Changed(id)).await?;
    tx.commit().await?;
    Ok(())
}

/// A new key of a user; `digest` is the sha256 of the whole key.
pub struct NewApiKey<'a> {
    pub user_id: i64,
    pub purpose: &'a str,
    pub key_id: &'a str,
    pub digest: &'a [u8],
    pub expires_at: OffsetDateTime,
}

pub async fn create_key(
    db: impl PgExecutor<'_>,
    key: &NewApiKey<'_>,
) -> Result<ApiKeyRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO api_keys (user_id, purpose, key_id, digest, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, user_id, purpose, key_id, created_at, expires_at, revoked_at,
                   last_used_at, last_used_address",
    )
    .bind(key.user_id)
    .bind(key.purpose)
    .bind(key.key_id)
    .bind(key.digest)
    .bind(key.expires_at)
    .fetch_one(db)
    .await?)
}

/// How many keys a user has that are neither revoked nor expired.
pub async fn count_live_keys(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM api_keys
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?)
}

/// A user's keys, newest last, at most `limit`.
pub async fn list_keys(
    db: impl PgExecutor<'_>,
    user_id: i64,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{API_KEY} WHERE user_id = $1 ORDER BY id LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Revokes a user's key (a second revocation keeps the first time); announces it.
pub async fn revoke_key(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    user_id: i64,
    key_id: &str,
) -> Result<ApiKeyRow, DbError> {
    let mut tx = db.begin().await?;
    let row: ApiKeyRow = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE user_id = $1 AND key_id = $2
         RETURNING id, user_id, purpose, key_id, created_at, expires_at, revoked_at,
                   last_used_at, last_used_address",
    )
    .bind(user_id)
    .bind(key_id)
    .fetch_one(&mut *tx)
    .await?;
    announce(&mut *tx, UserNotice::KeyRevoked(row.id)).await?;
    tx.commit().await?;
    Ok(row)
}

/// The key with public id `key_id` and its owner, for authentication.
pub async fn key_for_check(
    db: impl PgExecutor<'_>,
    key_id: &str,
) -> Result<Option<KeyCheckRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT k.id, k.key_id, k.digest, k.expires_at, k.revoked_at IS NOT NULL AS revoked,
                u.id AS user_id, u.name AS user_name, u.kind AS user_kind,
                u.disabled AS user_disabled
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(db)
    .await?)
}

/// Records when and from where keys were last used, for many keys in one statement.
pub async fn record_key_use(
    db: impl PgExecutor<'_>,
    ids: &[i64],
    at: &[OffsetDateTime],
    addresses: &[String],
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE api_keys k SET last_used_at = u.at, last_used_address = u.address
         FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS u(id, at, address)
         WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
    )
    .bind(ids)
    .bind(at)
    .bind(addresses)
    .execute(db)
    .await?;
    Ok(())
}

async fn announce(db: impl PgExecutor<'_>, notice: UserNotice) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(USERS_CHANNEL)
        .bind(notice.encode())
        .execute(db)
        .await?;
    Ok(())
}

/// What a password login needs of a user: never shown to anyone.
#[derive(Clone, sqlx::FromRow)]
pub struct LoginRow {
    pub id: i64,
    pub name: String,
    /// `person` or `service`.
    pub kind: String,
    pub disabled: bool,
    /// The argon2id hash in PHC form; none when the user has no password.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for LoginRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The user named `name` (in any case), for a password login.
pub async fn for_login(db: impl PgExecutor<'_>, name: &str) -> Result<Option<LoginRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, name, kind, disabled, password_hash FROM users WHERE lower(name) = lower($1)",
    )
    .bind(name)
    .fetch_optional(db)
    .await?)
}

/// The user with id `id`, for a password change.
pub async fn for_login_by_id(db: impl PgExecutor<'_>, id: i64) -> Result<LoginRow, DbError> {
    Ok(
        sqlx::query_as("SELECT id, name, kind, disabled, password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

/// Sets a person's password hash; announces it so nodes drop what they cached.
pub async fn set_password(
    db: impl PgExecutor<'_>,
    id: i64,
    password_hash: &str,
) -> Result<(), DbError> {
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .execute(db)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// The person linked to the provider's `subject` at `issuer`.
pub async fn by_oidc_subject(
    db: impl PgExecutor<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{USER} WHERE oidc_issuer = $1 AND oidc_subject = $2"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await?)
}

/// Links the person with email `email` (in any case) and no link yet to the
/// provider's `subject`: the person, or none when no such person is unlinked.
pub async fn link_oidc_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE users SET oidc_issuer = $2, oidc_subject = $3
         WHERE id = (SELECT id FROM users
                     WHERE lower(email) = lower($1) AND kind = 'person' AND oidc_subject IS NULL
                     ORDER BY id LIMIT 1)
         RETURNING id, name, display_name, email, kind, disabled, created_at",
    )
    .bind(email)
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await?)
}

/// Creates a person linked to the provider's `subject`.
pub async fn create_oidc_person(
    db: impl PgExecutor<'_>,
    user: &NewUser<'_>,
    issuer: &str,
    subject: &str,
) -> Result<UserRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO users (name, display_name, email, kind, oidc_issuer, oidc_subject)
         VALUES ($1, $2, $3, 'person', $4, $5)
         RETURNING id, name, display_name, email, kind, disabled, created_at",
    )
    .bind(user.name)
    .bind(user.display_name)
    .bind(user.email)
    .bind(issuer)
    .bind(subject)
    .fetch_one(db)
    .await?)
}
