//! A blob store that is misconfigured or stops working: the node says which and why, at
//! start and in ping, and recovers by itself when the store returns.

use std::{process::Command, time::Duration};

use capstan_testkit::{TestCluster, TestDatabase, eventually, free_port, process::run_to_exit, s3};
use reqwest::StatusCode;
use serde_json::Value;

use super::{
    Backend, StoreCluster,
    packages::{noise, push_raw},
    s3_options,
};
use crate::capstan_bin;

/// Starts `capstan server` on an S3 blob URL with these credentials and endpoint,
/// expecting it to exit; returns the reason it printed.
async fn start_on_s3(blob_url: &str, secret: &str, endpoint: &str) -> String {
    let db = TestDatabase::new().await;
    let env = [
        ("CAPSTAN_DATABASE_URL", db.url.as_str()),
        ("CAPSTAN_BLOB_URL", blob_url),
        ("CAPSTAN_LISTEN", "127.0.0.1:0"),
        ("CAPSTAN_S3_ENDPOINT", endpoint),
        ("CAPSTAN_S3_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", s3::REGION),
    ];
    let (status, output) = run_to_exit(&capstan_bin(), &env, Duration::from_secs(30));
    assert!(!status.success(), "{output}");
    assert!(
        !output.contains("not-the-secret"),
        "the secret leaked:\n{output}"
    );
    output
        .lines()
        .rev()
        .find(|l| l.starts_with("capstan:"))
        .unwrap_or_else(|| panic!("no `capstan:` line in:\n{output}"))
        .to_owned()
}

#[tokio::test]
async fn the_start_up_probe_names_bad_credentials_and_an_unreachable_store() {
    let server = s3::shared();
    let line = start_on_s3(
        &server.blob_url("probe"),
        "not-the-secret",
        &server.endpoint(),
    )
    .await;
    assert!(
        line.contains("blob")
            && line.contains("s3://capstan-test/probe")
            && line.contains("bad credentials"),
        "{line}"
    );
    // (A missing bucket is named too, but s3s-fs creates buckets on first write, so
    // only the wording is tested, in capstan-blob.)
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let line = start_on_s3(&server.blob_url("x"), s3::SECRET_KEY, &nothing).await;
    assert!(line.contains("unreachable"), "{line}");
}

async fn ping(base: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{base}/api/nodes/ping"))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn wait_for_ping(base: &str, status: StatusCode) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("ping to answer {status}"),
        || async {
            let (now, body) = ping(base).await;
            (now == status).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn a_directory_made_read_only_fails_ping_and_the_node_recovers() {
    let env = StoreCluster::start(Backend::Directory, 1, |_| {}).await;
    let base = env.cluster.node(0).url();
    let dir = env.cluster.blob_dir.0.clone();
    // Root ignores permission bits; the immutable attribute stops even root.
    let chattr = |flag: &str| {
        let status = Command::new("chattr")
            .arg("-R")
            .arg(flag)
            .arg(&dir)
            .status()
            .expect("running chattr");
        assert!(
            status.success(),
            "chattr {flag} failed (the test needs root on ext4)"
        );
    };
    chattr("+i");
    let body = wait_for_ping(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    chattr("-i");
    let reason = body["checks"]["blob"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("permission denied"), "{reason}");
    assert!(reason.contains(&dir.display().to_string()), "{reason}");
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    wait_for_ping(&base, StatusCode::OK).await;
    let response = push_raw(&base, "?id=After&version=1.0.0", noise(1000, 1)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_s3_server_that_stops_fails_ping_and_uploads_clearly_and_the_node_recovers() {
    let mut server = s3::S3Server::start();
    let url = server.blob_url("outage");
    let options = s3_options(&server);
    let cluster = TestCluster::start_with(&[None], |settings| {
        settings.blob_url.clone_from(&url);
        settings.s3 = options.clone();
    })
    .await;
    let base = cluster.node(0).url();
    assert_eq!(
        push_raw(&base, "?id=Before&version=1.0.0", noise(1000, 1))
            .await
            .status(),
        StatusCode::CREATED
    );

    server.stop();
    let body = wait_for_ping(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    let reason = body["checks"]["blob"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("unreachable") && reason.contains(&url),
        "{reason}"
    );
    let response = push_raw(&base, "?id=During&version=1.0.0", noise(1000, 2)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("unreachable"),
        "{problem}"
    );
    let response = reqwest::Client::new()
        .get(format!("{base}/api/packages/Before/1.0.0/raw"))
        .bearer_auth(capstan_testkit::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    server.resume();
    wait_for_ping(&base, StatusCode::OK).await;
    assert_eq!(
        push_raw(&base, "?id=During&version=1.0.0", noise(1000, 2))
            .await
            .status(),
        StatusCode::CREATED
    );
}
