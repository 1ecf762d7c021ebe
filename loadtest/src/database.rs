//! Throwaway databases for benchmark rounds.

use anyhow::Context as _;

/// A throwaway database for one round's nodes, which migrate it on start.
pub struct Database {
    pub url: String,
    pub admin_url: String,
    pub name: String,
}

impl Database {
    /// Creates (afresh) `<prefix>_<pid>_<round>` next to `admin_url`'s database.
    pub async fn create(admin_url: &str, prefix: &str, round: u32) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}_{round}", std::process::id());
        let admin = connect(admin_url).await?;
        // Two calls: DROP DATABASE refuses to run in the implicit transaction of a
        // multi-statement query.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    pub async fn drop(self) {
        let dropped = async {
            connect(&self.admin_url)
                .await?
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = dropped {
            eprintln!("cannot drop database {}: {e:#}", self.name);
        }
    }
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
