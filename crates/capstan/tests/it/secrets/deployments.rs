//! A release's sensitive variable in a deployment: sealed in every table, opened only
//! as a command is handed to its agent, masked line by line in every log and answer.

use std::time::Duration;

use capstan_api::ApiClient;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase, eventually,
    process::{ProcessOptions, ServerProcess},
};
use serde_json::json;

use crate::{
    agents::fleet::start_agents, capstan_bin, projects::Api, projects::variables::tables_holding,
};

/// A private key, as a sensitive value of several lines would be.
const KEY: &str = "-----BEGIN TEST PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDeploymentKey1
ZT1pN6yVb3mKdA5sHfE7gU0iRtXoW2lYzQnPjMvXc8Hd0aS1fKq3Lr9BnTeWu6Y
-----END TEST PRIVATE KEY-----";

#[tokio::test]
async fn a_deployments_multi_line_secret_reaches_the_agent_whole_and_nowhere_else_in_clear() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-deploy-secret");
    let node = ServerProcess::start(
        &capstan_bin(),
        "sealing",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![("RUST_LOG".into(), "debug".into())],
        },
    )
    .await;
    let client = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let _agents = start_agents(&client, &node.url(), &[("web01", &["web"])], &dir.0).await;
    let received = dir.0.join("received.key");
    let api = Api::new(&node.url());
    let project = api.project("Shop").await;
    let script = format!(
        "printf '%s' \"#{{TlsKey}}\" > {}\necho \"the key is:\"\necho \"#{{TlsKey}}\"",
        received.display()
    );
    let (status, body) = api
        .save_process(
            project,
            0,
            json!([{ "name": "Install key", "target_tags": ["web"],
                     "actions": [{ "kind": "script", "syntax": "bash", "body": script }] }]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .save_variables(
            project,
            0,
            json!([{ "name": "TlsKey", "value": KEY, "sensitive": true }]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, release) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    let (status, deployment) = api
        .post(
            "/api/deployments",
            json!({ "release_id": release["id"], "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    let path = format!("/api/deployments/{}", deployment["id"]);
    let done = eventually(Duration::from_secs(30), "the deployment to end", || async {
        let (_, body) = api.get(&path).await;
        matches!(body["state"].as_str(), Some("succeeded" | "failed")).then_some(body)
    })
    .await;
    let log = capstan_testkit::tasks::whole_log(&client, done["task_id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(std::fs::read_to_string(&received).unwrap(), KEY);
    assert!(log.contains("web01: ********"), "{log}");

    let node_log = node.log();
    let answer = done.to_string();
    for line in KEY.lines() {
        assert_eq!(
            tables_holding(&db.url, line).await,
            Vec::<String>::new(),
            "{line:?} is stored in clear"
        );
        assert!(!node_log.contains(line), "the node logged {line:?}");
        assert!(
            !log.contains(line),
            "the deployment's log shows {line:?}:\n{log}"
        );
        assert!(!answer.contains(line), "the API answer shows {line:?}");
    }
}
