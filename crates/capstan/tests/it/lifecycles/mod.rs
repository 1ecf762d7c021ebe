//! Lifecycles through real nodes and agents: promotion order enforced when a
//! deployment is queued, and bad lifecycles refused naming the field.

mod automation;
mod dashboard;
mod retention;
mod superseding;
mod update;

use std::time::Duration;

use capstan_testkit::{TestCluster, agents::ensure_environment};
use serde_json::{Value, json};

use crate::{
    deployments::{Fleet, step},
    projects::Api,
};

pub const DONE: &[&str] = &["succeeded", "failed", "cancelled", "aborted"];

/// Moves agent `name` into `environment`.
pub async fn move_agent(fleet: &Fleet, name: &str, environment: &str) {
    let (status, agents) = fleet.api.get("/api/agents").await;
    assert_eq!(status, 200, "{agents}");
    let id = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, body) = fleet
        .api
        .call(
            "PATCH",
            &format!("/api/agents/{id}"),
            Some(json!({ "environment": environment })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn standard() -> Value {
    json!({
        "name": "Standard",
        "phases": [
            { "name": "Dev", "environments": ["Dev"], "rule": "all" },
            { "name": "Test", "environments": ["Test", "Staging"], "rule": "at_least", "min_count": 1 },
            { "name": "Prod", "environments": ["Production"], "rule": "all" },
        ]
    })
}

pub async fn deploy_and_finish(fleet: &Fleet, release: i64, environment: &str) {
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": environment }))
        .await;
    let shown = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
    assert_eq!(shown["state"], "succeeded", "{shown}");
}

#[tokio::test]
async fn a_release_is_promoted_dev_then_one_of_test_or_staging_then_production() {
    let fleet = Fleet::start(1, 4).await;
    let client = fleet.cluster.node(0).client();
    for environment in ["Dev", "Test", "Staging"] {
        ensure_environment(&client, environment).await;
    }
    move_agent(&fleet, "web01", "Dev").await;
    move_agent(&fleet, "web02", "Test").await;
    move_agent(&fleet, "web03", "Staging").await;
    let (project, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (_, shown) = fleet.api.get(&format!("/api/releases/{release}")).await;
    let version = shown["version"].as_str().unwrap().to_owned();

    let (status, lifecycle) = fleet.api.post("/api/lifecycles", standard()).await;
    assert_eq!(status, 201, "{lifecycle}");
    assert_eq!(
        lifecycle["phases"][1]["environments"],
        json!(["Staging", "Test"])
    );
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": lifecycle["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let to_production = json!({ "release_id": release, "environment": "Production" });
    let (status, refused) = fleet
        .api
        .post("/api/deployments", to_production.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["detail"],
        format!(
            "release {version} has not completed phase Dev: it needs a successful deployment to 1 of Dev"
        )
    );

    deploy_and_finish(&fleet, release, "Dev").await;
    let (status, refused) = fleet
        .api
        .post("/api/deployments", to_production.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["detail"],
        format!(
            "release {version} has not completed phase Test: it needs a successful deployment to 1 of Staging, Test"
        )
    );

    // One of the two is enough.
    deploy_and_finish(&fleet, release, "Staging").await;
    deploy_and_finish(&fleet, release, "Production").await;

    // Without a lifecycle, anything goes anywhere again.
    let (_, second) = fleet
        .api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "release_id": second["id"], "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": null }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    deploy_and_finish(&fleet, second["id"].as_i64().unwrap(), "Production").await;

    let (status, audit) = fleet.api.get("/api/audit?action=project.lifecycle").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
}

#[tokio::test]
async fn bad_lifecycles_are_refused_naming_the_field() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let client = cluster.node(0).client();
    for environment in ["Dev", "Test"] {
        ensure_environment(&client, environment).await;
    }
    let cases = [
        (
            json!([
                { "name": "Dev", "environments": ["Dev"], "rule": "all" },
                { "name": "Test", "environments": ["Test", "dev"], "rule": "all" },
            ]),
            "phases[1].environments[1]",
            "already in phase `Dev`",
        ),
        (
            json!([{ "name": "Dev", "environments": [], "rule": "optional" }]),
            "phases[0].environments",
            "has no environment",
        ),
        (
            json!([{ "name": "Dev", "environments": ["Dev", "Test"], "rule": "at_least", "min_count": 3 }]),
            "phases[0].min_count",
            "from 1 to 2, not 3",
        ),
        (
            json!([{ "name": "Dev", "environments": ["Nowhere"], "rule": "all" }]),
            "phases[0].environments[0]",
            "there is no environment `Nowhere`",
        ),
        (json!([]), "phases", "at least one phase"),
    ];
    for (phases, field, words) in cases {
        let (status, body) = api
            .post(
                "/api/lifecycles",
                json!({ "name": "Bad", "phases": phases }),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["detail"].as_str().unwrap().contains(words)),
            "{field}: {body}"
        );
    }
    let (_, listed) = api.get("/api/lifecycles").await;
    assert_eq!(listed["items"], json!([]));

    let project = api.project("Shop").await;
    let (status, body) = api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": 987_654 }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "lifecycle_id");
}

pub async fn cli(server: &str, args: &[&str]) -> (bool, String) {
    let server = server.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::capstan(&server, &args)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_cli_creates_lists_shows_and_deletes_lifecycles() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let client = cluster.node(0).client();
    for environment in ["Dev", "Test", "Staging", "Production"] {
        ensure_environment(&client, environment).await;
    }
    let (ok, out) = cli(
        &server,
        &[
            "lifecycles",
            "create",
            "Standard",
            "--phase",
            "Dev=Dev",
            "--phase",
            "Test=Test,Staging:1",
            "--phase",
            "Prod=Production",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("created lifecycle"), "{out}");
    let (ok, out) = cli(&server, &["lifecycles", "show", "standard"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("at least 1 of Staging, Test"), "{out}");
    let (ok, out) = cli(&server, &["lifecycles", "list"]).await;
    assert!(ok && out.contains("Standard"), "{out}");
    let (ok, out) = cli(
        &server,
        &["lifecycles", "create", "Bad", "--phase", "Dev=Dev,Dev"],
    )
    .await;
    assert!(!ok && out.contains("phases[0].environments[1]"), "{out}");
    let (ok, out) = cli(&server, &["lifecycles", "delete", "Standard"]).await;
    assert!(ok, "{out}");
    let (_, out) = cli(&server, &["lifecycles", "list"]).await;
    assert!(!out.contains("Standard"), "{out}");
}
