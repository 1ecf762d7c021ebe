//! The `capstan` CLI against a real server: deploy and follow to the end, list, show
//! and answer a question.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, step};
use crate::cli::capstan;

async fn run(server: &str, args: &[&str]) -> (bool, String) {
    let server = server.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capstan(&server, &args)
    })
    .await
    .unwrap()
}

async fn version(fleet: &Fleet, release: i64) -> String {
    let (status, body) = fleet.api.get(&format!("/api/releases/{release}")).await;
    assert_eq!(status, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_deploys_follows_lists_shows_and_intervenes() {
    let fleet = Fleet::start(1, 2).await;
    let server = fleet.cluster.node(0).url();

    let (_, good) = fleet
        .release("Good", json!([step("Deploy", "echo deploying")]), json!([]))
        .await;
    let good = version(&fleet, good).await;
    let (ok, out) = run(
        &server,
        &[
            "deploy",
            "--project",
            "Good",
            "--release",
            &good,
            "--environment",
            "Production",
            "--follow",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("STEP") && out.contains("Deploy"), "{out}");
    assert!(out.contains("succeeded"), "{out}");

    let (_, bad) = fleet
        .release(
            "Bad",
            json!([step("Deploy", "echo broken >&2; exit 5")]),
            json!([]),
        )
        .await;
    let bad = version(&fleet, bad).await;
    let (ok, out) = run(
        &server,
        &[
            "deploy",
            "--project",
            "Bad",
            "--release",
            &bad,
            "--environment",
            "Production",
            "--follow",
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("failed"), "{out}");

    let (ok, out) = run(&server, &["deployments", "list"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("Good") && out.contains("Bad"), "{out}");
    let (ok, out) = run(&server, &["deployments", "list", "--state", "failed"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("Bad") && !out.contains("Good"), "{out}");

    // A question, answered from the CLI.
    let approve = json!({
        "name": "Approve",
        "target_tags": ["web"],
        "actions": [{ "kind": "manual_intervention", "instructions": "Say when" }],
    });
    let (project, release) = fleet
        .release(
            "Gated",
            json!([approve, step("Deploy", "echo after")]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let (_, question) = fleet.wait_question(id, Duration::from_secs(60)).await;
    let (ok, out) = run(&server, &["deployments", "show", &id.to_string()]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("awaiting_intervention") && out.contains("Say when"),
        "{out}"
    );
    let iid = question["id"].to_string();
    let (ok, out) = run(
        &server,
        &[
            "deployments",
            "intervene",
            &id.to_string(),
            &iid,
            "--proceed",
            "--note",
            "ok",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let done = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let (ok, out) = run(
        &server,
        &[
            "deployments",
            "intervene",
            &id.to_string(),
            &iid,
            "--proceed",
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("409"), "{out}");
    let (ok, out) = run(&server, &["deployments", "show", &id.to_string()]).await;
    assert!(ok, "{out}");
    assert!(out.contains("succeeded"), "{out}");
}
