//! Connecting to PostgreSQL: the database URL, the three pools, and a start-up check that
//! says exactly why a database cannot be used.

use std::{fmt, str::FromStr, time::Duration};

use sqlx::{
    ConnectOptions, Connection,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions},
};

use capstan_core::error_chain as describe_chain;

/// How long start-up waits for PostgreSQL before it gives up with a reason.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An API connection idle this long is pinged before it serves a request.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// Connections that queue single tasks for API requests. Each statement holds one for
/// about a commit, so a few serve thousands of tasks a second.
const ENQUEUE_POOL_SIZE: usize = 4;
/// Connections for heartbeats, pings, claims and completions.
const LIVENESS_POOL_SIZE: usize = 4;

/// A PostgreSQL URL that never shows its password when printed.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    shown: String,
}

impl DatabaseUrl {
    /// Parses a `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(raw).map_err(|e| {
            format!("the database URL is not a URL ({e}); write it like postgres://user:password@host:5432/capstan")
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "the database URL must start with postgres://, not {}://",
                parsed.scheme()
            ));
        }
        PgConnectOptions::from_str(raw)
            .map_err(|e| format!("the database URL cannot be used: {e}"))?;
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        shown.set_query(None);
        Ok(Self {
            raw: raw.to_owned(),
            shown: shown.to_string(),
        })
    }

    /// The URL with its secret, for drivers only.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.shown)
    }
}

/// Why the database cannot be used, in one line that names the URL.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct ConnectError {
    pub url: String,
    pub reason: String,
}

/// The node's connections to PostgreSQL.
#[derive(Clone)]
pub struct Pools {
    /// Serves API requests.
    pub api: PgPool,
    /// Heartbeats and pings: small, and never shared with request handling.
    pub liveness: deadpool_postgres::Pool,
    /// Queues single tasks for API requests ([`crate::tasks::create_one`]): the
    /// statement a stream of tasks repeats, on tokio-postgres, which takes a connection
    /// back without the extra round trip sqlx's pool spends on each.
    pub enqueue: deadpool_postgres::Pool,
    /// Settings for the dedicated LISTEN connection.
    pub listen_config: tokio_postgres::Config,
}

impl Pools {
    /// Connects once to prove the database is usable, then builds both pools. Every
    /// connection carries `application_name` (e.g. `capstan node-1`), so
    /// `pg_stat_activity` shows which node holds it.
    pub async fn connect(
        url: &DatabaseUrl,
        api_pool_size: u32,
        application_name: &str,
    ) -> Result<Self, ConnectError> {
        let fail = |reason: String| ConnectError {
            url: url.to_string(),
            reason,
        };
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| fail(e.to_string()))?
            .application_name(application_name)
            .log_statements(tracing::log::LevelFilter::Trace);
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => {
                return Err(fail(format!(
                    "no answer within {}s (is the host reachable and the port open?)",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(fail(explain_connect_error(&e, &options))),
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
        }
        // A connection in steady use is known to be alive: pinging it before every
        // request would add a round trip to each. One idle for a while is checked, so
        // a database that restarted meanwhile costs a reconnect, not a failed request.
        let api = PgPoolOptions::new()
            .max_connections(api_pool_size)
            .acquire_timeout(CONNECT_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);

        let mut listen_config = tokio_postgres::Config::from_str(url.expose())
            .map_err(|e| fail(format!("the database URL cannot be used: {e}")))?;
        listen_config.connect_timeout(Duration::from_secs(2));
        listen_config.application_name(application_name);
        let deadpool = |size: usize, wait: Duration| {
            let manager = deadpool_postgres::Manager::from_config(
                listen_config.clone(),
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            deadpool_postgres::Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(wait))
                .create_timeout(Some(Duration::from_secs(2)))
                .recycle_timeout(Some(Duration::from_secs(1)))
                .build()
                .map_err(|e| fail(e.to_string()))
        };
        let liveness = deadpool(LIVENESS_POOL_SIZE, Duration::from_secs(2))?;
        // As long as the API pool waits: a burst of creates queues here like any request.
        let enqueue = deadpool(ENQUEUE_POOL_SIZE, CONNECT_TIMEOUT)?;
        Ok(Self {
            api,
            liveness,
            enqueue,
            listen_config,
        })
    }

    /// Brings the schema up to what this binary needs, under sqlx's advisory lock, so
    /// nodes starting together on an empty database take turns.
    ///
    /// Migrations this binary does not know are tolerated: during a rolling upgrade an
    /// older node restarts against the newer schema and must still serve (each release
    /// only adds what the previous one can ignore; see docs/operations/upgrade.md). A
    /// schema older than the binary needs that cannot be migrated is an error that says
    /// where the schema is, what the binary needs and why migrating failed.
    pub async fn migrate(&self) -> Result<SchemaStatus, String> {
        let mut migrator = sqlx::migrate!("../../migrations");
        migrator.set_ignore_missing(true);
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let needs = known.iter().copied().max().unwrap_or(0);
        let before = applied_migrations(&self.api).await?;
        if let Err(e) = migrator.run(&self.api).await {
            let at = before
                .last()
                .map_or("empty".to_owned(), |(v, _)| format!("at {v}"));
            return Err(format!(
                "the schema is {at} and this binary needs {needs}, but migrating failed: {}; \
                 start one node with a database user that may change the schema (or fix the \
                 cause), then the others",
                describe_chain(&e)
            ));
        }
        let after = applied_migrations(&self.api).await?;
        let applied_now = after
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| !before.iter().any(|(b, _)| b == v))
            .collect();
        let unknown = after
            .into_iter()
            .filter(|(v, _)| !known.contains(v))
            .collect::<Vec<_>>();
        Ok(SchemaStatus {
            binary_needs: needs,
            database_at: unknown.last().map_or(needs, |(v, _)| (*v).max(needs)),
            applied_now,
            unknown,
        })
    }
}

/// Where the schema stands after a node's start-up migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration this binary knows.
    pub binary_needs: i64,
    /// The newest migration the database has.
    pub database_at: i64,
    /// Migrations this start applied.
    pub applied_now: Vec<i64>,
    /// Migrations in the database this binary does not know (version, description): a
    /// newer release ran here, and this binary runs on its schema.
    pub unknown: Vec<(i64, String)>,
}

/// The migrations recorded as applied, oldest first; none on an empty database.
async fn applied_migrations(db: &PgPool) -> Result<Vec<(i64, String)>, String> {
    let rows: Result<Vec<(i64, String)>, sqlx::Error> = sqlx::query_as(
        "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(db)
    .await;
    match rows {
        Ok(rows) => Ok(rows),
        // No migration table yet: a new database.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(Vec::new()),
        Err(e) => Err(format!(
            "cannot read which migrations were applied: {}",
            describe_chain(&e)
        )),
    }
}

/// Turns a failed first connection into the reason an operator can act on.
fn explain_connect_error(error: &sqlx::Error, options: &PgConnectOptions) -> String {
    let endpoint = format!("{}:{}", options.get_host(), options.get_port());
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "PostgreSQL rejected the credentials for user `{}`: {}",
                options.get_username(),
                db.message()
            ),
            Some("3D000") => format!("{} (create it, or fix the URL)", db.message()),
            _ => db.message().to_owned(),
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({endpoint}): is PostgreSQL running and listening there?")
        }
        sqlx::Error::Io(io) => format!("cannot reach {endpoint}: {io}"),
        other => describe_chain(other),
    }
}
