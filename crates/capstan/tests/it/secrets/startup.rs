use std::time::Duration;

use capstan_server::Node;
use capstan_testkit::{
    TestCluster,
    process::{ProcessOptions, ServerProcess},
};

use super::{KEY_1, KEY_2, WRONG_KEY, connect, node_settings, start_with_keys};
use crate::{
    capstan_bin,
    startup::{one_line_reason, start_expecting_exit},
};

/// Starts `capstan server` on the cluster's database with `keys` set, expecting it to
/// exit; returns whether it succeeded and what it printed.
async fn start_process_expecting_exit(
    cluster: &TestCluster,
    keys: &[(&str, &str)],
) -> (bool, String) {
    let url = cluster.db.url.clone();
    let blob = format!("file://{}", cluster.blob_dir.0.display());
    let mut extra = vec![("CAPSTAN_NODE_NAME".to_owned(), "wrong-key".to_owned())];
    extra.extend(keys.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        start_expecting_exit(&url, &blob, &extra)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_node_with_the_wrong_master_key_exits_at_start_and_says_why() {
    let mut cluster = TestCluster::start(1).await;
    let mut conn = connect(&cluster.db.url).await;
    cluster
        .node(0)
        .secrets
        .seal(&mut conn, "s3cr3t")
        .await
        .unwrap();
    cluster.nodes[0].stop().await.unwrap();

    let (ok, output) =
        start_process_expecting_exit(&cluster, &[("CAPSTAN_MASTER_KEY", WRONG_KEY)]).await;
    assert!(!ok, "a node with the wrong key must not start:\n{output}");
    let line = one_line_reason(&output);
    assert!(
        line.contains(
            "CAPSTAN_MASTER_KEY does not match the key this database's secrets are encrypted with (key version 1, created 20"
        ) && line.contains("check the value, or see docs/security.md for rotating keys"),
        "{line}"
    );
    assert!(
        !output.contains(WRONG_KEY) && !output.contains(KEY_1),
        "a key leaked:\n{output}"
    );

    // A previous key that is not the active one does not make it a rotation either.
    let (ok, output) = start_process_expecting_exit(
        &cluster,
        &[
            ("CAPSTAN_MASTER_KEY", WRONG_KEY),
            ("CAPSTAN_MASTER_KEY_PREVIOUS", KEY_2),
        ],
    )
    .await;
    assert!(!ok, "{output}");
    assert!(
        one_line_reason(&output)
            .contains("no key in CAPSTAN_MASTER_KEY_PREVIOUS matches the active version"),
        "{output}"
    );

    // Neither attempt registered the wrong key or left a node row behind.
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM master_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE name = 'wrong-key'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_fresh_database_registers_the_first_key_as_active_version_1() {
    let cluster = TestCluster::start(1).await;
    let status = cluster.node(0).client().get_master_key().await.unwrap();
    assert_eq!(status.active_version, Some(1));
    assert_eq!(status.versions.len(), 1);
    assert!(status.versions[0].active && status.versions[0].activated_at.is_some());
    assert_eq!(status.versions[0].secrets, 0);
    assert_eq!(status.nodes[0].name, "node-1");
    assert_eq!(status.nodes[0].key_versions, [1]);
}

#[tokio::test]
async fn a_new_key_with_the_old_one_as_previous_registers_an_inactive_version() {
    let cluster = TestCluster::start(1).await;
    let mut conn = connect(&cluster.db.url).await;
    let old = cluster
        .node(0)
        .secrets
        .seal(&mut conn, "old")
        .await
        .unwrap();

    let rolled = start_with_keys(
        &cluster.db.url,
        &cluster.blob_dir.0,
        "node-2",
        Some(KEY_2),
        &[KEY_1],
    )
    .await;
    assert_eq!(rolled.state.key_versions, [1, 2]);
    let status = rolled.client().get_master_key().await.unwrap();
    assert_eq!(status.active_version, Some(1), "{status:?}");
    assert_eq!(status.versions.len(), 2);
    assert!(!status.versions[1].active && status.versions[1].activated_at.is_none());

    // Both nodes still seal under version 1, which both hold, and open each other's.
    let new = rolled.secrets.seal(&mut conn, "new").await.unwrap();
    let versions: Vec<i32> = sqlx::query_scalar("SELECT key_version FROM secrets ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, [1, 1]);
    let opened = cluster
        .node(0)
        .secrets
        .open_many(&mut conn, &[old, new])
        .await
        .unwrap();
    assert_eq!(
        (opened[&old].as_str(), opened[&new].as_str()),
        ("old", "new")
    );

    // A third node with the same pair finds version 2 rather than adding version 3.
    let third = start_with_keys(
        &cluster.db.url,
        &cluster.blob_dir.0,
        "node-3",
        Some(KEY_2),
        &[KEY_1],
    )
    .await;
    assert_eq!(third.state.key_versions, [1, 2]);
}

#[tokio::test]
async fn a_node_without_the_key_of_a_version_that_still_has_values_refuses_to_start() {
    let cluster = TestCluster::start(1).await;
    let mut conn = connect(&cluster.db.url).await;
    cluster
        .node(0)
        .secrets
        .seal(&mut conn, "under v1")
        .await
        .unwrap();
    let _rolled = start_with_keys(
        &cluster.db.url,
        &cluster.blob_dir.0,
        "node-2",
        Some(KEY_2),
        &[KEY_1],
    )
    .await;

    // Version 2 is known now, but values are still under version 1.
    let early = node_settings(
        &cluster.db.url,
        &cluster.blob_dir.0,
        "node-3",
        Some(KEY_2),
        &[],
    );
    let err = Node::build(early)
        .await
        .err()
        .expect("node-3 must refuse to start");
    let text = err.to_string();
    assert!(
        text.contains("keys")
            && text
                .contains("cannot open the sensitive values still encrypted under key version 1")
            && text.contains("CAPSTAN_MASTER_KEY_PREVIOUS"),
        "{text}"
    );
}

#[tokio::test]
async fn a_node_without_a_key_starts_but_warns_when_values_exist() {
    let cluster = TestCluster::start(1).await;
    let mut conn = connect(&cluster.db.url).await;
    cluster.node(0).secrets.seal(&mut conn, "v").await.unwrap();

    let options = ProcessOptions {
        env: vec![("CAPSTAN_MASTER_KEY".to_owned(), String::new())],
    };
    let mut keyless = ServerProcess::start(
        &capstan_bin(),
        "keyless",
        &cluster.db.url,
        &cluster.blob_dir.0,
        &cluster.blob_dir.0,
        options,
    )
    .await;
    let log = keyless.log();
    assert!(
        log.contains("this node has no CAPSTAN_MASTER_KEY, but the database holds sensitive values (under key version 1)"),
        "{log}"
    );
    assert!(
        log.contains("no CAPSTAN_MASTER_KEY: sensitive values cannot be stored"),
        "{log}"
    );
    keyless.signal("TERM");
    assert!(keyless.wait_exit(Duration::from_secs(10)).await.success());
}
