//! Slowing a login flood. Failed logins are counted in PostgreSQL per account (the
//! digest of the name as typed) and per client address, so every node sees the same
//! counts. Each recent failure doubles the wait before the next answer, up to a cap;
//! the wait is served whatever the outcome, so a correct password during a flood still
//! waits, and a throttled answer is never faster than a plain wrong one.

use std::time::Duration;

use capstan_db::{DbError, sessions};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The wait after the first failure; each further one doubles it.
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures one address may have before it is slowed: many people may share one
/// address (an office's proxy), so an address is slowed only past this.
pub const ADDRESS_ALLOWANCE: i64 = 10;

/// The account a login names: the digest of its lower-cased name.
pub fn account(name: &str) -> [u8; 32] {
    Sha256::digest(name.to_lowercase().as_bytes()).into()
}

/// The wait owed after `failures` recent failures.
pub fn delay_after(failures: i64) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - 1).unwrap_or(u32::MAX).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// The wait owed by a login for `account` from `address`.
pub async fn delay(db: &PgPool, account: &[u8], address: &str) -> Result<Duration, DbError> {
    let (by_account, by_address) = sessions::recent_failures(db, account, address, WINDOW).await?;
    Ok(delay_after(by_account).max(delay_after(by_address - ADDRESS_ALLOWANCE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(1), FIRST_DELAY);
        assert_eq!(delay_after(2), FIRST_DELAY * 2);
        assert_eq!(delay_after(3), FIRST_DELAY * 4);
        assert_eq!(delay_after(50), MAX_DELAY);
        assert_eq!(delay_after(i64::MAX), MAX_DELAY);
    }

    #[test]
    fn accounts_ignore_case() {
        assert_eq!(account("Alice"), account("alice"));
        assert_ne!(account("alice"), account("bob"));
    }
}
