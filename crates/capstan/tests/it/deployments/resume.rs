//! A deployment outlives the node running it: SIGKILLed half way through 20 targets,
//! another node resumes it, and the agents' own journals show that nothing that had
//! succeeded ran again and nothing ran twice.

use std::{collections::HashSet, time::Duration};

use capstan_api::{ApiClient, UpdateNodeRequest};
use capstan_core::TaskCap;
use capstan_testkit::{ADMIN_KEY, TempDir, TestDatabase, eventually, haproxy::HaProxy};
use serde_json::json;
use time::OffsetDateTime;

use crate::{agents::fleet::start_agents, agents::resume::start, projects::Api};

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn a_deployment_whose_node_is_sigkilled_half_way_is_resumed_by_another_node_and_nothing_runs_twice()
 {
    const TARGETS: usize = 20;
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-deploy-resume");
    // The deployment runs on `a`; `b` and `c` take no tasks until it has started.
    let mut a = start("a", "5", &db, &dir).await;
    let b = start("b", "0", &db, &dir).await;
    let c = start("c", "0", &db, &dir).await;
    let lb = HaProxy::start(&[
        ("a".to_owned(), a.port),
        ("b".to_owned(), b.port),
        ("c".to_owned(), c.port),
    ]);
    lb.wait_all_up(Duration::from_secs(10)).await;
    let client = ApiClient::new(&lb.url(), Some(ADMIN_KEY.to_owned()));
    let names: Vec<String> = (1..=TARGETS).map(|i| format!("web{i:02}")).collect();
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &["web"][..])).collect();
    let agents = start_agents(&client, &lb.url(), &specs, &dir.0).await;
    let runs = dir.0.join("runs");
    std::fs::create_dir_all(&runs).unwrap();

    let api = Api::new(&lb.url());
    let project = api.project("Shop").await;
    let step = |name: &str, seconds: &str, window: u32| {
        json!({
            "name": name,
            "target_tags": ["web"],
            "window_size": window,
            "actions": [{
                "kind": "script",
                "syntax": "bash",
                "body": format!("echo \"$CAPSTAN_COMMAND_ID\" >> \"#{{Runs}}/#{{Capstan.Machine.Name}}.{name}\"; sleep {seconds}"),
            }],
        })
    };
    let (status, body) = api
        .save_process(
            project,
            0,
            json!([step("deploy", "1", 5), step("verify", "0.2", 10)]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .save_variables(
            project,
            0,
            json!([{ "name": "Runs", "value": runs.display().to_string() }]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, release) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    let (status, deployment) = api
        .post(
            "/api/deployments",
            json!({ "release_id": release["id"], "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    let id = deployment["id"].as_i64().unwrap();
    let path = format!("/api/deployments/{id}");

    // Half way through the first step: some targets done, some running.
    eventually(
        Duration::from_secs(30),
        "half of the first step to finish",
        || async {
            let (_, body) = api.get(&path).await;
            let done = body["grid"]
                .as_array()?
                .iter()
                .filter(|c| c["step"] == 0 && c["state"] == "succeeded")
                .count();
            (done >= TARGETS / 4).then_some(())
        },
    )
    .await;
    for node in ["b", "c"] {
        let found = client.find_node(node).await.unwrap();
        let update = UpdateNodeRequest {
            task_cap: Some(TaskCap::new(5).unwrap()),
            ..Default::default()
        };
        client.update_node(found.id, &update).await.unwrap();
    }
    let killed_at = OffsetDateTime::now_utc();
    a.kill_9();

    let done = eventually(
        Duration::from_secs(90),
        "the deployment to finish",
        || async {
            let (_, body) = api.get(&path).await;
            matches!(
                body["state"].as_str(),
                Some("succeeded" | "failed" | "aborted" | "cancelled")
            )
            .then_some(body)
        },
    )
    .await;
    let task = client
        .get_task(done["task_id"].as_i64().unwrap())
        .await
        .unwrap();
    let log = capstan_testkit::tasks::whole_log(&client, task.id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert!(task.attempt >= 2, "{task:?}");
    assert_ne!(task.node_name.as_deref(), Some("a"), "{task:?}");
    assert!(log.contains("resuming deployment"), "{log}");

    // The first action the resumed run started (not one it adopted).
    let first_new = done["grid"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["started_at"].as_str().map(parse_time))
        .filter(|t| *t > killed_at)
        .min()
        .expect("an action started after the kill");
    let resumed_after = first_new - killed_at;
    eprintln!("first new action {resumed_after} after the kill (lease TTL 1.2 s, heartbeat 0.2 s)");
    assert!(
        resumed_after < time::Duration::seconds(15),
        "{resumed_after}"
    );

    // Each machine ran each step exactly once, by one command its journal started once.
    for agent in &agents {
        let journal = std::fs::read_to_string(agent.home.join("journal")).unwrap();
        let started: Vec<&str> = journal.lines().filter(|l| !l.contains(' ')).collect();
        let unique: HashSet<&str> = started.iter().copied().collect();
        assert_eq!(
            started.len(),
            unique.len(),
            "{} started a command twice:\n{journal}",
            agent.name
        );
        assert_eq!(started.len(), 2, "{}:\n{journal}", agent.name);
        for stepname in ["deploy", "verify"] {
            let ran =
                std::fs::read_to_string(runs.join(format!("{}.{stepname}", agent.name))).unwrap();
            assert_eq!(
                ran.lines().count(),
                1,
                "{} ran {stepname} {ran:?}",
                agent.name
            );
        }
    }
}
