use std::time::{Duration, Instant};

use capstan_testkit::{TempDir, TestDatabase, free_port, process::run_to_exit};

use crate::capstan_bin;

fn one_line_reason(output: &str) -> &str {
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
    let (status, output) = run_to_exit(
        &capstan_bin(),
        &[
            ("CAPSTAN_DATABASE_URL", &url),
            ("CAPSTAN_BLOB_URL", &blob),
            ("CAPSTAN_LISTEN", "127.0.0.1:0"),
        ],
        Duration::from_secs(15),
    );
    assert!(!status.success());
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
    let (status, output) = run_to_exit(
        &capstan_bin(),
        &[
            ("CAPSTAN_DATABASE_URL", &url),
            ("CAPSTAN_BLOB_URL", &blob),
            ("CAPSTAN_LISTEN", "127.0.0.1:0"),
        ],
        Duration::from_secs(15),
    );
    assert!(!status.success());
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
        let (status, output) = run_to_exit(
            &capstan_bin(),
            &[
                ("CAPSTAN_DATABASE_URL", &db.url),
                ("CAPSTAN_BLOB_URL", blob),
                ("CAPSTAN_LISTEN", "127.0.0.1:0"),
            ],
            Duration::from_secs(15),
        );
        assert!(!status.success(), "{blob}");
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
        let (status, output) = run_to_exit(
            &capstan_bin(),
            &[
                ("CAPSTAN_DATABASE_URL", &db.url),
                ("CAPSTAN_BLOB_URL", blob),
                (key, value),
            ],
            Duration::from_secs(10),
        );
        assert!(!status.success(), "{key}={value}");
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
    let (status, output) = run_to_exit(
        &capstan_bin(),
        &[
            ("CAPSTAN_DATABASE_URL", &url),
            ("CAPSTAN_BLOB_URL", &blob),
            ("CAPSTAN_LISTEN", "127.0.0.1:0"),
        ],
        Duration::from_secs(15),
    );
    assert!(!status.success());
    let line = one_line_reason(&output);
    assert!(
        line.contains("rejected the credentials for user `no_such_role`"),
        "{line}"
    );
    assert!(!line.contains(":pw@"), "the password leaked: {line}");
}
