//! `DbError`: what a query can fail with, in terms the API layer maps to HTTP.

use capstan_core::{UnknownCommandState, UnknownTaskState, error_chain as describe_chain};

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
    /// A row holds a value this code cannot read, such as a state it does not know (a
    /// newer release wrote it, or a constraint was changed by hand). Reading it as
    /// something else would act on a guess; like `Other`, never shown to clients.
    #[error("the database holds a value this node cannot read: {what}")]
    Corrupt { what: String },
    /// A write made under a task attempt that no longer runs: rescue gave the task to
    /// another node, or it ended. The writer must stop.
    #[error("the task's attempt no longer runs here (fenced off)")]
    Fenced,
    /// Anything else: a bug or a schema mismatch, never shown to clients.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<UnknownTaskState> for DbError {
    fn from(error: UnknownTaskState) -> Self {
        Self::Corrupt {
            what: error.to_string(),
        }
    }
}

impl From<UnknownCommandState> for DbError {
    fn from(error: UnknownCommandState) -> Self {
        Self::Corrupt {
            what: error.to_string(),
        }
    }
}

/// A state column naming a state the enum lacks (see [`crate::StateColumn`]).
fn unknown_state(index: &str, source: &(dyn std::error::Error + 'static)) -> Option<DbError> {
    let known = source.is::<UnknownTaskState>() || source.is::<UnknownCommandState>();
    known.then(|| DbError::Corrupt {
        what: format!("column `{index}`: {source}"),
    })
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::ColumnDecode { index, source } = &error
            && let Some(corrupt) = unknown_state(index, source.as_ref())
        {
            return corrupt;
        }
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
        // Without a server error there is no SQLSTATE: either the connection failed
        // (closed, or an I/O error underneath, which is how refused, reset and timed-out
        // connections arrive) or this side could not encode or decode a value, which is
        // a bug and must not be reported as an outage. The message text is no guide: it
        // can quote a column's name.
        let connection_failed = error.is_closed()
            || std::error::Error::source(&error)
                .is_some_and(<dyn std::error::Error>::is::<std::io::Error>);
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

/// Class 08 (connection exception), class 57P (the server shut down, crashed, cannot
/// take connections yet, dropped the database, or ended an idle session) and 53300 (too
/// many connections) mean "try later", not "your query is wrong". One list of SQLSTATEs
/// serves sqlx and tokio-postgres alike.
fn is_unavailable_code(code: Option<&str>) -> bool {
    use tokio_postgres::error::SqlState;
    const TRY_LATER: &[SqlState] = &[
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::DATABASE_DROPPED,
        SqlState::IDLE_SESSION_TIMEOUT,
        SqlState::TOO_MANY_CONNECTIONS,
    ];
    code.is_some_and(|code| {
        // Class 08 is matched by its class: a server may send a code of the class that
        // this list does not name.
        code.starts_with("08") || TRY_LATER.contains(&SqlState::from_code(code))
    })
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
    fn a_state_column_naming_no_state_is_corrupt() {
        use capstan_core::{CommandState, TaskState};

        let task = "paused".parse::<TaskState>().unwrap_err();
        let decode = sqlx::Error::ColumnDecode {
            index: "\"state\"".to_owned(),
            source: Box::new(task),
        };
        match DbError::from(decode) {
            DbError::Corrupt { what } => assert_eq!(
                what,
                "column `\"state\"`: `paused` is not a task state; use queued, running, \
                 succeeded, failed or cancelled"
            ),
            other => panic!("an unknown state is not `Corrupt`: {other:?}"),
        }
        let command = "exploded".parse::<CommandState>().unwrap_err();
        assert!(matches!(DbError::from(command), DbError::Corrupt { .. }));
        // Other decoding failures stay bugs of their own kind.
        let other = sqlx::Error::ColumnDecode {
            index: "n".to_owned(),
            source: "not a number".into(),
        };
        assert!(matches!(DbError::from(other), DbError::Other(_)));
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

    async fn connect() -> tokio_postgres::Client {
        let url = std::env::var("CAPSTAN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {url}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// A mistake in our own code stays a bug (500) even when the words of its message
    /// sound like an outage; only the server's SQLSTATE or a failed connection is one.
    #[tokio::test]
    async fn tokio_postgres_errors_are_classified_by_sqlstate_not_by_text() {
        let client = connect().await;
        let row = client
            .query_one("SELECT 1::int4 AS lease_timeout_ms", &[])
            .await
            .unwrap();
        let missing = row
            .try_get::<_, i32>("error_connecting_timeout")
            .unwrap_err();
        assert!(
            matches!(DbError::from(missing), DbError::Other(_)),
            "a missing column is a bug, not an outage"
        );
        let wrong_type = row.try_get::<_, String>("lease_timeout_ms").unwrap_err();
        assert!(matches!(DbError::from(wrong_type), DbError::Other(_)));

        // The server's own words: 57014 (a statement timeout) is the query's fault.
        client
            .batch_execute("SET statement_timeout = '10ms'")
            .await
            .unwrap();
        let cancelled = client.query("SELECT pg_sleep(1)", &[]).await.unwrap_err();
        assert!(matches!(DbError::from(cancelled), DbError::Other(_)));
        // 57P01 (admin shutdown) means "try later": terminate our own backend.
        client
            .batch_execute("RESET statement_timeout")
            .await
            .unwrap();
        let terminated = client
            .query("SELECT pg_terminate_backend(pg_backend_pid())", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(DbError::from(terminated), DbError::Unavailable(_)),
            "a terminated connection is an outage"
        );
        // Once the connection is gone, later calls fail as closed.
        let closed = client.query("SELECT 1", &[]).await.unwrap_err();
        assert!(matches!(DbError::from(closed), DbError::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_unique_violation_names_its_constraint() {
        let client = connect().await;
        client
            .batch_execute(
                "CREATE TEMP TABLE t (n int CONSTRAINT t_n_key UNIQUE); INSERT INTO t VALUES (1)",
            )
            .await
            .unwrap();
        let err = client
            .execute("INSERT INTO t VALUES (1)", &[])
            .await
            .unwrap_err();
        match DbError::from(err) {
            DbError::Conflict { constraint } => assert_eq!(constraint, "t_n_key"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}
