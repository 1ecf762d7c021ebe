use std::time::Duration;

use capstan_core::TaskState;
use capstan_testkit::{
    TestCluster,
    tasks::{queue_sleeps, wait_finished},
};
use reqwest::Method;
use serde_json::json;

use crate::api::bad_input::send;

#[tokio::test]
async fn bad_tasks_get_a_4xx_that_says_what_is_wrong_and_queue_nothing() {
    let cluster = TestCluster::start_with_caps(&[Some(0)]).await;
    let base = cluster.node(0).url();
    let url = format!("{base}/api/tasks");
    let cases = [
        (
            r#"{"kind": "nap"}"#,
            422,
            "there is no task kind `nap`; the kinds are: audit-retention, blob-retention, deploy, health-check, master-key-rotation, release-retention, script, sleep, task-history-retention",
        ),
        (
            r#"{"kind": "deploy", "args": {"deployment_id": 1}}"#,
            422,
            "deployments are queued with POST /api/deployments",
        ),
        (r#"{"args": {}}"#, 422, "missing field `kind`"),
        (
            r#"{"kind": "sleep", "args": {"ms": "long"}}"#,
            422,
            "bad `args` for a `sleep` task: invalid type",
        ),
        (
            r#"{"kind": "sleep", "args": {"ms": 100000000000}}"#,
            422,
            "`ms` is at most 86400000",
        ),
        (
            r#"{"kind": "sleep", "args": {"sleep": 5}}"#,
            422,
            "unknown field `sleep`",
        ),
        (
            r#"{"kind": "sleep", "args": {"on_node_lost": "retry"}}"#,
            422,
            "unknown variant `retry`",
        ),
        (
            r#"{"kind": "sleep", "args": [1, 2]}"#,
            422,
            "must be a JSON object",
        ),
        (
            r#"{"kind": "sleep", "priority": 1}"#,
            422,
            "unknown field `priority`",
        ),
        (
            r#"{"kind": "sleep", "concurrency_key": ""}"#,
            422,
            "a concurrency key is 1 to 200 characters",
        ),
        (r#"{"kind": "sleep""#, 400, "not valid JSON"),
    ];
    for (body, status, detail) in cases {
        let (got, problem) = send(Method::POST, &url, Some(body)).await;
        assert_eq!(got, status, "{body} -> {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{body} -> {problem}"
        );
    }

    // A batch with one bad task is refused whole, naming the task.
    let batch = json!({"tasks": [{"kind": "sleep"}, {"kind": "sleep", "args": {"ms": -1}}]});
    let (got, problem) = send(
        Method::POST,
        &format!("{url}/batch"),
        Some(&batch.to_string()),
    )
    .await;
    assert_eq!(got, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("tasks[1]: bad `args`"),
        "{problem}"
    );
    let (got, problem) = send(
        Method::POST,
        &format!("{url}/batch"),
        Some(r#"{"tasks": []}"#),
    )
    .await;
    assert_eq!(got, 422, "{problem}");

    let sleeps = capstan_api::TaskQuery {
        kind: Some("sleep".into()),
        ..Default::default()
    };
    let page = cluster.node(0).client().list_tasks(&sleeps).await.unwrap();
    assert!(page.items.is_empty(), "nothing was queued: {page:?}");

    for (path, status, detail) in [
        ("/api/tasks/999999", 404, "there is no task with id 999999"),
        ("/api/tasks/abc", 400, "bad path"),
        (
            "/api/tasks/999999/attempts",
            404,
            "there is no task with id 999999",
        ),
        ("/api/tasks?state=done", 400, "unknown variant `done`"),
        (
            "/api/tasks?limit=0",
            400,
            "`limit` must be between 1 and 500",
        ),
        (
            "/api/tasks?limit=501",
            400,
            "`limit` must be between 1 and 500",
        ),
        (
            "/api/tasks?cursor=xyz",
            400,
            "`cursor` must be the `next` of a previous page",
        ),
        ("/api/tasks?node=nobody", 400, "no node is named `nobody`"),
        ("/api/tasks?colour=red", 400, "unknown field `colour`"),
    ] {
        let (got, problem) = send(Method::GET, &format!("{base}{path}"), None).await;
        assert_eq!(got, status, "{path} -> {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{path} -> {problem}"
        );
    }
    let (got, problem) = send(Method::POST, &format!("{url}/424242/cancel"), None).await;
    assert_eq!(
        (got, problem["detail"].as_str().unwrap()),
        (404, "there is no task with id 424242")
    );
}

#[tokio::test]
async fn cancelling_a_finished_task_is_a_conflict_that_changes_nothing() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let ids = queue_sleeps(&client, 1, json!({})).await;
    let done = wait_finished(&client, &ids, Duration::from_secs(5)).await;
    assert_eq!(done[0].state, TaskState::Succeeded);
    let (got, problem) = send(
        Method::POST,
        &format!("{}/api/tasks/{}/cancel", cluster.node(0).url(), ids[0]),
        None,
    )
    .await;
    assert_eq!(got, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("task {} already succeeded at 20", ids[0]))
            && detail.ends_with("only queued or running tasks can be cancelled"),
        "{detail}"
    );
    let after = client.get_task(ids[0]).await.unwrap();
    assert_eq!(after.state, TaskState::Succeeded);
    assert!(!after.cancel_requested);
}

#[tokio::test]
async fn oversized_batches_are_refused_with_413() {
    let cluster = TestCluster::start_with_caps(&[Some(0)]).await;
    let url = format!("{}/api/tasks/batch", cluster.node(0).url());
    let too_many = json!({"tasks": vec![json!({"kind": "sleep"}); 50_001]}).to_string();
    let (got, problem) = send(Method::POST, &url, Some(&too_many)).await;
    assert_eq!(got, 413, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("a batch holds at most 50000 tasks, this one has 50001"),
        "{problem}"
    );
    let too_big = format!(
        r#"{{"tasks": [{{"kind": "sleep", "args": {{"pad": "{}"}}}}]}}"#,
        "x".repeat(17 * 1024 * 1024)
    );
    let (got, problem) = send(Method::POST, &url, Some(&too_big)).await;
    assert_eq!(got, 413, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("16 MiB for POST /api/tasks/batch"),
        "{problem}"
    );
}
