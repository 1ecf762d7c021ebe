//! A deployment waiting for an operator holds no slot of any node's task cap: it parks
//! in the queue, says why, and comes back when answered.

use std::time::Duration;

use capstan_testkit::eventually;
use serde_json::json;

use super::{Fleet, step};

#[tokio::test]
async fn a_guided_failure_parks_the_deployment_without_a_slot_until_it_is_answered() {
    let fleet = Fleet::start_with_cap(1, Some(1), 2).await;
    let mut failing = step(
        "Deploy",
        "[ \"#{Capstan.Machine.Name}\" = web02 ] && exit 4; true",
    );
    failing["failure_policy"] = json!({ "mode": "guided" });
    let (_, release) = fleet
        .release("Shop", json!([failing, step("After", "true")]), json!([]))
        .await;
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let waiting = fleet
        .wait_state(id, &["awaiting_intervention"], Duration::from_secs(30))
        .await;
    let question = waiting["interventions"][0].clone();
    assert_eq!(question["kind"], "guided_failure");
    assert_eq!(question["target"], "web02");
    assert!(
        question["question"]
            .as_str()
            .unwrap()
            .contains("exited with code 4"),
        "{question}"
    );
    let task = waiting["task_id"].as_i64().unwrap();

    // Parked: back in the queue, the node's one slot free, and the reason given.
    let parked = eventually(
        Duration::from_secs(15),
        "the deployment to park",
        || async {
            let (_, body) = fleet.api.get(&format!("/api/tasks/{task}")).await;
            (body["state"] == "queued").then_some(body)
        },
    )
    .await;
    assert_eq!(
        parked["blocked_by"]["reasons"][0],
        json!({ "reason": "intervention", "intervention_id": question["id"] }),
        "{parked:#}"
    );
    let (_, nodes) = fleet.api.get("/api/nodes").await;
    assert_eq!(nodes[0]["running_tasks"], 0, "{nodes:#}");
    let (_, shown) = fleet.api.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(shown["state"], "awaiting_intervention");
    assert!(
        shown["blocked_by"]["summary"]
            .as_str()
            .unwrap()
            .contains("awaiting an operator's answer"),
        "{shown:#}"
    );
    // The slot really is free: another task runs meanwhile.
    let (status, other) = fleet
        .api
        .post(
            "/api/tasks",
            json!({ "kind": "sleep", "args": { "ms": 10 } }),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    eventually(Duration::from_secs(10), "another task to run", || async {
        let (_, body) = fleet.api.get(&format!("/api/tasks/{}", other["id"])).await;
        (body["state"] == "succeeded").then_some(())
    })
    .await;

    let (status, body) = fleet
        .api
        .post(
            &format!("/api/deployments/{id}/interventions/{}", question["id"]),
            json!({ "answer": "ignore", "note": "known flaky box" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(30))
        .await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(done["interventions"][0]["answer"]["answer"], "ignore");
    assert_eq!(
        done["interventions"][0]["answer"]["note"],
        "known flaky box"
    );
    assert_eq!(done["interventions"][0]["answer"]["by"]["who"], "admin key");
    assert!(log.contains("gives its slot back"), "{log}");
    let (_, attempts) = fleet.api.get(&format!("/api/tasks/{task}/attempts")).await;
    assert!(attempts.to_string().contains("parked"), "{attempts:#}");
    // The step after ran on both machines.
    let after = super::states_in(&done, 1);
    assert_eq!(after["web01"], ["succeeded"]);
    assert_eq!(after["web02"], ["succeeded"]);
}

#[tokio::test]
async fn a_parked_deployment_can_be_cancelled_and_its_question_is_then_closed_to_answers() {
    let fleet = Fleet::start_with_cap(1, Some(1), 1).await;
    let mut failing = step("Deploy", "exit 2");
    failing["failure_policy"] = json!({ "mode": "guided" });
    let (_, release) = fleet.release("Shop", json!([failing]), json!([])).await;
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let waiting = fleet
        .wait_state(id, &["awaiting_intervention"], Duration::from_secs(30))
        .await;
    let task = waiting["task_id"].as_i64().unwrap();
    eventually(
        Duration::from_secs(15),
        "the deployment to park",
        || async {
            let (_, body) = fleet.api.get(&format!("/api/tasks/{task}")).await;
            (body["state"] == "queued").then_some(())
        },
    )
    .await;
    let (status, body) = fleet
        .api
        .post(
            &format!("/api/deployments/{id}/cancel"),
            json!({ "note": "not today" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let done = fleet
        .wait_state(id, &["cancelled"], Duration::from_secs(10))
        .await;
    assert_eq!(done["stopped_by"]["who"], "admin key", "{done:#}");
    let question = &done["interventions"][0];
    let (status, body) = fleet
        .api
        .post(
            &format!("/api/deployments/{id}/interventions/{}", question["id"]),
            json!({ "answer": "retry" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, task) = fleet.api.get(&format!("/api/tasks/{task}")).await;
    assert_eq!(task["state"], "cancelled", "{task:#}");
}

#[tokio::test]
async fn an_answer_given_with_a_service_accounts_key_names_that_account() {
    let fleet = Fleet::start(1, 1).await;
    let manual = json!({
        "name": "Approve",
        "target_tags": ["web"],
        "actions": [{ "kind": "manual_intervention", "instructions": "Check the dashboards" }],
    });
    let (_, release) = fleet.release("Shop", json!([manual]), json!([])).await;
    let (status, user) = fleet
        .api
        .post(
            "/api/users",
            json!({ "name": "release-bot", "kind": "service" }),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let (status, key) = fleet
        .api
        .post(
            &format!("/api/users/{}/api-keys", user["id"]),
            json!({ "purpose": "answers" }),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    crate::access::make_administrator(&fleet.cluster.node(0).url(), "release-bot").await;
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let waiting = fleet
        .wait_state(id, &["awaiting_intervention"], Duration::from_secs(30))
        .await;
    let question = &waiting["interventions"][0];
    let answered = reqwest::Client::new()
        .post(format!(
            "{}/api/deployments/{id}/interventions/{}",
            fleet.cluster.node(0).url(),
            question["id"]
        ))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({ "answer": "proceed", "note": "dashboards green" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let done = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let by = &done["interventions"][0]["answer"]["by"];
    assert_eq!(
        by["who"],
        format!("release-bot (key {})", key["key_id"].as_str().unwrap()),
        "{done:#}"
    );
    assert_eq!(by["address"], "127.0.0.1");
}
