use std::time::{Duration, Instant};

use capstan_api::ApiClient;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase, eventually,
    process::{ProcessOptions, ServerProcess, start_servers},
};

use crate::capstan_bin;

#[tokio::test]
async fn a_sigkilled_node_shows_offline_after_three_heartbeat_intervals() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-crash");
    let mut nodes = start_servers(&capstan_bin(), &["n1", "n2", "n3"], &db.url, &dir.0).await;
    let client = ApiClient::new(&nodes[0].url(), Some(ADMIN_KEY.to_owned()));
    eventually(Duration::from_secs(5), "three online nodes", || async {
        let list = client.list_nodes().await.ok()?;
        (list.len() == 3 && list.iter().all(|n| n.online)).then_some(())
    })
    .await;

    nodes[2].kill_9();
    let killed_at = Instant::now();
    let offline_after = eventually(Duration::from_secs(5), "n3 offline", || async {
        let list = client.list_nodes().await.ok()?;
        let n3 = list.iter().find(|n| n.name == "n3")?;
        (!n3.online).then(|| killed_at.elapsed())
    })
    .await;
    // Three 200 ms intervals from its last beat; never before the last beat could
    // have expired, and not much later than three intervals after the kill.
    assert!(
        offline_after <= Duration::from_millis(600 + 600),
        "took {offline_after:?}"
    );
    let list = client.list_nodes().await.unwrap();
    assert!(list.iter().filter(|n| n.name != "n3").all(|n| n.online));
}

#[tokio::test]
async fn three_nodes_started_at_once_on_an_empty_database_all_come_up() {
    let db = capstan_testkit::database::empty_database().await;
    let dir = TempDir::new("capstan-migrate");
    let nodes = start_servers(&capstan_bin(), &["m1", "m2", "m3"], &db.url, &dir.0).await;
    for node in &nodes {
        let (status, _) = ApiClient::new(&node.url(), None).ping().await.unwrap();
        assert_eq!(status, 200, "{}:\n{}", node.name, node.log());
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-term");
    let mut node = ServerProcess::start(
        &capstan_bin(),
        "t1",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions::default(),
    )
    .await;
    node.signal("TERM");
    let status = node.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}:\n{}", node.log());
    let log = node.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("node stopped"), "{log}");
}
