//! The OpenAPI document as a contract: schemathesis generates requests from
//! `/api/openapi.json` (valid ones and ones that break the stated constraints), sends
//! them to a real `capstan server` with its own database, and fails on any 5xx, any
//! status code the document does not list for the operation, any response body that
//! breaks its documented schema and any undocumented content type.

use std::{process::Stdio, time::Instant};

use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    process::{ProcessOptions, ServerProcess},
};

use crate::capstan_bin;

/// Set to `1` to skip the fuzz run when schemathesis is not installed (it fails
/// otherwise, so a machine without it cannot pass by accident).
const SKIP_WITHOUT_SCHEMATHESIS: &str = "CAPSTAN_TEST_SKIP_API_FUZZ";

/// Operations the run leaves out, and why:
/// - the agent protocol (`/api/agent/…`) and `/api/agents/register` take an agent
///   credential or a one-time registration token, not the API key, so every
///   generated request would stop at the same 401;
/// - package and artifact uploads stream raw bytes of any size; generated bodies test
///   nothing the JSON routes do not, and each run would store blobs;
/// - `PATCH` and `DELETE /api/nodes/{id}` can drain or delete the node under test, and
///   `POST /api/master-key/rotate` re-seals every secret in the background: each would
///   change what the rest of the run sees.
const EXCLUDED: &[&str] = &[
    "--exclude-path-regex",
    "^/api/agent/|^/api/agents/register$|^/api/packages/raw$",
    "--exclude-operation-id",
    "upload_artifact",
    "--exclude-operation-id",
    "update_node",
    "--exclude-operation-id",
    "delete_node",
    "--exclude-operation-id",
    "rotate_master_key",
];

#[tokio::test]
async fn the_api_answers_generated_requests_as_its_openapi_document_says() {
    let Some(schemathesis) = find_schemathesis() else {
        if std::env::var(SKIP_WITHOUT_SCHEMATHESIS).as_deref() == Ok("1") {
            eprintln!(
                "\n!!! SKIPPED: schemathesis is not installed, so the API was not checked against its OpenAPI document ({SKIP_WITHOUT_SCHEMATHESIS}=1) !!!\n"
            );
            return;
        }
        panic!(
            "schemathesis is not installed: `pip install schemathesis` (scripts/test.sh does), or set {SKIP_WITHOUT_SCHEMATHESIS}=1 to skip this test"
        );
    };
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-fuzz");
    let node = ServerProcess::start(
        &capstan_bin(),
        "fuzz",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions::default(),
    )
    .await;

    let started = Instant::now();
    let output = tokio::process::Command::new(schemathesis)
        .arg("run")
        .arg(format!("{}/api/openapi.json", node.url()))
        .args(["--header", &format!("Authorization: Bearer {ADMIN_KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        ])
        .args(EXCLUDED)
        // Bounded and repeatable: a fixed seed, a few examples per operation and a
        // time budget that the fuzzing and stateful phases spend in full. One worker:
        // the machine running the suite has other tests to run.
        .args(["--seed", "20240601", "--max-examples", "10", "--max-time", "150"])
        .args(["--workers", "1", "--request-timeout", "20"])
        .args(["--generation-database", "none", "--no-color"])
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found the API and its OpenAPI document disagreeing ({}, after {:.0?}):\n{report}\n--- node log ---\n{}",
        output.status,
        started.elapsed(),
        node.log()
    );
    eprintln!("{report}");
}

/// `schemathesis` on the PATH, or the `st` alias it also installs.
fn find_schemathesis() -> Option<&'static str> {
    ["schemathesis", "st"].into_iter().find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}
