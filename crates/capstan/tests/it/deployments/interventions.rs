//! Manual interventions: the deployment pauses once for the step, shows the
//! instructions, and goes on at `proceed` or fails at `abort`.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, states_in, step};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_manual_intervention_pauses_until_proceed_and_fails_at_abort() {
    let fleet = Fleet::start(1, 3).await;
    let approve = json!({
        "name": "Approve",
        "target_tags": ["web"],
        "actions": [{
            "kind": "manual_intervention",
            "instructions": "Check the dashboard is green",
            "responsible_role": "release manager",
        }, {
            "kind": "script",
            "name": "approved",
            "body": "echo approved on #{Capstan.Machine.Name}",
        }],
    });
    let (project, release) = fleet
        .release(
            "Gated",
            json!([
                step("Before", "echo before on #{Capstan.Machine.Name}"),
                approve,
                step("Deploy", "echo deploying on #{Capstan.Machine.Name}"),
            ]),
            json!([]),
        )
        .await;
    let request =
        json!({ "release_id": release, "environment": "Production", "project_id": project });

    let id = fleet.deploy(request.clone()).await;
    let (asking, question) = fleet.wait_question(id, WITHIN).await;
    assert_eq!(question["kind"], "manual", "{asking:#}");
    assert_eq!(question["step"], 1);
    assert!(
        question["question"]
            .as_str()
            .unwrap()
            .contains("Check the dashboard is green"),
        "{question:#}"
    );
    assert_eq!(question["responsible_role"], "release manager");
    assert!(
        states_in(&asking, 2)
            .values()
            .all(|s| s.iter().all(|s| s == "pending" || s == "waiting")),
        "{asking:#}"
    );
    let (status, body) = fleet.answer(id, &question, "proceed").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    let interventions = done["interventions"].as_array().unwrap();
    assert_eq!(interventions.len(), 1, "asked once for the step: {done:#}");
    assert_eq!(interventions[0]["answer"]["answer"], "proceed");
    let approved = states_in(&done, 1);
    assert_eq!(approved.len(), 3, "{done:#}");
    assert!(
        approved.values().all(|s| s == &["succeeded", "succeeded"]),
        "{done:#}"
    );
    assert!(log.contains("web03: approved on web03"), "{log}");
    let deployed = states_in(&done, 2);
    assert_eq!(deployed.len(), 3);
    assert!(deployed.values().all(|s| s == &["succeeded"]), "{done:#}");

    let id = fleet.deploy(request.clone()).await;
    let (_, question) = fleet.wait_question(id, WITHIN).await;
    let (status, body) = fleet.answer(id, &question, "abort").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "failed", "{done:#}\n{log}");
    assert!(!log.contains("deploying on"), "{log}");
    let (status, body) = fleet.answer(id, &question, "proceed").await;
    assert_eq!(status, 409, "{body}");

    // Two operators answer at once: one answer counts, the other is refused.
    let id = fleet.deploy(request).await;
    let (_, question) = fleet.wait_question(id, WITHIN).await;
    let (proceeded, aborted) = tokio::join!(
        fleet.answer(id, &question, "proceed"),
        fleet.answer(id, &question, "abort"),
    );
    let mut statuses = [proceeded.0, aborted.0];
    statuses.sort_unstable();
    assert!(
        (200..300).contains(&statuses[0]) && statuses[1] == 409,
        "{proceeded:?} {aborted:?}"
    );
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let winner = if proceeded.0 == 409 {
        "abort"
    } else {
        "proceed"
    };
    assert_eq!(
        done["interventions"][0]["answer"]["answer"], winner,
        "{done:#}"
    );
    let state = if winner == "proceed" {
        "succeeded"
    } else {
        "failed"
    };
    assert_eq!(done["state"], state, "{done:#}");
}

#[tokio::test]
async fn an_answer_or_a_cancel_given_to_another_node_reaches_the_deployment() {
    let fleet = Fleet::start(2, 2).await;
    let other = crate::projects::Api::new(&fleet.cluster.node(1).url());
    let approve = json!({
        "name": "Approve",
        "target_tags": ["web"],
        "actions": [{ "kind": "manual_intervention", "instructions": "Go?" }],
    });
    let (project, release) = fleet
        .release(
            "Elsewhere",
            json!([
                approve,
                step(
                    "Deploy",
                    "sleep 0.2; echo deployed on #{Capstan.Machine.Name}"
                )
            ]),
            json!([]),
        )
        .await;
    let request =
        json!({ "release_id": release, "environment": "Production", "project_id": project });

    let id = fleet.deploy(request.clone()).await;
    let (_, question) = fleet.wait_question(id, WITHIN).await;
    let (status, body) = other
        .post(
            &format!("/api/deployments/{id}/interventions/{}", question["id"]),
            json!({ "answer": "proceed" }),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    let id = fleet.deploy(request).await;
    fleet.wait_question(id, WITHIN).await;
    let (status, body) = other
        .post(&format!("/api/deployments/{id}/cancel"), json!({}))
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet
        .wait_state(id, &["cancelled", "failed", "succeeded"], WITHIN)
        .await;
    assert_eq!(done["state"], "cancelled", "{done:#}");
    assert!(
        states_in(&done, 1)
            .values()
            .all(|s| s.iter().all(|s| s != "succeeded")),
        "{done:#}"
    );
}
