//! Agents: registration and the credentials' reach, the mailbox protocol (simulated
//! agents over real HTTP), and real `capstan-agent` processes running scripts, health
//! checks and surviving a killed node behind HAProxy.

pub(crate) mod fleet;
mod protocol;
pub(crate) mod resume;
mod security;

use std::path::PathBuf;

use capstan_api::{ApiClient, RunScriptRequest, TaskResponse};
use capstan_testkit::agents::{SimAgent, ensure_environment, registration_token};

/// The `capstan-agent` binary, built beside `capstan` by the workspace's test run.
pub fn agent_bin() -> PathBuf {
    let bin = crate::capstan_bin().with_file_name("capstan-agent");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p capstan-agent` (the workspace test run does)",
        bin.display()
    );
    bin
}

/// Registers simulated agents `names` in Production with `tags`, through `base`.
pub async fn sim_agents(
    client: &ApiClient,
    base: &str,
    names: &[&str],
    tags: &[&str],
) -> Vec<SimAgent> {
    ensure_environment(client, "Production").await;
    let token = registration_token(client, names.len() as u32).await;
    let mut agents = Vec::new();
    for name in names {
        agents.push(
            SimAgent::register(base, &token, name, "Production", tags)
                .await
                .unwrap_or_else(|e| panic!("registering {name}: {e:?}")),
        );
    }
    agents
}

/// Queues `script` on the agents with these names.
pub async fn run_script(client: &ApiClient, script: &str, agents: &[&str]) -> TaskResponse {
    client
        .run_script(&RunScriptRequest {
            script: script.to_owned(),
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .expect("queueing a script")
}
