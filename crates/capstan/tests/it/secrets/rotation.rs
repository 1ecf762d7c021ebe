use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use capstan_server::Node;
use capstan_testkit::{TestCluster, tasks::whole_log};
use uuid::Uuid;

use super::{KEY_1, KEY_2, capstan, connect, node_settings, start_with_keys};

/// More than one batch of the rotation task (500), so it works in several transactions.
const VALUES: usize = 1_200;

#[tokio::test]
async fn the_master_key_rotates_while_the_cluster_serves() {
    let mut cluster = TestCluster::start(2).await;
    let (db_url, blob_dir) = (cluster.db.url.clone(), cluster.blob_dir.0.clone());
    let mut conn = connect(&db_url).await;
    let mut expected: HashMap<Uuid, String> = HashMap::new();
    for i in 0..VALUES {
        let value = format!("secret value {i}");
        let id = cluster
            .node(0)
            .secrets
            .seal(&mut conn, &value)
            .await
            .unwrap();
        expected.insert(id, value);
    }

    // Roll node-2 onto the new key, keeping the old one as previous: it registers
    // version 2 but leaves version 1 active, so node-1 (still on the old key) works on.
    cluster.nodes[1].stop().await.unwrap();
    cluster.nodes[1] = start_with_keys(&db_url, &blob_dir, "node-2", Some(KEY_2), &[KEY_1]).await;
    let status = cluster.node(1).client().get_master_key().await.unwrap();
    assert_eq!(status.active_version, Some(1));
    assert_eq!(
        status
            .versions
            .iter()
            .map(|v| (v.version, v.active, v.secrets))
            .collect::<Vec<_>>(),
        [(1, true, VALUES as u64), (2, false, 0)]
    );
    let held: Vec<(String, Vec<i32>)> = status
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.key_versions.clone()))
        .collect();
    assert_eq!(
        held,
        [
            ("node-1".to_owned(), vec![1]),
            ("node-2".to_owned(), vec![1, 2])
        ]
    );
    let id = cluster
        .node(0)
        .secrets
        .seal(&mut conn, "from node-1")
        .await
        .unwrap();
    expected.insert(id, "from node-1".to_owned());

    // Rotating now would strand node-1: refused, naming it, through the CLI and the API.
    let server = cluster.node(1).url();
    let (ok, out) = capstan(&server, &["master-key", "rotate"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("409") && out.contains("node `node-1` does not hold master key version 2"),
        "{out}"
    );
    let err = cluster
        .node(0)
        .client()
        .rotate_master_key()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("node `node-1`"), "{err}");

    // Roll node-1 too, then rotate while both nodes keep sealing.
    cluster.nodes[0].stop().await.unwrap();
    cluster.nodes[0] = start_with_keys(&db_url, &blob_dir, "node-1", Some(KEY_2), &[KEY_1]).await;
    let sealing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..2)
        .map(|n| {
            let secrets = cluster.node(n).secrets.clone();
            let sealing = sealing.clone();
            let db_url = db_url.clone();
            tokio::spawn(async move {
                let mut conn = connect(&db_url).await;
                let mut sealed = Vec::new();
                let mut i = 0;
                while sealing.load(Ordering::Relaxed) || i < 5 {
                    let value = format!("sealed by node-{} during the rotation #{i}", n + 1);
                    let id = secrets.seal(&mut conn, &value).await.unwrap();
                    sealed.push((id, value));
                    i += 1;
                    tokio::task::yield_now().await;
                }
                sealed
            })
        })
        .collect();

    let (ok, out) = capstan(&server, &["master-key", "rotate"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("rotating to master key version 2: task ")
            && out.contains("done: every value is encrypted under master key version 2"),
        "{out}"
    );
    sealing.store(false, Ordering::Relaxed);
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }

    // Every value, old or sealed meanwhile, is under version 2 and opens as it was.
    let rows: Vec<(i32, bool, i64)> = sqlx::query_as(
        "SELECT key_version, rotated_at IS NOT NULL, count(*) FROM secrets GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.2).sum::<i64>() as usize,
        expected.len()
    );
    assert!(rows.iter().all(|r| r.0 == 2), "{rows:?}");
    let rotated: i64 = rows.iter().filter(|r| r.1).map(|r| r.2).sum();
    let ids: Vec<Uuid> = expected.keys().copied().collect();
    assert_eq!(
        cluster
            .node(0)
            .secrets
            .open_many(&mut conn, &ids)
            .await
            .unwrap(),
        expected
    );
    let status = cluster.node(0).client().get_master_key().await.unwrap();
    assert_eq!(status.active_version, Some(2));
    assert_eq!(status.secrets_not_under(2), 0);

    // The task says what it did, and nothing of the values.
    let tasks = cluster
        .node(0)
        .client()
        .list_tasks(&capstan_api::TaskQuery {
            kind: Some("master-key-rotation".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let task = tasks.items.first().expect("the rotation task");
    assert_eq!(task.on_node_lost, capstan_core::NodeLostPolicy::Requeue);
    let log = whole_log(&cluster.node(0).client(), task.id).await;
    assert!(
        log.contains("activated master key version 2")
            && log.contains("every value is under key version 2"),
        "{log}"
    );
    // Everything sealed before the switch: the values from before, and whatever the
    // writers sealed under version 1 while the rotation waited for them.
    let counted = |prefix: &str| -> usize {
        let rest = &log[log
            .find(prefix)
            .unwrap_or_else(|| panic!("{prefix}: {log}"))
            + prefix.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let to_do = counted("re-encrypting ");
    assert!(to_do > VALUES, "{log}");
    assert_eq!(counted("done: re-encrypted "), to_do, "{log}");
    assert_eq!(rotated as usize, to_do, "{rows:?}");
    assert!(!log.contains("secret value"), "{log}");

    // Rotating again has nothing to do.
    let (ok, out) = capstan(&server, &["master-key", "rotate"]).await;
    assert!(
        !ok && out.contains("already active and every value is encrypted under it"),
        "{out}"
    );

    // The previous key can go: a node with only the new key starts and reads everything...
    let fresh = start_with_keys(&db_url, &blob_dir, "node-3", Some(KEY_2), &[]).await;
    assert_eq!(fresh.state.key_versions, [2]);
    assert_eq!(
        fresh.secrets.open_many(&mut conn, &ids).await.unwrap(),
        expected
    );
    // ...while one still on only the old key no longer may.
    let stale = node_settings(&db_url, &blob_dir, "node-4", Some(KEY_1), &[]);
    let err = Node::build(stale)
        .await
        .err()
        .expect("node-4 must refuse to start");
    assert!(
        err.to_string()
            .contains("cannot open the sensitive values still encrypted under key version 2"),
        "{err}"
    );
}

#[tokio::test]
async fn the_cli_generates_fresh_keys_and_shows_the_status() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let (ok, first) = capstan(&server, &["master-key", "generate"]).await;
    assert!(ok, "{first}");
    let (_, second) = capstan(&server, &["master-key", "generate"]).await;
    let key = capstan_testkit::master_key(first.trim());
    assert_ne!(first, second);
    drop(key);

    let (ok, out) = capstan(&server, &["master-key", "status"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("VERSION") && out.contains("node-1"), "{out}");
    let (ok, out) = capstan(&server, &["master-key", "status", "--json"]).await;
    assert!(ok, "{out}");
    let status: capstan_api::MasterKeyStatus = serde_json::from_str(&out).unwrap();
    assert_eq!(status.active_version, Some(1));
}

#[tokio::test]
async fn a_rotation_task_queued_directly_checks_the_nodes_too_and_two_at_once_both_finish() {
    let mut cluster = TestCluster::start(2).await;
    let (db_url, blob_dir) = (cluster.db.url.clone(), cluster.blob_dir.0.clone());
    let mut conn = connect(&db_url).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            cluster
                .node(0)
                .secrets
                .seal(&mut conn, &format!("v{i}"))
                .await
                .unwrap(),
        );
    }
    cluster.nodes[1].stop().await.unwrap();
    cluster.nodes[1] = start_with_keys(&db_url, &blob_dir, "node-2", Some(KEY_2), &[KEY_1]).await;
    let client = cluster.node(1).client();
    let rotation = || {
        capstan_api::CreateTaskRequest::new(
            "master-key-rotation",
            serde_json::json!({"version": 2}),
        )
    };

    // Bypassing POST /api/master-key/rotate does not bypass the check of the nodes.
    let task = client.create_task(&rotation()).await.unwrap();
    let done = capstan_testkit::tasks::wait_finished(
        &client,
        &[task.id],
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(done[0].state, capstan_core::TaskState::Failed);
    let error = done[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("node `node-1` does not hold master key version 2"),
        "{error}"
    );
    let active: i32 = sqlx::query_scalar("SELECT version FROM master_keys WHERE active")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(active, 1, "a refused rotation must not activate anything");

    // With every node holding both keys, two rotations queued at once both succeed.
    cluster.nodes[0].stop().await.unwrap();
    cluster.nodes[0] = start_with_keys(&db_url, &blob_dir, "node-1", Some(KEY_2), &[KEY_1]).await;
    let first = client.create_task(&rotation()).await.unwrap();
    let second = cluster
        .node(0)
        .client()
        .create_task(&rotation())
        .await
        .unwrap();
    let done = capstan_testkit::tasks::wait_finished(
        &client,
        &[first.id, second.id],
        std::time::Duration::from_secs(10),
    )
    .await;
    for task in &done {
        assert_eq!(
            task.state,
            capstan_core::TaskState::Succeeded,
            "{:?}",
            task.error
        );
    }
    let versions: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT key_version FROM secrets")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, [2]);
    assert_eq!(
        cluster
            .node(1)
            .secrets
            .open_many(&mut conn, &ids)
            .await
            .unwrap()
            .len(),
        50
    );
}
