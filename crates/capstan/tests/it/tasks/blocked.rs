//! `blocked_by`: why a queued task has not started, on `GET /api/tasks/{id}`, on each
//! queued item of `GET /api/tasks`, and as `capstan tasks why`.

use std::time::Duration;

use capstan_api::{ApiClient, BlockedBy, CreateTaskRequest, NodeLoad, TaskQuery, TaskResponse};
use capstan_core::{ConcurrencyKey, TaskState};
use capstan_testkit::{
    TestCluster, eventually,
    tasks::{wait_idle, wait_task},
};
use serde_json::json;

use crate::cli::capstan;

/// Queues a `sleep` that outlives the test, with concurrency key `key` if given.
async fn long_sleep(client: &ApiClient, key: Option<&str>) -> TaskResponse {
    let mut request = CreateTaskRequest::new("sleep", json!({"ms": 60_000}));
    request.concurrency_key = key.map(|k| ConcurrencyKey::parse(k).unwrap());
    client.create_task(&request).await.unwrap()
}

async fn wait_running(client: &ApiClient, id: i64) -> TaskResponse {
    wait_task(client, id, Duration::from_secs(5), "running", |t| {
        t.state == TaskState::Running
    })
    .await
}

fn node_1_full() -> BlockedBy {
    BlockedBy::TaskCap {
        nodes: vec![NodeLoad {
            name: "node-1".into(),
            running: 1,
            cap: 1,
        }],
    }
}

/// A cluster of one node with task cap 1, idle, then running one long `sleep`
/// (holding `key` if given).
async fn one_full_node(key: Option<&str>) -> (TestCluster, ApiClient, TaskResponse) {
    let cluster = TestCluster::start_with_caps(&[Some(1)]).await;
    let client = cluster.node(0).client();
    // The periodic tasks a node queues at its first housekeeping would stand in line.
    eventually(
        Duration::from_secs(10),
        "the periodic tasks to have run",
        || async {
            for kind in ["task-history-retention", "blob-retention"] {
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
    let running = long_sleep(&client, key).await;
    let running = wait_running(&client, running.id).await;
    (cluster, client, running)
}

async fn cancel(client: &ApiClient, ids: &[i64]) {
    for id in ids {
        client.cancel_task(*id).await.unwrap();
    }
}

#[tokio::test]
async fn a_task_behind_a_full_node_is_first_in_line_and_names_the_node_at_its_cap() {
    let (_cluster, client, running) = one_full_node(None).await;
    let queued = long_sleep(&client, None).await;
    assert_eq!(queued.state, TaskState::Queued);

    let task = client.get_task(queued.id).await.unwrap();
    let blocked = task.blocked_by.expect("a queued task says why it waits");
    assert_eq!(blocked.position, 1);
    assert!(blocked.ahead.is_empty(), "{blocked:?}");
    assert_eq!(blocked.reasons, vec![node_1_full()]);
    assert_eq!(
        blocked.summary,
        "every node is at its task cap (node-1 1/1)"
    );

    // The running task has none, on its own and in a list; the queued one has it there too.
    assert_eq!(client.get_task(running.id).await.unwrap().blocked_by, None);
    let page = client.list_tasks(&TaskQuery::default()).await.unwrap();
    let item = |id| page.items.iter().find(|t| t.id == id).unwrap();
    assert_eq!(item(running.id).blocked_by, None);
    assert_eq!(
        item(queued.id).blocked_by.as_ref().map(|b| b.position),
        Some(1)
    );
    cancel(&client, &[queued.id, running.id]).await;
}

#[tokio::test]
async fn a_keyed_task_names_the_running_task_holding_its_key_and_later_tasks_list_those_ahead() {
    let (_cluster, client, holder) = one_full_node(Some("deploy:web")).await;
    let keyed = long_sleep(&client, Some("deploy:web")).await;
    let other = long_sleep(&client, None).await;
    let last = long_sleep(&client, Some("deploy:web")).await;

    let key_held = BlockedBy::ConcurrencyKey {
        key: "deploy:web".into(),
        task_id: holder.id,
        deployment_id: None,
    };
    let blocked = client.get_task(keyed.id).await.unwrap().blocked_by.unwrap();
    assert_eq!((blocked.position, blocked.ahead.clone()), (1, vec![]));
    assert_eq!(blocked.reasons, vec![node_1_full(), key_held.clone()]);
    assert!(
        blocked.summary.ends_with(&format!(
            "; task {} holds concurrency key `deploy:web` and goes first",
            holder.id
        )),
        "{}",
        blocked.summary
    );

    let blocked = client.get_task(other.id).await.unwrap().blocked_by.unwrap();
    assert_eq!((blocked.position, blocked.ahead), (2, vec![keyed.id]));
    assert_eq!(blocked.reasons, vec![node_1_full()]);

    // Behind both: the running holder of its key is named, before the older queued one.
    let blocked = client.get_task(last.id).await.unwrap().blocked_by.unwrap();
    assert_eq!(
        (blocked.position, blocked.ahead),
        (3, vec![keyed.id, other.id])
    );
    assert_eq!(blocked.reasons, vec![node_1_full(), key_held]);

    // Once the holder is gone, the oldest queued task with the key holds it.
    cancel(&client, &[other.id]).await;
    client.cancel_task(holder.id).await.unwrap();
    let keyed = wait_running(&client, keyed.id).await;
    let blocked = client.get_task(last.id).await.unwrap().blocked_by.unwrap();
    assert_eq!(
        blocked.reasons,
        vec![
            node_1_full(),
            BlockedBy::ConcurrencyKey {
                key: "deploy:web".into(),
                task_id: keyed.id,
                deployment_id: None,
            }
        ]
    );
    cancel(&client, &[last.id, keyed.id]).await;
}

#[tokio::test]
async fn a_queued_task_with_no_node_to_claim_it_says_every_node_is_draining() {
    let (_cluster, client, running) = one_full_node(None).await;
    let node_1 = client.find_node("node-1").await.unwrap();
    client
        .update_node(
            node_1.id,
            &capstan_api::UpdateNodeRequest {
                draining: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let queued = long_sleep(&client, None).await;
    let blocked = client
        .get_task(queued.id)
        .await
        .unwrap()
        .blocked_by
        .unwrap();
    assert_eq!(
        blocked.reasons,
        vec![BlockedBy::NoNodeUp {
            draining: vec!["node-1".into()]
        }]
    );
    assert_eq!(
        blocked.summary,
        "every node that is up is draining (node-1)"
    );
    cancel(&client, &[queued.id, running.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn capstan_tasks_why_says_in_one_sentence_where_a_task_stands() {
    let (cluster, client, running) = one_full_node(None).await;
    let first = long_sleep(&client, None).await;
    let second = long_sleep(&client, None).await;
    let server = cluster.node(0).url();

    let (ok, out) = capstan(&server, &["tasks", "why", &second.id.to_string()]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "task {} is 2nd in line behind {}: every node is at its task cap (node-1 1/1)",
            second.id, first.id
        )
    );

    let (ok, out) = capstan(&server, &["tasks", "why", &running.id.to_string()]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with(&format!("task {} is running on node-1 since ", running.id)),
        "{out}"
    );

    cancel(&client, &[first.id]).await;
    let (ok, out) = capstan(&server, &["tasks", "why", &first.id.to_string()]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with(&format!("task {} finished: cancelled", first.id)),
        "{out}"
    );
    cancel(&client, &[second.id, running.id]).await;
}
