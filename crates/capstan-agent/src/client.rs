//! The HTTP side of the agent protocol: one typed call per endpoint, and errors that
//! say whether a call is worth repeating.
//!
//! Nothing here retries: callers decide, because a poll, an acknowledgement and an
//! output batch each react differently to the same failure. Every call is safe to
//! repeat, possibly through another node behind the load balancer.

use std::{path::Path, time::Duration};

use capstan_api::{
    CommandResult, OutputBatch, PollResponse, Problem, RegisterAgentRequest, RegisterAgentResponse,
    agents::{AGENT_CANCELLING_HEADER, AGENT_VERSION_HEADER},
};
use capstan_core::error_chain;
use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderValue},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};

/// This agent's version, sent with every call.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Slack on top of a poll's wait before the request is given up: the node answers an
/// idle poll after `wait_ms`, and a load balancer may add its own delay.
const POLL_SLACK: Duration = Duration::from_secs(20);

/// Why the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("`{0}` is not a server URL: it must start with https:// or http://")]
    BadServer(String),
    #[error("cannot read the CA certificate {path}: {error}")]
    CaUnreadable { path: String, error: std::io::Error },
    #[error("{path} holds no PEM certificate this agent can use: {reason}")]
    CaInvalid { path: String, reason: String },
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The server answered with an error; `detail` is its problem's detail.
    #[error("{url} answered {status}: {detail}")]
    Status {
        url: String,
        status: StatusCode,
        detail: String,
    },
    /// A successful answer whose body is not what the protocol says.
    #[error("{url} answered with a body this agent cannot read: {reason}")]
    BadBody { url: String, reason: String },
}

impl CallError {
    /// The status the server answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Transport { .. } | Self::BadBody { .. } => None,
        }
    }

    /// Worth repeating after a pause: the server was unreachable, overloaded or
    /// failing. A garbled success counts too, since a misbehaving proxy produces it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::BadBody { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
        }
    }

    /// The credential was refused: revoked, or the agent was disabled.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// The command is not this agent's, is gone, or was cancelled or finished
    /// meanwhile: repeating the call will never succeed.
    pub fn is_gone(&self) -> bool {
        matches!(
            self.status(),
            Some(StatusCode::NOT_FOUND | StatusCode::CONFLICT)
        )
    }

    /// The detail a human should read: the problem's detail when the server sent one.
    pub fn detail(&self) -> String {
        match self {
            Self::Status { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }
}

/// A client for one Capstan server (usually its load balancer).
#[derive(Clone)]
pub struct AgentClient {
    server: String,
    credential: Option<SecretString>,
    /// Agent name for messages; empty before registration.
    agent_name: String,
    /// For protocol calls: bounded by an overall deadline.
    http: reqwest::Client,
    /// For package downloads: no overall deadline, a large package takes as long as
    /// the link needs, but a stalled connection is given up.
    transfer: reqwest::Client,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("server", &self.server)
            .field("agent_name", &self.agent_name)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client for `server` (`https://capstan.example.com`), trusting the system's CA
    /// certificates and, when given, those in the PEM file `ca_cert`.
    pub fn new(server: &str, ca_cert: Option<&Path>) -> Result<Self, SetupError> {
        let server = normalise_server(server)?;
        let extra_roots = match ca_cert {
            Some(path) => read_ca_certificates(path)?,
            None => Vec::new(),
        };
        let builder = || {
            let mut headers = HeaderMap::new();
            headers.insert(AGENT_VERSION_HEADER, HeaderValue::from_static(VERSION));
            let mut builder = reqwest::Client::builder()
                .user_agent(format!("capstan-agent/{VERSION}"))
                .default_headers(headers)
                .connect_timeout(Duration::from_secs(10));
            for root in &extra_roots {
                builder = builder.add_root_certificate(root.clone());
            }
            builder
        };
        let tls = |e: reqwest::Error| SetupError::Tls(error_chain(&e));
        let http = builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(tls)?;
        let transfer = builder()
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(tls)?;
        Ok(Self {
            server,
            credential: None,
            agent_name: String::new(),
            http,
            transfer,
        })
    }

    /// The same client, speaking as a registered agent.
    pub fn with_credential(mut self, agent_name: &str, credential: SecretString) -> Self {
        self.agent_name = agent_name.to_owned();
        self.credential = Some(credential);
        self
    }

    /// The server's base URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The agent's name, once registered.
    pub fn agent_name(&self) -> &str {
        &self.agent_name
    }

    /// `POST /api/agents/register` with a registration token. Not retried by anyone:
    /// a token may have a single use, and the operator is watching.
    pub async fn register(
        &self,
        token: &SecretString,
        request: &RegisterAgentRequest,
    ) -> Result<RegisterAgentResponse, CallError> {
        let url = format!("{}/api/agents/register", self.server);
        let builder = self
            .http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .json(request);
        let response = send(builder, &url).await?;
        read_json(response, &url).await
    }

    /// `GET /api/agent/commands?wait_ms=`: returns as soon as there is work, else
    /// after about `wait` with empty lists. `cancelling` names the commands the agent
    /// was told to cancel and still holds, which are no news to it.
    pub async fn poll(
        &self,
        wait: Duration,
        cancelling: &[i64],
    ) -> Result<PollResponse, CallError> {
        let url = format!(
            "{}/api/agent/commands?wait_ms={}",
            self.server,
            wait.as_millis()
        );
        let mut builder = self
            .authorised(self.http.get(&url))
            .timeout(wait + POLL_SLACK);
        if !cancelling.is_empty() {
            let ids: Vec<String> = cancelling.iter().map(i64::to_string).collect();
            builder = builder.header(AGENT_CANCELLING_HEADER, ids.join(","));
        }
        let response = send(builder, &url).await?;
        read_json(response, &url).await
    }

    /// `POST /api/agent/commands/{id}/ack`: the agent is about to run the command.
    pub async fn ack(&self, command_id: i64) -> Result<(), CallError> {
        let url = format!("{}/api/agent/commands/{command_id}/ack", self.server);
        self.post(&url, None::<&()>).await
    }

    /// `POST /api/agent/commands/{id}/output`.
    pub async fn post_output(&self, command_id: i64, batch: &OutputBatch) -> Result<(), CallError> {
        let url = format!("{}/api/agent/commands/{command_id}/output", self.server);
        self.post(&url, Some(batch)).await
    }

    /// `POST /api/agent/commands/{id}/result`.
    pub async fn post_result(
        &self,
        command_id: i64,
        result: &CommandResult,
    ) -> Result<(), CallError> {
        let url = format!("{}/api/agent/commands/{command_id}/result", self.server);
        self.post(&url, Some(result)).await
    }

    /// `GET {server}{path}` for a package: the response, ready to be read in chunks.
    pub async fn download(&self, path: &str) -> Result<reqwest::Response, CallError> {
        let url = format!("{}{path}", self.server);
        send(self.authorised(self.transfer.get(&url)), &url).await
    }

    async fn post<B: Serialize + ?Sized>(
        &self,
        url: &str,
        body: Option<&B>,
    ) -> Result<(), CallError> {
        let mut builder = self.authorised(self.http.post(url));
        if let Some(body) = body {
            builder = builder.json(body);
        }
        send(builder, url).await?;
        Ok(())
    }

    fn authorised(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(credential) => builder.bearer_auth(credential.expose_secret()),
            None => builder,
        }
    }
}

/// Sends a request; an error status becomes a [`CallError::Status`] with its detail.
async fn send(builder: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response, CallError> {
    let response = builder.send().await.map_err(|e| transport(url, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    Err(CallError::Status {
        url: url.to_owned(),
        status,
        detail: problem_detail(status, &bytes),
    })
}

async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    url: &str,
) -> Result<T, CallError> {
    let bytes = response.bytes().await.map_err(|e| transport(url, e))?;
    serde_json::from_slice(&bytes).map_err(|e| CallError::BadBody {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

fn transport(url: &str, error: reqwest::Error) -> CallError {
    // The URL is in the message already.
    let error = error.without_url();
    CallError::Transport {
        url: url.to_owned(),
        reason: error_chain(&error),
    }
}

/// The `detail` of a problem+json body, or the start of whatever else was sent (a
/// load balancer's HTML page, say).
fn problem_detail(status: StatusCode, bytes: &[u8]) -> String {
    if let Ok(problem) = serde_json::from_slice::<Problem>(bytes) {
        return problem.detail;
    }
    let text: String = String::from_utf8_lossy(bytes).chars().take(300).collect();
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.to_owned()
    }
}

fn normalise_server(server: &str) -> Result<String, SetupError> {
    let trimmed = server.trim().trim_end_matches('/');
    let has_host = |rest: &str| !rest.is_empty() && !rest.starts_with('/');
    match trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
    {
        Some(rest) if has_host(rest) => Ok(trimmed.to_owned()),
        _ => Err(SetupError::BadServer(server.to_owned())),
    }
}

fn read_ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, SetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|error| SetupError::CaUnreadable {
        path: shown.clone(),
        error,
    })?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::CaInvalid {
            path: shown.clone(),
            reason: error_chain(&e),
        })?;
    if certificates.is_empty() {
        return Err(SetupError::CaInvalid {
            path: shown,
            reason: "no `-----BEGIN CERTIFICATE-----` block found".to_owned(),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_and_trimmed() {
        assert_eq!(
            normalise_server("https://capstan.example.com/").unwrap(),
            "https://capstan.example.com"
        );
        assert_eq!(
            normalise_server("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in ["capstan.example.com", "ftp://x", "https://", "https:///x"] {
            assert!(normalise_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problem_detail_prefers_the_problem_then_the_text() {
        let problem = br#"{"type":"about:blank","title":"Conflict","status":409,"detail":"command 7 was cancelled"}"#;
        assert_eq!(
            problem_detail(StatusCode::CONFLICT, problem),
            "command 7 was cancelled"
        );
        assert_eq!(
            problem_detail(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(
            problem_detail(StatusCode::SERVICE_UNAVAILABLE, b""),
            "Service Unavailable"
        );
    }

    #[test]
    fn failures_are_classified_for_retrying() {
        let status = |code: u16| CallError::Status {
            url: "u".to_owned(),
            status: StatusCode::from_u16(code).unwrap(),
            detail: String::new(),
        };
        for transient in [500, 502, 503, 429, 408] {
            assert!(status(transient).is_transient(), "{transient}");
        }
        for permanent in [400, 401, 404, 409, 422] {
            assert!(!status(permanent).is_transient(), "{permanent}");
        }
        assert!(status(401).is_unauthorized());
        assert!(status(404).is_gone() && status(409).is_gone());
        assert!(!status(400).is_gone());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = crate::testing::TempDir::new();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = AgentClient::new("https://x.example", Some(&path)).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = AgentClient::new("https://x.example", Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
