//! `capstan-agent register`: trade a registration token for the agent's own
//! credential, and store it.

use std::path::PathBuf;

use capstan_api::RegisterAgentRequest;
use secrecy::SecretString;

use crate::{
    client::{AgentClient, VERSION},
    home::{Home, Registration},
};

/// What to register as, and where to keep the result.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    pub server: String,
    pub token: SecretString,
    pub name: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub home: Home,
    pub ca_cert: Option<PathBuf>,
    /// Replace an existing registration in the home.
    pub force: bool,
}

/// Registers with the server and stores `agent.json`; returns the line to print.
pub async fn register(options: RegisterOptions) -> anyhow::Result<String> {
    let home = &options.home;
    // Checked before the server is asked, so a refusal does not use up the token.
    if !options.force {
        Registration::refuse_existing(home)?;
    }
    home.create()
        .map_err(|e| anyhow::anyhow!("cannot prepare the agent's home: {e}"))?;
    let ca_cert = match &options.ca_cert {
        // Stored absolute: `run` may start from another directory.
        Some(path) => Some(std::path::absolute(path).map_err(|e| {
            anyhow::anyhow!("cannot use the CA certificate {}: {e}", path.display())
        })?),
        None => None,
    };
    let client = AgentClient::new(&options.server, ca_cert.as_deref())?;
    if client.server().starts_with("http://") {
        tracing::warn!(
            "{} is plain HTTP: the token and the agent's credential cross the network unencrypted",
            client.server()
        );
    }
    let request = RegisterAgentRequest {
        name: options.name.trim().to_owned(),
        environment: options.environment.trim().to_owned(),
        tags: options
            .tags
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        version: VERSION.to_owned(),
    };
    let response = client
        .register(&options.token, &request)
        .await
        .map_err(|e| match e.status() {
            Some(status) => anyhow::anyhow!(
                "{} refused the registration ({status}): {}",
                client.server(),
                e.detail()
            ),
            None => anyhow::anyhow!("cannot register: {e}"),
        })?;
    let agent = response.agent;
    let registration = Registration {
        server: client.server().to_owned(),
        agent_id: agent.id,
        name: agent.name.clone(),
        credential: SecretString::from(response.credential),
        ca_cert,
    };
    registration.save(home, options.force).map_err(|e| {
        anyhow::anyhow!(
            "the server registered agent `{}` (id {}) but its credential could not be stored: {e}; \
             delete the agent on the server and register again",
            agent.name,
            agent.id
        )
    })?;
    let tags = if agent.tags.is_empty() {
        "no tags".to_owned()
    } else {
        format!("tags {}", agent.tags.join(", "))
    };
    Ok(format!(
        "registered agent {} (id {}) in environment {} with {tags}; its credential is stored in {}",
        agent.name,
        agent.id,
        agent.environment,
        home.registration().display()
    ))
}
