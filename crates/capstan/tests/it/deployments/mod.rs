//! Deployments with real agents: the grid, failure policies, interventions, mutexes
//! and locks, and bad input.

mod bad_input;
mod basics;
mod cancel;
mod cli;
mod conditions;
mod interventions;
mod locks;
mod parking;
mod policies;
mod resume;
mod rollback;

use std::{path::Path, time::Duration};

use capstan_testkit::{TempDir, TestCluster, agents::AgentProcess, eventually};
use serde_json::{Value, json};

use crate::agents::fleet::start_agents;
use crate::projects::Api;

/// A cluster, real agents tagged `web` in environment Production, and the API.
pub struct Fleet {
    pub cluster: TestCluster,
    pub api: Api,
    /// Kept so the agents run as long as the fleet.
    pub _agents: Vec<AgentProcess>,
    pub dir: TempDir,
}

impl Fleet {
    pub async fn start(nodes: usize, agents: usize) -> Self {
        Self::start_with_cap(nodes, None, agents).await
    }

    /// As [`Self::start`], each node running at most `cap` tasks at once.
    pub async fn start_with_cap(nodes: usize, cap: Option<u32>, agents: usize) -> Self {
        let cluster = TestCluster::start_with_caps(&vec![cap; nodes]).await;
        let dir = TempDir::new("capstan-deploy");
        let names: Vec<String> = (1..=agents).map(|i| format!("web{i:02}")).collect();
        let specs: Vec<(&str, &[&str])> =
            names.iter().map(|n| (n.as_str(), &["web"][..])).collect();
        let client = cluster.node(0).client();
        let agents = start_agents(&client, &cluster.node(0).url(), &specs, &dir.0).await;
        let api = Api::new(&cluster.node(0).url());
        Self {
            cluster,
            api,
            _agents: agents,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// A project with `steps` and `variables`, and a release of it: (project, release).
    pub async fn release(&self, name: &str, steps: Value, variables: Value) -> (i64, i64) {
        let project = self.api.project(name).await;
        let (status, body) = self.api.save_process(project, 0, steps).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self.api.save_variables(project, 0, variables).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self
            .api
            .post("/api/releases", json!({ "project_id": project }))
            .await;
        assert_eq!(status, 201, "{body}");
        (project, body["id"].as_i64().unwrap())
    }

    /// Queues a deployment and returns its id.
    pub async fn deploy(&self, request: Value) -> i64 {
        let (status, body) = self.api.post("/api/deployments", request).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Waits until the deployment reaches a state in `states`.
    pub async fn wait_state(&self, id: i64, states: &[&str], within: Duration) -> Value {
        let path = format!("/api/deployments/{id}");
        eventually(
            within,
            &format!("deployment {id} to be {states:?}"),
            || async {
                let (_, body) = self.api.get(&path).await;
                states
                    .contains(&body["state"].as_str().unwrap_or_default())
                    .then_some(body)
            },
        )
        .await
    }

    pub async fn log(&self, deployment: &Value) -> String {
        let client = self.cluster.node(0).client();
        capstan_testkit::tasks::whole_log(&client, deployment["task_id"].as_i64().unwrap()).await
    }
}

/// The cells of `deployment` in step `step`, by target name: their states in action
/// order.
pub fn states_in(deployment: &Value, step: u64) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut found: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for cell in deployment["grid"].as_array().unwrap() {
        if cell["step"] == step {
            found
                .entry(cell["target"].as_str().unwrap().to_owned())
                .or_default()
                .push(cell["state"].as_str().unwrap().to_owned());
        }
    }
    found
}

/// A script step on `web` targets.
pub fn step(name: &str, body: &str) -> Value {
    json!({
        "name": name,
        "target_tags": ["web"],
        "actions": [{ "kind": "script", "syntax": "bash", "body": body }],
    })
}

/// Waits until some cell of deployment `id` is in `state`, and returns it.
pub async fn eventually_cell(fleet: &Fleet, id: i64, state: &str, within: Duration) -> Value {
    let path = format!("/api/deployments/{id}");
    eventually(
        within,
        &format!("a cell of deployment {id} to be {state}"),
        || async {
            let (_, body) = fleet.api.get(&path).await;
            body["grid"]
                .as_array()?
                .iter()
                .find(|c| c["state"] == state)
                .cloned()
        },
    )
    .await
}

/// The cell of `deployment` at `step`, `target`, `action`.
pub fn cell<'a>(deployment: &'a Value, step: u64, target: &str, action: u64) -> &'a Value {
    deployment["grid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == step && c["target"] == target && c["action"] == action)
        .unwrap_or_else(|| panic!("no cell {step}/{target}/{action} in {deployment:#}"))
}

impl Fleet {
    /// Waits until the deployment asks a question that has no answer yet, and returns
    /// the deployment and that question.
    pub async fn wait_question(&self, id: i64, within: Duration) -> (Value, Value) {
        let path = format!("/api/deployments/{id}");
        eventually(within, &format!("deployment {id} to ask"), || async {
            let (_, body) = self.api.get(&path).await;
            if body["state"] != "awaiting_intervention" {
                return None;
            }
            let open = body["interventions"]
                .as_array()?
                .iter()
                .find(|i| i["answer"].is_null())?
                .clone();
            Some((body, open))
        })
        .await
    }

    /// Answers intervention `intervention` of deployment `id`: status and body.
    pub async fn answer(&self, id: i64, intervention: &Value, answer: &str) -> (u16, Value) {
        self.api
            .post(
                &format!(
                    "/api/deployments/{id}/interventions/{}",
                    intervention["id"].as_i64().unwrap()
                ),
                json!({ "answer": answer, "note": "from the test" }),
            )
            .await
    }

    /// The agent commands of the deployment's task.
    pub async fn commands(&self, deployment: &Value) -> Vec<Value> {
        let (status, body) = self
            .api
            .get(&format!("/api/tasks/{}/commands", deployment["task_id"]))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// The names of the machines that left a marker `<prefix><name>` in the fleet's
    /// directory.
    pub fn marked(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir())
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(prefix))
                    .map(str::to_owned)
            })
            .collect();
        names.sort_unstable();
        names
    }
}
