use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use capstan_api::ApiClient;
use capstan_testkit::{TempDir, free_port};

use crate::capstan_bin;

/// Starts `capstan dev` and waits until it prints its URLs: the process and what it
/// printed.
async fn start_dev(data_dir: &std::path::Path, port: u16, pg_port: u16) -> (Child, String) {
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
    (child, lines.join("\n"))
}

/// Stops `capstan dev` with SIGINT (Ctrl-C) and checks that it exits cleanly.
async fn stop_dev(child: Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "capstan dev exited with {status}");
}

/// Every node of a dev cluster answers its ping with 200.
async fn assert_nodes_up(port: u16) {
    for offset in 0..3 {
        let url = format!("http://127.0.0.1:{}", port + offset);
        assert_eq!(
            ApiClient::new(&url, None).ping().await.unwrap().0,
            200,
            "{url}"
        );
    }
}

/// Runs `capstan dev` until it prints its URLs, pings every node, stops it with SIGINT
/// (Ctrl-C) and returns the admin key it printed.
async fn run_dev_once(data_dir: &std::path::Path, port: u16, pg_port: u16) -> String {
    let (child, text) = start_dev(data_dir, port, pg_port).await;
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
    stop_dev(child).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_second_capstan_dev_says_one_is_running_and_leaves_it_alone() {
    let dir = TempDir::new("capstan-dev-twice");
    let data = dir.0.join("data");
    let (port, pg_port) = (free_port_run(3), free_port());
    let (first, _) = start_dev(&data, port, pg_port).await;
    // Stopped with Ctrl-C even when an assertion fails, so its PostgreSQL goes too.
    let first = StopOnDrop(Some(first));
    let first_pid = first.0.as_ref().unwrap().id();

    // The same data directory: the running instance is named, nothing is touched.
    let second = run_to_end(&data, port, pg_port).await;
    assert!(!second.status.success(), "{second:?}");
    let said = String::from_utf8_lossy(&second.stderr);
    let expected =
        format!("capstan dev is already running here (pid {first_pid}, http://127.0.0.1:{port})");
    assert!(said.contains(&expected), "{said}");

    // Another data directory on the same ports: the taken port is named, and that
    // directory gets no PostgreSQL cluster of its own.
    let other = dir.0.join("other");
    let third = run_to_end(&other, port, pg_port).await;
    assert!(!third.status.success(), "{third:?}");
    let said = String::from_utf8_lossy(&third.stderr);
    assert!(said.contains(&format!("port {port} is taken")), "{said}");
    assert!(!other.join("postgres").join("PG_VERSION").exists());

    // Give a PostgreSQL stopped by mistake time to show in the pings.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_nodes_up(port).await;
    let mut first = first;
    stop_dev(first.0.take().unwrap()).await;
}

struct StopOnDrop(Option<Child>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Runs `capstan dev` that is expected to fail at once, and returns how it ended.
async fn run_to_end(data_dir: &std::path::Path, port: u16, pg_port: u16) -> std::process::Output {
    let mut command = Command::new(capstan_bin());
    command
        .args(["dev", "--data-dir"])
        .arg(data_dir)
        .args([
            "--port",
            &port.to_string(),
            "--pg-port",
            &pg_port.to_string(),
        ])
        .stdin(Stdio::null());
    let run = tokio::task::spawn_blocking(move || command.output().unwrap());
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("capstan dev gave up within 60s")
        .unwrap()
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
