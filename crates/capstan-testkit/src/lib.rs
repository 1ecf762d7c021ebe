//! Test support for Capstan: a fresh database per test (cloned from a migrated
//! template), an in-process N-node cluster on port 0, real `capstan server` processes
//! that can be SIGKILLed, a private PostgreSQL that can be stopped, HAProxy, and
//! Prometheus evaluating the shipped alerting rules.
//!
//! A dev-dependency only; production crates never depend on it.

pub mod agents;
pub mod browser;
pub mod cluster;
pub mod database;
pub mod haproxy;
pub mod oidc;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod s3;
pub mod tasks;

pub use cluster::{TEST_MASTER_KEY, TestCluster, Timings, master_key};
pub use database::TestDatabase;

/// The admin key every test node accepts.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// Polls `check` every 50 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race we accept in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Prometheus text a node at `base_url` serves on `/metrics`.
pub async fn metrics_text(base_url: &str) -> String {
    reqwest::get(format!("{base_url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("reading /metrics")
}
