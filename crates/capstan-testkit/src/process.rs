//! Real `capstan server` processes, for what only a separate process can show:
//! SIGKILL, exit codes, log output.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::{ADMIN_KEY, free_port};

/// A `capstan server` child process. Killed on drop.
pub struct ServerProcess {
    pub name: String,
    pub port: u16,
    pub log_path: PathBuf,
    child: Child,
}

/// What a test may set on a server process beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    pub env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts `capstan server` (the binary at `bin`) and waits until it answers HTTP.
    pub async fn start(
        bin: &Path,
        name: &str,
        database_url: &str,
        blob_dir: &Path,
        log_dir: &Path,
        options: ProcessOptions,
    ) -> Self {
        Self::start_on(
            bin,
            name,
            database_url,
            blob_dir,
            log_dir,
            options,
            free_port(),
        )
        .await
    }

    /// Like [`Self::start`], on a given port: to restart a node where a load balancer
    /// expects it.
    pub async fn start_on(
        bin: &Path,
        name: &str,
        database_url: &str,
        blob_dir: &Path,
        log_dir: &Path,
        options: ProcessOptions,
        port: u16,
    ) -> Self {
        let log_path = log_dir.join(format!("{name}.log"));
        // A restarted node appends, so its earlier life's log stays readable.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("creating a log file");
        let mut command = Command::new(bin);
        command
            .arg("server")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CAPSTAN_DATABASE_URL", database_url)
            .env("CAPSTAN_BLOB_URL", format!("file://{}", blob_dir.display()))
            .env("CAPSTAN_LISTEN", format!("127.0.0.1:{port}"))
            .env("CAPSTAN_NODE_NAME", name)
            .env("CAPSTAN_HEARTBEAT_INTERVAL", "200ms")
            .env("CAPSTAN_LEASE_TTL", "1200ms")
            .env("CAPSTAN_SHUTDOWN_GRACE", "5s")
            .env("CAPSTAN_ADMIN_API_KEY", ADMIN_KEY)
            .env("CAPSTAN_MASTER_KEY", crate::TEST_MASTER_KEY)
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawning capstan server");
        let mut process = Self {
            name: name.to_owned(),
            port,
            log_path,
            child,
        };
        process.wait_until_serving().await;
        process
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_serving(&mut self) {
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before serving:\n{}",
                    self.name,
                    self.log()
                );
            }
            if http
                .get(format!("{}/healthz", self.url()))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} did not serve within 20s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown sequence, no last words.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on the child") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{} did not exit within {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `capstan server` with `env` and returns its exit status and output, for
/// start-up failures that must happen quickly.
pub fn run_to_exit(bin: &Path, env: &[(&str, &str)], within: Duration) -> (ExitStatus, String) {
    let mut command = Command::new(bin);
    command
        .arg("server")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("spawning capstan server");
    loop {
        if child.try_wait().expect("waiting").is_some() {
            break;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("capstan server did not exit within {within:?}");
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a synchronous helper, not async code"
        )]
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collecting output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Starts one `capstan server` per name, all at once, sharing a database and a blob
/// directory (which also holds their logs).
pub async fn start_servers(
    bin: &Path,
    names: &[&str],
    database_url: &str,
    dir: &Path,
) -> Vec<ServerProcess> {
    futures::future::join_all(names.iter().map(|name| {
        ServerProcess::start(bin, name, database_url, dir, dir, ProcessOptions::default())
    }))
    .await
}
