//! Real `capstan server` processes for a benchmark: started on free ports with
//! production defaults, stopped with SIGTERM.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The admin key the benchmark nodes accept.
pub const ADMIN_KEY: &str = "loadtest-admin-key-0123456789";

/// One running node.
pub struct BenchNode {
    pub name: String,
    pub url: String,
    pub log: PathBuf,
    child: Child,
}

impl BenchNode {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a machine that dies would; waits for the process to be gone.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Resident memory in MiB, from `/proc`.
    pub fn rss_mib(&self) -> Option<f64> {
        rss_mib(self.pid())
    }
}

/// Resident memory of process `pid` in MiB, from `/proc`; `None` once it has exited.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) process `pid` has used so far, in seconds, from `/proc`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // utime and stime are fields 14 and 15 of stat(5); the state (field 3) comes first.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    Some((utime + stime) / 100.0)
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `capstan` binary: `$CAPSTAN_BIN`, or the release build of this workspace.
fn capstan_bin() -> PathBuf {
    std::env::var_os("CAPSTAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/capstan")
        })
}

/// Starts `count` nodes with task cap `cap` on `database_url` and waits until each
/// answers ping. `extra_env` adds settings (log level, format).
pub async fn start(
    count: usize,
    cap: u32,
    database_url: &str,
    log_dir: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Vec<BenchNode>> {
    let bin = capstan_bin();
    if !bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p capstan`",
            bin.display()
        );
    }
    let mut nodes = Vec::new();
    for i in 1..=count {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let name = format!("bench-{i}");
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(&bin);
        command
            .arg("server")
            .env("CAPSTAN_DATABASE_URL", database_url)
            .env("CAPSTAN_BLOB_URL", "memory://")
            .env("CAPSTAN_LISTEN", format!("127.0.0.1:{port}"))
            .env("CAPSTAN_NODE_NAME", &name)
            .env("CAPSTAN_TASK_CAP", cap.to_string())
            .env("CAPSTAN_ADMIN_API_KEY", ADMIN_KEY)
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        nodes.push(BenchNode {
            name,
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
        });
    }
    let http = reqwest::Client::new();
    for node in &mut nodes {
        let started = Instant::now();
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "{} exited with {status}:\n{}",
                    node.name,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
            let ready = http
                .get(format!("{}/api/nodes/ping", node.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{} did not answer ping within 30 s", node.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(nodes)
}

/// SIGTERM to every node, then waits for them to exit.
pub async fn stop(mut nodes: Vec<BenchNode>) {
    for node in &mut nodes {
        // One killed on purpose is gone already; its pid may be someone else's now.
        if node.child.try_wait().ok().flatten().is_some() {
            continue;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &node.pid().to_string()])
            .status();
    }
    for mut node in nodes {
        let started = Instant::now();
        while node.child.try_wait().ok().flatten().is_none()
            && started.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
