//! A run of successes upstream does not jam the next phase: each automatic deployment
//! queued behind a running one supersedes the one queued before it, so ten collapse to
//! the newest.

use std::time::Duration;

use capstan_testkit::{agents::ensure_environment, eventually};
use serde_json::{Value, json};

use super::{DONE, move_agent};
use crate::deployments::{Fleet, step};

/// The deployments to `environment` of `project`, oldest first.
async fn deployments_to(fleet: &Fleet, project: i64, environment: &str) -> Vec<Value> {
    let (status, page) = fleet
        .api
        .get(&format!(
            "/api/deployments?project_id={project}&environment={environment}&limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_automatic_deployments_queued_behind_a_running_one_collapse_to_the_newest() {
    let fleet = Fleet::start(1, 2).await;
    let client = fleet.cluster.node(0).client();
    for environment in ["Dev", "Test"] {
        ensure_environment(&client, environment).await;
    }
    move_agent(&fleet, "web01", "Dev").await;
    move_agent(&fleet, "web02", "Test").await;
    // Deployments to Test wait while the hold file exists; Dev ones never do.
    let hold = fleet.dir().join("hold");
    std::fs::write(&hold, "").unwrap();
    let script = format!(
        "if [ \"#{{Capstan.Environment.Name}}\" = Test ]; then while [ -e '{}' ]; do sleep 0.1; done; fi",
        hold.display()
    );
    let (project, first) = fleet
        .release("Stream", json!([step("Ship", &script)]), json!([]))
        .await;
    let (status, lifecycle) = fleet
        .api
        .post(
            "/api/lifecycles",
            json!({
                "name": "Dev then Test",
                "phases": [
                    { "name": "Dev", "environments": ["Dev"], "rule": "all" },
                    { "name": "Test", "environments": ["Test"], "rule": "all", "automatic": true },
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{lifecycle}");
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": lifecycle["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let to_dev = |release: i64| {
        let fleet = &fleet;
        async move {
            let id = fleet
                .deploy(json!({ "release_id": release, "environment": "Dev" }))
                .await;
            let shown = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
            assert_eq!(shown["state"], "succeeded", "{shown}");
        }
    };

    // The first release's automatic Test deployment runs and holds the pair.
    to_dev(first).await;
    let running = eventually(
        Duration::from_secs(30),
        "the first automatic Test deployment to run",
        || async {
            deployments_to(&fleet, project, "Test")
                .await
                .into_iter()
                .find(|d| d["state"] == "running")
        },
    )
    .await;
    assert_eq!(running["release_id"], first, "{running:#}");
    assert_eq!(running["trigger"]["kind"], "lifecycle", "{running:#}");

    // Ten more releases go through Dev, each queueing an automatic Test deployment.
    let mut releases = Vec::new();
    for _ in 0..10 {
        let (status, body) = fleet
            .api
            .post("/api/releases", json!({ "project_id": project }))
            .await;
        assert_eq!(status, 201, "{body}");
        let release = body["id"].as_i64().unwrap();
        to_dev(release).await;
        releases.push(release);
    }
    let newest = *releases.last().unwrap();

    let test = deployments_to(&fleet, project, "Test").await;
    assert_eq!(test.len(), 11, "{:#}", Value::from(test.clone()));
    let automatic = test
        .iter()
        .filter(|d| d["trigger"]["kind"] == "lifecycle")
        .count();
    assert_eq!(
        automatic,
        11,
        "every Test deployment was automatic: {:#}",
        Value::from(test.clone())
    );
    let queued: Vec<&Value> = test.iter().filter(|d| d["state"] == "queued").collect();
    assert_eq!(
        queued.len(),
        1,
        "only the newest waits: {:#}",
        Value::from(test.clone())
    );
    assert_eq!(
        queued[0]["release_id"],
        newest,
        "{:#}",
        Value::from(test.clone())
    );
    let superseded: Vec<&Value> = test
        .iter()
        .filter(|d| d.get("superseded_by").is_some_and(|s| !s.is_null()))
        .collect();
    assert_eq!(superseded.len(), 9, "{:#}", Value::from(test.clone()));
    assert!(
        superseded.iter().all(|d| d["state"] == "cancelled"),
        "{:#}",
        Value::from(test.clone())
    );

    // Once the running one ends, the newest runs; the superseded never do.
    std::fs::remove_file(&hold).unwrap();
    let last = fleet
        .wait_state(
            queued[0]["id"].as_i64().unwrap(),
            DONE,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(last["state"], "succeeded", "{last:#}");
    let test = deployments_to(&fleet, project, "Test").await;
    let ran: Vec<i64> = test
        .iter()
        .filter(|d| d["state"] == "succeeded")
        .map(|d| d["release_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ran, [first, newest], "{:#}", Value::from(test.clone()));
}
