use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use capstan_api::ApiClient;
use capstan_testkit::{TempDir, free_port};

use crate::capstan_bin;

/// Runs `capstan dev` until it prints its URLs, pings every node, stops it with SIGINT
/// (Ctrl-C) and returns the admin key it printed.
async fn run_dev_once(data_dir: &std::path::Path, port: u16, pg_port: u16) -> String {
    let mut child = Command::new(capstan_bin())
        .args(["dev", "--data-dir"])
        .arg(data_dir)
        .args([
            "--port",
            &port.to_string(),
            "--pg-port",
            &pg_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout).lines();
        let mut lines = Vec::new();
        for line in reader.by_ref() {
            let line = line.unwrap();
            let done = line.contains("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        // Keep reading so the process never writes into a closed pipe.
        std::thread::spawn(move || reader.for_each(drop));
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), printed)
        .await
        .expect("capstan dev came up within 60s")
        .unwrap();
    let text = lines.join("\n");
    for offset in 0..3 {
        let url = format!("http://127.0.0.1:{}", port + offset);
        assert!(text.contains(&url), "{url} not printed:\n{text}");
        assert_eq!(
            ApiClient::new(&url, None).ping().await.unwrap().0,
            200,
            "{url}"
        );
    }
    let key = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("admin API key")
                .map(|k| k.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no admin key printed:\n{text}"));
    // Sensitive values work out of the box: every node holds the active key version.
    let status = ApiClient::new(&format!("http://127.0.0.1:{port}"), Some(key.clone()))
        .get_master_key()
        .await
        .unwrap();
    assert_eq!(status.active_version, Some(1), "{status:?}");
    assert_eq!(status.nodes.len(), 3, "{status:?}");
    assert!(
        status.nodes.iter().all(|n| n.key_versions == [1]),
        "{status:?}"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "capstan dev exited with {status}");
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn capstan_dev_starts_three_nodes_stops_on_ctrl_c_and_restarts_on_the_same_data() {
    let dir = TempDir::new("capstan-dev");
    let data = dir.0.join("data");
    let (port, pg_port) = (free_port_run(3), free_port());
    let first_key = run_dev_once(&data, port, pg_port).await;
    let second_key = run_dev_once(&data, port, pg_port).await;
    assert_eq!(
        first_key, second_key,
        "the second run must reuse the first run's data"
    );
    // The master key is kept for the next run, readable by its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(data.join("master-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// The first of `n` consecutive free ports.
fn free_port_run(n: u16) -> u16 {
    loop {
        let first = free_port();
        if first > u16::MAX - n {
            continue;
        }
        if (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
}
