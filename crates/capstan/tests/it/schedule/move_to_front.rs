//! `POST /api/tasks/{id}/move-to-front` and `capstan tasks move-to-front`: a queued task
//! goes ahead of older ones, is claimed first, and the move is audited with its old and
//! new place in line.

use std::time::Duration;

use capstan_api::{ApiClient, CreateTaskRequest, TaskQuery};
use capstan_core::TaskState;
use capstan_testkit::{
    TestCluster, eventually,
    tasks::{queue_sleeps, wait_finished, wait_idle, wait_task},
};
use serde_json::json;

use crate::{cli::capstan, projects::Api};

/// One node running at most one task, idle once its first periodic tasks ran.
async fn one_slot() -> (TestCluster, ApiClient) {
    let cluster = TestCluster::start_with_caps(&[Some(1)]).await;
    let client = cluster.node(0).client();
    eventually(
        Duration::from_secs(10),
        "the periodic tasks to have run",
        || async {
            for kind in [
                "task-history-retention",
                "blob-retention",
                "audit-retention",
            ] {
                let query = TaskQuery {
                    kind: Some(kind.into()),
                    ..Default::default()
                };
                let page = client.list_tasks(&query).await.ok()?;
                page.items
                    .iter()
                    .any(|t| t.state.is_finished())
                    .then_some(())?;
            }
            Some(())
        },
    )
    .await;
    wait_idle(&client).await;
    (cluster, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_moved_to_the_front_is_claimed_before_older_ones_and_the_move_is_audited() {
    let (cluster, client) = one_slot().await;
    let server = cluster.node(0).url();
    let api = Api::new(&server);
    let holder = client
        .create_task(&CreateTaskRequest::new("sleep", json!({"ms": 60_000})))
        .await
        .unwrap();
    wait_task(
        &client,
        holder.id,
        Duration::from_secs(10),
        "running",
        |t| t.state == TaskState::Running,
    )
    .await;
    let line = queue_sleeps(&client, 4, json!({"ms": 10})).await;
    let last = line[3];

    let (status, body) = api
        .post(&format!("/api/tasks/{last}/move-to-front"), json!({}))
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["blocked_by"]["position"], 1, "{body:#}");
    assert_eq!(
        body["blocked_by"]["ahead"].as_array().unwrap().len(),
        0,
        "{body:#}"
    );
    let (_, older) = api.get(&format!("/api/tasks/{}", line[0])).await;
    assert_eq!(older["blocked_by"]["position"], 2, "{older:#}");
    assert_eq!(older["blocked_by"]["ahead"], json!([last]), "{older:#}");

    // The CLI moves the third one in front of it in turn.
    let (ok, out) = capstan(&server, &["tasks", "move-to-front", &line[2].to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains("moved to the front"), "{out}");

    // A running task has no place in line.
    let (status, body) = api
        .post(
            &format!("/api/tasks/{}/move-to-front", holder.id),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body:#}");
    let (status, body) = api
        .post("/api/tasks/999999999/move-to-front", json!({}))
        .await;
    assert_eq!(status, 404, "{body:#}");

    client.cancel_task(holder.id).await.unwrap();
    let done = wait_finished(&client, &line, Duration::from_secs(30)).await;
    let mut by_start: Vec<(time::OffsetDateTime, i64)> =
        done.iter().map(|t| (t.started_at.unwrap(), t.id)).collect();
    by_start.sort();
    let order: Vec<i64> = by_start.into_iter().map(|(_, id)| id).collect();
    assert_eq!(order, [line[2], line[3], line[0], line[1]]);

    let (status, audit) = api
        .get(&format!(
            "/api/audit?action=task.move_to_front&object_id={last}"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let row = &audit["items"][0];
    assert_eq!(row["before"]["position"], 4, "{row:#}");
    assert_eq!(row["after"]["position"], 1, "{row:#}");
    assert_eq!(row["actor"]["kind"], "admin_key", "{row:#}");
}
