//! Connecting to PostgreSQL: the database URL, the two pools, and a start-up check that
//! says exactly why a database cannot be used.

use std::{fmt, str::FromStr, time::Duration};

use sqlx::{
    ConnectOptions, Connection,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions},
};

use capstan_core::error_chain as describe_chain;

/// How long start-up waits for PostgreSQL before it gives up with a reason.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        let api = PgPoolOptions::new()
            .max_connections(api_pool_size)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);

        let mut listen_config = tokio_postgres::Config::from_str(url.expose())
            .map_err(|e| fail(format!("the database URL cannot be used: {e}")))?;
        listen_config.connect_timeout(Duration::from_secs(2));
        listen_config.application_name(application_name);
        let manager = deadpool_postgres::Manager::from_config(
            listen_config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let liveness = deadpool_postgres::Pool::builder(manager)
            .max_size(4)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(1)))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            api,
            liveness,
            listen_config,
        })
    }

    /// Applies pending migrations under sqlx's advisory lock, so nodes starting together
    /// on an empty database take turns. Returns the newest version applied.
    ///
    /// Migrations this binary does not know are tolerated: during a rolling upgrade an
    /// older node restarts against the newer schema and must still serve.
    pub async fn migrate(&self) -> Result<Option<i64>, sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!("../../migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.api).await?;
        Ok(migrator.iter().map(|m| m.version).max())
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
