//! A database per test, created from a migrated template in ~0.15 s.

use sqlx::{Connection, PgConnection};

/// The server tests create databases on; `CAPSTAN_TEST_DATABASE_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("CAPSTAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The advisory lock a test run's cleanup (`scripts/test.sh`) holds exclusively while
/// it drops the templates it made. Its value is written out in that script.
pub const TEMPLATES_IN_USE_LOCK: i64 = 727_275;

/// A fresh, migrated database, dropped when the value is.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn new() -> Self {
        Self::on(&admin_url()).await
    }

    /// A test database on the server `admin_url` points at.
    pub async fn on(admin_url: &str) -> Self {
        let mut conn = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {admin_url}: {e}; start one or set CAPSTAN_TEST_DATABASE_URL")
        });
        // From finding the template to copying it, a cleanup must not drop it; a
        // template dropped between two tests is simply built again.
        sqlx::query("SELECT pg_advisory_lock_shared($1)")
            .bind(TEMPLATES_IN_USE_LOCK)
            .execute(&mut conn)
            .await
            .expect("taking the templates-in-use lock");
        let template = ensure_template(&mut conn, admin_url).await;
        let name = format!("capstan_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .expect("creating a test database");
        sqlx::query("SELECT pg_advisory_unlock_shared($1)")
            .bind(TEMPLATES_IN_USE_LOCK)
            .execute(&mut conn)
            .await
            .expect("releasing the templates-in-use lock");
        Self {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee, so use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The template for the current migrations, built once per server under an advisory
/// lock: tests run as separate processes and must not build it twice.
async fn ensure_template(conn: &mut PgConnection, admin_url: &str) -> String {
    let fingerprint: u64 = capstan_db::MIGRATOR
        .iter()
        .fold(0xcbf29ce484222325, |acc, m| {
            m.checksum.iter().fold(acc ^ m.version as u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
            })
        });
    let template = format!("capstan_tmpl_{:012x}", fingerprint & 0xffff_ffff_ffff);
    sqlx::query("SELECT pg_advisory_lock(727274)")
        .execute(&mut *conn)
        .await
        .expect("taking the template lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut *conn)
            .await
            .expect("looking for the template");
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {template}"))
            .execute(&mut *conn)
            .await
            .expect("creating the template");
        let url = with_database(admin_url, &template);
        let pool = sqlx::PgPool::connect(&url)
            .await
            .expect("connecting to the template");
        capstan_db::MIGRATOR
            .run(&pool)
            .await
            .expect("migrating the template");
        pool.close().await;
    }
    sqlx::query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut *conn)
        .await
        .expect("releasing the template lock");
    template
}

/// `admin_url` with its database replaced by `name`.
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// An empty database (no migrations), for tests of start-up itself.
pub async fn empty_database() -> TestDatabase {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("reaching the test PostgreSQL");
    let name = format!("capstan_e_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("creating an empty database");
    TestDatabase {
        url: with_database(&admin, &name),
        name,
        admin_url: admin,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, PgConnection};

    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn no_database_is_copied_from_a_template_while_templates_are_being_dropped() {
        let mut cleanup = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATES_IN_USE_LOCK)
            .execute(&mut cleanup)
            .await
            .unwrap();
        let creating = tokio::spawn(TestDatabase::new());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let copied_meanwhile = creating.is_finished();
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATES_IN_USE_LOCK)
            .execute(&mut cleanup)
            .await
            .unwrap();
        let database = tokio::time::timeout(Duration::from_secs(30), creating)
            .await
            .expect("created once the templates are no longer being dropped")
            .unwrap();
        drop(database);
        assert!(
            !copied_meanwhile,
            "a test database was copied while the templates could be dropped"
        );
    }
}
