//! Agents for tests: simulated ones that speak the agent protocol over real HTTP (many
//! fit in one process), and real `capstan-agent` processes.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use capstan_api::{
    ApiClient, CommandResult, CreateRegistrationTokenRequest, EnvironmentRequest, OutputBatch,
    OutputLine, OutputStream, PollResponse, Problem, RegisterAgentRequest, RegisterAgentResponse,
    agents::AGENT_VERSION_HEADER,
};
use reqwest::StatusCode;

/// Creates an environment, tolerating one that exists.
pub async fn ensure_environment(client: &ApiClient, name: &str) {
    let _ = client
        .create_environment(&EnvironmentRequest {
            name: name.to_owned(),
            description: String::new(),
        })
        .await;
}

/// A registration token good for `uses` registrations.
pub async fn registration_token(client: &ApiClient, uses: u32) -> String {
    client
        .create_registration_token(&CreateRegistrationTokenRequest {
            uses: Some(uses),
            ..Default::default()
        })
        .await
        .expect("creating a registration token")
        .token
        .expect("a new token shows its secret")
}

/// An agent simulated in the test process.
#[derive(Clone)]
pub struct SimAgent {
    pub base: String,
    pub id: i64,
    pub name: String,
    pub credential: String,
    http: reqwest::Client,
}

/// An answer that was not a success: its status and problem.
pub type Refusal = (StatusCode, Problem);

impl SimAgent {
    /// Registers through `base` with `token`.
    pub async fn register(
        base: &str,
        token: &str,
        name: &str,
        environment: &str,
        tags: &[&str],
    ) -> Result<Self, Refusal> {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/api/agents/register"))
            .bearer_auth(token)
            .json(&RegisterAgentRequest {
                name: name.to_owned(),
                environment: environment.to_owned(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                version: "sim-1".to_owned(),
            })
            .send()
            .await
            .expect("the node answers");
        let registered: RegisterAgentResponse = json_or_refusal(response).await?;
        Ok(Self {
            base: base.to_owned(),
            id: registered.agent.id,
            name: registered.agent.name,
            credential: registered.credential,
            http,
        })
    }

    /// The same agent talking to another node (or the load balancer).
    pub fn through(&self, base: &str) -> Self {
        Self {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    pub async fn poll(&self, wait_ms: u64) -> Result<PollResponse, Refusal> {
        let response = self
            .http
            .get(format!(
                "{}/api/agent/commands?wait_ms={wait_ms}",
                self.base
            ))
            .bearer_auth(&self.credential)
            .header(AGENT_VERSION_HEADER, "sim-1")
            .send()
            .await
            .expect("the node answers");
        json_or_refusal(response).await
    }

    pub async fn ack(&self, id: i64) -> Result<(), Refusal> {
        self.post(&format!("commands/{id}/ack"), &serde_json::json!(null))
            .await
    }

    pub async fn output(&self, id: i64, lines: &[(u64, &str)]) -> Result<(), Refusal> {
        let batch = OutputBatch {
            lines: lines
                .iter()
                .map(|(seq, text)| OutputLine {
                    seq: *seq,
                    stream: OutputStream::Stdout,
                    text: (*text).to_owned(),
                })
                .collect(),
        };
        self.post(&format!("commands/{id}/output"), &batch).await
    }

    pub async fn result(&self, id: i64, result: &CommandResult) -> Result<(), Refusal> {
        self.post(&format!("commands/{id}/result"), result).await
    }

    /// POSTs JSON to `/api/agent/<path>` with the agent's credential.
    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<(), Refusal> {
        let response = self
            .http
            .post(format!("{}/api/agent/{path}", self.base))
            .bearer_auth(&self.credential)
            .json(body)
            .send()
            .await
            .expect("the node answers");
        if response.status().is_success() {
            return Ok(());
        }
        Err(refusal(response).await)
    }
}

async fn json_or_refusal<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, Refusal> {
    if response.status().is_success() {
        return Ok(response.json().await.expect("a JSON answer"));
    }
    Err(refusal(response).await)
}

async fn refusal(response: reqwest::Response) -> Refusal {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        content_type,
        capstan_api::PROBLEM_JSON,
        "a refusal is problem+json"
    );
    (status, response.json().await.expect("a problem body"))
}

/// What `capstan-agent register` is given.
pub struct Registration<'a> {
    pub server: &'a str,
    pub token: &'a str,
    pub name: &'a str,
    pub environment: &'a str,
    pub tags: &'a [&'a str],
    /// More flags, e.g. `--ca-cert <file>`.
    pub extra_args: &'a [&'a str],
}

/// A real `capstan-agent run` process with its own home directory. Killed on drop.
pub struct AgentProcess {
    pub name: String,
    pub home: PathBuf,
    pub log_path: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    /// Registers `name` with `capstan-agent register` against `server`, then starts
    /// `capstan-agent run`. Async, so a node in the test's own runtime can answer.
    pub async fn register_and_run(
        bin: &Path,
        server: &str,
        token: &str,
        name: &str,
        environment: &str,
        tags: &[&str],
        dir: &Path,
    ) -> Self {
        let registration = Registration {
            server,
            token,
            name,
            environment,
            tags,
            extra_args: &[],
        };
        let mut agent = Self::register(bin, &registration, dir)
            .await
            .unwrap_or_else(|e| panic!("capstan-agent register failed: {e}"));
        agent.start();
        agent
    }

    /// Runs `capstan-agent register` (not `run`); the error is what it printed.
    pub async fn register(
        bin: &Path,
        registration: &Registration<'_>,
        dir: &Path,
    ) -> Result<Self, String> {
        let name = registration.name;
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("creating the agent's home");
        let output = tokio::process::Command::new(bin)
            .args(["register", "--server", registration.server])
            .args(["--token", registration.token, "--name", name])
            .args(["--environment", registration.environment])
            .args(["--tags", &registration.tags.join(",")])
            .args(registration.extra_args)
            .arg("--home")
            .arg(&home)
            .output()
            .await
            .expect("running capstan-agent register");
        if !output.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            log_path: dir.join(format!("{name}.log")),
            home,
            bin: bin.to_owned(),
            child: None,
        })
    }

    /// Starts (or restarts) `capstan-agent run`.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the agent log");
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--home")
            .arg(&self.home)
            .env("RUST_LOG", "info")
            // Short polls move an agent between nodes behind a load balancer within
            // seconds, as a test needs.
            .env("CAPSTAN_POLL_WAIT", "2s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .expect("starting capstan-agent run");
        self.child = Some(child);
    }

    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
