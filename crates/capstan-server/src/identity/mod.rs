//! Identity: users (people and service accounts), their API keys, and how a request's
//! bearer key becomes a [`Principal`]. Checked keys are cached per node for a short
//! time; a revocation or a change of the owner, announced on the users channel, drops
//! the cached check on every node at once. When and from where a key was last used is
//! gathered in memory and written once per heartbeat.

pub mod access;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod sessions;
pub mod throttle;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use capstan_core::audit::{ActorKind, AuthMethod};
use capstan_db::{DbError, audit::Actor, notify::UserNotice, users::KeyCheckRow};
use time::OffsetDateTime;

use crate::invalid::FieldProblems;

/// How long a node trusts its cached check of a key without a notification.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most keys cached; past it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// Who sent a request, put into its extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `CAPSTAN_ADMIN_API_KEY`: the bootstrap credential, allowed everything.
    AdminKey,
    /// A user's or service account's API key.
    ApiKey {
        user_id: i64,
        user_name: String,
        /// A service account rather than a person.
        service: bool,
        key_id: String,
    },
    /// A person's browser session, begun by a password or the OpenID provider.
    Session {
        user_id: i64,
        user_name: String,
        /// The session's public id (never its secret).
        session_id: String,
        login: AuthMethod,
    },
}

impl Principal {
    /// The user behind the credential; none for the admin key.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::AdminKey => None,
            Self::ApiKey { user_id, .. } | Self::Session { user_id, .. } => Some(*user_id),
        }
    }

    /// The principal as the audit log records it, from `address`.
    pub fn actor(&self, address: Option<String>) -> Actor {
        match self {
            Self::AdminKey => Actor {
                kind: ActorKind::AdminKey,
                id: None,
                name: "admin key".to_owned(),
                method: AuthMethod::AdminKey,
                credential: None,
                address,
            },
            Self::ApiKey {
                user_id,
                user_name,
                service,
                key_id,
            } => Actor {
                kind: if *service {
                    ActorKind::Service
                } else {
                    ActorKind::Person
                },
                id: Some(*user_id),
                name: user_name.clone(),
                method: AuthMethod::ApiKey,
                credential: Some(key_id.clone()),
                address,
            },
            Self::Session {
                user_id,
                user_name,
                session_id,
                login,
            } => Actor {
                kind: ActorKind::Person,
                id: Some(*user_id),
                name: user_name.clone(),
                method: *login,
                credential: Some(session_id.clone()),
                address,
            },
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AdminKey => f.write_str("admin key"),
            Self::ApiKey {
                user_name, key_id, ..
            } => write!(f, "{user_name} (key {key_id})"),
            Self::Session {
                user_name,
                session_id,
                ..
            } => write!(f, "{user_name} (session {session_id})"),
        }
    }
}

/// The client's address through the trusted proxies, put into a request's extensions
/// by the auth layer next to its [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(pub String);

/// Why a well-formed key was refused. Unknown key ids and wrong secrets read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    #[error("the API key is not valid")]
    NotValid,
    #[error("the API key has expired; create a new one")]
    Expired,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key's owner is disabled")]
    OwnerDisabled,
}

/// The node's memory of keys: checks cached for a short time, and uses not yet written.
#[derive(Default)]
pub struct KeyCache {
    checked: Mutex<HashMap<String, (KeyCheckRow, Instant)>>,
    used: Mutex<HashMap<i64, (OffsetDateTime, String)>>,
}

impl KeyCache {
    fn cached(&self, key_id: &str) -> Option<KeyCheckRow> {
        let checked = lock(&self.checked);
        let (row, at) = checked.get(key_id)?;
        (at.elapsed() < CACHE_TTL).then(|| row.clone())
    }

    fn remember(&self, row: KeyCheckRow) {
        let mut checked = lock(&self.checked);
        if checked.len() >= CACHE_MAX {
            checked.clear();
        }
        checked.insert(row.key_id.clone(), (row, Instant::now()));
    }

    /// A notification on the users channel.
    pub fn notified(&self, notice: UserNotice) {
        let mut checked = lock(&self.checked);
        match notice {
            UserNotice::Changed(user) => checked.retain(|_, (row, _)| row.user_id != user),
            UserNotice::KeyRevoked(key) => checked.retain(|_, (row, _)| row.id != key),
            UserNotice::AccessChanged => {}
        }
    }

    /// LISTEN was (re)established: anything may have changed meanwhile.
    pub fn clear(&self) {
        lock(&self.checked).clear();
    }

    fn used(&self, key: i64, address: String) {
        lock(&self.used).insert(key, (OffsetDateTime::now_utc(), address));
    }

    /// Writes the uses gathered since the last call; keeps them on failure.
    pub async fn flush_uses(&self, db: &sqlx::PgPool) {
        let taken = std::mem::take(&mut *lock(&self.used));
        if taken.is_empty() {
            return;
        }
        let mut ids = Vec::with_capacity(taken.len());
        let mut at = Vec::with_capacity(taken.len());
        let mut addresses = Vec::with_capacity(taken.len());
        for (id, (when, address)) in &taken {
            ids.push(*id);
            at.push(*when);
            addresses.push(address.clone());
        }
        if let Err(e) = capstan_db::users::record_key_use(db, &ids, &at, &addresses).await {
            tracing::warn!("cannot record when API keys were used: {e}");
            let mut used = lock(&self.used);
            for (id, value) in taken {
                used.entry(id).or_insert(value);
            }
        }
    }

    /// Checks a well-formed key: from the cache, or the database.
    pub async fn authenticate(
        &self,
        db: &sqlx::PgPool,
        key: &keys::PresentedKey,
        address: String,
    ) -> Result<Result<Principal, KeyRefused>, DbError> {
        let row = match self.cached(&key.key_id) {
            Some(row) => row,
            None => match capstan_db::users::key_for_check(db, &key.key_id).await? {
                Some(row) => {
                    self.remember(row.clone());
                    row
                }
                None => return Ok(Err(KeyRefused::NotValid)),
            },
        };
        // The secret first: only its holder learns whether the key was revoked.
        if !keys::same_digest(&row.digest, &key.digest) {
            return Ok(Err(KeyRefused::NotValid));
        }
        if row.revoked {
            return Ok(Err(KeyRefused::Revoked));
        }
        if row.user_disabled {
            return Ok(Err(KeyRefused::OwnerDisabled));
        }
        if row.expires_at <= OffsetDateTime::now_utc() {
            return Ok(Err(KeyRefused::Expired));
        }
        self.used(row.id, address);
        Ok(Ok(Principal::ApiKey {
            user_id: row.user_id,
            service: row.user_kind == "service",
            user_name: row.user_name,
            key_id: row.key_id,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the identity service can fail with; the HTTP layer words it as a status.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the request is not valid")]
    Invalid(FieldProblems),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldProblems> for IdentityError {
    fn from(problems: FieldProblems) -> Self {
        Self::Invalid(problems)
    }
}

/// Longest name, display name, email and purpose, in characters.
pub const MAX_NAME: usize = 100;
pub const MAX_TEXT: usize = 200;
/// Most live keys one user holds.
pub const MAX_KEYS_PER_USER: i64 = 100;
/// A key's lifetime when none is asked for.
pub const DEFAULT_KEY_LIFETIME: Duration = Duration::from_secs(180 * 24 * 3600);

/// Checks a user's name: NFC, visible, trimmed, not too long.
pub fn check_name(problems: &mut FieldProblems, name: &str) -> Option<String> {
    let name = problems.check(
        "name",
        capstan_core::names::normalize(name).map_err(|e| format!("a user's name {e}")),
    )?;
    if name.trim().is_empty() || name.trim() != name {
        problems.add(
            "name",
            "a user's name cannot be empty or start or end with spaces",
        );
    } else if name.chars().count() > MAX_NAME {
        problems.add("name", format!("at most {MAX_NAME} characters"));
    }
    Some(name)
}

/// Checks free text (display name, email, purpose): visible characters, bounded.
pub fn check_text(problems: &mut FieldProblems, field: &str, text: &str) -> Option<String> {
    let text = problems.check(
        field,
        capstan_core::names::normalize(text).map_err(|e| format!("`{field}` {e}")),
    )?;
    if text.chars().count() > MAX_TEXT {
        problems.add(field, format!("at most {MAX_TEXT} characters"));
    }
    Some(text)
}

/// Creates a key for `user_id` living `lifetime` (at most `max_lifetime`): the key's
/// text, to show once, and its row.
pub async fn create_key(
    db: &mut sqlx::PgConnection,
    user_id: i64,
    purpose: &str,
    expires_in: Option<&str>,
    max_lifetime: Duration,
) -> Result<(String, capstan_db::users::ApiKeyRow), IdentityError> {
    let mut problems = FieldProblems::new();
    let purpose = check_text(&mut problems, "purpose", purpose);
    if purpose.as_deref().is_some_and(|p| p.trim().is_empty()) {
        problems.add("purpose", "say what the key is for");
    }
    let lifetime = match expires_in {
        None => Some(DEFAULT_KEY_LIFETIME.min(max_lifetime)),
        Some(text) => problems
            .check("expires_in", capstan_core::duration::parse_duration(text))
            .and_then(|lifetime| {
                if lifetime > max_lifetime {
                    problems.add(
                        "expires_in",
                        format!(
                            "at most {} (CAPSTAN_API_KEY_MAX_LIFETIME)",
                            humantime::format_duration(max_lifetime)
                        ),
                    );
                    None
                } else if lifetime < Duration::from_secs(1) {
                    problems.add("expires_in", "at least 1s");
                    None
                } else {
                    Some(lifetime)
                }
            }),
    };
    // A field without a value has its problem recorded.
    let (Some(purpose), Some(lifetime)) = (purpose, lifetime) else {
        return Err(IdentityError::Invalid(problems));
    };
    problems.finish()?;
    // Locked until the key commits, so two requests cannot both pass the limit below.
    let user = capstan_db::users::get_for_update(&mut *db, user_id)
        .await
        .map_err(|e| not_found(e, user_id))?;
    if capstan_db::users::count_live_keys(&mut *db, user.id).await? >= MAX_KEYS_PER_USER {
        return Err(IdentityError::Conflict(format!(
            "user `{}` has {MAX_KEYS_PER_USER} live keys already; revoke one first",
            user.name
        )));
    }
    let key = keys::generate();
    let row = capstan_db::users::create_key(
        db,
        &capstan_db::users::NewApiKey {
            user_id: user.id,
            purpose: &purpose,
            key_id: &key.key_id,
            digest: &key.digest,
            expires_at: OffsetDateTime::now_utc() + lifetime,
        },
    )
    .await?;
    tracing::info!(user.name = %user.name, api_key.id = %row.key_id, "created API key {}", row.key_id);
    Ok((key.text, row))
}

/// A missing user as the client should read it.
pub fn not_found(error: DbError, user_id: i64) -> IdentityError {
    match error {
        DbError::NotFound => IdentityError::NotFound(format!("there is no user {user_id}")),
        other => IdentityError::Db(other),
    }
}
