use std::{collections::HashMap, time::Duration};

use capstan_api::{CreateTaskRequest, TaskQuery};
use capstan_core::{ConcurrencyKey, TaskState};
use capstan_testkit::{
    TestCluster, eventually,
    tasks::{
        attempts_of, intervals, max_overlap, queue_sleeps, wait_finished, wait_idle, wait_task,
    },
};
use serde_json::json;

#[tokio::test]
async fn fifty_tasks_on_caps_2_3_0_respect_every_cap_start_in_order_and_run_once() {
    let cluster = TestCluster::start_with_caps(&[Some(2), Some(3), Some(0)]).await;
    let client = cluster.node(2).client();
    let ids = queue_sleeps(&client, 50, json!({"ms": 60})).await;
    assert_eq!(ids.len(), 50);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids are in queue order"
    );

    let tasks = wait_finished(&client, &ids, Duration::from_secs(30)).await;
    assert!(tasks.iter().all(|t| t.state == TaskState::Succeeded));
    let attempts = attempts_of(&client, &ids).await;

    // Every task ran exactly once.
    assert_eq!(attempts.len(), 50, "one attempt per task");
    assert!(
        attempts
            .iter()
            .all(|(_, a)| a.attempt == 1 && a.outcome.as_deref() == Some("succeeded"))
    );

    // No node ever ran more than its cap; the cap-0 node ran nothing.
    let mut per_node: HashMap<String, Vec<_>> = HashMap::new();
    for (_, a) in &attempts {
        per_node
            .entry(a.node_name.clone())
            .or_default()
            .push((a.started_at, a.finished_at));
    }
    assert!(
        !per_node.contains_key("node-3"),
        "the cap-0 node ran a task"
    );
    let most_1 = max_overlap(&per_node["node-1"]);
    let most_2 = max_overlap(&per_node["node-2"]);
    assert!(most_1 <= 2, "node-1 (cap 2) ran {most_1} at once");
    assert!(most_2 <= 3, "node-2 (cap 3) ran {most_2} at once");
    // And the cluster used its capacity: both nodes were full at some point.
    assert_eq!((most_1, most_2), (2, 3));

    // Tasks started in id order. Two nodes claiming in the same instant may take
    // neighbouring tasks in either order, so a later task may show a start a hair
    // before an earlier one; never more than that.
    let starts: Vec<_> = ids
        .iter()
        .map(|id| attempts.iter().find(|(t, _)| t == id).unwrap().1.started_at)
        .collect();
    let race = time::Duration::milliseconds(5);
    let mut latest = starts[0];
    for (i, start) in starts.iter().enumerate() {
        assert!(
            *start + race >= latest,
            "task {} started at {start}, before an earlier task at {latest}",
            ids[i]
        );
        latest = latest.max(*start);
    }
    println!(
        "50 tasks: node-1 ran {} (at most {most_1} at once), node-2 ran {} (at most {most_2}), node-3 ran 0",
        per_node["node-1"].len(),
        per_node["node-2"].len()
    );
}

#[tokio::test]
async fn a_burst_of_single_creates_wider_than_the_pool_is_all_queued_and_keeps_the_cap() {
    // 40 calls at once against 4 enqueue connections and 3 slots: the calls wait for a
    // connection; at most 3 claim on create (none, if a task queued by the burst is
    // already older than theirs), the rest queue for the claim loop.
    let cluster = TestCluster::start_with_caps(&[Some(3)]).await;
    let client = cluster.node(0).client();
    wait_idle(&client).await;
    let calls = (0..40).map(|_| {
        let client = client.clone();
        async move {
            client
                .create_task(&CreateTaskRequest::new("sleep", json!({"ms": 30})))
                .await
        }
    });
    let created = futures::future::join_all(calls).await;
    let mut ids = Vec::new();
    let mut claimed_on_create = 0;
    for task in created {
        let task = task.expect("every create in the burst is answered 201");
        if task.state == TaskState::Running {
            assert_eq!(task.node_name.as_deref(), Some("node-1"), "{task:?}");
            assert_eq!(task.attempt, 1, "{task:?}");
            claimed_on_create += 1;
        }
        ids.push(task.id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "40 distinct tasks");
    assert!(
        claimed_on_create <= 3,
        "{claimed_on_create} claimed on create with 3 slots"
    );

    let tasks = wait_finished(&client, &ids, Duration::from_secs(30)).await;
    assert!(tasks.iter().all(|t| t.state == TaskState::Succeeded));
    let attempts = attempts_of(&client, &ids).await;
    assert_eq!(attempts.len(), 40, "one attempt per task");
    assert!(attempts.iter().all(|(_, a)| a.attempt == 1));
    let spans: Vec<_> = attempts
        .iter()
        .map(|(_, a)| (a.started_at, a.finished_at))
        .collect();
    let most = max_overlap(&spans);
    assert!(most <= 3, "cap 3, ran {most} at once");
}

#[tokio::test]
async fn a_queued_task_is_cancelled_at_once_and_a_running_one_within_a_second() {
    // Heartbeats (which also pass on cancels) far apart: only the notification can
    // stop the running task within a second.
    let cluster = TestCluster::start_with(&[Some(1), Some(0)], |s| {
        s.heartbeat_interval = Duration::from_secs(5);
        s.lease_ttl = Duration::from_secs(15);
    })
    .await;
    let client = cluster.node(1).client();
    let ids = queue_sleeps(&client, 2, json!({"ms": 60_000})).await;
    let running = wait_task(
        &client,
        ids[0],
        Duration::from_secs(5),
        "first task running",
        |t| t.state == TaskState::Running,
    )
    .await;
    assert_eq!(running.node_name.as_deref(), Some("node-1"));

    // The second waits for the only slot: cancelling it is immediate.
    let queued = client.cancel_task(ids[1]).await.unwrap();
    assert_eq!(queued.state, TaskState::Cancelled);
    assert!(queued.finished_at.is_some());

    // The running one is on node-1; the request goes to node-2.
    let asked = std::time::Instant::now();
    let accepted = client.cancel_task(ids[0]).await.unwrap();
    assert_eq!(accepted.state, TaskState::Running);
    assert!(accepted.cancel_requested);
    let cancelled = wait_task(
        &client,
        ids[0],
        Duration::from_secs(1),
        "running task cancelled",
        |t| t.state == TaskState::Cancelled,
    )
    .await;
    println!("running task cancelled in {:?}", asked.elapsed());
    assert_eq!(cancelled.error.as_deref(), Some("cancelled by request"));
    let attempts = client.task_attempts(ids[0]).await.unwrap().items;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("cancelled"));
    assert!(client.task_attempts(ids[1]).await.unwrap().items.is_empty());
    eventually(Duration::from_secs(2), "slot freed", || async {
        (cluster.node(0).state.running_tasks() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tasks_sharing_a_concurrency_key_run_one_at_a_time_in_order_without_blocking_others() {
    let cluster = TestCluster::start_with_caps(&[Some(3), Some(3)]).await;
    let client = cluster.node(0).client();
    let key = ConcurrencyKey::parse("deploy:web").unwrap();
    let mut keyed = Vec::new();
    for _ in 0..4 {
        let mut request = CreateTaskRequest::new("sleep", json!({"ms": 150}));
        request.concurrency_key = Some(key.clone());
        keyed.push(client.create_task(&request).await.unwrap().id);
    }
    // Unrelated tasks queued behind the keyed ones start at once.
    let free = queue_sleeps(&client, 4, json!({"ms": 150})).await;

    let keyed_done = wait_finished(&client, &keyed, Duration::from_secs(10)).await;
    let free_done = wait_finished(&client, &free, Duration::from_secs(10)).await;
    assert!(
        keyed_done
            .iter()
            .chain(&free_done)
            .all(|t| t.state == TaskState::Succeeded)
    );

    let attempts = attempts_of(&client, &keyed).await;
    assert_eq!(
        max_overlap(&intervals(&attempts)),
        1,
        "keyed tasks overlapped: {attempts:#?}"
    );
    for pair in attempts.windows(2) {
        assert!(pair[0].0 < pair[1].0 && pair[0].1.finished_at.unwrap() <= pair[1].1.started_at);
    }
    // The free tasks did not wait for the key: all started before the last keyed one.
    let last_keyed_start = attempts.last().unwrap().1.started_at;
    for (_, a) in attempts_of(&client, &free).await {
        assert!(
            a.started_at < last_keyed_start,
            "a free task waited behind the key"
        );
    }
}

#[tokio::test]
async fn a_drained_node_finishes_its_running_tasks_and_starts_no_new_ones() {
    let cluster = TestCluster::start_with_caps(&[Some(2), Some(0)]).await;
    let client = cluster.node(1).client();
    let ids = queue_sleeps(&client, 4, json!({"ms": 400})).await;
    wait_task(
        &client,
        ids[1],
        Duration::from_secs(5),
        "two running",
        |t| t.state == TaskState::Running,
    )
    .await;

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
    let first_two = wait_finished(&client, &ids[..2], Duration::from_secs(5)).await;
    assert!(first_two.iter().all(|t| t.state == TaskState::Succeeded));
    // Drained: the other two stay queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids[2..] {
        assert_eq!(client.get_task(*id).await.unwrap().state, TaskState::Queued);
    }
    client
        .update_node(
            node_1.id,
            &capstan_api::UpdateNodeRequest {
                draining: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rest = wait_finished(&client, &ids[2..], Duration::from_secs(5)).await;
    assert!(
        rest.iter()
            .all(|t| t.state == TaskState::Succeeded && t.node_name.as_deref() == Some("node-1"))
    );
}

#[tokio::test]
async fn a_lowered_cap_lets_running_tasks_finish_and_a_raised_one_takes_more_at_once() {
    let cluster = TestCluster::start_with_caps(&[Some(4), Some(0)]).await;
    let client = cluster.node(1).client();
    let node_1 = client.find_node("node-1").await.unwrap();
    let ids = queue_sleeps(&client, 12, json!({"ms": 300})).await;
    wait_task(
        &client,
        ids[3],
        Duration::from_secs(5),
        "four running",
        |t| t.state == TaskState::Running,
    )
    .await;

    client
        .update_node(
            node_1.id,
            &capstan_api::UpdateNodeRequest {
                task_cap: Some(capstan_core::TaskCap::new(1).unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lowered_at = time::OffsetDateTime::now_utc();
    // The four running finish; from then on at most one runs at a time.
    let first_four = wait_finished(&client, &ids[..4], Duration::from_secs(5)).await;
    assert!(first_four.iter().all(|t| t.state == TaskState::Succeeded));
    tokio::time::sleep(Duration::from_millis(700)).await;
    client
        .update_node(
            node_1.id,
            &capstan_api::UpdateNodeRequest {
                task_cap: Some(capstan_core::TaskCap::new(5).unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let all = wait_finished(&client, &ids, Duration::from_secs(10)).await;
    assert!(all.iter().all(|t| t.state == TaskState::Succeeded));

    let attempts = attempts_of(&client, &ids).await;
    let after_lowering: Vec<_> = attempts
        .iter()
        .filter(|(id, a)| !ids[..4].contains(id) && a.started_at > lowered_at)
        .map(|(_, a)| (a.started_at, a.finished_at))
        .collect();
    let raised_at = after_lowering.iter().map(|(s, _)| *s).max().unwrap();
    let while_lowered: Vec<_> = after_lowering
        .iter()
        .copied()
        .filter(|(s, _)| *s < raised_at - time::Duration::milliseconds(250))
        .collect();
    assert!(!while_lowered.is_empty());
    assert_eq!(
        max_overlap(&while_lowered),
        1,
        "more than one task ran under cap 1"
    );
    assert!(
        max_overlap(&after_lowering) >= 3,
        "the raised cap was not used"
    );
}

#[tokio::test]
async fn failures_are_recorded_and_the_list_filters_and_pages() {
    let cluster = TestCluster::start(2).await;
    let client = cluster.node(0).client();
    let failing = client
        .create_task(&CreateTaskRequest::new(
            "sleep",
            json!({"ms": 10, "fail": true}),
        ))
        .await
        .unwrap();
    // An idle cluster may claim it before the answer is even written.
    assert!(matches!(
        failing.state,
        TaskState::Queued | TaskState::Running | TaskState::Failed
    ));
    assert_eq!(
        failing.args,
        json!({"ms": 10, "fail": true, "on_node_lost": "fail"})
    );
    let ok = queue_sleeps(&client, 7, json!({})).await;
    let failed = wait_task(&client, failing.id, Duration::from_secs(5), "failed", |t| {
        t.state == TaskState::Failed
    })
    .await;
    assert_eq!(
        failed.error.as_deref(),
        Some("failed on purpose after 10 ms")
    );
    assert_eq!(failed.attempt, 1);
    let started = failed.started_at.unwrap();
    assert!(failed.queued_at <= started && started <= failed.finished_at.unwrap());
    wait_finished(&client, &ok, Duration::from_secs(5)).await;

    // Timestamps carry microseconds, in UTC.
    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/api/tasks/{}",
            cluster.node(0).url(),
            failing.id
        ))
        .bearer_auth(capstan_testkit::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queued_at = raw["queued_at"].as_str().unwrap();
    assert_eq!(
        queued_at.len(),
        "2026-11-23T11:31:55.123456Z".len(),
        "{queued_at}"
    );
    assert!(queued_at.ends_with('Z'));

    let only_failed = client
        .list_tasks(&TaskQuery {
            state: Some(TaskState::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        only_failed.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![failing.id]
    );

    // Pages of three, newest first, cover all sleeps exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_tasks(&TaskQuery {
                kind: Some("sleep".into()),
                limit: Some(3),
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<_> = ok.iter().copied().chain([failing.id]).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected);

    // The queue's metrics are exported.
    let metrics = capstan_testkit::metrics_text(&cluster.node(0).url()).await;
    for name in [
        "capstan_task_queue_wait_seconds_bucket",
        "capstan_task_claim_duration_seconds_bucket",
        "capstan_tasks_claimed_total",
        "capstan_tasks_fenced_total",
        "capstan_tasks{state=\"queued\"}",
        "capstan_tasks{state=\"running\"}",
        "capstan_task_queue_oldest_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // By node name.
    let by_node = client
        .list_tasks(&TaskQuery {
            node: Some("node-1".into()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        by_node
            .items
            .iter()
            .all(|t| t.node_name.as_deref() == Some("node-1"))
    );
}

#[tokio::test]
async fn retention_is_queued_once_per_period_across_nodes_and_deletes_old_finished_tasks() {
    let db = capstan_testkit::TestDatabase::new().await;
    let blobs = capstan_testkit::TempDir::new("capstan-retention");
    let mut nodes = Vec::new();
    for name in ["r1", "r2", "r3"] {
        let mut settings = capstan_testkit::cluster::test_settings(&db.url, &blobs.0, name);
        settings.task_history_retention = Duration::from_millis(1500);
        settings.task_history_retention_every = Duration::from_secs(1);
        nodes.push(capstan_testkit::cluster::start_node(settings).await);
    }
    let client = nodes[0].client();
    let old = queue_sleeps(&client, 5, json!({})).await;
    wait_finished(&client, &old, Duration::from_secs(5)).await;

    // Three nodes, a 1 s period: one retention run per second in the whole cluster,
    // not one per node. (Retention deletes its own earlier runs too, so count them in
    // the nodes' metrics.)
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let mut runs = 0.0;
    for node in &nodes {
        let body = capstan_testkit::metrics_text(&node.url()).await;
        runs += body
            .lines()
            .filter(|l| {
                l.starts_with("capstan_tasks_finished_total")
                    && l.contains("task-history-retention")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(
        (3.0..=6.0).contains(&runs),
        "{runs} retention runs in 4.2 s"
    );
    let latest = client
        .list_tasks(&TaskQuery {
            kind: Some("task-history-retention".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(latest.items[0].args, json!({"older_than_ms": 1500}));
    // Finished at least 1.5 s ago by now: deleted, attempts and all.
    for id in &old {
        let gone = client.get_task(*id).await.unwrap_err();
        assert!(
            gone.to_string()
                .contains(&format!("there is no task with id {id}")),
            "{gone}"
        );
    }
}

#[tokio::test]
async fn without_a_notification_the_poll_finds_work_and_unknown_kinds_are_left_alone() {
    let cluster = TestCluster::start_with_caps(&[Some(2)]).await;
    let client = cluster.node(0).client();
    let db = sqlx::PgPool::connect(&cluster.db.url).await.unwrap();
    // Let the start-up wake-ups (the first periodic task's NOTIFY) pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Queued behind the API's back: no NOTIFY, and a kind no node knows (as a newer
    // node's would be during a rolling upgrade), ahead of one every node knows.
    let ids: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO tasks (kind, args, on_node_lost)
         VALUES ('from-a-newer-release', '{}', 'fail'), ('sleep', '{\"ms\": 0}', 'fail')
         RETURNING id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let (unknown, known) = (ids[0].0, ids[1].0);
    let started = std::time::Instant::now();
    wait_task(
        &client,
        known,
        Duration::from_secs(3),
        "the poll to find the task",
        |t| t.state == TaskState::Succeeded,
    )
    .await;
    println!("found by the poll after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(1500));
    let waiting = client.get_task(unknown).await.unwrap();
    assert_eq!((waiting.state, waiting.attempt), (TaskState::Queued, 0));
}

#[tokio::test]
async fn an_idle_node_is_woken_by_the_notification_not_the_poll() {
    // node-2 (cap 0) queues; only node-1 can run, and only a notification tells it.
    let cluster = TestCluster::start_with_caps(&[Some(1), Some(0)]).await;
    let client = cluster.node(1).client();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let ids = queue_sleeps(&client, 1, json!({})).await;
        let done = wait_finished(&client, &ids, Duration::from_secs(5)).await;
        let task = &done[0];
        assert_eq!(task.node_name.as_deref(), Some("node-1"));
        waits.push(task.started_at.unwrap() - task.queued_at);
        // Idle again, at an unrelated phase of the 1 s poll.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("queued -> started, by the database's clock: {waits:?}");
    // A poll would catch each within 200 ms one time in five; all five: 1 in 3,125.
    assert!(
        waits.iter().all(|w| *w < time::Duration::milliseconds(200)),
        "{waits:?}"
    );
}

#[tokio::test]
async fn the_queue_metrics_count_what_happened() {
    let cluster = TestCluster::start_with_caps(&[Some(0)]).await;
    let node = cluster.node(0);
    let client = node.client();
    queue_sleeps(&client, 3, json!({})).await;
    queue_sleeps(&client, 1, json!({"fail": true})).await;
    // The periodic tasks every node queues at start are counted too: wait for both.
    let queued = eventually(Duration::from_secs(5), "the periodic tasks", || async {
        let items = client
            .list_tasks(&TaskQuery {
                state: Some(TaskState::Queued),
                ..Default::default()
            })
            .await
            .ok()?
            .items;
        let periodic = [
            "task-history-retention",
            "blob-retention",
            "audit-retention",
            "release-retention",
        ];
        periodic
            .iter()
            .all(|kind| items.iter().any(|t| t.kind == *kind))
            .then_some(items.len())
    })
    .await;
    // Counted by housekeeping every few seconds.
    let expected = format!("capstan_tasks{{state=\"queued\"}} {queued}");
    eventually(Duration::from_secs(8), "the queued gauge", || async {
        let text = capstan_testkit::metrics_text(&node.url()).await;
        text.contains(&expected).then_some(())
    })
    .await;

    let id = client.find_node("node-1").await.unwrap().id;
    let update = capstan_api::UpdateNodeRequest {
        task_cap: Some(capstan_core::TaskCap::new(5).unwrap()),
        ..Default::default()
    };
    client.update_node(id, &update).await.unwrap();
    eventually(Duration::from_secs(5), "the sleeps to finish", || async {
        let text = capstan_testkit::metrics_text(&node.url()).await;
        (text.contains(r#"capstan_tasks_finished_total{kind="sleep",outcome="succeeded"} 3"#)
            && text.contains(r#"capstan_tasks_finished_total{kind="sleep",outcome="failed"} 1"#))
        .then_some(())
    })
    .await;
    let text = capstan_testkit::metrics_text(&node.url()).await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("capstan_tasks_claimed_total "), queued as f64);
    assert_eq!(
        value("capstan_task_queue_wait_seconds_count "),
        queued as f64
    );
    assert!(value("capstan_task_claim_duration_seconds_count ") >= 1.0);
    assert_eq!(value("capstan_tasks_fenced_total "), 0.0);
}
