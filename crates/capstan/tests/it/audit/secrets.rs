//! A sensitive value reaches no audit row, no archive and no log line: a row says only
//! whether it changed.

use std::time::Duration;

use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    process::{ProcessOptions, ServerProcess},
};
use serde_json::{Value, json};

use super::{Trail, call};
use crate::projects::variables::tables_holding;

/// A multi-line value: each line must be nowhere, not just the whole.
const SECRET: &str = "-----BEGIN KEY-----\nsVb3kQ9zXw1pL7mN\nT4hR8cY2uJ6eA0fG\n-----END KEY-----";

fn secret_lines() -> Vec<&'static str> {
    SECRET.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test]
async fn a_sensitive_value_is_in_no_row_archive_or_log_only_whether_it_changed() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-audit-secret");
    let node = ServerProcess::start(
        &crate::capstan_bin(),
        "audited",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![
                (
                    "CAPSTAN_MASTER_KEY".into(),
                    capstan_testkit::TEST_MASTER_KEY.into(),
                ),
                ("RUST_LOG".into(), "debug".into()),
            ],
        },
    )
    .await;
    let n = node.url();
    let mut trail = Trail::new(&n);
    let (_, project) = call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({"name": "Shop"})),
    )
    .await;
    let project = project["id"].as_i64().unwrap();
    trail.one("project.create").await;
    let path = format!("/api/projects/{project}/variables");
    let (status, saved) = call(
        &n,
        ADMIN_KEY,
        "PUT",
        &path,
        Some(json!({"version": 0, "variables": [
            {"name": "Tls.Key", "value": SECRET, "sensitive": true},
            {"name": "Greeting", "value": "hello"},
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let set = trail.one("variables.update").await;
    assert_eq!(set["after"]["variables"][0]["value"], "changed", "{set:#}");
    assert_eq!(set["after"]["variables"][0]["sensitive"], true);
    assert_eq!(set["after"]["variables"][1]["value"], "hello");

    // Kept without its value: unchanged; given anew: changed.
    let id = saved["variables"][0]["id"].clone();
    let (status, _) = call(
        &n,
        ADMIN_KEY,
        "PUT",
        &path,
        Some(json!({"version": 1, "variables": [
            {"id": id, "name": "Tls.Key", "sensitive": true},
            {"name": "Greeting", "value": "hi"},
        ]})),
    )
    .await;
    assert_eq!(status, 200);
    let kept = trail.one("variables.update").await;
    assert_eq!(kept["before"]["variables"][0]["value"], "unchanged");
    assert_eq!(
        kept["after"]["variables"][0]["value"], "unchanged",
        "{kept:#}"
    );
    assert_eq!(kept["before"]["variables"][1]["value"], "hello");
    assert_eq!(kept["after"]["variables"][1]["value"], "hi");
    let (status, _) = call(
        &n,
        ADMIN_KEY,
        "PUT",
        &path,
        Some(json!({"version": 2, "variables": [
            {"id": id, "name": "Tls.Key", "sensitive": true, "value": format!("{SECRET}\nmore")},
        ]})),
    )
    .await;
    assert_eq!(status, 200);
    let replaced = trail.one("variables.update").await;
    assert_eq!(replaced["after"]["variables"][0]["value"], "changed");

    // Archive every row, as the retention would once they are old: rows cannot be
    // updated, so the test lifts the guard to age them.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    for statement in [
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "UPDATE audit_events SET at = at - interval '100 days'",
        "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let blob = capstan_blob::BlobStore::from_url(&format!("file://{}", dir.0.display())).unwrap();
    let archived = capstan_server::audit::retention::archive_old(
        &pool,
        &blob,
        Duration::from_secs(90 * 24 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(archived.rows, 4);
    let mut archives = String::new();
    for day in &archived.days {
        let file = blob
            .get(&capstan_server::audit::retention::archive_key(*day))
            .await
            .unwrap();
        archives.push_str(std::str::from_utf8(&file).unwrap());
    }
    assert_eq!(archives.lines().count(), 4, "{archives}");

    let rows: Vec<Value> = vec![set, kept, replaced];
    let log = node.log();
    assert!(
        log.contains("/variables"),
        "the debug log records the requests"
    );
    for line in secret_lines() {
        for row in &rows {
            assert!(
                !row.to_string().contains(line),
                "a row holds `{line}`: {row:#}"
            );
        }
        assert!(!archives.contains(line), "an archive holds `{line}`");
        assert!(!log.contains(line), "the node's log holds `{line}`");
        assert_eq!(
            tables_holding(&db.url, line).await,
            Vec::<String>::new(),
            "`{line}`"
        );
    }
}
