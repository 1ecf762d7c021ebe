//! `/approvals`: a deployment waiting for the viewer's team is denied without a note
//! (refused beside the note), then approved, and runs.

use std::time::Duration;

use capstan_testkit::ADMIN_KEY;
use serde_json::json;

use super::{
    agents::{notice_says, problem_says},
    signed_in,
};
use crate::{
    access::{add_member, create_team, environment_id},
    deployments::{Fleet, step},
    identity::call,
};

#[tokio::test]
async fn a_deployment_awaiting_approval_is_approved_from_the_page() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let browser = signed_in(&node, "approver").await;
    let (_, users) = call(&node, ADMIN_KEY, "GET", "/api/users?name=approver", None).await;
    let approver = users["items"][0]["id"].as_i64().unwrap();
    let team = create_team(&node, "release managers").await;
    add_member(&node, team, approver).await;
    let production = environment_id(&node, "Production").await;
    let (status, rule) = call(
        &node,
        ADMIN_KEY,
        "PUT",
        &format!("/api/environments/{production}/approval-rule"),
        Some(json!({ "team": "release managers", "needed": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{rule}");
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;

    browser.open(&format!("{node}/approvals")).await;
    let waiting = browser.text(&format!("#deployment-{id}")).await;
    assert!(
        waiting.contains("Shop")
            && waiting.contains("0 of 1")
            && waiting.contains("release managers"),
        "{waiting}"
    );
    browser.screenshot("approvals").await;
    browser.assert_accessible("the approvals page").await;

    // A denial must say why: refused beside the note, and the deployment still waits.
    browser
        .click(&format!("#deployment-{id} button[value=deny]"))
        .await;
    problem_says(&browser, "note").await;
    browser.find(&format!("#note-{id}-error")).await;
    browser.assert_accessible("the refused denial").await;
    let (_, shown) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/deployments/{id}"),
        None,
    )
    .await;
    assert_eq!(shown["state"], "queued", "{shown}");

    browser
        .fill(&format!("#note-{id}"), "looked at the diff")
        .await;
    browser
        .click(&format!("#deployment-{id} button[value=approve]"))
        .await;
    notice_says(&browser, &format!("Deployment {id} is approved")).await;
    let done = fleet
        .wait_state(
            id,
            &["succeeded", "failed", "cancelled"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["approvals"][0]["by"], "approver", "{done}");
    assert_eq!(done["approvals"][0]["note"], "looked at the diff", "{done}");
}
