//! Approvals through real nodes and agents: a deployment to an environment with a rule
//! waits parked until enough members of the rule's team approve it (not the person who
//! queued it, unless the rule allows), a denial cancels it, every decision is in the
//! audit log, and approvals arriving on two nodes start it exactly once.

use std::time::Duration;

use capstan_testkit::{ADMIN_KEY, eventually};
use serde_json::{Value, json};

use crate::{
    access::{
        add_member, create_key, create_role, create_team, create_user, environment_id, grant,
    },
    deployments::{Fleet, step},
    identity::{call, detail},
};

const DONE: &[&str] = &["succeeded", "failed", "cancelled", "aborted"];

/// A service account with a key: (id, key).
async fn account(node: &str, name: &str) -> (i64, String) {
    let user = create_user(node, name, "service").await;
    let key = create_key(node, user, json!({ "purpose": "approvals" })).await;
    (user, key["key"].as_str().unwrap().to_owned())
}

/// Everyone who takes part, and the team "release managers" that approves.
struct People {
    deployer: String,
    alice: String,
    bob: String,
    carol: String,
    release_managers: i64,
}

/// deployer may deploy and is in "release managers" too; alice and bob are release
/// managers who may only view; carol may view but is no release manager.
async fn people(node: &str) -> People {
    let viewer = create_role(node, "viewer", &["view"]).await;
    let deployer_role = create_role(node, "deployer of all", &["view", "deploy"]).await;
    let release_managers = create_team(node, "release managers").await;
    grant(node, release_managers, viewer, None, None).await;
    let deployers = create_team(node, "deployers").await;
    grant(node, deployers, deployer_role, None, None).await;
    let lookers = create_team(node, "lookers").await;
    grant(node, lookers, viewer, None, None).await;
    let (deployer_id, deployer) = account(node, "deployer").await;
    add_member(node, deployers, deployer_id).await;
    add_member(node, release_managers, deployer_id).await;
    let (alice_id, alice) = account(node, "alice").await;
    add_member(node, release_managers, alice_id).await;
    let (bob_id, bob) = account(node, "bob").await;
    add_member(node, release_managers, bob_id).await;
    let (carol_id, carol) = account(node, "carol").await;
    add_member(node, lookers, carol_id).await;
    People {
        deployer,
        alice,
        bob,
        carol,
        release_managers,
    }
}

async fn set_rule(node: &str, environment: i64, body: Value) -> (u16, Value) {
    call(
        node,
        ADMIN_KEY,
        "PUT",
        &format!("/api/environments/{environment}/approval-rule"),
        Some(body),
    )
    .await
}

async fn decide(node: &str, key: &str, id: i64, decision: &str, note: &str) -> (u16, Value) {
    call(
        node,
        key,
        "POST",
        &format!("/api/deployments/{id}/{decision}"),
        Some(json!({ "note": note })),
    )
    .await
}

async fn deploy_as(node: &str, key: &str, release: i64) -> i64 {
    let (status, body) = call(
        node,
        key,
        "POST",
        "/api/deployments",
        Some(json!({ "release_id": release, "environment": "Production" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// The deployment's `awaiting_approval` reason, if that is what holds it.
fn awaiting(deployment: &Value) -> Option<&Value> {
    deployment["blocked_by"]["reasons"]
        .as_array()?
        .iter()
        .find(|r| r["reason"] == "awaiting_approval")
}

async fn audit(node: &str, action: &str) -> Vec<Value> {
    let (status, page) = call(
        node,
        ADMIN_KEY,
        "GET",
        &format!("/api/audit?action={action}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn production_needs_two_approvals_not_from_the_deployer_and_a_denial_cancels() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let people = people(&node).await;
    let production = environment_id(&node, "Production").await;
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;

    // Bad rules are refused naming the field.
    for (body, field) in [
        (json!({ "team": "release managers", "needed": 0 }), "needed"),
        (
            json!({ "team": "release managers", "needed": 11 }),
            "needed",
        ),
        (json!({ "team": "nobody at all", "needed": 2 }), "team"),
        (
            json!({ "team": "release managers", "needed": 2, "project_id": 987654 }),
            "project_id",
        ),
    ] {
        let (status, refused) = set_rule(&node, production, body).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["errors"][0]["field"], field, "{refused}");
    }
    let (status, rule) = set_rule(
        &node,
        production,
        json!({ "team": "release managers", "needed": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{rule}");
    assert_eq!(rule["deployer_may_approve"], false, "the safe default");
    let rule_id = rule["id"].as_i64().unwrap();

    let id = deploy_as(&node, &people.deployer, release).await;
    let (_, shown) = fleet.api.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(shown["state"], "queued", "{shown}");
    assert_eq!(
        awaiting(&shown),
        Some(&json!({
            "reason": "awaiting_approval", "given": 0, "needed": 2,
            "team": "release managers", "deployer_may_approve": false,
        })),
        "{shown}"
    );
    assert!(
        shown["blocked_by"]["summary"]
            .as_str()
            .unwrap()
            .contains("awaiting approval: 0 of 2 from team release managers"),
        "{shown}"
    );
    let (status, waiting) = call(&node, &people.alice, "GET", "/api/approvals", None).await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["items"][0]["deployment"]["id"], id, "{waiting}");
    assert_eq!(waiting["items"][0]["queued_by"], "deployer", "{waiting}");

    // The deployer may not approve their own deployment; carol is no member.
    let (status, refused) = decide(&node, &people.deployer, id, "approve", "").await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        detail(&refused).contains(&format!("approval rule {rule_id}"))
            && detail(&refused).contains("queued"),
        "{refused}"
    );
    let (status, refused) = decide(&node, &people.carol, id, "approve", "").await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        detail(&refused).contains("not a member of team release managers"),
        "{refused}"
    );
    let (status, refused) = decide(&node, &people.alice, id, "approve", &"x".repeat(4097)).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "note", "{refused}");

    let (status, after) = decide(&node, &people.alice, id, "approve", "tested on staging").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(awaiting(&after).unwrap()["given"], 1, "{after}");
    assert_eq!(after["state"], "queued");
    let (status, again) = decide(&node, &people.alice, id, "approve", "").await;
    assert_eq!(status, 409, "{again}");

    let (status, after) = decide(&node, &people.bob, id, "approve", "go").await;
    assert_eq!(status, 200, "{after}");
    let done = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let approvals = done["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 2, "{done:#}");
    assert_eq!(approvals[0]["by"], "alice");
    assert_eq!(approvals[0]["decision"], "approve");
    assert_eq!(approvals[0]["note"], "tested on staging");
    assert_eq!(approvals[1]["by"], "bob");
    let (status, late) = decide(&node, &people.carol, id, "approve", "").await;
    assert_eq!(status, 409, "not waiting any more: {late}");

    // A denial cancels the next one, saying who and why.
    let second = deploy_as(&node, &people.deployer, release).await;
    let (status, refused) = decide(&node, &people.bob, second, "deny", "").await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "note", "{refused}");
    let (status, denied) = decide(&node, &people.bob, second, "deny", "not during the sale").await;
    assert_eq!(status, 200, "{denied}");
    let denied = fleet
        .wait_state(second, DONE, Duration::from_secs(30))
        .await;
    assert_eq!(denied["state"], "cancelled", "{denied:#}");
    assert_eq!(denied["error"], "denied by bob: not during the sale");
    assert!(denied["started_at"].is_null(), "{denied:#}");
    let (status, late) = decide(&node, &people.alice, second, "approve", "").await;
    assert_eq!(status, 409, "{late}");

    // Every decision is in the audit log with its note, and so are the rule's changes.
    let approved = audit(&node, "deployment.approve").await;
    assert_eq!(approved.len(), 2, "{approved:#?}");
    assert!(
        approved
            .iter()
            .any(|e| e["after"]["note"] == "tested on staging" && e["actor"]["name"] == "alice"),
        "{approved:#?}"
    );
    let denials = audit(&node, "deployment.deny").await;
    assert_eq!(denials.len(), 1, "{denials:#?}");
    assert_eq!(denials[0]["after"]["note"], "not during the sale");
    assert_eq!(audit(&node, "approval_rule.set").await.len(), 1);

    // The rule's team cannot be deleted from under it.
    let (status, refused) = call(
        &node,
        ADMIN_KEY,
        "DELETE",
        &format!("/api/teams/{}", people.release_managers),
        None,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(detail(&refused).contains("approval rules"), "{refused}");
}

#[tokio::test]
async fn approvals_on_two_nodes_start_the_deployment_exactly_once() {
    let fleet = Fleet::start(2, 1).await;
    let a = fleet.cluster.node(0).url();
    let b = fleet.cluster.node(1).url();
    let people = people(&a).await;
    let production = environment_id(&a, "Production").await;
    let (status, rule) = set_rule(
        &a,
        production,
        json!({ "team": "release managers", "needed": 2, "deployer_may_approve": true }),
    )
    .await;
    assert_eq!(status, 200, "{rule}");
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let id = deploy_as(&a, &people.deployer, release).await;
    let (first, second) = tokio::join!(
        decide(&a, &people.alice, id, "approve", "from a"),
        decide(&b, &people.bob, id, "approve", "from b"),
    );
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 200, "{}", second.1);
    let done = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["approvals"].as_array().unwrap().len(), 2, "{done:#}");
    let task = done["task_id"].as_i64().unwrap();
    let (_, attempts) = fleet.api.get(&format!("/api/tasks/{task}/attempts")).await;
    let ran: Vec<&Value> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] != "parked")
        .collect();
    assert_eq!(ran.len(), 1, "started exactly once: {attempts:#}");
    let log = fleet.log(&done).await;
    assert_eq!(log.matches("deploying release").count(), 1, "{log}");
    assert_eq!(audit(&a, "deployment.approve").await.len(), 2);
}

/// Runs the `capstan` CLI as `key`: success, and its output.
async fn cli(server: &str, key: &str, args: &[&str]) -> (bool, String) {
    let (server, key) = (server.to_owned(), key.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(crate::capstan_bin())
            .args(&args)
            .env("CAPSTAN_SERVER", &server)
            .env("CAPSTAN_API_KEY", &key)
            .output()
            .unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_cli_sets_rules_lists_and_approves_and_deleting_a_rule_lets_a_deployment_start() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let people = people(&node).await;
    let (ok, out) = cli(
        &node,
        ADMIN_KEY,
        &[
            "approvals",
            "rules",
            "set",
            "Production",
            "--team",
            "release managers",
            "--needed",
            "1",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1 from team release managers, not the deployer"),
        "{out}"
    );
    let (ok, out) = cli(&node, &people.alice, &["approvals", "rules", "list"]).await;
    assert!(ok && out.contains("Production"), "{out}");
    let (ok, out) = cli(
        &node,
        ADMIN_KEY,
        &[
            "approvals",
            "rules",
            "set",
            "Production",
            "--team",
            "x",
            "--needed",
            "0",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("needed") && out.contains("team"),
        "{out}"
    );

    let (shop, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let shop = shop.to_string();

    // Shop's own rule in Production overrides the environment's.
    let (ok, out) = cli(
        &node,
        ADMIN_KEY,
        &[
            "approvals",
            "rules",
            "set",
            "Production",
            "--project",
            &shop,
            "--team",
            "release managers",
            "--needed",
            "2",
        ],
    )
    .await;
    assert!(ok && out.contains("Shop in Production"), "{out}");
    let id = deploy_as(&node, &people.deployer, release).await;
    let (_, shown) = fleet.api.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(awaiting(&shown).unwrap()["needed"], 2, "{shown:#}");
    // Without it, the environment's rule holds the deployment again, needing 1.
    let (ok, out) = cli(
        &node,
        ADMIN_KEY,
        &[
            "approvals",
            "rules",
            "delete",
            "Production",
            "--project",
            &shop,
        ],
    )
    .await;
    assert!(ok, "{out}");
    eventually(
        Duration::from_secs(30),
        "the environment's rule to hold the deployment",
        || async {
            let (_, shown) = fleet.api.get(&format!("/api/deployments/{id}")).await;
            (awaiting(&shown).is_some_and(|a| a["needed"] == 1)).then_some(())
        },
    )
    .await;
    let (ok, out) = cli(&node, &people.alice, &["approvals", "list"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("0 of 1 from team release managers"), "{out}");
    assert!(out.contains("queued by deployer"), "{out}");
    let (ok, out) = cli(
        &node,
        &people.alice,
        &["approvals", "approve", &id.to_string(), "--note", "ship it"],
    )
    .await;
    assert!(ok, "{out}");
    let done = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    // A deployment held by a rule that is deleted starts at once.
    let held = deploy_as(&node, &people.deployer, release).await;
    let (_, shown) = fleet.api.get(&format!("/api/deployments/{held}")).await;
    assert!(awaiting(&shown).is_some(), "{shown:#}");
    let (ok, out) = cli(
        &node,
        ADMIN_KEY,
        &["approvals", "rules", "delete", "Production"],
    )
    .await;
    assert!(ok, "{out}");
    let done = fleet.wait_state(held, DONE, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        audit(&node, "approval_rule.delete").await.len(),
        2,
        "both deletions are audited"
    );
    let _ = people.bob;
    let _ = people.carol;
}
