//! Upgrading with no outage: a node runs on a schema one release newer than it knows,
//! refuses a schema it needs to migrate but cannot, and three nodes behind HAProxy are
//! restarted one by one while clients and tasks keep going, with nothing failed, lost
//! or run twice.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use capstan_api::ApiClient;
use capstan_core::TaskState;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    database::empty_database,
    eventually,
    haproxy::HaProxy,
    process::{ProcessOptions, ServerProcess, run_to_exit},
    tasks::{attempts_of, wait_finished},
};
use sqlx::{Connection, PgConnection};

use crate::capstan_bin;

#[tokio::test]
async fn a_node_starts_and_serves_on_a_schema_one_migration_newer_than_it_knows() {
    let db = TestDatabase::new().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // What a newer release's migration leaves behind: a row this binary has no file for.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000001, 'added by a newer release', true, '\\x00', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = TempDir::new("capstan-newer-schema");
    let node = ServerProcess::start(
        &capstan_bin(),
        "older",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions::default(),
    )
    .await;
    let ping = reqwest::get(format!("{}/api/nodes/ping", node.url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let client = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let task = client
        .create_task(&capstan_api::CreateTaskRequest::new(
            "sleep",
            serde_json::json!({"ms": 10}),
        ))
        .await
        .unwrap();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(10)).await;
    assert_eq!(done[0].state, TaskState::Succeeded);
    let log = node.log();
    assert!(
        log.contains("the database has 1 migration(s) this binary does not know (newest 29991231000001, `added by a newer release`)"),
        "{log}"
    );
}

#[tokio::test]
async fn a_schema_too_old_that_cannot_be_migrated_stops_the_node_with_the_reason() {
    let db = empty_database().await;
    // The first release's schema, applied by an owner...
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let first = capstan_db::MIGRATOR
        .iter()
        .next()
        .expect("at least one migration")
        .clone();
    let oldest = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(vec![first.clone()]),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    oldest.run(&mut conn).await.unwrap();
    // ...and a node that connects as a user who may use the tables but not add any.
    let role = format!("capstan_limited_{}", uuid::Uuid::new_v4().simple());
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    let limited_url = db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(
        limited_url, db.url,
        "the test database URL names user postgres"
    );
    let dir = TempDir::new("capstan-old-schema");
    let blob = format!("file://{}", dir.0.display());
    let env = [
        ("CAPSTAN_DATABASE_URL", limited_url.as_str()),
        ("CAPSTAN_BLOB_URL", blob.as_str()),
        ("CAPSTAN_LISTEN", "127.0.0.1:0"),
    ];
    let (status, output) = run_to_exit(&capstan_bin(), &env, Duration::from_secs(20));
    assert!(!status.success(), "{output}");
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("capstan:"))
        .unwrap_or_else(|| panic!("no `capstan:` line in:\n{output}"));
    let needs = capstan_db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    assert!(
        line.contains(&format!(
            "the schema is at {} and this binary needs {needs}, but migrating failed",
            first.version
        )) && line.contains("permission denied"),
        "{line}"
    );
    drop(conn);
    let mut admin = PgConnection::connect(&capstan_testkit::database::admin_url())
        .await
        .unwrap();
    drop(db);
    // The role owns nothing; dropping it after the database goes is best effort.
    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&mut admin)
        .await;
}

/// Everything a client saw while nodes were restarted under it.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    tasks: Mutex<Vec<i64>>,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.failures.lock().unwrap().push(what);
    }
}

/// A client reading the API and another queueing 150 ms tasks, through the load
/// balancer, until `stop`.
fn keep_busy(url: String, stop: Arc<AtomicBool>, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let reads = {
            let (http, url, stop, seen) = (http.clone(), url.clone(), stop.clone(), seen.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    match http
                        .get(format!("{url}/api/nodes"))
                        .bearer_auth(ADMIN_KEY)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            seen.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => seen.fail(format!("GET /api/nodes: {}", r.status())),
                        Err(e) => seen.fail(format!("GET /api/nodes: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let writes = async move {
            while !stop.load(Ordering::Relaxed) {
                let created = http
                    .post(format!("{url}/api/tasks"))
                    .bearer_auth(ADMIN_KEY)
                    .json(&serde_json::json!({"kind": "sleep", "args": {"ms": 150}}))
                    .send()
                    .await;
                match created {
                    Ok(r) if r.status().is_success() => {
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                        let task: serde_json::Value = r.json().await.unwrap_or_default();
                        if let Some(id) = task["id"].as_i64() {
                            seen.tasks.lock().unwrap().push(id);
                        }
                    }
                    Ok(r) => seen.fail(format!("POST /api/tasks: {}", r.status())),
                    Err(e) => seen.fail(format!("POST /api/tasks: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::join!(reads, writes);
    })
}

#[tokio::test]
async fn restarting_every_node_in_turn_behind_haproxy_fails_no_request_and_loses_no_task() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-rolling");
    let names = ["u1", "u2", "u3"];
    let options = || ProcessOptions {
        env: vec![("CAPSTAN_SHUTDOWN_GRACE".into(), "10s".into())],
    };
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(
            ServerProcess::start(&capstan_bin(), name, &db.url, &dir.0, &dir.0, options()).await,
        );
    }
    let lb = HaProxy::start(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.port))
            .collect::<Vec<_>>(),
    );
    lb.wait_all_up(Duration::from_secs(10)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let busy = keep_busy(lb.url(), stop.clone(), seen.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let client = ApiClient::new(&lb.url(), Some(ADMIN_KEY.to_owned()));
    let mut running_at_term = 0;
    for i in 0..nodes.len() {
        let port = nodes[i].port;
        // Wait until the node is running something, so its shutdown has work to finish.
        running_at_term += eventually(
            Duration::from_secs(10),
            "a task running on the node",
            || async {
                let running = client
                    .list_tasks(&capstan_api::TaskQuery {
                        state: Some(TaskState::Running),
                        node: Some(names[i].to_owned()),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .items
                    .len();
                (running > 0).then_some(running)
            },
        )
        .await;
        nodes[i].signal("TERM");
        let status = nodes[i].wait_exit(Duration::from_secs(20)).await;
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            names[i],
            nodes[i].log()
        );
        nodes[i] = ServerProcess::start_on(
            &capstan_bin(),
            names[i],
            &db.url,
            &dir.0,
            &dir.0,
            options(),
            port,
        )
        .await;
        lb.wait_all_up(Duration::from_secs(10)).await;
        // Traffic on the restarted node before the next one goes.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rolled = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    busy.await.unwrap();

    let tasks = seen.tasks.lock().unwrap().clone();
    let finished = wait_finished(&client, &tasks, Duration::from_secs(30)).await;
    let not_succeeded: Vec<_> = finished
        .iter()
        .filter(|t| t.state != TaskState::Succeeded)
        .map(|t| (t.id, t.state, t.error.clone()))
        .collect();
    let attempts = attempts_of(&client, &tasks).await;
    let run_twice: Vec<i64> = tasks
        .iter()
        .copied()
        .filter(|id| attempts.iter().filter(|(t, _)| t == id).count() != 1)
        .collect();
    println!(
        "rolling restart of 3 nodes in {:.1}s ({running_at_term} tasks running when their node got SIGTERM): {} requests ok, {} failed; {} tasks queued, {} not succeeded, {} run more than once",
        rolled.as_secs_f64(),
        seen.ok.load(Ordering::Relaxed),
        seen.failed.load(Ordering::Relaxed),
        tasks.len(),
        not_succeeded.len(),
        run_twice.len()
    );
    assert_eq!(
        seen.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        seen.failures.lock().unwrap()
    );
    assert!(tasks.len() > 50, "only {} tasks were queued", tasks.len());
    assert!(not_succeeded.is_empty(), "{not_succeeded:?}");
    assert!(run_twice.is_empty(), "{run_twice:?}");
}
