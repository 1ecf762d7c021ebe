use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use capstan_testkit::{
    ADMIN_KEY, TempDir, TestCluster, TestDatabase, eventually, free_port,
    process::{ProcessOptions, ServerProcess},
};

use capstan_api::{ApiClient, UpdateNodeRequest};

use crate::capstan_bin;

#[tokio::test]
async fn metrics_pass_promtool_and_count_requests_by_route() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    node.client().list_nodes().await.unwrap();
    node.client().get_node(node.state.id).await.unwrap();
    let _ = reqwest::get(format!("{}/nowhere", node.url()))
        .await
        .unwrap();
    let text = reqwest::get(format!("{}/metrics", node.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "capstan_node_info{node_name=\"node-1\"",
        "capstan_node_draining 0",
        "capstan_node_task_cap 5",
        // 0 or 1: the node may be running its first periodic retention task.
        "capstan_node_running_tasks ",
        "capstan_node_heartbeat_duration_seconds_bucket",
        "capstan_http_requests_total{route=\"/api/nodes/{id}\",method=\"GET\",status=\"200\"} 1",
        "capstan_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "capstan_http_request_duration_seconds_bucket{route=\"/api/nodes\",method=\"GET\"",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        !text.contains(&node.state.id.to_string()),
        "an id became a label"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn rotel_binary() -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import rotel,os;print(os.path.join(os.path.dirname(rotel.__file__),'rotel-agent'))",
        ])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "the rotel collector is installed (pip install rotel)"
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn request_spans_reach_a_real_otlp_collector() {
    let dir = TempDir::new("capstan-otel");
    let grpc_port = free_port();
    let http_port = free_port();
    let collector_log = dir.0.join("rotel.out");
    let mut collector = Command::new(rotel_binary())
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc_port}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http_port}"),
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
        ])
        .stdout(std::fs::File::create(&collector_log).unwrap())
        .stderr(std::fs::File::create(dir.0.join("rotel.err")).unwrap())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the collector listening",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", http_port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;

    let db = TestDatabase::new().await;
    let options = ProcessOptions {
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                format!("http://127.0.0.1:{http_port}"),
            ),
            ("OTEL_SERVICE_NAME".to_owned(), "capstan-test".to_owned()),
        ],
    };
    let mut node =
        ServerProcess::start(&capstan_bin(), "traced", &db.url, &dir.0, &dir.0, options).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        client
            .get(format!("{}/api/nodes", node.url()))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
    }
    node.signal("TERM");
    assert!(
        node.wait_exit(Duration::from_secs(15)).await.success(),
        "{}",
        node.log()
    );

    let seen = eventually(
        Duration::from_secs(10),
        "the span in the collector's output",
        || async {
            let out = std::fs::read_to_string(&collector_log).unwrap_or_default();
            (out.contains("GET /api/nodes") && out.contains("capstan-test")).then_some(out)
        },
    )
    .await;
    assert!(seen.contains("http.route"), "{seen}");
    let _ = collector.kill();
    let _ = collector.wait();
}

/// Reads the request log line for `path` from a JSON-logging node.
fn client_address_logged(log: &str, path: &str) -> String {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["url.path"] == path)
        .and_then(|v| v["client.address"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no request log line for {path} in:\n{log}"))
}

async fn request_with_forwarded_for(node: &ServerProcess, path: &str, forwarded_for: &str) {
    reqwest::Client::new()
        .get(format!("{}{path}", node.url()))
        .bearer_auth(ADMIN_KEY)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-xff");
    let json = ("CAPSTAN_LOG_FORMAT".to_owned(), "json".to_owned());
    let untrusting = ServerProcess::start(
        &capstan_bin(),
        "untrusting",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![
                json.clone(),
                (
                    "CAPSTAN_TRUSTED_PROXIES".to_owned(),
                    "10.0.0.0/8".to_owned(),
                ),
            ],
        },
    )
    .await;
    let trusting = ServerProcess::start(
        &capstan_bin(),
        "trusting",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![
                json,
                (
                    "CAPSTAN_TRUSTED_PROXIES".to_owned(),
                    "127.0.0.1/32,10.0.0.0/8".to_owned(),
                ),
            ],
        },
    )
    .await;

    request_with_forwarded_for(&untrusting, "/api/nodes", "203.0.113.7").await;
    request_with_forwarded_for(&trusting, "/api/nodes", "1.2.3.4, 203.0.113.7, 10.0.0.5").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client_address_logged(&untrusting.log(), "/api/nodes"),
        "127.0.0.1"
    );
    assert_eq!(
        client_address_logged(&trusting.log(), "/api/nodes"),
        "203.0.113.7"
    );
}

/// The text log a node writes is for people: probes stay out of it at the default
/// level (also while the node drains and ping answers 418), and a request line is
/// short and names each field once.
#[tokio::test]
async fn the_text_log_is_quiet_about_probes_and_terse_about_requests() {
    let dir = TempDir::new("capstan-quiet-log");
    let db = TestDatabase::new().await;
    let node = ServerProcess::start(
        &capstan_bin(),
        "quiet",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", node.url()))
            .bearer_auth(ADMIN_KEY)
    };
    for path in ["/api/nodes/ping", "/healthz", "/metrics"] {
        get(path).send().await.unwrap();
    }
    let api = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let id = api.list_nodes().await.unwrap()[0].id;
    let drain = UpdateNodeRequest {
        draining: Some(true),
        ..UpdateNodeRequest::default()
    };
    api.update_node(id, &drain).await.unwrap();
    let draining = eventually(Duration::from_secs(5), "ping to answer 418", || async {
        let status = get("/api/nodes/ping").send().await.ok()?.status();
        (status == reqwest::StatusCode::IM_A_TEAPOT).then_some(())
    });
    draining.await;
    let log = eventually(
        Duration::from_secs(5),
        "the request line for /api/nodes",
        || async {
            let log = node.log();
            log.lines()
                .any(|l| l.contains("/api/nodes") && !l.contains("/api/nodes/"))
                .then_some(log)
        },
    )
    .await;

    for probe in ["/api/nodes/ping", "/healthz", "/metrics"] {
        assert!(
            !log.lines().any(|l| l.contains(probe)),
            "{probe} is logged at the default level:\n{log}"
        );
    }
    let line = log
        .lines()
        .find(|l| l.contains("/api/nodes") && !l.contains("/api/nodes/"))
        .unwrap();
    assert!(line.len() < 250, "{} characters: {line}", line.len());
    let mut keys: Vec<&str> = line
        .split_whitespace()
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .collect();
    let all = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), all, "a field is named twice: {line}");
    assert!(
        line.contains("200") && line.contains("request.id="),
        "{line}"
    );
}
