//! Browser sessions, kept in PostgreSQL so that any node serves any session.
//!
//! The cookie holds `<public id>.<secret>` (12 and 32 base62 characters); the table
//! keeps only the sha256 digest of the whole value, so a copy of the table opens no
//! session. Every request checks its session in the database (one indexed statement
//! that also records it as seen), so a session ended on one node is refused by every
//! node at once, without any cache to invalidate.
//!
//! The CSRF token is derived from the cookie's value (`sha256("csrf:" + value)`): it
//! needs no storage, and a page that cannot read the cookie cannot compute it.

use std::time::Duration;

use base64::Engine;
use capstan_core::audit::{ActorKind, AuthMethod};
use capstan_db::{
    DbError,
    audit::{self, Actor, NewEvent},
    sessions::{self, NewSession},
};
use rand::Rng;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Principal;

pub use capstan_api::login::{CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE};

const PUBLIC_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// How long an ended or expired session's row is kept (for its id in audit rows to
/// be looked up while it is fresh).
const STALE_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after it began, used or not.
    pub absolute: Duration,
}

/// A session just begun: the cookie to set (shown once) and its public id.
pub struct Begun {
    pub cookie_value: String,
    pub public_id: String,
    pub max_age: Duration,
}

impl std::fmt::Debug for Begun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begun")
            .field("public_id", &self.public_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

/// The digest kept of a cookie's value.
pub fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// The CSRF token of the session whose cookie holds `value`.
pub fn csrf_token(value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"csrf:");
    hasher.update(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of the session `value`, compared in constant
/// time.
pub fn csrf_matches(value: &str, presented: &str) -> bool {
    super::keys::same_digest(csrf_token(value).as_bytes(), presented.as_bytes())
}

/// Whether a cookie's value has the shape of a session's; others are not looked up.
pub fn well_formed(value: &str) -> bool {
    let Some((id, secret)) = value.split_once('.') else {
        return false;
    };
    let ok = |part: &str, len| part.len() == len && part.bytes().all(|b| b.is_ascii_alphanumeric());
    ok(id, PUBLIC_ID_LEN) && ok(secret, SECRET_LEN)
}

/// The `Set-Cookie` value that gives the browser `value`.
pub fn set_cookie(value: &str, max_age: Duration) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

/// The value of cookie `name` among a request's `Cookie` headers.
pub fn cookie<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// Begins a session for `user`, with its `login` audit row in the same transaction.
pub async fn begin(
    db: &sqlx::PgPool,
    user_id: i64,
    user_name: &str,
    login: AuthMethod,
    address: &str,
    lifetimes: Lifetimes,
) -> Result<Begun, DbError> {
    let public_id = random_base62(PUBLIC_ID_LEN);
    let cookie_value = format!("{public_id}.{}", random_base62(SECRET_LEN));
    // Sign-ins are rare next to requests: each one sweeps sessions that ended a day
    // ago, which keeps the table to the live sessions without a periodic task.
    sessions::delete_stale(db, OffsetDateTime::now_utc() - STALE_KEPT).await?;
    let mut tx = db.begin().await?;
    sessions::create(
        &mut *tx,
        &NewSession {
            public_id: &public_id,
            digest: &digest(&cookie_value),
            user_id,
            login: login.as_str(),
            address,
            expires_at: OffsetDateTime::now_utc() + lifetimes.absolute,
        },
    )
    .await?;
    let principal = Principal::Session {
        user_id,
        user_name: user_name.to_owned(),
        session_id: public_id.clone(),
        login,
    };
    append_login(
        &mut *tx,
        &principal.actor(Some(address.to_owned())),
        "login",
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user.name = %user_name, session.id = %public_id, "{user_name} signed in ({})", login.as_str());
    Ok(Begun {
        cookie_value,
        public_id,
        max_age: lifetimes.absolute,
    })
}

/// The principal of the live session whose cookie holds `value`.
pub async fn authenticate(
    db: &sqlx::PgPool,
    value: &str,
    idle: Duration,
) -> Result<Option<Principal>, DbError> {
    if !well_formed(value) {
        return Ok(None);
    }
    let Some(row) = sessions::check(db, &digest(value), idle).await? else {
        return Ok(None);
    };
    let login = if row.login == "oidc" {
        AuthMethod::Oidc
    } else {
        AuthMethod::Password
    };
    Ok(Some(Principal::Session {
        user_id: row.user_id,
        user_name: row.user_name,
        session_id: row.public_id,
        login,
    }))
}

/// Ends a session, with its `logout` audit row in the same transaction.
pub async fn end(db: &sqlx::PgPool, principal: &Principal, address: &str) -> Result<(), DbError> {
    let Principal::Session { session_id, .. } = principal else {
        return Ok(());
    };
    let mut tx = db.begin().await?;
    sessions::end(&mut *tx, session_id).await?;
    append_login(
        &mut *tx,
        &principal.actor(Some(address.to_owned())),
        "logout",
    )
    .await?;
    tx.commit().await?;
    tracing::info!(session.id = %session_id, "{principal} signed out");
    Ok(())
}

/// Appends a `login`, `logout` or `login.failed` row; the object is the user.
pub(crate) async fn append_login(
    db: impl sqlx::PgExecutor<'_>,
    actor: &Actor,
    action: &str,
) -> Result<i64, DbError> {
    audit::append(
        db,
        &NewEvent {
            actor,
            action,
            object_kind: "user",
            object_id: actor.id.map(|id| id.to_string()),
            object_name: Some(actor.name.clone()),
            project_id: None,
            environment_id: None,
            before: None,
            after: None,
        },
    )
    .await
}

/// The actor of a failed login: anonymous, with the name as typed (bounded).
pub fn anonymous(attempted: &str, address: &str) -> Actor {
    Actor {
        kind: ActorKind::Anonymous,
        id: None,
        name: attempted.chars().take(super::MAX_NAME).collect(),
        method: AuthMethod::None,
        credential: None,
        address: Some(address.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let headers = ["a=1; capstan_session=abc.def", "b=2"];
        assert_eq!(cookie(headers.into_iter(), SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie(["x=1"].into_iter(), SESSION_COOKIE), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let value = format!("{}.{}", random_base62(12), random_base62(32));
        assert!(well_formed(&value));
        let token = csrf_token(&value);
        assert!(csrf_matches(&value, &token));
        assert!(!csrf_matches(&value, "nope"));
        assert!(!csrf_matches(
            &format!("{}.{}", random_base62(12), random_base62(32)),
            &token
        ));
    }

    #[test]
    fn the_cookie_is_secure_http_only_and_lax() {
        let set = set_cookie("v", Duration::from_secs(60));
        for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(flag), "{set}");
        }
    }
}
