use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use capstan_api::{ApiClient, UpdateNodeRequest};
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase, eventually, haproxy::HaProxy, process::start_servers,
};

use crate::capstan_bin;

struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<Vec<String>>,
}

/// A client sending requests through the load balancer the whole time, bounded to 60 s.
fn start_load(url: String) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
    let handle = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut failures = Vec::new();
        let started = std::time::Instant::now();
        while !s.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
            match client
                .get(format!("{url}/api/nodes"))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => {
                    f.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("status {}", r.status()));
                }
                Err(e) => {
                    f.fetch_add(1, Ordering::Relaxed);
                    failures.push(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failures
    });
    Load {
        stop,
        ok,
        failed,
        handle,
    }
}

async fn status_of(lb: &HaProxy, server: &str) -> String {
    lb.server_status()
        .await
        .into_iter()
        .find(|(n, _)| n == server)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

#[tokio::test]
async fn draining_a_node_behind_haproxy_fails_no_request_and_a_killed_node_is_routed_around() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-lb");
    let mut nodes = start_servers(&capstan_bin(), &["n1", "n2", "n3"], &db.url, &dir.0).await;
    let lb = HaProxy::start(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.port))
            .collect::<Vec<_>>(),
    );
    lb.wait_all_up(Duration::from_secs(10)).await;

    let load = start_load(lb.url());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = ApiClient::new(&lb.url(), Some(ADMIN_KEY.to_owned()));
    let n2 = client.find_node("n2").await.unwrap();
    client
        .update_node(
            n2.id,
            &UpdateNodeRequest {
                draining: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let drained_at = std::time::Instant::now();
    eventually(
        Duration::from_secs(5),
        "HAProxy marking n2 DOWN",
        || async { (status_of(&lb, "n2").await.starts_with("DOWN")).then_some(()) },
    )
    .await;
    let took = drained_at.elapsed();
    // inter 300ms, fall 2: a few check intervals.
    assert!(
        took < Duration::from_secs(3),
        "HAProxy took {took:?} to stop routing to n2"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .update_node(
            n2.id,
            &UpdateNodeRequest {
                draining: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "HAProxy marking n2 UP again",
        || async { (status_of(&lb, "n2").await == "UP").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    load.stop.store(true, Ordering::Relaxed);
    let failures = load.handle.await.unwrap();
    let ok = load.ok.load(Ordering::Relaxed);
    println!(
        "{ok} requests through HAProxy during drain and undrain; n2 marked DOWN after {took:?}"
    );
    assert!(ok > 100, "only {ok} requests went through");
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "failed requests during drain: {failures:?}"
    );

    // A SIGKILLed node is routed around.
    nodes[2].kill_9();
    eventually(
        Duration::from_secs(5),
        "HAProxy marking n3 DOWN",
        || async { (status_of(&lb, "n3").await.starts_with("DOWN")).then_some(()) },
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..30 {
        let response = http
            .get(format!("{}/api/nodes", lb.url()))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}
