//! Real `capstan-agent` processes: scripts picked by tags with variables, outputs and
//! masking; timeouts and cancel that leave no process behind; packages fetched,
//! verified and cached; health checks; and, behind HAProxy, a node SIGKILLed under
//! the agents' polls with no command lost or run twice.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use capstan_api::{
    AgentHealth, ApiClient, CommandVariable, CreateTaskRequest, PackageVersionRef,
    RunScriptRequest, TaskResponse,
};
use capstan_core::TaskState;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestCluster, TestDatabase,
    agents::{AgentProcess, Registration, ensure_environment, registration_token},
    eventually,
    haproxy::HaProxy,
    metrics_text,
    process::{ProcessOptions, ServerProcess},
    tasks::{wait_finished, whole_log},
};

use super::agent_bin;
use crate::capstan_bin;

/// Starts real agents `(name, tags)` registered through `server`, polling it.
pub(crate) async fn start_agents(
    client: &ApiClient,
    server: &str,
    agents: &[(&str, &[&str])],
    dir: &Path,
) -> Vec<AgentProcess> {
    ensure_environment(client, "Production").await;
    let token = registration_token(client, agents.len() as u32).await;
    let mut started = Vec::new();
    for (name, tags) in agents {
        started.push(
            AgentProcess::register_and_run(
                &agent_bin(),
                server,
                &token,
                name,
                "Production",
                tags,
                dir,
            )
            .await,
        );
    }
    // Polling: a node has seen each of them.
    eventually(Duration::from_secs(10), "every agent to poll", || async {
        let page = client.list_agents(&Default::default()).await.ok()?;
        page.items
            .iter()
            .all(|a| a.last_seen.is_some())
            .then_some(())
    })
    .await;
    started
}

async fn finish(client: &ApiClient, task: &TaskResponse, within: Duration) -> TaskResponse {
    wait_finished(client, &[task.id], within).await.remove(0)
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_script_runs_on_the_agents_its_tags_pick_with_variables_outputs_and_secrets_masked() {
    let cluster = TestCluster::start(2).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let _agents = start_agents(
        &client,
        &cluster.node(1).url(),
        &[
            ("web01", &["web"]),
            ("web02", &["web", "eu"]),
            ("db01", &["db"]),
        ],
        &dir.0,
    )
    .await;
    let secret = "s3cr3t-Pa55word";
    let script = r###"
echo "colour=$COLOUR password=$PASSWORD agent=$CAPSTAN_AGENT_NAME"
echo "oops" >&2
echo "##capstan[set-output name='Ready' value='True']"
echo "##capstan[set-output name='Broken' value='no end"
exit 0
"###;
    let task = client
        .run_script(&RunScriptRequest {
            script: script.into(),
            tags: vec!["web".into()],
            environment: Some("Production".into()),
            variables: vec![
                CommandVariable {
                    name: "COLOUR".into(),
                    value: "blue".into(),
                    sensitive: false,
                },
                CommandVariable {
                    name: "PASSWORD".into(),
                    value: secret.into(),
                    sensitive: true,
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &task, Duration::from_secs(30)).await;
    let log = whole_log(&client, task.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    assert!(!log.contains(secret), "the secret leaked:\n{log}");
    for agent in ["web01", "web02"] {
        assert!(
            log.contains(&format!(
                "{agent}: colour=blue password=******** agent={agent}"
            )),
            "{log}"
        );
        assert!(log.contains(&format!("WARN {agent}: oops")), "{log}");
    }
    assert!(log.contains("ignored a malformed service message"), "{log}");
    assert!(!log.contains("db01"), "db01 has no web tag:\n{log}");
    let commands = client.task_commands(task.id).await.unwrap().items;
    let outcomes: BTreeMap<String, (String, Option<i32>, Option<String>)> = commands
        .iter()
        .map(|c| {
            (
                c.agent_name.clone(),
                (
                    c.state.as_str().to_owned(),
                    c.exit_code,
                    c.outputs.get("Ready").cloned(),
                ),
            )
        })
        .collect();
    let expected = |name: &str| {
        (
            name.to_owned(),
            ("succeeded".to_owned(), Some(0), Some("True".to_owned())),
        )
    };
    assert_eq!(
        outcomes,
        BTreeMap::from([expected("web01"), expected("web02")])
    );

    // A failing script fails its task, naming the agent and the exit code.
    let failing = client
        .run_script(&RunScriptRequest {
            script: "echo about to fail; exit 3".into(),
            agents: vec!["db01".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &failing, Duration::from_secs(30)).await;
    assert_eq!(done.state, TaskState::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("db01 (failed: the script exited with code 3)"),
        "{error}"
    );
}

#[tokio::test]
async fn timeouts_and_cancels_stop_the_scripts_whole_process_group() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let _agents = start_agents(&client, &cluster.node(0).url(), &[("tm01", &[])], &dir.0).await;

    // A child in the background and one in the foreground: both must go.
    let timed = client
        .run_script(&RunScriptRequest {
            script: "sleep 987651 & sleep 987652".into(),
            agents: vec!["tm01".into()],
            timeout: Some("1s".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &timed, Duration::from_secs(20)).await;
    assert_eq!(done.state, TaskState::Failed);
    let error = done.error.unwrap();
    assert!(error.contains("tm01 (timed out"), "{error}");
    eventually(
        Duration::from_secs(10),
        "the timed-out processes to go",
        || async { processes_with("98765").is_empty().then_some(()) },
    )
    .await;

    let cancelled = client
        .run_script(&RunScriptRequest {
            script: "sleep 987653 & sleep 987654".into(),
            agents: vec!["tm01".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the script to start", || async {
        (!processes_with("987654").is_empty()).then_some(())
    })
    .await;
    let asked = Instant::now();
    client.cancel_task(cancelled.id).await.unwrap();
    let done = finish(&client, &cancelled, Duration::from_secs(10)).await;
    assert_eq!(done.state, TaskState::Cancelled);
    eventually(
        Duration::from_secs(10),
        "the cancelled processes to go",
        || async { processes_with("98765").is_empty().then_some(()) },
    )
    .await;
    assert!(asked.elapsed() < Duration::from_secs(10));
    eventually(
        Duration::from_secs(10),
        "the agent to report the cancel",
        || async {
            let commands = client.task_commands(cancelled.id).await.ok()?.items;
            (commands[0].state.as_str() == "cancelled").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn packages_are_fetched_verified_and_then_served_from_the_agents_cache() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let _agents = start_agents(&client, &cluster.node(0).url(), &[("pk01", &[])], &dir.0).await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let pushed = client
        .push_package(
            "MyApp",
            "1.2.3",
            "zip",
            false,
            bytes.len() as u64,
            bytes.clone().into(),
        )
        .await
        .unwrap();
    let request = RunScriptRequest {
        script: r#"echo "sha=$(sha256sum < "$CAPSTAN_PACKAGE_MYAPP" | cut -d' ' -f1)""#.into(),
        agents: vec!["pk01".into()],
        packages: vec![PackageVersionRef {
            id: "MyApp".into(),
            version: "1.2.3".into(),
        }],
        ..Default::default()
    };
    let first = client.run_script(&request).await.unwrap();
    let done = finish(&client, &first, Duration::from_secs(30)).await;
    let log = whole_log(&client, first.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{log}");
    assert!(
        log.contains(&format!("pk01: sha={}", pushed.sha256)),
        "{log}"
    );
    assert!(!log.contains("cache hit"), "{log}");
    let sent_before = metrics_text(&cluster.node(0).url()).await;

    let second = client.run_script(&request).await.unwrap();
    let done = finish(&client, &second, Duration::from_secs(30)).await;
    let log = whole_log(&client, second.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{log}");
    assert!(log.contains("cache hit"), "{log}");
    assert!(
        log.contains(&format!("pk01: sha={}", pushed.sha256)),
        "{log}"
    );
    let sent = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("capstan_blob_sent_bytes_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let sent_after = metrics_text(&cluster.node(0).url()).await;
    assert_eq!(
        sent(&sent_after),
        sent(&sent_before),
        "a cache hit transfers nothing"
    );
}

#[tokio::test]
async fn health_checks_mark_answering_agents_healthy_and_silent_ones_unhealthy() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let mut agents = start_agents(
        &client,
        &cluster.node(0).url(),
        &[("up01", &[]), ("down01", &[])],
        &dir.0,
    )
    .await;
    agents[1].kill_9();
    let task = client
        .create_task(&CreateTaskRequest::new(
            "health-check",
            serde_json::json!({"timeout_ms": 2000}),
        ))
        .await
        .unwrap();
    let done = finish(&client, &task, Duration::from_secs(20)).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let by_name: BTreeMap<String, capstan_api::AgentResponse> = client
        .list_agents(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    let up = &by_name["up01"];
    assert_eq!(up.health, AgentHealth::Healthy, "{up:?}");
    let reason = up.health_reason.clone().unwrap();
    assert!(
        reason.contains("capstan-agent") && reason.contains("bash"),
        "{reason}"
    );
    let down = &by_name["down01"];
    assert_eq!(down.health, AgentHealth::Unhealthy, "{down:?}");
    let reason = down.health_reason.clone().unwrap();
    assert!(reason.contains("did not report within 4s"), "{reason}");
    let unhealthy = client
        .list_agents(&capstan_api::AgentQuery {
            health: Some("unhealthy".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unhealthy.items.len(), 1);
}

/// Polls each node holds now, from its metrics.
async fn polls_held(nodes: &[ServerProcess]) -> Vec<f64> {
    let mut held = Vec::new();
    for node in nodes {
        let text = metrics_text(&node.url()).await;
        held.push(
            text.lines()
                .find_map(|l| l.strip_prefix("capstan_agent_polls_waiting "))
                .map_or(0.0, |v| v.trim().parse().unwrap()),
        );
    }
    held
}

#[tokio::test]
async fn agents_behind_haproxy_carry_on_through_another_node_when_the_one_holding_their_poll_is_killed()
 {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-fleet-lb");
    // Tasks run on node-1; the other two only serve the API and agents, so killing one
    // of them tests the agents' path alone.
    let mut nodes = Vec::new();
    for (name, cap) in [("lb-1", "5"), ("lb-2", "0"), ("lb-3", "0")] {
        let env = vec![
            ("CAPSTAN_TASK_CAP".to_owned(), cap.to_owned()),
            (
                "CAPSTAN_AGENT_HEALTH_CHECK_EVERY".to_owned(),
                "off".to_owned(),
            ),
        ];
        nodes.push(
            ServerProcess::start(
                &capstan_bin(),
                name,
                &db.url,
                &dir.0,
                &dir.0,
                ProcessOptions { env },
            )
            .await,
        );
    }
    let lb = HaProxy::start(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.port))
            .collect::<Vec<_>>(),
    );
    lb.wait_all_up(Duration::from_secs(10)).await;
    let client = ApiClient::new(&lb.url(), Some(ADMIN_KEY.to_owned()));
    let names = ["edge01", "edge02", "edge03", "edge04"];
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &["edge"][..])).collect();
    // Test agents poll for 2 s at a time, so each visits every node within seconds.
    let _agents = start_agents(&client, &lb.url(), &specs, &dir.0).await;
    let runs = dir.0.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let script = |ticks: u32| RunScriptRequest {
        script: format!(
            "echo \"$CAPSTAN_COMMAND_ID\" >> \"$RUNS/$CAPSTAN_AGENT_NAME\"\n\
             for i in $(seq 1 {ticks}); do echo \"tick $i\"; sleep 0.1; done"
        ),
        tags: vec!["edge".into()],
        max_parallel: Some(10),
        variables: vec![CommandVariable {
            name: "RUNS".into(),
            value: runs.display().to_string(),
            sensitive: false,
        }],
        ..Default::default()
    };

    let before = client.run_script(&script(3)).await.unwrap();
    assert_eq!(
        finish(&client, &before, Duration::from_secs(30))
            .await
            .state,
        TaskState::Succeeded
    );

    // A node holding polls, not the one running tasks.
    let victim = eventually(
        Duration::from_secs(20),
        "an API-only node to hold a poll",
        || async {
            let held = polls_held(&nodes).await;
            (1..3).find(|&i| held[i] >= 1.0)
        },
    )
    .await;
    let during = client.run_script(&script(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    nodes[victim].kill_9();
    let done = finish(&client, &during, Duration::from_secs(60)).await;
    let log = whole_log(&client, during.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    for name in names {
        for i in 1..=30 {
            let line = format!("{name}: tick {i}\n");
            assert_eq!(log.matches(&line).count(), 1, "`{line}` once:\n{log}");
        }
    }

    // With the node gone, work still reaches every agent through the others.
    let after = client.run_script(&script(3)).await.unwrap();
    assert_eq!(
        finish(&client, &after, Duration::from_secs(30)).await.state,
        TaskState::Succeeded
    );
    // Every command ran exactly once on its agent.
    let mut expected_ids = Vec::new();
    for task in [&before, &during, &after] {
        for command in client.task_commands(task.id).await.unwrap().items {
            expected_ids.push((command.agent_name, command.id.to_string()));
        }
    }
    for name in names {
        let ran = std::fs::read_to_string(runs.join(name)).unwrap();
        let ran: Vec<&str> = ran.lines().collect();
        let mut wanted: Vec<&str> = expected_ids
            .iter()
            .filter(|(agent, _)| agent == name)
            .map(|(_, id)| id.as_str())
            .collect();
        wanted.sort();
        let mut sorted = ran.clone();
        sorted.sort();
        assert_eq!(sorted, wanted, "{name} ran {ran:?}");
    }
}

/// A private CA and a certificate for 127.0.0.1 it signed, made with `openssl`:
/// `(ca.pem, haproxy.pem)`.
fn test_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Capstan test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let mut pem = std::fs::read(dir.join("server.crt")).unwrap();
    pem.extend(std::fs::read(dir.join("server.key")).unwrap());
    std::fs::write(dir.join("haproxy.pem"), pem).unwrap();
    (dir.join("ca.pem"), dir.join("haproxy.pem"))
}

#[tokio::test]
async fn an_agent_talks_https_trusting_a_private_ca_it_was_given_and_nothing_else() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let dir = TempDir::new("capstan-fleet-tls");
    let (ca, pem) = test_certificates(&dir.0);
    let port: u16 = node.url().rsplit(':').next().unwrap().parse().unwrap();
    let lb = HaProxy::start_tls(&[("tls-1".to_owned(), port)], &pem);
    lb.wait_all_up(Duration::from_secs(10)).await;
    ensure_environment(&client, "Production").await;
    let token = registration_token(&client, 1).await;
    let server = lb.https_url();
    let registration = |extra_args| Registration {
        server: &server,
        token: &token,
        name: "tls01",
        environment: "Production",
        tags: &["tls"],
        extra_args,
    };

    // Without the CA the server's certificate is not trusted, and nothing is sent.
    let refused = AgentProcess::register(&agent_bin(), &registration(&[]), &dir.0)
        .await
        .err()
        .expect("an untrusted certificate is refused");
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let ca_arg = ca.display().to_string();
    let mut agent =
        AgentProcess::register(&agent_bin(), &registration(&["--ca-cert", &ca_arg]), &dir.0)
            .await
            .unwrap();
    agent.start();
    let task = client
        .run_script(&RunScriptRequest {
            script: "echo over TLS".into(),
            agents: vec!["tls01".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &task, Duration::from_secs(30)).await;
    assert_eq!(done.state, TaskState::Succeeded, "{}", agent.log());
    assert!(
        whole_log(&client, task.id)
            .await
            .contains("tls01: over TLS")
    );
}

#[tokio::test]
async fn max_parallel_bounds_how_many_agents_run_the_script_at_once() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let names = ["mp1", "mp2", "mp3", "mp4", "mp5"];
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &["mp"][..])).collect();
    let _agents = start_agents(&client, &cluster.node(0).url(), &specs, &dir.0).await;
    let task = client
        .run_script(&RunScriptRequest {
            script: "sleep 0.4".into(),
            tags: vec!["mp".into()],
            max_parallel: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &task, Duration::from_secs(30)).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let commands = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(commands.len(), 5);
    // Sent to at most two agents at a time: from queued to finished, no three overlap.
    let spans: Vec<_> = commands
        .iter()
        .map(|c| (c.queued_at, c.finished_at.unwrap()))
        .collect();
    for (start, _) in &spans {
        let at_once = spans
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(at_once <= 2, "{at_once} at once: {spans:?}");
    }
    let one_at_a_time = spans
        .iter()
        .filter(|(s, f)| *f - *s >= time::Duration::milliseconds(400))
        .count();
    assert_eq!(one_at_a_time, 5, "each ran its script: {spans:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_manage_agents_and_run_scripts_with_the_cli() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let cli = |args: &'static [&'static str]| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || crate::cli::capstan(&server, args))
    };
    let (ok, out) = cli(&["environments", "create", "Production"])
        .await
        .unwrap();
    assert!(ok, "{out}");
    let (ok, token) = cli(&["agents", "token", "--uses", "2"]).await.unwrap();
    assert!(ok, "{token}");
    let token = token.lines().next().unwrap().trim().to_owned();
    assert!(token.starts_with("capreg_"), "{token}");
    let dir = TempDir::new("capstan-fleet-cli");
    let mut agents = Vec::new();
    for name in ["cli01", "cli02"] {
        agents.push(
            AgentProcess::register_and_run(
                &agent_bin(),
                &server,
                &token,
                name,
                "Production",
                &["web"],
                &dir.0,
            )
            .await,
        );
    }
    let (ok, out) = cli(&[
        "run-script",
        "--tags",
        "web",
        "--environment",
        "Production",
        "--follow",
        "--",
        "echo",
        "up",
        "on",
        "$CAPSTAN_AGENT_NAME",
    ])
    .await
    .unwrap();
    assert!(ok, "{out}");
    for name in ["cli01", "cli02"] {
        assert!(out.contains(&format!("{name}: up on {name}")), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains("succeeded")),
            "{out}"
        );
    }
    let (ok, out) = cli(&[
        "run-script",
        "--agents",
        "cli01",
        "--follow",
        "--",
        "exit 4",
    ])
    .await
    .unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("the script exited with code 4"), "{out}");

    let (ok, out) = cli(&["agents", "check"]).await.unwrap();
    assert!(ok, "{out}");
    let (ok, out) = cli(&["agents", "list"]).await.unwrap();
    assert!(ok, "{out}");
    for name in ["cli01", "cli02"] {
        let row = out.lines().find(|l| l.contains(name)).unwrap_or_default();
        assert!(
            row.contains("healthy") && row.contains("Production"),
            "{out}"
        );
    }
    let (ok, out) = cli(&["agents", "disable", "cli02"]).await.unwrap();
    assert!(ok && out.contains("agent cli02 is disabled"), "{out}");
    let (ok, out) = cli(&["run-script", "--agents", "cli02", "--", "true"])
        .await
        .unwrap();
    assert!(!ok);
    assert!(out.contains("do not exist, are disabled"), "{out}");
    let (ok, out) = cli(&["agents", "delete", "cli02"]).await.unwrap();
    assert!(ok, "{out}");
    let (ok, out) = cli(&["agents", "delete", "nobody"]).await.unwrap();
    assert!(!ok && out.contains("no agent is named `nobody`"), "{out}");
}

/// Polls the node at `url` has answered so far.
async fn polls_answered(url: &str) -> f64 {
    metrics_text(url)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("capstan_agent_polls_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A script that ignores SIGTERM holds its command for the kill grace after a cancel.
/// Its agent knows of the cancel by then, so its polls wait as idle ones do, instead
/// of being answered at once with the same cancel over and over; and a poll that
/// brings nothing new is not worth a line of the node's log.
#[tokio::test]
async fn agents_stopping_a_cancelled_script_that_ignores_sigterm_poll_as_idle_ones_do() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-fleet-cancel");
    let env = vec![(
        "CAPSTAN_AGENT_HEALTH_CHECK_EVERY".to_owned(),
        "off".to_owned(),
    )];
    let node = ServerProcess::start(
        &capstan_bin(),
        "hold-1",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions { env },
    )
    .await;
    let client = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let names: Vec<String> = (1..=20).map(|i| format!("hold{i:02}")).collect();
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &["hold"][..])).collect();
    let _agents = start_agents(&client, &node.url(), &specs, &dir.0).await;
    let task = client
        .run_script(&RunScriptRequest {
            script: "trap '' TERM\necho started\nsleep 60".into(),
            tags: vec!["hold".into()],
            max_parallel: Some(20),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "every agent to run the script",
        || async {
            let commands = client.task_commands(task.id).await.ok()?.items;
            (commands.len() == 20 && commands.iter().all(|c| c.state.as_str() == "running"))
                .then_some(())
        },
    )
    .await;
    // Let the scripts reach their `sleep`, past the trap.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let polls_before = polls_answered(&node.url()).await;
    let log_before = node.log().len();
    let asked = Instant::now();
    client.cancel_task(task.id).await.unwrap();
    eventually(
        Duration::from_secs(20),
        "every agent to report its script stopped",
        || async {
            let commands = client.task_commands(task.id).await.ok()?.items;
            commands
                .iter()
                .all(|c| c.state.as_str() == "cancelled" && c.error.as_deref() == Some("cancelled"))
                .then_some(())
        },
    )
    .await;
    let held = asked.elapsed();
    let polls = polls_answered(&node.url()).await - polls_before;

    // Test agents wait 2 s per idle poll; each poll woken by the cancel comes on top.
    let idle = 20.0 * held.as_secs_f64() / 2.0;
    assert!(
        held >= Duration::from_secs(4),
        "the scripts ignore SIGTERM, so they hold on until SIGKILL: {held:?}"
    );
    assert!(
        polls <= 2.0 * idle + 20.0,
        "{polls} polls in {held:?} from 20 agents; idle they would make about {idle:.0}"
    );
    let log = node.log();
    let poll_lines = log[log_before..]
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("GET /api/agent/commands"))
        .count();
    assert!(
        poll_lines <= 40,
        "{poll_lines} polls logged at info level; only the 20 that told of the cancel brought news"
    );
}

/// A NUL in a script's output and in an output variable is stored as U+FFFD: the
/// command succeeds, and both are readable.
#[tokio::test]
async fn a_script_printing_nul_bytes_into_its_log_and_an_output_variable_succeeds() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-fleet");
    let _agents = start_agents(&client, &cluster.node(0).url(), &[("nul01", &[])], &dir.0).await;
    let task = client
        .run_script(&RunScriptRequest {
            script: "printf \"##capstan[set-output name='Ready' value='a\\0b']\\n\"\n\
                     printf 'before\\0after\\n'\nexit 0"
                .into(),
            agents: vec!["nul01".into()],
            timeout: Some("10s".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finish(&client, &task, Duration::from_secs(20)).await;
    let log = whole_log(&client, task.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    assert!(log.contains("nul01: before\u{fffd}after"), "{log}");
    let commands = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(commands[0].state.as_str(), "succeeded");
    assert_eq!(commands[0].exit_code, Some(0));
    assert_eq!(
        commands[0].outputs.get("Ready").map(String::as_str),
        Some("a\u{fffd}b")
    );
}
