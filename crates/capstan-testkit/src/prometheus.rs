//! A real Prometheus scraping test nodes and evaluating alerting rules, both every second.

use std::{
    path::Path,
    process::{Child, Command},
    time::Duration,
};

use serde_json::Value;

use crate::{TempDir, eventually, free_port};

/// A Prometheus child process with its own storage. Killed on drop.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: serde_json::Map<String, Value>,
    pub annotations: serde_json::Map<String, Value>,
}

impl Alert {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).and_then(Value::as_str)
    }

    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.get(name).and_then(Value::as_str)
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`) as job `job` and evaluating
    /// the rules in `rule_file`, each every second, and waits until its API answers.
    pub async fn start(job: &str, targets: &[String], rule_file: &Path) -> Self {
        let dir = TempDir::new("capstan-prometheus");
        let port = free_port();
        let targets = targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - \"{rules}\"\n\
             scrape_configs:\n  - job_name: \"{job}\"\n    static_configs:\n      - targets: [{targets}]\n",
            rules = rule_file.display(),
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("creating a log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (apt-get install prometheus)");
        let mut prometheus = Self { port, child, dir };
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", prometheus.url());
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", prometheus.log());
            }
            if http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return prometheus;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "prometheus was not ready within 20s:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything Prometheus has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `promql` evaluates to now, as `(labels, value)` pairs.
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, Value>, f64)> {
        let body = self.get("/api/v1/query", &[("query", promql)]).await;
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("no vector for `{promql}`: {body}"))
            .iter()
            .map(|sample| {
                let labels = sample["metric"].as_object().cloned().unwrap_or_default();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// Every pending or firing alert.
    pub async fn alerts(&self) -> Vec<Alert> {
        let body = self.get("/api/v1/alerts", &[]).await;
        body["data"]["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("no alerts in {body}"))
            .iter()
            .map(|a| {
                let labels = a["labels"].as_object().cloned().unwrap_or_default();
                Alert {
                    name: labels
                        .get("alertname")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    state: a["state"].as_str().unwrap_or_default().to_owned(),
                    annotations: a["annotations"].as_object().cloned().unwrap_or_default(),
                    labels,
                }
            })
            .collect()
    }

    /// Waits until `up{job}` reports `count` targets, all up.
    pub async fn wait_for_targets_up(&self, job: &str, count: usize, within: Duration) {
        let query = format!("up{{job=\"{job}\"}}");
        eventually(
            within,
            &format!("{count} targets of job {job} up"),
            || async {
                let up = self.query(&query).await;
                (up.len() == count && up.iter().all(|(_, v)| *v == 1.0)).then_some(())
            },
        )
        .await;
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} from prometheus: {e}"));
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path} from prometheus: not JSON: {e}"));
        assert!(
            status.is_success(),
            "GET {path} from prometheus: {status} {body}"
        );
        body
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
