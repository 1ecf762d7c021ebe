//! A real HAProxy in front of test nodes, health-checking `GET /api/nodes/ping`.

use std::process::{Child, Command, Stdio};

use crate::{TempDir, free_port};

pub struct HaProxy {
    pub port: u16,
    pub stats_port: u16,
    child: Child,
    _dir: TempDir,
}

impl HaProxy {
    /// Starts HAProxy balancing over `backends` (name, port).
    pub fn start(backends: &[(String, u16)]) -> Self {
        Self::start_with(backends, None)
    }

    /// Like [`Self::start`], terminating TLS with `pem` (certificate chain and key).
    pub fn start_tls(backends: &[(String, u16)], pem: &std::path::Path) -> Self {
        Self::start_with(backends, Some(pem))
    }

    fn start_with(backends: &[(String, u16)], tls: Option<&std::path::Path>) -> Self {
        let dir = TempDir::new("capstan-haproxy");
        let port = free_port();
        let stats_port = free_port();
        let servers: String = backends
            .iter()
            .map(|(name, p)| format!("    server {name} 127.0.0.1:{p} check\n"))
            .collect();
        let ssl = tls.map_or(String::new(), |pem| format!(" ssl crt {}", pem.display()));
        let config = format!(
            "global\n    maxconn 1000\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
             \x20   option redispatch\n    retries 3\n    retry-on conn-failure empty-response response-timeout 503\n\
             frontend fe\n    bind 127.0.0.1:{port}{ssl}\n    default_backend nodes\n\
             frontend stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /api/nodes/ping\n    http-check expect status 200\n\
             \x20   default-server inter 300ms fall 2 rise 2\n{servers}"
        );
        let cfg_path = dir.0.join("haproxy.cfg");
        std::fs::write(&cfg_path, config).expect("writing haproxy.cfg");
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&cfg_path)
            .status()
            .expect("haproxy is installed (apt-get install haproxy)");
        assert!(check.success(), "haproxy rejected the test configuration");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting haproxy");
        Self {
            port,
            stats_port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The frontend's URL when started with [`Self::start_tls`].
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Waits until every backend server is `UP`, or panics after `within`.
    pub async fn wait_all_up(&self, within: std::time::Duration) {
        crate::eventually(within, "every server UP in HAProxy", || async {
            let all = self.server_status().await;
            (!all.is_empty() && all.iter().all(|(_, s)| s == "UP")).then_some(())
        })
        .await;
    }

    /// Each backend server's status (`UP`, `DOWN`, ...) from the stats CSV; empty
    /// while HAProxy is still starting.
    pub async fn server_status(&self) -> Vec<(String, String)> {
        let Ok(csv) = reqwest::get(format!("http://127.0.0.1:{}/stats;csv", self.stats_port)).await
        else {
            return Vec::new();
        };
        let text = csv.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("nodes,") && !l.starts_with("nodes,BACKEND"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(',').collect();
                Some((fields.get(1)?.to_string(), fields.get(17)?.to_string()))
            })
            .collect()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
