//! Deploying, answering, cancelling and running a script on real agents: each is one
//! row that says who did it to what, and for a script, on which machines.

use std::time::Duration;

use capstan_testkit::ADMIN_KEY;
use serde_json::json;

use super::{Trail, call};
use crate::deployments::{Fleet, step};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn deploys_answers_cancels_and_scripts_are_recorded_with_their_targets() {
    let fleet = Fleet::start(1, 2).await;
    let n = fleet.cluster.node(0).url();
    let approve = json!({
        "name": "Approve",
        "target_tags": ["web"],
        "actions": [{"kind": "manual_intervention", "instructions": "Check"}],
    });
    let (project, release) = fleet
        .release(
            "Gated",
            json!([approve, step("Wait", "sleep 30")]),
            json!([]),
        )
        .await;
    // What setting up the fleet recorded is not under test.
    let mut trail = Trail::new(&n);
    trail.take_all().await;

    let id = fleet
        .deploy(json!({"release_id": release, "environment": "Production"}))
        .await;
    let row = trail.one("deployment.create").await;
    assert_eq!(row["object"]["id"], id.to_string());
    assert_eq!(row["project_id"], project);
    assert_eq!(
        row["object"]["name"], "Gated 0.0.1 to Production",
        "{row:#}"
    );
    assert_eq!(row["after"]["state"], "queued");
    assert!(row["after"]["options"].is_object(), "{row:#}");
    assert_eq!(row["actor"]["kind"], "admin_key");

    let (_, question) = fleet.wait_question(id, WITHIN).await;
    let (status, body) = fleet.answer(id, &question, "proceed").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let row = trail.one("deployment.answer").await;
    assert_eq!(row["after"]["answer"], "proceed");
    assert_eq!(row["after"]["note"], "from the test");
    assert_eq!(row["before"]["state"], "awaiting_intervention");

    crate::deployments::eventually_cell(&fleet, id, "running", WITHIN).await;
    let (status, body) = call(
        &n,
        ADMIN_KEY,
        "POST",
        &format!("/api/deployments/{id}/cancel"),
        Some(json!({"note": "wrong release"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let row = trail.one("deployment.cancel").await;
    assert_eq!(row["after"]["note"], "wrong release");
    assert_eq!(row["before"]["state"], "running");
    // Which machines it was running on.
    let targets = row["before"]["targets"].to_string();
    assert!(
        targets.contains("web01") && targets.contains("web02"),
        "{row:#}"
    );

    // The engine's own progress is not a change made through the API.
    fleet
        .wait_state(id, &["cancelled", "failed", "succeeded"], WITHIN)
        .await;
    let (status, task) = call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/scripts",
        Some(json!({"script": "uptime", "tags": ["web"]})),
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let row = trail.one("script.run").await;
    assert_eq!(
        row["object"]["id"],
        task["id"].as_i64().unwrap().to_string()
    );
    assert_eq!(
        row["object"]["name"], "script on 2 machine(s): web01, web02",
        "{row:#}"
    );
    assert_eq!(
        row["after"]["args"]["command"]["script"], "uptime",
        "{row:#}"
    );
}
