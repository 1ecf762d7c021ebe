//! Two real nodes on one S3-compatible store behind a real HAProxy: a 1 GiB package
//! goes in through the load balancer and comes out of each node byte for byte; a task's
//! log is followed live through the node that does not run it; the node receiving an
//! upload is SIGKILLed half way, nothing is left behind, and the retry through the load
//! balancer succeeds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use capstan_testkit::{
    ADMIN_KEY, TestDatabase, eventually,
    haproxy::HaProxy,
    process::{ProcessOptions, ServerProcess},
    s3::S3Server,
};
use futures::{StreamExt, stream};
use reqwest::StatusCode;
use sha2::Digest;

use super::packages::noise;
use crate::capstan_bin;

const GIB: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

/// A body of `total` deterministic bytes; `sent` counts what left; once `pause_at`
/// bytes have left it stops producing (the upload hangs there until cut).
fn body(total: u64, seed: u64, sent: Arc<AtomicU64>, pause_at: Option<u64>) -> reqwest::Body {
    // One noise block reused with the chunk number mixed in keeps generation cheap.
    let block = Bytes::from(noise(CHUNK, seed));
    let chunks = total.div_ceil(CHUNK as u64);
    let stream = stream::iter(0..chunks).then(move |i| {
        let (block, sent) = (block.clone(), sent.clone());
        async move {
            if pause_at.is_some_and(|at| sent.load(Ordering::Relaxed) >= at) {
                futures::future::pending::<()>().await;
            }
            let len = (total - i * CHUNK as u64).min(CHUNK as u64) as usize;
            let mut chunk = block.slice(..len).to_vec();
            chunk[..8].copy_from_slice(&i.to_le_bytes());
            sent.fetch_add(len as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// The sha256 and size of what `body` produces, computed the same way.
fn expected(total: u64, seed: u64) -> (String, u64) {
    let block = noise(CHUNK, seed);
    let mut hasher = sha2::Sha256::new();
    for i in 0..total.div_ceil(CHUNK as u64) {
        let len = (total - i * CHUNK as u64).min(CHUNK as u64) as usize;
        let mut chunk = block[..len].to_vec();
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        hasher.update(&chunk);
    }
    (super::packages::sha256_hex_of(hasher), total)
}

async fn download_digest(url: &str) -> (String, u64) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (super::packages::sha256_hex_of(hasher), size)
}

fn upload(base: &str, version: &str, body: reqwest::Body) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{base}/api/packages/raw?id=Big&version={version}"))
        .bearer_auth(ADMIN_KEY)
        .body(body)
}

#[tokio::test]
async fn a_1gib_package_through_the_load_balancer_survives_a_node_killed_mid_upload() {
    let s3 = S3Server::start();
    let db = TestDatabase::new().await;
    let logs = capstan_testkit::TempDir::new("capstan-blob-lb");
    let mut env = s3.env();
    env.push(("CAPSTAN_BLOB_URL".to_owned(), s3.blob_url("lb")));
    let options = ProcessOptions { env };
    let mut nodes = Vec::new();
    for name in ["blob-a", "blob-b"] {
        nodes.push(
            ServerProcess::start(
                &capstan_bin(),
                name,
                &db.url,
                &logs.0,
                &logs.0,
                options.clone(),
            )
            .await,
        );
    }
    let lb = HaProxy::start(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.port))
            .collect::<Vec<_>>(),
    );
    lb.wait_all_up(Duration::from_secs(15)).await;

    // 1 GiB in through the load balancer, out through each node.
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let response = upload(&lb.url(), "1.0.0", body(GIB, 1, sent, None))
        .send()
        .await
        .unwrap();
    let upload_took = started.elapsed();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.unwrap();
    let (sha, size) = expected(GIB, 1);
    assert_eq!(created["sha256"], sha);
    assert_eq!(created["size"], size);
    for node in &nodes {
        let started = Instant::now();
        let got = download_digest(&format!("{}/api/packages/Big/1.0.0/raw", node.url())).await;
        assert_eq!(got, (sha.clone(), size), "download through {}", node.name);
        println!(
            "1 GiB: upload through HAProxy {:.1}s, download through {} {:.1}s",
            upload_took.as_secs_f64(),
            node.name,
            started.elapsed().as_secs_f64()
        );
    }

    // A task running on one node, its log followed live through the other.
    let http = reqwest::Client::new();
    let task: serde_json::Value = http
        .post(format!("{}/api/tasks", nodes[0].url()))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"kind": "sleep", "args": {"ms": 1500, "log_every_ms": 100}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        task["node_name"], nodes[0].name,
        "claimed on create: {task}"
    );
    let started = Instant::now();
    let mut events = http
        .get(format!(
            "{}/api/tasks/{}/log?follow=true",
            nodes[1].url(),
            task["id"]
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let (mut text, mut first_line) = (String::new(), None);
    while let Some(chunk) = events.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_line.is_none() && text.contains("data:") {
            first_line = Some(started.elapsed());
        }
        if text.contains("event: end") {
            break;
        }
    }
    let ticks = text
        .lines()
        .filter(|l| l.starts_with("data:") && l.contains("tick"))
        .count();
    assert!(ticks >= 10, "{text}");
    assert!(
        first_line.unwrap() < Duration::from_millis(2500),
        "{first_line:?}"
    );
    println!(
        "followed {ticks} lines of a task on {} through {}; the first arrived after {:?}",
        nodes[0].name,
        nodes[1].name,
        first_line.unwrap()
    );

    // Half way through the next upload, SIGKILL the node receiving it.
    let sent = Arc::new(AtomicU64::new(0));
    let request = upload(
        &lb.url(),
        "2.0.0",
        body(GIB, 2, sent.clone(), Some(GIB / 2)),
    );
    let client = tokio::spawn(async move { request.send().await });
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let receiver: String = eventually(
        Duration::from_secs(60),
        "the upload to reach half way",
        || {
            let (pool, sent) = (pool.clone(), sent.clone());
            async move {
                if sent.load(Ordering::Relaxed) < GIB / 2 {
                    return None;
                }
                sqlx::query_scalar(
                    "SELECT n.name FROM blob_uploads u JOIN nodes n ON n.id = u.node_id",
                )
                .fetch_optional(&pool)
                .await
                .unwrap()
            }
        },
    )
    .await;
    let victim = nodes.iter().position(|n| n.name == receiver).unwrap();
    nodes[victim].kill_9();
    let cut = client.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |r| !r.status().is_success()),
        "an upload to a killed node cannot succeed: {cut:?}"
    );

    // The survivor cleans up the dead node's upload; nothing of 2.0.0 remains.
    let survivor = &nodes[1 - victim];
    eventually(
        Duration::from_secs(20),
        "the abandoned upload to be cleaned up",
        || async {
            let records: i64 = sqlx::query_scalar("SELECT count(*) FROM blob_uploads")
                .fetch_one(&pool)
                .await
                .unwrap();
            (records == 0).then_some(())
        },
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/packages/Big/2.0.0", survivor.url()))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let stored = super::files_under(s3.root());
    // s3s-fs keeps two small JSON sidecars per object it ever stored, deleted or not;
    // any data outside the one stored package is a leftover.
    let strays: Vec<_> = stored
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let sidecar = name.starts_with(".bucket-")
                && (name.ends_with(".metadata.json") || name.ends_with(".internal.json"));
            // s3s-fs writes every incoming body to `.tmp.<n>.internal.part` at its root
            // and renames it, or removes it when the request is dropped: a request in
            // flight (the survivor's probe, a log), not an object.
            let in_flight = name.starts_with(".tmp.") && name.ends_with(".internal.part");
            // Task logs (the periodic tasks') are not uploads, and the survivor's
            // health probe may be between its write and its delete.
            let path = p.to_string_lossy();
            !sidecar
                && !in_flight
                && !path.contains("/lb/packages/Big/1.0.0/")
                && !path.contains("/lb/logs/")
                && !path.contains("/lb/_capstan/probe/")
        })
        .collect();
    assert!(strays.is_empty(), "left behind: {strays:?}");

    // The retry through the load balancer succeeds once HAProxy routes around the dead node.
    eventually(
        Duration::from_secs(10),
        "HAProxy to mark the killed node DOWN",
        || async {
            let status = lb.server_status().await;
            status
                .iter()
                .any(|(name, s)| *name == receiver && s.starts_with("DOWN"))
                .then_some(())
        },
    )
    .await;
    let sent = Arc::new(AtomicU64::new(0));
    let response = upload(&lb.url(), "2.0.0", body(GIB, 2, sent, None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (sha, size) = expected(GIB, 2);
    let got = download_digest(&format!("{}/api/packages/Big/2.0.0/raw", lb.url())).await;
    assert_eq!(got, (sha, size));
}
