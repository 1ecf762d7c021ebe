use std::time::{Duration, Instant};

use capstan_api::{ApiClient, UpdateNodeRequest};
use capstan_core::{TaskCap, TaskState};
use capstan_db::queue::{self, Claimer, Outcome, RescueScope};
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    process::{ProcessOptions, ServerProcess},
    tasks::{attempts_of, intervals, max_overlap, queue_sleeps, wait_finished, wait_task},
};
use serde_json::json;

use crate::capstan_bin;

/// The lease TTL and heartbeat the test processes run with.
const LEASE_TTL: Duration = Duration::from_millis(1200);
const HEARTBEAT: Duration = Duration::from_millis(200);
/// What observing a state change adds: the test's 50 ms poll, an API call, a busy CI
/// machine.
const POLL_SLACK: Duration = Duration::from_millis(500);

/// A `capstan server` process with task cap `cap`.
pub(super) async fn start(name: &str, cap: u32, db: &TestDatabase, dir: &TempDir) -> ServerProcess {
    let options = ProcessOptions {
        env: vec![("CAPSTAN_TASK_CAP".into(), cap.to_string())],
    };
    ServerProcess::start(&capstan_bin(), name, &db.url, &dir.0, &dir.0, options).await
}

/// Sets a node's task cap through the API, by name.
pub(super) async fn set_cap(client: &ApiClient, name: &str, cap: i64) {
    let node = client.find_node(name).await.unwrap();
    let update = UpdateNodeRequest {
        task_cap: Some(TaskCap::new(cap).unwrap()),
        ..Default::default()
    };
    client.update_node(node.id, &update).await.unwrap();
}

#[tokio::test]
async fn a_sigkilled_nodes_tasks_are_requeued_or_failed_by_policy_within_ttl_plus_a_heartbeat() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-lost");
    let mut a = start("a", 4, &db, &dir).await;
    let b = start("b", 0, &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));

    let requeue = queue_sleeps(&client, 2, json!({"ms": 1500, "on_node_lost": "requeue"})).await;
    let fail = queue_sleeps(&client, 2, json!({"ms": 1500, "on_node_lost": "fail"})).await;
    for id in requeue.iter().chain(&fail) {
        wait_task(&client, *id, Duration::from_secs(5), "running on a", |t| {
            t.state == TaskState::Running && t.node_name.as_deref() == Some("a")
        })
        .await;
    }
    set_cap(&client, "b", 4).await;

    a.kill_9();
    let killed = Instant::now();
    let deadline = LEASE_TTL + HEARTBEAT;
    for id in &fail {
        let failed = wait_task(
            &client,
            *id,
            Duration::from_secs(5),
            "failed by rescue",
            |t| t.state == TaskState::Failed,
        )
        .await;
        let took = killed.elapsed();
        let error = failed.error.unwrap();
        assert!(
            error.starts_with("node a was lost: it stopped renewing the lease of attempt 1"),
            "{error}"
        );
        assert!(
            error.contains("are not retried because they must not run twice"),
            "{error}"
        );
        println!("fail-policy task {id} failed {took:?} after SIGKILL");
        assert!(took <= deadline + POLL_SLACK, "took {took:?}");
    }
    for id in &requeue {
        let again = wait_task(
            &client,
            *id,
            Duration::from_secs(5),
            "running again on b",
            |t| t.attempt == 2 && t.node_name.as_deref() == Some("b"),
        )
        .await;
        let took = killed.elapsed();
        println!("requeue-policy task {id} restarted on b {took:?} after SIGKILL");
        assert!(took <= deadline + POLL_SLACK, "took {took:?}");
        assert_ne!(again.state, TaskState::Queued);
    }
    let finished = wait_finished(&client, &requeue, Duration::from_secs(5)).await;
    assert!(finished.iter().all(|t| t.state == TaskState::Succeeded));
    for (id, attempts) in requeue
        .iter()
        .map(|id| (id, futures_attempts(&client, *id)))
    {
        let attempts = attempts.await;
        assert_eq!(attempts.len(), 2, "task {id}: {attempts:?}");
        assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
        assert_eq!(attempts[0].node_name, "a");
        assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
        assert_eq!(attempts[1].node_name, "b");
        assert!(attempts[0].finished_at.unwrap() <= attempts[1].started_at);
    }
    let body = capstan_testkit::metrics_text(&b.url()).await;
    assert!(
        body.contains("capstan_tasks_rescued_total{state=\"queued\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("capstan_tasks_rescued_total{state=\"failed\"} 2"),
        "{body}"
    );
}

async fn futures_attempts(client: &ApiClient, id: i64) -> Vec<capstan_api::AttemptResponse> {
    client.task_attempts(id).await.unwrap().items
}

#[tokio::test]
async fn a_node_stopped_past_its_lease_cannot_write_and_abandons_the_task() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-stop");
    let a = start("a", 1, &db, &dir).await;
    let b = start("b", 0, &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));
    let ids = queue_sleeps(&client, 1, json!({"ms": 1000, "on_node_lost": "requeue"})).await;
    wait_task(
        &client,
        ids[0],
        Duration::from_secs(5),
        "running on a",
        |t| t.state == TaskState::Running && t.node_name.as_deref() == Some("a"),
    )
    .await;
    set_cap(&client, "b", 1).await;

    a.signal("STOP");
    // Rescued and running on b; a's own sleep has run out meanwhile.
    wait_task(
        &client,
        ids[0],
        Duration::from_secs(5),
        "running on b",
        |t| t.attempt == 2 && t.node_name.as_deref() == Some("b"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal("CONT");

    let done = wait_finished(&client, &ids, Duration::from_secs(5)).await;
    assert_eq!(done[0].state, TaskState::Succeeded);
    assert_eq!(done[0].node_name.as_deref(), Some("b"));
    let attempts = attempts_of(&client, &ids).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].1.outcome.as_deref(), Some("lost"));
    assert_eq!(attempts[1].1.outcome.as_deref(), Some("succeeded"));
    assert_eq!(
        max_overlap(&intervals(&attempts)),
        1,
        "attempts overlap: {attempts:#?}"
    );

    // a noticed, said so, and took nothing it should not have.
    let log =
        capstan_testkit::eventually(Duration::from_secs(3), "a abandons the task", || async {
            let log = a.log();
            (log.contains("abandoned task") || log.contains("was refused")).then_some(log)
        })
        .await;
    let metrics = capstan_testkit::metrics_text(&a.url()).await;
    let fenced: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("capstan_tasks_fenced_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(fenced >= 1.0, "fenced counter is {fenced}:\n{log}");
    // Its next heartbeat reports the slot free.
    capstan_testkit::eventually(
        Duration::from_secs(3),
        "a reports no running task",
        || async { (client.find_node("a").await.ok()?.running_tasks == 0).then_some(()) },
    )
    .await;
}

/// The fencing token at the database: once rescue has moved a task on, the old
/// holder's completion and lease renewal match nothing.
#[tokio::test]
async fn writes_under_a_stale_attempt_are_refused() {
    let db = TestDatabase::new().await;
    let pools = capstan_db::Pools::connect(
        &capstan_db::DatabaseUrl::parse(&db.url).unwrap(),
        2,
        "capstan test",
    )
    .await
    .unwrap();
    let node_a = uuid::Uuid::now_v7();
    let node_b = uuid::Uuid::now_v7();
    let kinds = vec!["sleep".to_owned()];
    let claimer = |node_id, ttl| Claimer {
        node_id,
        lease_ttl: ttl,
        kinds: &kinds,
    };
    capstan_db::tasks::create(
        &pools.api,
        &[capstan_db::tasks::NewTask {
            kind: "sleep".into(),
            args: json!({}),
            on_node_lost: "requeue",
            concurrency_key: None,
        }],
        node_a,
    )
    .await
    .unwrap();

    let a = claimer(node_a, Duration::from_millis(1));
    let claimed = queue::complete_and_claim(&pools.liveness, a, &[], 5)
        .await
        .unwrap()
        .claimed;
    assert_eq!((claimed.len(), claimed[0].attempt), (1, 1));
    let id = claimed[0].id;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rescued = queue::rescue(&pools.liveness, RescueScope::Expired)
        .await
        .unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].state, TaskState::Queued);

    let b = claimer(node_b, Duration::from_secs(60));
    let claimed = queue::complete_and_claim(&pools.liveness, b, &[], 5)
        .await
        .unwrap()
        .claimed;
    assert_eq!((claimed[0].id, claimed[0].attempt), (id, 2));

    let stale = Outcome {
        id,
        attempt: 1,
        state: TaskState::Succeeded,
        error: None,
        parked_until: None,
    };
    let cycle = queue::complete_and_claim(&pools.liveness, a, &[stale], 0)
        .await
        .unwrap();
    assert!(
        cycle.completed.is_empty(),
        "a stale completion was accepted"
    );
    let renewed = queue::renew_leases(&pools.liveness, a, &[(id, 1)])
        .await
        .unwrap();
    assert!(renewed.is_empty(), "a stale lease was renewed");
    // Even a node that guesses the new attempt number is not the holder.
    let forged = Outcome {
        id,
        attempt: 2,
        state: TaskState::Failed,
        error: None,
        parked_until: None,
    };
    let cycle = queue::complete_and_claim(&pools.liveness, a, &[forged], 0)
        .await
        .unwrap();
    assert!(cycle.completed.is_empty());

    let current = Outcome {
        id,
        attempt: 2,
        state: TaskState::Succeeded,
        error: None,
        parked_until: None,
    };
    let cycle = queue::complete_and_claim(&pools.liveness, b, &[current], 0)
        .await
        .unwrap();
    assert_eq!(cycle.completed, vec![id]);
    let task = capstan_db::tasks::get(&pools.api, id).await.unwrap();
    assert_eq!((task.state.as_str(), task.attempt), ("succeeded", 2));
}

/// Self-fencing: a node that cannot reach the database stops its tasks before their
/// lease can expire, and takes them up again only through rescue once it is back.
#[tokio::test]
async fn a_node_cut_off_from_the_database_stops_its_tasks_before_the_lease_expires() {
    use capstan_testkit::{
        cluster::{start_node, test_settings},
        eventually,
        postgres::PrivatePostgres,
    };

    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let db = TestDatabase::on(&pg.url("postgres")).await;
    let blobs = TempDir::new("capstan-fence");
    let mut settings = test_settings(&db.url, &blobs.0, "fenced");
    settings.task_cap = Some(TaskCap::new(1).unwrap());
    let node = start_node(settings).await;
    let client = node.client();
    let ids = queue_sleeps(&client, 1, json!({"ms": 60_000, "on_node_lost": "requeue"})).await;
    wait_task(&client, ids[0], Duration::from_secs(5), "running", |t| {
        t.state == TaskState::Running
    })
    .await;

    pg.stop();
    let cut = Instant::now();
    eventually(Duration::from_secs(5), "the run stopped", || async {
        (node.state.running_tasks() == 0).then_some(())
    })
    .await;
    let stopped_after = cut.elapsed();
    println!(
        "run stopped {stopped_after:?} after the database went away (lease TTL {LEASE_TTL:?})"
    );
    // One heartbeat before the lease could expire, never after it.
    assert!(stopped_after < LEASE_TTL, "stopped after {stopped_after:?}");

    pg.resume();
    // Back: rescue requeues it and the node runs it again as attempt 2.
    let again = wait_task(
        &client,
        ids[0],
        Duration::from_secs(15),
        "running again",
        |t| t.state == TaskState::Running && t.attempt == 2,
    )
    .await;
    assert_eq!(again.node_name.as_deref(), Some("fenced"));
    let attempts = client.task_attempts(ids[0]).await.unwrap().items;
    assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
    assert!(attempts[1].outcome.is_none());
    let metrics = capstan_testkit::metrics_text(&node.url()).await;
    assert!(
        metrics.contains("capstan_tasks_fenced_total 1"),
        "{metrics}"
    );
}

/// A stopping node whose shutdown grace runs out hands its tasks back at once, by
/// their policy, instead of leaving them to wait out a long lease.
#[tokio::test]
async fn a_node_whose_shutdown_grace_runs_out_hands_its_tasks_back_at_once() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-handback");
    let options = ProcessOptions {
        env: vec![
            ("CAPSTAN_TASK_CAP".into(), "2".into()),
            ("CAPSTAN_SHUTDOWN_GRACE".into(), "1s".into()),
            ("CAPSTAN_LEASE_TTL".into(), "60s".into()),
        ],
    };
    let mut a = ServerProcess::start(&capstan_bin(), "a", &db.url, &dir.0, &dir.0, options).await;
    let b = start("b", 0, &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));
    let requeue = queue_sleeps(&client, 1, json!({"ms": 60_000, "on_node_lost": "requeue"})).await;
    let fail = queue_sleeps(&client, 1, json!({"ms": 60_000, "on_node_lost": "fail"})).await;
    for id in requeue.iter().chain(&fail) {
        wait_task(&client, *id, Duration::from_secs(5), "running on a", |t| {
            t.state == TaskState::Running && t.node_name.as_deref() == Some("a")
        })
        .await;
    }

    a.signal("TERM");
    let status = a.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}:\n{}", a.log());
    assert!(
        a.log()
            .contains("handed back 2 task(s): 1 queued again, 1 failed or cancelled"),
        "{}",
        a.log()
    );
    // Well before the 60 s lease: the requeued task is waiting for a node, the other failed.
    let failed = client.get_task(fail[0]).await.unwrap();
    assert_eq!(failed.state, TaskState::Failed);
    assert!(
        failed
            .error
            .unwrap()
            .starts_with("node a stopped or restarted while running attempt 1")
    );
    assert_eq!(
        client.get_task(requeue[0]).await.unwrap().state,
        TaskState::Queued
    );
    set_cap(&client, "b", 1).await;
    let again = wait_task(
        &client,
        requeue[0],
        Duration::from_secs(5),
        "running on b",
        |t| t.state == TaskState::Running && t.node_name.as_deref() == Some("b"),
    )
    .await;
    assert_eq!(again.attempt, 2);
}
