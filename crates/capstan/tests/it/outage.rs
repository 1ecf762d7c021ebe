use std::time::{Duration, Instant};

use capstan_api::{ApiClient, ClientError, CreateTaskRequest};
use capstan_testkit::{
    TempDir, TestDatabase,
    cluster::{start_node, test_settings},
    eventually,
    postgres::PrivatePostgres,
};
use serde_json::json;

fn noop() -> CreateTaskRequest {
    CreateTaskRequest::new("sleep", json!({ "ms": 0 }))
}

#[tokio::test]
async fn ping_and_task_creation_answer_503_quickly_while_postgres_is_down_and_the_node_recovers() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let db = TestDatabase::on(&pg.url("postgres")).await;
    let blobs = TempDir::new("capstan-outage");
    let node = start_node(test_settings(&db.url, &blobs.0, "survivor")).await;
    let client = ApiClient::new(&node.url(), None);
    assert_eq!(client.ping().await.unwrap().0, 200);
    // A task queued now leaves a connection in the enqueue pool that the outage breaks.
    let api = node.client();
    api.create_task(&noop()).await.unwrap();

    pg.stop();
    let started = Instant::now();
    let (status, body) = client.ping().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ping took {:?}",
        started.elapsed()
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("database unreachable"),
        "{body}"
    );
    assert_eq!(body["node"]["name"], "survivor");
    let started = Instant::now();
    match api.create_task(&noop()).await {
        Err(ClientError::Api(problem)) => {
            assert_eq!(problem.status, 503, "{problem:?}");
            assert!(
                problem.detail.contains("database unreachable"),
                "{problem:?}"
            );
        }
        other => panic!("a task was queued without a database: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "creating a task took {:?}",
        started.elapsed()
    );
    // Liveness is not tied to the database: an outage must not restart every node.
    assert_eq!(
        reqwest::get(format!("{}/healthz", node.url()))
            .await
            .unwrap()
            .status(),
        200
    );

    pg.resume();
    eventually(
        Duration::from_secs(10),
        "ping 200 after PostgreSQL is back",
        || async { (client.ping().await.ok()?.0 == 200).then_some(()) },
    )
    .await;
    // The broken connection is replaced, not handed to the first request after it.
    let queued = api.create_task(&noop()).await.unwrap();
    assert_eq!(queued.kind, "sleep");
    // Heartbeats resumed: last_seen moves again.
    let before = node.state.last_seen();
    eventually(
        Duration::from_secs(5),
        "a heartbeat after recovery",
        || async { (node.state.last_seen() > before).then_some(()) },
    )
    .await;
    drop(node);
    drop(db);
}
