//! `/tasks`: a queued deployment's place in line and why it waits, in words; cancelling
//! it after a confirmation; the history's filter.

use std::time::Duration;

use serde_json::json;

use super::signed_in;
use crate::deployments::{Fleet, step};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_queue_says_why_a_deployment_waits_and_cancel_asks_first() {
    // Every node's task cap is 0: what is queued waits, for that reason alone.
    let fleet = Fleet::start_with_cap(1, Some(0), 1).await;
    let node = fleet.cluster.node(0).url();
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let deployment = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let (_, body) = fleet
        .api
        .get(&format!("/api/deployments/{deployment}"))
        .await;
    let task = body["task_id"].as_i64().expect("the deployment's task");
    let (status, body) = fleet
        .api
        .post(
            "/api/tasks",
            json!({ "kind": "sleep", "args": { "ms": 10 } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_i64().unwrap();

    // The node's own tasks (retention sweeps) may wait in line too: the places are
    // the API's.
    let place = |id: i64| {
        let api = &fleet.api;
        async move {
            let (_, body) = api.get(&format!("/api/tasks/{id}")).await;
            body["blocked_by"]["position"]
                .as_u64()
                .expect("a place in line")
        }
    };
    let (first_place, second_place) = (place(task).await, place(second).await);
    assert_eq!(second_place, first_place + 1);

    let browser = signed_in(&node, "queue-watcher").await;
    browser.open(&format!("{node}/tasks")).await;
    let row = format!("#task-{task}");
    assert_eq!(
        browser.text(&format!("{row} td.position")).await,
        ordinal(first_place)
    );
    let why = browser.text(&format!("{row} td.why")).await;
    assert!(
        why.to_lowercase().contains("every node is at its task cap"),
        "{why}"
    );
    browser
        .find(&format!("{row} a[href='/deployments/{deployment}']"))
        .await;
    browser
        .find(&format!("{row} a[href='/tasks/{task}/log']"))
        .await;
    assert_eq!(
        browser.text(&format!("#task-{second} td.position")).await,
        ordinal(second_place)
    );
    let why = browser.text(&format!("#task-{second} td.why")).await;
    assert!(why.contains("Behind task"), "{why}");
    assert!(
        why.to_lowercase().contains("every node is at its task cap"),
        "{why}"
    );
    browser.screenshot("tasks").await;
    browser.assert_accessible("the tasks page").await;

    // Cancel asks first; nothing changes before the answer.
    browser
        .click(&format!("{row} form button[type=submit]"))
        .await;
    let question = browser.text("#question").await;
    assert!(
        question.starts_with(&format!("Cancel task {task}")),
        "{question}"
    );
    browser.assert_accessible("the cancel confirmation").await;
    let (_, body) = fleet.api.get(&format!("/api/tasks/{task}")).await;
    assert_eq!(body["state"], "queued", "{body}");
    browser.click(".confirm button[type=submit]").await;
    let done = browser.text(".notice").await;
    assert!(
        done.contains(&format!("Task {task} is cancelled")),
        "{done}"
    );
    let (_, body) = fleet.api.get(&format!("/api/tasks/{task}")).await;
    assert_eq!(body["state"], "cancelled", "{body}");
    // The one left in line moved up.
    assert_eq!(
        browser.text(&format!("#task-{second} td.position")).await,
        ordinal(first_place)
    );

    // The history, filtered by state.
    browser
        .find("#state")
        .await
        .select_by_value("cancelled")
        .await
        .unwrap();
    browser.click("#history form button[type=submit]").await;
    browser
        .until(
            WITHIN,
            "the cancelled task in the history",
            &format!(
                "location.search.includes('state=cancelled') \
                 && document.querySelector(\"#history a[href='/tasks/{task}/log']\") != null \
                 && document.querySelector(\"#history a[href='/tasks/{second}/log']\") == null"
            ),
        )
        .await;
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
