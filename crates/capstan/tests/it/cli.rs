use std::process::Command;

use capstan_testkit::{ADMIN_KEY, TestCluster};

use crate::capstan_bin;

fn capstan(server: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(capstan_bin())
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env("CAPSTAN_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_list_drain_undrain_cap_and_delete_nodes_by_name() {
    let cluster = TestCluster::start(2).await;
    let server = cluster.node(0).url();
    let b = cluster.node(1);

    let (ok, out) = tokio::task::spawn_blocking({
        let server = server.clone();
        move || capstan(&server, &["nodes", "list"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("node-1") && out.contains("node-2"), "{out}");

    let (ok, out) = capstan(&server, &["nodes", "drain", "node-2", "--wait"]);
    assert!(ok, "{out}");
    assert!(out.contains("has no running tasks"), "{out}");
    assert!(b.client().get_node(b.state.id).await.unwrap().draining);

    let (ok, out) = capstan(&server, &["nodes", "undrain", "node-2"]);
    assert!(ok, "{out}");
    assert!(!b.client().get_node(b.state.id).await.unwrap().draining);

    let (ok, out) = capstan(&server, &["nodes", "set-task-cap", "node-2", "12"]);
    assert!(ok, "{out}");
    assert_eq!(b.client().get_node(b.state.id).await.unwrap().task_cap, 12);

    let (ok, out) = capstan(&server, &["nodes", "set-task-cap", "node-2", "5000"]);
    assert!(!ok);
    assert!(out.contains("between 0 and 1000"), "{out}");

    let (ok, out) = capstan(&server, &["nodes", "drain", "no-such-node"]);
    assert!(!ok);
    assert!(out.contains("no node is named `no-such-node`"), "{out}");

    let (ok, out) = capstan(&server, &["nodes", "delete", "node-2"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_api_key_is_reported_plainly() {
    let cluster = TestCluster::start(1).await;
    let output = Command::new(capstan_bin())
        .args([
            "nodes",
            "list",
            "--server",
            &cluster.node(0).url(),
            "--api-key",
            "nope-nope-nope-nope",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("401") && err.contains("not valid"), "{err}");
}
