//! A script task outlives the node running it: SIGKILLed mid-run, its scripts go on on
//! their agents, another node resumes the task, and no agent runs its script twice.

use std::time::Duration;

use capstan_api::{ApiClient, CommandVariable, RunScriptRequest, UpdateNodeRequest};
use capstan_core::{CommandState, TaskCap, TaskState};
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase, eventually,
    process::{ProcessOptions, ServerProcess},
    tasks::{wait_finished, wait_task, whole_log},
};

use super::fleet::start_agents;
use crate::capstan_bin;

/// A node process with task cap `cap` and no periodic health checks.
pub(crate) async fn start(
    name: &str,
    cap: &str,
    db: &TestDatabase,
    dir: &TempDir,
) -> ServerProcess {
    let env = vec![
        ("CAPSTAN_TASK_CAP".to_owned(), cap.to_owned()),
        (
            "CAPSTAN_AGENT_HEALTH_CHECK_EVERY".to_owned(),
            "off".to_owned(),
        ),
    ];
    ServerProcess::start(
        &capstan_bin(),
        name,
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions { env },
    )
    .await
}

#[tokio::test]
async fn a_script_task_resumes_on_another_node_when_its_node_is_sigkilled_and_runs_once_per_agent()
{
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-resume");
    // The task runs on `a`; the agents poll `b`, which survives and resumes the task.
    let mut a = start("a", "5", &db, &dir).await;
    let b = start("b", "0", &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));
    let names = ["web01", "web02", "web03"];
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &["web"][..])).collect();
    let agents = start_agents(&client, &b.url(), &specs, &dir.0).await;
    let runs = dir.0.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let task = client
        .run_script(&RunScriptRequest {
            script: "echo \"started on $CAPSTAN_AGENT_NAME\"\n\
                     sleep 4\n\
                     echo \"$CAPSTAN_COMMAND_ID\" >> \"$RUNS/$CAPSTAN_AGENT_NAME\"\n\
                     echo \"finished on $CAPSTAN_AGENT_NAME\""
                .to_owned(),
            tags: vec!["web".into()],
            max_parallel: Some(10),
            timeout: Some("60s".into()),
            variables: vec![CommandVariable {
                name: "RUNS".into(),
                value: runs.display().to_string(),
                sensitive: false,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    wait_task(
        &client,
        task.id,
        Duration::from_secs(10),
        "running on a",
        |t| t.state == TaskState::Running && t.node_name.as_deref() == Some("a"),
    )
    .await;
    // Every script is under way on its agent.
    eventually(Duration::from_secs(10), "every command to run", || async {
        let commands = client.task_commands(task.id).await.ok()?.items;
        (commands.len() == names.len() && commands.iter().all(|c| c.state == CommandState::Running))
            .then_some(())
    })
    .await;
    let node_b = client.find_node("b").await.unwrap();
    let update = UpdateNodeRequest {
        task_cap: Some(TaskCap::new(5).unwrap()),
        ..Default::default()
    };
    client.update_node(node_b.id, &update).await.unwrap();

    a.kill_9();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(30))
        .await
        .remove(0);
    let log = whole_log(&client, task.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    assert_eq!(done.attempt, 2, "{done:?}");
    assert_eq!(done.node_name.as_deref(), Some("b"), "{done:?}");
    assert!(
        log.contains("attempt 2 resumes the commands sent before"),
        "{log}"
    );
    for name in names {
        // Printed some 4 s after the kill, so relayed by the resumed attempt.
        assert_eq!(
            log.matches(&format!("{name}: finished on {name}\n"))
                .count(),
            1,
            "{log}"
        );
    }

    let commands = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(
        commands.len(),
        names.len(),
        "no command sent again: {commands:?}"
    );
    for agent in &agents {
        let command = commands
            .iter()
            .find(|c| c.agent_name == agent.name)
            .unwrap();
        assert_eq!(command.state, CommandState::Succeeded, "{command:?}");
        let ran = std::fs::read_to_string(runs.join(&agent.name)).unwrap();
        assert_eq!(
            ran,
            format!("{}\n", command.id),
            "{} ran {ran:?}",
            agent.name
        );
        let journal = std::fs::read_to_string(agent.home.join("journal")).unwrap();
        let started = journal
            .lines()
            .filter(|l| *l == command.id.to_string())
            .count();
        assert_eq!(started, 1, "{} journal:\n{journal}", agent.name);
        assert!(
            journal.contains(&format!("{} succeeded 0\n", command.id)),
            "{} journal:\n{journal}",
            agent.name
        );
    }
}
