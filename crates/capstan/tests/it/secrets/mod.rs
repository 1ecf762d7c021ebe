//! Sensitive values at rest: sealing and opening, the start-up check of master keys,
//! and rotating to a new key while the cluster serves.

mod deployments;
mod rotation;
mod scripts;
mod seal;
mod startup;

use capstan_server::Settings;
use capstan_testkit::{
    ADMIN_KEY, TEST_MASTER_KEY,
    cluster::{TestNode, start_node, test_settings},
    master_key,
};
use sqlx::{Connection as _, PgConnection};

use crate::capstan_bin;

/// The key test nodes hold by default: version 1 of every test database.
pub const KEY_1: &str = TEST_MASTER_KEY;
/// A second key, for rotations.
pub const KEY_2: &str = "c2Vjb25kLXRlc3QtbWFzdGVyLWtleS0wMTIzNDU2Nzg=";
/// A key no database knows.
pub const WRONG_KEY: &str = "d3Jvbmctd3Jvbmctd3JvbmctbWFzdGVyLWtleS0wMTI=";

/// Settings for node `name` holding `current` (none if `None`) and `previous` keys.
pub fn node_settings(
    db_url: &str,
    blob_dir: &std::path::Path,
    name: &str,
    current: Option<&str>,
    previous: &[&str],
) -> Settings {
    let mut settings = test_settings(db_url, blob_dir, name);
    settings.master_key = current.map(master_key);
    settings.master_key_previous = previous.iter().map(|k| master_key(k)).collect();
    settings
}

/// Starts node `name` with these keys.
pub async fn start_with_keys(
    db_url: &str,
    blob_dir: &std::path::Path,
    name: &str,
    current: Option<&str>,
    previous: &[&str],
) -> TestNode {
    start_node(node_settings(db_url, blob_dir, name, current, previous)).await
}

pub async fn connect(db_url: &str) -> PgConnection {
    PgConnection::connect(db_url)
        .await
        .expect("connecting to the test database")
}

/// Runs the `capstan` CLI against `server` without blocking the test's runtime, which
/// also runs the nodes the CLI talks to.
pub async fn capstan(server: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(capstan_bin())
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env("CAPSTAN_API_KEY", ADMIN_KEY)
        .output()
        .await
        .expect("running capstan");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
