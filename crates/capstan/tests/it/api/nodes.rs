use std::time::Duration;

use capstan_api::UpdateNodeRequest;
use capstan_core::TaskCap;
use capstan_testkit::{TestCluster, eventually};

#[tokio::test]
async fn three_nodes_sharing_a_database_see_each_other() {
    let cluster = TestCluster::start(3).await;
    for node in &cluster.nodes {
        let names: Vec<String> = node
            .client()
            .list_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"]);
    }
    let nodes = cluster.node(0).client().list_nodes().await.unwrap();
    assert!(
        nodes
            .iter()
            .all(|n| n.online && !n.draining && n.task_cap == 5)
    );
}

#[tokio::test]
async fn ping_answers_200_with_the_node_and_healthz_answers() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let (status, body) = node.client().ping().await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["name"], "node-1");
    for field in [
        "id",
        "version",
        "url",
        "task_cap",
        "draining",
        "running_tasks",
        "last_seen",
    ] {
        assert!(body.get(field).is_some(), "ping body lacks {field}: {body}");
    }
    let health = reqwest::get(format!("{}/healthz", node.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_drain_sent_to_node_a_for_node_b_takes_effect_on_b_within_a_second() {
    let cluster = TestCluster::start(3).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let drain = UpdateNodeRequest {
        draining: Some(true),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let updated = a.client().update_node(b.state.id, &drain).await.unwrap();
    assert!(updated.draining);
    eventually(
        Duration::from_secs(1),
        "node B answering ping with 418",
        || async {
            let (status, _) = b.client().ping().await.unwrap();
            (status == 418).then_some(())
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    // Draining keeps liveness: orchestrators must not restart a draining node.
    let health = reqwest::get(format!("{}/healthz", b.url())).await.unwrap();
    assert_eq!(health.status(), 200);
    // The others still serve.
    assert_eq!(a.client().ping().await.unwrap().0, 200);

    let undrain = UpdateNodeRequest {
        draining: Some(false),
        ..Default::default()
    };
    cluster
        .node(2)
        .client()
        .update_node(b.state.id, &undrain)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(1),
        "node B answering ping with 200 again",
        || async { (b.client().ping().await.unwrap().0 == 200).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_task_cap_change_sent_to_node_a_reaches_node_b() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let cap = UpdateNodeRequest {
        task_cap: Some(TaskCap::new(0).unwrap()),
        ..Default::default()
    };
    let updated = a.client().update_node(b.state.id, &cap).await.unwrap();
    assert_eq!(updated.task_cap, 0);
    eventually(
        Duration::from_secs(1),
        "node B applying task cap 0",
        || async { (b.state.task_cap() == 0).then_some(()) },
    )
    .await;
    let (_, body) = b.client().ping().await.unwrap();
    assert_eq!(body["task_cap"], 0);
}

#[tokio::test]
async fn a_deleted_live_node_adds_itself_back() {
    let cluster = TestCluster::start(2).await;
    let b = cluster.node(1);
    cluster
        .node(0)
        .client()
        .delete_node(b.state.id)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(3),
        "node B back in the list",
        || async {
            let nodes = cluster.node(0).client().list_nodes().await.unwrap();
            nodes
                .iter()
                .any(|n| n.id == b.state.id && n.online)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_cleanly_stopped_node_shows_offline_at_once_and_stays_deleted() {
    let mut cluster = TestCluster::start(2).await;
    cluster.nodes[1].stop().await.unwrap();
    let id = cluster.node(1).state.id;
    let stopped = cluster.node(0).client().get_node(id).await.unwrap();
    assert!(!stopped.online);
    assert!(stopped.draining, "a stopping node drains first");
    cluster.node(0).client().delete_node(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let err = cluster.node(0).client().get_node(id).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}
