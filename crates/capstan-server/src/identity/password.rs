//! Passwords: hashed with argon2id (RFC 9106's second recommended parameters, the
//! argon2 crate's defaults), verified off the async threads, a few at a time.
//!
//! A flood of logins must not eat the node's CPU: verifications wait for one of a few
//! permits. A name that does not exist (or has no password) is verified against a
//! dummy hash, so it costs exactly what a wrong password costs.

use std::sync::LazyLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Shortest and longest password, in characters. The upper bound keeps one hash from
/// costing more than any other.
pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 256;

/// Verifications running at once in this process: one per core, at least two.
static VERIFYING: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    Semaphore::new(cores.max(2))
});

/// A hash of a password nobody knows, verified when the user has none.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    hash_now(&SecretString::from(
        "no user has this password; it only costs time".to_owned(),
    ))
    .unwrap_or_default()
});

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRefused {
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password has at most {MAX_LEN} characters")]
    TooLong,
}

/// Checks a new password's length.
pub fn check_new(password: &SecretString) -> Result<(), PasswordRefused> {
    let len = password.expose_secret().chars().count();
    if len < MIN_LEN {
        Err(PasswordRefused::TooShort)
    } else if len > MAX_LEN {
        Err(PasswordRefused::TooLong)
    } else {
        Ok(())
    }
}

fn hash_now(password: &SecretString) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)?
        .to_string())
}

/// Hashes `password` (PHC string, argon2id) on a blocking thread.
pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    let _permit = VERIFYING
        .acquire()
        .await
        .map_err(|_| PasswordError::Closed)?;
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|_| PasswordError::Closed)?
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`; with no stored hash, a dummy one is checked
/// (and the answer is no), so the time taken tells nothing.
pub async fn verify(password: SecretString, stored: Option<String>) -> bool {
    let Ok(_permit) = VERIFYING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        // Made on the first check of any kind, so the first unknown name does not
        // take longer than the first known one.
        LazyLock::force(&DUMMY);
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// A hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the node is stopping")]
    Closed,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashed = hash(SecretString::from("correct horse battery".to_owned()))
            .await
            .unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert!(
            verify(
                SecretString::from("correct horse battery".to_owned()),
                Some(hashed.clone())
            )
            .await
        );
        assert!(
            !verify(
                SecretString::from("wrong horse battery".to_owned()),
                Some(hashed)
            )
            .await
        );
        assert!(
            !verify(
                SecretString::from("no user has this password; it only costs time".to_owned()),
                None
            )
            .await
        );
    }

    #[test]
    fn lengths_are_bounded() {
        assert_eq!(
            check_new(&SecretString::from("short".to_owned())),
            Err(PasswordRefused::TooShort)
        );
        assert_eq!(
            check_new(&SecretString::from("x".repeat(257))),
            Err(PasswordRefused::TooLong)
        );
        assert_eq!(
            check_new(&SecretString::from("twelve chars".to_owned())),
            Ok(())
        );
    }
}

/// Why a login was refused. An unknown name, a wrong password, a service account, a
/// disabled person and a person without a password all read the same.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the user name or password is not valid")]
    Refused,
    #[error(transparent)]
    Db(#[from] capstan_db::DbError),
}

/// The person a login proved to be.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user_id: i64,
    pub user_name: String,
}

/// Checks `name` and `password` from `address`, slowed by the recent failures against
/// the name and from the address (see [`super::throttle`]). A failure is counted and
/// appended to the audit log as `login.failed`.
pub async fn login(
    db: &sqlx::PgPool,
    name: &str,
    password: SecretString,
    address: &str,
) -> Result<LoggedIn, LoginError> {
    let account = super::throttle::account(name);
    let wait = super::throttle::delay(db, &account, address).await?;
    let user = if name.chars().count() > super::MAX_NAME {
        None
    } else {
        capstan_db::users::for_login(db, name).await?
    };
    let person = user.filter(|u| u.kind == "person" && !u.disabled);
    let stored = person.as_ref().and_then(|u| u.password_hash.clone());
    let right = verify(password, stored).await;
    // Served after the check whatever its outcome, so the answer's time says nothing
    // of it, and a correct password in a flood waits like a wrong one.
    tokio::time::sleep(wait).await;
    match person {
        Some(user) if right => {
            capstan_db::sessions::forget_failures(db, &account).await?;
            Ok(LoggedIn {
                user_id: user.id,
                user_name: user.name,
            })
        }
        _ => {
            let mut tx = db.begin().await.map_err(capstan_db::DbError::from)?;
            capstan_db::sessions::record_failure(
                &mut *tx,
                &account,
                address,
                super::throttle::WINDOW,
            )
            .await?;
            super::sessions::append_login(
                &mut *tx,
                &super::sessions::anonymous(name, address),
                "login.failed",
            )
            .await?;
            tx.commit().await.map_err(capstan_db::DbError::from)?;
            tracing::info!(client.address = %address, "a password login failed");
            Err(LoginError::Refused)
        }
    }
}
