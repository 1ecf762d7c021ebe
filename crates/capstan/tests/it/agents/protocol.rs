//! The mailbox protocol, spoken by simulated agents to real nodes: delivery until
//! acknowledged through any node, output stored once, results, wake-ups, cancel.

use std::time::{Duration, Instant};

use capstan_api::{CommandOutcome, CommandResult};
use capstan_core::TaskState;
use capstan_testkit::{
    TestCluster,
    agents::SimAgent,
    eventually, metrics_text,
    tasks::{wait_finished, wait_idle, whole_log},
};

use super::{run_script, sim_agents};

fn succeeded() -> CommandResult {
    CommandResult {
        outcome: CommandOutcome::Succeeded,
        exit_code: Some(0),
        error: None,
        outputs: [("Ready".to_owned(), "True".to_owned())].into(),
        facts: None,
    }
}

#[tokio::test]
async fn a_command_comes_again_through_any_node_until_acknowledged_and_its_output_is_stored_once() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let client = a.client();
    let agent = sim_agents(&client, &a.url(), &["web01"], &["web"])
        .await
        .remove(0);
    let task = run_script(&client, "echo hello", &["web01"]).await;

    // Handed over by node b; the answer is "lost", so the agent asks node a: the same
    // command comes again, as it is not acknowledged.
    let first = agent.through(&b.url()).poll(5_000).await.unwrap();
    assert_eq!(first.commands.len(), 1, "{first:?}");
    let again = agent.poll(5_000).await.unwrap();
    assert_eq!(again.commands, first.commands);
    let id = first.commands[0].id;
    assert_eq!(first.commands[0].task_id, task.id);

    agent.ack(id).await.unwrap();
    agent.through(&b.url()).ack(id).await.unwrap(); // acknowledging again is fine
    let after_ack = agent.poll(200).await.unwrap();
    assert!(after_ack.commands.is_empty(), "{after_ack:?}");

    // A batch sent twice (its answer lost) is stored once; the next batch goes on.
    agent
        .output(id, &[(1, "line one"), (2, "line two")])
        .await
        .unwrap();
    agent
        .through(&b.url())
        .output(id, &[(1, "line one"), (2, "line two")])
        .await
        .unwrap();
    agent.output(id, &[(3, "line three")]).await.unwrap();
    agent
        .through(&b.url())
        .result(id, &succeeded())
        .await
        .unwrap();
    agent.result(id, &succeeded()).await.unwrap(); // reported again: no error

    let done = wait_finished(&client, &[task.id], Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    let log = whole_log(&client, task.id).await;
    for line in ["web01: line one", "web01: line two", "web01: line three"] {
        assert_eq!(log.matches(line).count(), 1, "`{line}` once in:\n{log}");
    }
    assert!(log.contains("web01: succeeded"), "{log}");
    let commands = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].state.as_str(), "succeeded");
    assert_eq!(commands[0].deliveries, 2);
    assert_eq!(commands[0].exit_code, Some(0));
    assert_eq!(commands[0].outputs["Ready"], "True");
}

/// How many polls of the node at `url` read a mailbox from the database.
async fn mailbox_reads(url: &str) -> f64 {
    metrics_text(url)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("capstan_agent_mailbox_reads_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn an_idle_poll_costs_no_query_and_wakes_at_once_when_a_command_is_sent() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let client = a.client();
    let agent = sim_agents(&client, &a.url(), &["idle01"], &[])
        .await
        .remove(0);

    let idle = agent.through(&b.url());
    idle.poll(50).await.unwrap();
    let before = mailbox_reads(&b.url()).await;
    for _ in 0..10 {
        assert!(idle.poll(50).await.unwrap().commands.is_empty());
    }
    let after = mailbox_reads(&b.url()).await;
    assert_eq!(
        after, before,
        "idle polls of a known-empty mailbox read nothing"
    );

    // A command sent through node a wakes the poll waiting on node b.
    let waiting = tokio::spawn({
        let idle = idle.clone();
        async move {
            let started = Instant::now();
            let answer = idle.poll(20_000).await.unwrap();
            (answer, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    run_script(&client, "true", &["idle01"]).await;
    let (answer, _) = waiting.await.unwrap();
    let woke_after = sent.elapsed();
    assert_eq!(answer.commands.len(), 1);
    assert!(
        woke_after < Duration::from_secs(2),
        "the poll should wake on NOTIFY, not at its deadline: {woke_after:?}"
    );
}

/// The node running the task hands its commands to the poll it holds without reading
/// them back, whether the poll was waiting or comes later, and whichever of the
/// hand-over and the insert's own NOTIFY comes first: each command is answered once
/// and counted once, and the only read is the poll after the acknowledgement.
#[tokio::test]
async fn commands_sent_by_the_node_holding_the_poll_are_answered_and_counted_once() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agent = sim_agents(&client, &node.url(), &["near01"], &[])
        .await
        .remove(0);
    assert!(agent.poll(50).await.unwrap().commands.is_empty());
    let reads_before = mailbox_reads(&node.url()).await;

    let rounds = [true, false, true, false, true];
    for waiting_first in rounds {
        let (task, handed) = if waiting_first {
            let poll = tokio::spawn({
                let agent = agent.clone();
                async move { agent.poll(10_000).await.unwrap() }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            let task = run_script(&client, "true", &["near01"]).await;
            (task, poll.await.unwrap())
        } else {
            let task = run_script(&client, "true", &["near01"]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            (task, agent.poll(10_000).await.unwrap())
        };
        assert_eq!(handed.commands.len(), 1, "{handed:?}");
        let command = &handed.commands[0];
        assert_eq!(command.task_id, task.id);
        agent.ack(command.id).await.unwrap();
        let after_ack = agent.poll(100).await.unwrap();
        assert!(after_ack.commands.is_empty(), "{after_ack:?}");
        agent.result(command.id, &succeeded()).await.unwrap();
        let done = wait_finished(&client, &[task.id], Duration::from_secs(10))
            .await
            .remove(0);
        assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
        // Counted after the answer, off the agent's path.
        let counted = eventually(Duration::from_secs(5), "the delivery counted", || async {
            let commands = client.task_commands(task.id).await.unwrap().items;
            (commands[0].deliveries > 0).then_some(commands[0].deliveries)
        })
        .await;
        assert_eq!(counted, 1, "task {}", task.id);
    }
    let reads = mailbox_reads(&node.url()).await - reads_before;
    assert_eq!(
        reads,
        rounds.len() as f64,
        "one read per script, the poll after its acknowledgement"
    );
}

/// A script the node it was posted to claims at once sends its first `max_parallel`
/// commands in the claim's own statement (so they are there when the POST answers,
/// queued at the very moment the task started), the rest as those finish. A script
/// that has to wait for a slot sends nothing until a node claims it.
#[tokio::test]
async fn a_script_claimed_at_once_sends_its_first_commands_with_the_claim_and_a_waiting_one_none() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let names = ["first01", "first02", "first03"];
    let agents = sim_agents(&client, &node.url(), &names, &[]).await;
    let script = |max_parallel| capstan_api::RunScriptRequest {
        script: "true".to_owned(),
        agents: names.iter().map(|a| (*a).to_owned()).collect(),
        max_parallel: Some(max_parallel),
        ..Default::default()
    };

    wait_idle(&client).await;
    let task = client.run_script(&script(2)).await.unwrap();
    assert_eq!(task.state, TaskState::Running, "{task:?}");
    let sent = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(sent.len(), 2, "{sent:?}");
    for command in &sent {
        assert_eq!(Some(command.queued_at), task.started_at, "{command:?}");
    }
    let mut ran = Vec::new();
    for agent in agents.iter().cycle().take(2 * names.len()) {
        let answer = agent.poll(200).await.unwrap();
        for command in answer.commands {
            agent.ack(command.id).await.unwrap();
            agent.result(command.id, &succeeded()).await.unwrap();
            ran.push(command.id);
        }
    }
    let done = wait_finished(&client, &[task.id], Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    let all = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(ran.len(), 3, "each command ran once: {ran:?}");
    assert!(all.iter().all(|c| c.deliveries == 1), "{all:?}");
    let third = all
        .iter()
        .find(|c| !sent.iter().any(|s| s.id == c.id))
        .unwrap();
    assert!(third.queued_at > task.started_at.unwrap(), "{third:?}");

    // No slot: the script is queued and sends nothing until it is claimed.
    let node_id = client.find_node("node-1").await.unwrap().id;
    let set_cap = |cap| capstan_api::UpdateNodeRequest {
        task_cap: Some(capstan_core::TaskCap::new(cap).unwrap()),
        ..Default::default()
    };
    client.update_node(node_id, &set_cap(0)).await.unwrap();
    // The node hears of its new cap through NOTIFY: once a no-op task stays queued, it
    // has.
    eventually(Duration::from_secs(10), "the cap of 0 applied", || async {
        let probe = client
            .create_task(&capstan_api::CreateTaskRequest::new(
                "sleep",
                serde_json::json!({"ms": 0}),
            ))
            .await
            .unwrap();
        (probe.state == TaskState::Queued).then_some(())
    })
    .await;
    let waiting = client.run_script(&script(3)).await.unwrap();
    assert_eq!(waiting.state, TaskState::Queued, "{waiting:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        client
            .task_commands(waiting.id)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    client.update_node(node_id, &set_cap(5)).await.unwrap();
    for agent in &agents {
        let answer = agent.poll(5_000).await.unwrap();
        assert_eq!(answer.commands.len(), 1, "{answer:?}");
        let command = &answer.commands[0];
        assert_eq!(command.task_id, waiting.id);
        agent.ack(command.id).await.unwrap();
        agent.result(command.id, &succeeded()).await.unwrap();
    }
    let done = wait_finished(&client, &[waiting.id], Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    let started = done.started_at.unwrap();
    let commands = client.task_commands(waiting.id).await.unwrap().items;
    assert!(
        commands.iter().all(|c| c.queued_at > started),
        "{commands:?}"
    );
}

#[tokio::test]
async fn cancelling_stops_running_commands_and_withdraws_those_not_yet_acknowledged() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agents = sim_agents(&client, &node.url(), &["run01", "late01"], &["web"]).await;
    let (running, late) = (&agents[0], &agents[1]);
    let task = run_script(&client, "sleep 100", &["run01", "late01"]).await;
    let handed = running.poll(5_000).await.unwrap();
    let id = handed.commands[0].id;
    running.ack(id).await.unwrap();
    let late_id = late.poll(5_000).await.unwrap().commands[0].id;

    client.cancel_task(task.id).await.unwrap();
    // The running command's agent is told to stop it...
    let told = eventually(
        Duration::from_secs(5),
        "the cancel to reach the agent",
        || async {
            let answer = running.poll(1_000).await.unwrap();
            answer.cancel.contains(&id).then_some(answer)
        },
    )
    .await;
    assert!(told.commands.is_empty());
    // An agent that names the cancel it holds is not told again: its poll waits.
    let poll_naming = |cancelling: String| {
        let running = running.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{}/api/agent/commands?wait_ms=300", running.base))
                .bearer_auth(&running.credential)
                .header(capstan_api::agents::AGENT_CANCELLING_HEADER, cancelling)
                .send()
                .await
                .unwrap()
        }
    };
    let asked = Instant::now();
    let answer: capstan_api::PollResponse = poll_naming(id.to_string()).await.json().await.unwrap();
    assert!(
        answer.cancel.is_empty() && answer.commands.is_empty(),
        "{answer:?}"
    );
    assert!(asked.elapsed() >= Duration::from_millis(250));
    assert_eq!(poll_naming("12,x".to_owned()).await.status(), 400);
    // ...and the other may no longer start its own.
    let (status, problem) = late.ack(late_id).await.unwrap_err();
    assert_eq!(status, 409);
    assert!(problem.detail.contains("cancelled"), "{}", problem.detail);
    running
        .result(
            id,
            &CommandResult {
                outcome: CommandOutcome::Cancelled,
                exit_code: None,
                error: Some("cancelled".into()),
                outputs: Default::default(),
                facts: None,
            },
        )
        .await
        .unwrap();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Cancelled, "{done:?}");
    let states: Vec<String> = client
        .task_commands(task.id)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.state.as_str().to_owned())
        .collect();
    assert_eq!(states, ["cancelled", "cancelled"]);
}

#[tokio::test]
async fn an_agent_that_never_reports_fails_its_part_with_a_reason() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    sim_agents(&client, &node.url(), &["gone01"], &[]).await;
    let task = client
        .run_script(&capstan_api::RunScriptRequest {
            script: "true".into(),
            agents: vec!["gone01".into()],
            timeout: Some("1s".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("gone01 (timed out: the agent did not report within 2s"),
        "{error}"
    );
}

/// The claim that sends a script's first commands is one statement: an agent deleted
/// between the target lookup and that statement refuses the whole of it. The delete
/// is held open in a transaction, so the lookup still sees the agent and the
/// statement's foreign-key check waits for the delete to commit.
#[tokio::test]
async fn a_script_whose_agent_is_deleted_while_it_is_queued_is_refused_and_leaves_nothing() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let db = sqlx::PgPool::connect(&cluster.db.url).await.unwrap();
    // A node whose claim loop holds its free slot at that moment queues the script
    // instead of claiming it, and nothing waits: then try again with another agent.
    for attempt in 1..=5 {
        let name = format!("gone{attempt:02}");
        sim_agents(&client, &node.url(), &[name.as_str()], &[]).await;
        wait_idle(&client).await;
        let mut deleting = db.begin().await.unwrap();
        sqlx::query("DELETE FROM agents WHERE name = $1")
            .bind(&name)
            .execute(&mut *deleting)
            .await
            .unwrap();
        let mut posted = tokio::spawn({
            let client = client.clone();
            let name = name.clone();
            async move {
                client
                    .run_script(&capstan_api::RunScriptRequest {
                        script: "true".to_owned(),
                        agents: vec![name],
                        ..Default::default()
                    })
                    .await
            }
        });
        let claim_waits = eventually(Duration::from_secs(10), "the claim to wait", || async {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'WITH inserted AS (INSERT INTO tasks%'",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        });
        tokio::select! {
            answered = &mut posted => {
                let queued = answered.unwrap().expect("a queued script");
                assert_eq!(queued.state, TaskState::Queued, "{queued:?}");
                deleting.rollback().await.unwrap();
                client.cancel_task(queued.id).await.unwrap();
                continue;
            }
            () = claim_waits => {}
        }
        deleting.commit().await.unwrap();

        let refused = posted.await.unwrap().unwrap_err();
        let capstan_api::ClientError::Api(problem) = refused else {
            panic!("{refused}");
        };
        assert_eq!(problem.status, 409, "{problem:?}");
        assert!(
            problem.detail.contains("deleted meanwhile"),
            "{}",
            problem.detail
        );
        let (tasks,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks
             WHERE kind = 'script' AND args -> 'targets' @> jsonb_build_array(
                 jsonb_build_object('name', $1::text))",
        )
        .bind(&name)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(tasks, 0, "no task is left for {name}");
        return;
    }
    panic!("the node queued the script instead of claiming it in 5 tries");
}

/// Hands `script` to `agent` through a task and acknowledges it: its command id.
async fn running_command(
    agent: &SimAgent,
    client: &capstan_api::ApiClient,
    script: &str,
) -> (i64, i64) {
    let task = run_script(client, script, &[agent.name.as_str()]).await;
    let handed = agent.poll(5_000).await.unwrap();
    let id = handed.commands[0].id;
    agent.ack(id).await.unwrap();
    (task.id, id)
}

/// Lines are numbered one by one and a batch holds at most 1,000: a number further
/// ahead of what is stored is refused, so it cannot make the node skip what follows.
#[tokio::test]
async fn an_output_line_numbered_beyond_what_a_batch_can_hold_is_refused() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agent = sim_agents(&client, &node.url(), &["seq01"], &[])
        .await
        .remove(0);
    let (task_id, id) = running_command(&agent, &client, "echo hello").await;

    agent.output(id, &[(1, "line one")]).await.unwrap();
    for far in [1_002, 1 << 40, u64::MAX] {
        let (status, problem) = agent.output(id, &[(far, "far ahead")]).await.unwrap_err();
        assert_eq!(status, 422, "seq {far}: {problem:?}");
        assert!(
            problem.detail.contains(&format!("line {far}"))
                && problem.detail.contains("up to 1001 at most"),
            "{}",
            problem.detail
        );
    }
    // The next line in order, and a whole batch's worth ahead, are still taken.
    agent.output(id, &[(2, "line two")]).await.unwrap();
    agent.output(id, &[(1_002, "line 1002")]).await.unwrap();
    agent.result(id, &succeeded()).await.unwrap();

    wait_finished(&client, &[task_id], Duration::from_secs(10)).await;
    let log = whole_log(&client, task_id).await;
    for line in ["seq01: line one", "seq01: line two", "seq01: line 1002"] {
        assert!(log.contains(line), "`{line}` in:\n{log}");
    }
    assert!(!log.contains("far ahead"), "{log}");
}

/// PostgreSQL stores no NUL in text or jsonb: what an agent reports is stored with
/// U+FFFD in its place rather than refused, or the command could never finish.
#[tokio::test]
async fn nul_bytes_in_what_an_agent_reports_are_stored_as_replacement_characters() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agent = sim_agents(&client, &node.url(), &["nul02"], &[])
        .await
        .remove(0);
    let (task_id, id) = running_command(&agent, &client, "exit 1").await;

    agent.output(id, &[(1, "a\0line")]).await.unwrap();
    agent
        .result(
            id,
            &CommandResult {
                outcome: CommandOutcome::Failed,
                exit_code: Some(1),
                error: Some("bad\0error".to_owned()),
                outputs: [("Ready".to_owned(), "a\0b".to_owned())].into(),
                facts: None,
            },
        )
        .await
        .unwrap();
    let done = wait_finished(&client, &[task_id], Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(done.state, TaskState::Failed, "{done:?}");
    let commands = client.task_commands(task_id).await.unwrap().items;
    assert_eq!(commands[0].error.as_deref(), Some("bad\u{fffd}error"));
    assert_eq!(
        commands[0].outputs.get("Ready").map(String::as_str),
        Some("a\u{fffd}b")
    );
    let log = whole_log(&client, task_id).await;
    assert!(log.contains("nul02: a\u{fffd}line"), "{log}");
}

/// A health check's facts are the agent's words too.
#[tokio::test]
async fn nul_bytes_in_an_agents_facts_are_stored_as_replacement_characters() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agent = sim_agents(&client, &node.url(), &["nul03"], &[])
        .await
        .remove(0);
    let (_, id) = running_command(&agent, &client, "true").await;
    let facts = capstan_api::AgentFacts {
        version: "1\0.2".to_owned(),
        os: "linux".to_owned(),
        hostname: "host\0name".to_owned(),
        shells: Vec::new(),
        free_disk_bytes: None,
    };
    agent
        .result(
            id,
            &CommandResult {
                facts: Some(facts),
                ..succeeded()
            },
        )
        .await
        .unwrap();
}
