use std::time::{Duration, Instant};

use capstan_testkit::{TempDir, TestDatabase, free_port, process::run_to_exit};

use crate::capstan_bin;

/// Starts `capstan server` on `database_url` and `blob_url` plus `extra`, expecting it
/// to exit; returns whether it succeeded and what it printed.
pub(crate) fn start_expecting_exit(
    database_url: &str,
    blob_url: &str,
    extra: &[(&str, &str)],
) -> (bool, String) {
    let mut env = vec![
        ("CAPSTAN_DATABASE_URL", database_url),
        ("CAPSTAN_BLOB_URL", blob_url),
        ("CAPSTAN_LISTEN", "127.0.0.1:0"),
    ];
    env.extend_from_slice(extra);
    let (status, output) = run_to_exit(&capstan_bin(), &env, Duration::from_secs(15));
    (status.success(), output)
}

pub(crate) fn one_line_reason(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| l.starts_with("capstan:"))
        .unwrap_or_else(|| panic!("no `capstan:` line in:\n{output}"))
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_with_a_reason() {
    let dir = TempDir::new("capstan-start");
    let url = format!(
        "postgres://capstan:secret-password@127.0.0.1:{}/capstan",
        free_port()
    );
    let blob = format!("file://{}", dir.0.display());
    let started = Instant::now();
    let (succeeded, output) = start_expecting_exit(&url, &blob, &[]);
    assert!(!succeeded);
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = one_line_reason(&output);
    assert!(
        line.contains("postgres") && line.contains("connection refused"),
        "{line}"
    );
    assert!(
        !output.contains("secret-password"),
        "the password leaked:\n{output}"
    );
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let dir = TempDir::new("capstan-start");
    let url = capstan_testkit::database::with_database(
        &capstan_testkit::database::admin_url(),
        "capstan_no_such_db",
    );
    let blob = format!("file://{}", dir.0.display());
    let (succeeded, output) = start_expecting_exit(&url, &blob, &[]);
    assert!(!succeeded);
    let line = one_line_reason(&output);
    assert!(
        line.contains("capstan_no_such_db") && line.contains("does not exist"),
        "{line}"
    );
}

#[tokio::test]
async fn a_missing_or_unwritable_blob_store_is_named() {
    let db = TestDatabase::new().await;
    for (blob, expected) in [
        (
            "file:///nonexistent/capstan-blobs",
            "/nonexistent/capstan-blobs does not exist",
        ),
        ("file:///proc", "cannot write a probe object"),
        ("ftp://example/blobs", "unsupported blob store scheme"),
    ] {
        let (succeeded, output) = start_expecting_exit(&db.url, blob, &[]);
        assert!(!succeeded, "{blob}");
        let line = one_line_reason(&output);
        assert!(
            line.contains("blob") && line.contains(expected),
            "{blob}: {line}"
        );
    }
}

#[tokio::test]
async fn malformed_settings_are_refused_before_anything_starts() {
    let db = TestDatabase::new().await;
    let blob = "memory://";
    for (key, value, expected) in [
        ("CAPSTAN_HEARTBEAT_INTERVAL", "10", "a unit is missing"),
        ("CAPSTAN_TASK_CAP", "-3", "between 0 and 1000"),
        ("CAPSTAN_MASTER_KEY", "c2hvcnQ=", "must be 32 bytes"),
        ("CAPSTAN_TRUSTED_PROXIES", "10.0.0.0/99", "neither a CIDR"),
        ("CAPSTAN_LISTEN", "everywhere", "invalid"),
        ("CAPSTAN_NODE_NAME", "no spaces please", "may contain only"),
    ] {
        let (succeeded, output) = start_expecting_exit(&db.url, blob, &[(key, value)]);
        assert!(!succeeded, "{key}={value}");
        assert!(output.contains(expected), "{key}={value}:\n{output}");
    }
}

#[tokio::test]
async fn rejected_credentials_are_named() {
    let dir = TempDir::new("capstan-start");
    let admin = capstan_testkit::database::admin_url();
    let url = admin.replacen("postgres://postgres@", "postgres://no_such_role:pw@", 1);
    assert_ne!(
        url, admin,
        "the test expects an admin URL of the form postgres://postgres@host/db"
    );
    let blob = format!("file://{}", dir.0.display());
    let (succeeded, output) = start_expecting_exit(&url, &blob, &[]);
    assert!(!succeeded);
    let line = one_line_reason(&output);
    assert!(
        line.contains("rejected the credentials for user `no_such_role`"),
        "{line}"
    );
    assert!(!line.contains(":pw@"), "the password leaked: {line}");
}
