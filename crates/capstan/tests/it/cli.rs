use std::process::Command;

use capstan_testkit::{ADMIN_KEY, TestCluster};

use crate::capstan_bin;

/// Runs the `capstan` CLI against `server` with the admin key: success, and its output.
pub(crate) fn capstan(server: &str, args: &[&str]) -> (bool, String) {
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

#[tokio::test(flavor = "multi_thread")]
async fn operators_queue_list_show_and_cancel_tasks() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let run = move |args: &[&str]| {
        let server = server.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            capstan(&server, &args)
        })
    };

    let (ok, out) = run(&[
        "tasks",
        "create",
        "sleep",
        "--args",
        r#"{"ms": 20}"#,
        "--wait",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("queued task") && out.contains("state     succeeded"),
        "{out}"
    );

    let (ok, out) = run(&["tasks", "create", "sleep", "--args", r#"{"ms": 60000}"#])
        .await
        .unwrap();
    assert!(ok, "{out}");
    let id: i64 = out
        .trim()
        .strip_prefix("queued task ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    capstan_testkit::tasks::wait_task(
        &cluster.node(0).client(),
        id,
        std::time::Duration::from_secs(5),
        "running",
        |t| t.state == capstan_core::TaskState::Running,
    )
    .await;

    let (ok, out) = run(&["tasks", "list", "--state", "running"]).await.unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(&id.to_string()) && out.contains("node-1"),
        "{out}"
    );

    let id_arg = id.to_string();
    let (ok, out) = run(&["tasks", "cancel", &id_arg]).await.unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("is running on node-1; its node is stopping it"),
        "{out}"
    );

    let out = capstan_testkit::eventually(std::time::Duration::from_secs(3), "cancelled", || {
        let show = run(&["tasks", "show", &id_arg]);
        async move {
            let (_, out) = show.await.unwrap();
            out.contains("state     cancelled").then_some(out)
        }
    })
    .await;
    assert!(
        out.contains("ATTEMPT") && out.contains("cancelled"),
        "{out}"
    );

    let (ok, out) = run(&["tasks", "create", "nope"]).await.unwrap();
    assert!(!ok);
    assert!(out.contains("there is no task kind `nope`"), "{out}");
    let (ok, out) = run(&["tasks", "list", "--state", "done"]).await.unwrap();
    assert!(!ok);
    assert!(out.contains("`done` is not a task state"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_push_list_and_delete_packages() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let dir = capstan_testkit::TempDir::new("capstan-cli-packages");
    let file = dir.0.join("Acme.Api.2.1.0.tar.gz");
    let content = crate::blobs::packages_noise(3 * 1024 * 1024 + 5);
    std::fs::write(&file, &content).unwrap();
    let path = file.to_str().unwrap().to_owned();

    let run = |args: Vec<String>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            capstan(&server, &args)
        })
    };
    let (ok, out) = run(vec!["packages".into(), "push".into(), path.clone()])
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("pushed Acme.Api 2.1.0 (3 MiB, sha256 "),
        "{out}"
    );
    let (ok, out) = run(vec!["packages".into(), "push".into(), path.clone()])
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        out.contains("package Acme.Api 2.1.0 already exists"),
        "{out}"
    );
    let (ok, out) = run(vec![
        "packages".into(),
        "push".into(),
        path.clone(),
        "--replace".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");

    let (ok, out) = run(vec!["packages".into(), "list".into()]).await.unwrap();
    assert!(
        ok && out.contains("Acme.Api") && out.contains("2.1.0"),
        "{out}"
    );
    let (ok, out) = run(vec!["packages".into(), "list".into(), "Acme.Api".into()])
        .await
        .unwrap();
    assert!(ok && out.contains("tar.gz"), "{out}");

    let bad = dir.0.join("notes.txt");
    std::fs::write(&bad, "x").unwrap();
    let (ok, out) = run(vec![
        "packages".into(),
        "push".into(),
        bad.to_str().unwrap().into(),
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(out.contains("does not end in a package extension"), "{out}");

    let (ok, out) = run(vec![
        "packages".into(),
        "delete".into(),
        "Acme.Api".into(),
        "2.1.0".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    let (ok, out) = run(vec![
        "packages".into(),
        "delete".into(),
        "Acme.Api".into(),
        "2.1.0".into(),
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(out.contains("there is no package Acme.Api 2.1.0"), "{out}");
}

/// Runs `capstan` with its stdout a pipe whose reading end is already closed, as in
/// `capstan tasks list | head -0`: success, and what it wrote to stderr.
fn capstan_into_closed_pipe(bin: &std::path::Path, args: &[&str], server: &str) -> (bool, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env("CAPSTAN_API_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_whose_reader_goes_away_exit_quietly() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let client = cluster.node(0).client();
    let task = client
        .create_task(&capstan_api::CreateTaskRequest::new(
            "sleep",
            serde_json::json!({ "ms": 10 }),
        ))
        .await
        .unwrap();
    capstan_testkit::tasks::wait_task(
        &client,
        task.id,
        std::time::Duration::from_secs(10),
        "finished",
        |t| t.state.is_finished(),
    )
    .await;
    let id = task.id.to_string();

    let commands: &[&[&str]] = &[
        &["nodes", "list"],
        &["tasks", "list"],
        &["tasks", "list", "--json"],
        &["tasks", "show", &id],
        &["tasks", "logs", &id],
        &["agents", "list"],
        &["environments", "list"],
        &["projects", "list"],
        &["packages", "list"],
        &["master-key", "status"],
        &["master-key", "generate"],
        &["--help"],
        // Commands that change something print what they did; that line too.
        &["projects", "create", "Shop"],
        &["projects", "process", "Shop"],
        &["projects", "variables", "Shop"],
        &["releases", "list", "--project", "Shop"],
        &["nodes", "set-task-cap", "node-1", "4"],
        &["nodes", "drain", "node-1"],
        &["nodes", "undrain", "node-1"],
    ];
    for args in commands {
        let (ok, err) = tokio::task::spawn_blocking({
            let server = server.clone();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                capstan_into_closed_pipe(&capstan_bin(), &args, &server)
            }
        })
        .await
        .unwrap();
        assert!(ok && err.is_empty(), "capstan {args:?}: {err}");
    }

    let agent = crate::agents::agent_bin();
    let token = capstan_testkit::agents::registration_token(&client, 1).await;
    capstan_testkit::agents::ensure_environment(&client, "Test").await;
    let home = capstan_testkit::TempDir::new("agent-closed-stdout");
    let home_arg = home.0.display().to_string();
    let (ok, err) = tokio::task::spawn_blocking(move || {
        capstan_into_closed_pipe(
            &agent,
            &[
                "register",
                "--token",
                &token,
                "--name",
                "web01",
                "--environment",
                "Test",
                "--home",
                &home_arg,
            ],
            &server,
        )
    })
    .await
    .unwrap();
    assert!(
        ok && !err.contains("panicked"),
        "capstan-agent register: {err}"
    );
}

/// `drain --wait` waits for the tasks a node holds now, not for the count its last
/// heartbeat wrote: with heartbeats far apart, a task claimed since the last one must
/// still be waited for.
#[tokio::test(flavor = "multi_thread")]
async fn drain_wait_waits_for_a_task_claimed_since_the_last_heartbeat() {
    let cluster = TestCluster::start_with(&[None], |settings| {
        settings.heartbeat_interval = std::time::Duration::from_secs(30);
        settings.lease_ttl = std::time::Duration::from_secs(90);
    })
    .await;
    let node = cluster.node(0);
    let client = node.client();
    capstan_testkit::tasks::wait_idle(&client).await;
    let ids =
        capstan_testkit::tasks::queue_sleeps(&client, 1, serde_json::json!({"ms": 2000})).await;
    capstan_testkit::tasks::wait_task(
        &client,
        ids[0],
        std::time::Duration::from_secs(5),
        "the task to run",
        |task| task.state == capstan_core::TaskState::Running,
    )
    .await;
    // Periodic housekeeping tasks may run beside it.
    let running = client.get_node(node.state.id).await.unwrap().running_tasks;
    assert!(
        running >= 1,
        "the node's API answer counts the task it holds, got {running}"
    );

    let server = node.url();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        capstan(
            &server,
            &["nodes", "drain", "node-1", "--wait", "--timeout", "20s"],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("has no running tasks"), "{out}");
    let task = client.get_task(ids[0]).await.unwrap();
    assert!(
        task.state.is_finished(),
        "drain --wait returned while task {} was {:?}: {out}",
        ids[0],
        task.state
    );
}
