//! `DbError`: what a query can fail with, in terms the API layer maps to HTTP.

use capstan_core::error_chain as describe_chain;

/// A failed database call.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A named constraint refused the write; the caller turns the name into a sentence.
    #[error("constraint `{constraint}` refused the write")]
    Conflict { constraint: String },
    /// The database could not be reached or did not answer in time.
    #[error("database unreachable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema mismatch, never shown to clients.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) if db.constraint().is_some() => Self::Conflict {
                constraint: db.constraint().unwrap_or_default().to_owned(),
            },
            sqlx::Error::Io(e) => Self::Unavailable(e.to_string()),
            sqlx::Error::PoolTimedOut => {
                Self::Unavailable("no connection could be had in time".to_owned())
            }
            sqlx::Error::PoolClosed => Self::Unavailable("the pool is closed".to_owned()),
            sqlx::Error::Tls(e) => Self::Unavailable(format!("TLS: {e}")),
            sqlx::Error::Protocol(e) => Self::Unavailable(format!("protocol: {e}")),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                Self::Unavailable(db.message().to_owned())
            }
            other => Self::Other(Box::new(other)),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            if let Some(constraint) = db.constraint() {
                return Self::Conflict {
                    constraint: constraint.to_owned(),
                };
            }
            if is_unavailable_code(Some(db.code().code())) {
                return Self::Unavailable(db.message().to_owned());
            }
            return Self::Other(describe_chain(&error).into());
        }
        // Without a server error, either the connection failed (closed, refused, reset,
        // timed out) or this side could not encode or decode a value: a bug, not an
        // outage, and it must not be reported as one.
        let connection_failed = error.is_closed()
            || std::error::Error::source(&error)
                .is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
            || error.to_string().starts_with("error connecting")
            || error.to_string().contains("timeout");
        if connection_failed {
            Self::Unavailable(describe_chain(&error))
        } else {
            Self::Other(describe_chain(&error).into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(kind) => Self::Unavailable(
                match kind {
                    // The database may be up and merely slow: say so, not "connecting".
                    deadpool_postgres::TimeoutType::Wait => {
                        "no connection could be had in time: every pooled connection stayed busy"
                    }
                    deadpool_postgres::TimeoutType::Create => "timed out connecting",
                    deadpool_postgres::TimeoutType::Recycle => {
                        "timed out checking a pooled connection"
                    }
                }
                .to_owned(),
            ),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Class 08 (connection exception), 57P01-03 (shutdown, crash, cannot connect now) and
/// 53300 (too many connections) mean "try later", not "your query is wrong".
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300")
}

#[cfg(test)]
mod tests {
    use deadpool_postgres::{PoolError, TimeoutType};

    use super::DbError;

    fn reason(kind: TimeoutType) -> String {
        match DbError::from(PoolError::Timeout(kind)) {
            DbError::Unavailable(reason) => reason,
            other => panic!("a pool timeout is not `Unavailable`: {other:?}"),
        }
    }

    #[test]
    fn pool_timeouts_say_which_wait_ran_out() {
        assert_eq!(
            reason(TimeoutType::Wait),
            "no connection could be had in time: every pooled connection stayed busy"
        );
        assert_eq!(reason(TimeoutType::Create), "timed out connecting");
        assert_eq!(
            reason(TimeoutType::Recycle),
            "timed out checking a pooled connection"
        );
    }
}
