//! Task logs: written by the node running the task, read and followed through any node,
//! compacted once the task finishes, capped, deleted with the task, and surviving a
//! killed node but for its last second.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use capstan_api::{ApiClient, CreateTaskRequest, LogEvent, TaskLogEnd};
use capstan_core::TaskState;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestCluster, TestDatabase, eventually,
    tasks::{wait_finished, wait_task, whole_log},
};
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::capstan_bin;

/// The time a log line was logged, from its first field.
fn logged_at(line: &str) -> OffsetDateTime {
    let stamp = line.split(' ').next().unwrap();
    OffsetDateTime::parse(stamp, &Rfc3339).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

/// The text of a line, after its time and level.
fn text_of(line: &str) -> &str {
    line.splitn(3, ' ').nth(2).unwrap()
}

async fn queue(client: &ApiClient, args: serde_json::Value) -> i64 {
    client
        .create_task(&CreateTaskRequest::new("sleep", args))
        .await
        .unwrap()
        .id
}

/// A followed log: its lines, how late each arrived, and how the task ended.
struct Followed {
    lines: Vec<String>,
    worst_lag: Duration,
    end: TaskLogEnd,
}

async fn follow(client: &ApiClient, id: i64) -> Followed {
    let mut follower = client.follow_task_log(id);
    let mut lines = Vec::new();
    let mut worst_lag = Duration::ZERO;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), follower.next())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the end event before the stream ends");
        match event {
            LogEvent::Line { text, .. } => {
                let lag = OffsetDateTime::now_utc() - logged_at(&text);
                worst_lag = worst_lag.max(lag.try_into().unwrap_or(Duration::ZERO));
                lines.push(text);
            }
            LogEvent::End(end) => {
                assert!(follower.next().await.unwrap().is_none());
                return Followed {
                    lines,
                    worst_lag,
                    end,
                };
            }
        }
    }
}

/// The task's log row: (segments written, compacted key, bytes, truncated), and how many
/// segment rows remain.
async fn log_row(db_url: &str, id: i64) -> Option<((i32, Option<String>, i64, bool), i64)> {
    let db = sqlx::PgPool::connect(db_url).await.unwrap();
    let row: Option<(i32, Option<String>, i64, bool)> = sqlx::query_as(
        "SELECT segments, compacted_key, bytes, truncated FROM task_logs WHERE task_id = $1",
    )
    .bind(id)
    .fetch_optional(&db)
    .await
    .unwrap();
    let segments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM task_log_segments WHERE task_id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    row.map(|row| (row, segments))
}

/// Every object under the task's log prefix in a `file://` blob store.
fn objects(blob_dir: &Path, id: i64) -> Vec<PathBuf> {
    let dir = blob_dir.join("logs").join(id.to_string());
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until the log is one object and no segment rows remain; returns the row.
async fn wait_compacted(db_url: &str, blob_dir: &Path, id: i64, within: Duration) -> (i32, i64) {
    eventually(within, "the log compacted into one object", || async {
        let ((segments, key, bytes, _), left) = log_row(db_url, id).await?;
        let key = key?;
        let found = objects(blob_dir, id);
        (left == 0 && found.len() == 1 && found[0].ends_with(key.rsplit('/').next()?))
            .then_some((segments, bytes))
    })
    .await
}

#[tokio::test]
async fn a_follower_on_another_node_sees_each_line_within_two_seconds_and_then_the_whole_log() {
    // node-2 runs nothing: the task runs on node-1, the follower reads through node-2.
    let cluster = TestCluster::start_with_caps(&[Some(2), Some(0)]).await;
    let client = cluster.node(1).client();
    let id = queue(&client, json!({"ms": 4000, "log_every_ms": 100})).await;

    let followed = follow(&client, id).await;
    println!(
        "followed {} lines through the other node, worst lag {:?}",
        followed.lines.len(),
        followed.worst_lag
    );
    assert_eq!(followed.end.state, TaskState::Succeeded);
    assert!(
        followed.worst_lag <= Duration::from_secs(2),
        "a line arrived {:?} after it was logged",
        followed.worst_lag
    );
    let ticks: Vec<&str> = followed.lines.iter().map(|l| text_of(l)).collect();
    assert!((35..=40).contains(&ticks.len()), "{ticks:?}");
    for (i, tick) in ticks.iter().enumerate() {
        assert_eq!(*tick, format!("tick {}", i + 1));
    }
    let task = client.get_task(id).await.unwrap();
    assert_eq!(task.node_name.as_deref(), Some("node-1"));

    let whole = whole_log(&client, id).await;
    assert_eq!(whole, followed.lines.join("\n") + "\n");
    // The same from the node that ran it.
    assert_eq!(whole_log(&cluster.node(0).client(), id).await, whole);
}

/// A stand-in for a load balancer: forwards each new connection to the node it is
/// currently pointed at.
struct Forwarder {
    url: String,
    target: Arc<Mutex<SocketAddr>>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(Mutex::new(target));
        let current = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = *current.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut node) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
                    }
                });
            }
        });
        Self { url, target }
    }

    fn point_at(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

#[tokio::test]
async fn a_follower_whose_node_stops_carries_on_through_another_without_gaps_or_repeats() {
    let mut cluster = TestCluster::start_with_caps(&[Some(2), Some(0), Some(0)]).await;
    let forwarder = Forwarder::start(cluster.node(1).addr).await;
    let through = ApiClient::new(&forwarder.url, Some(ADMIN_KEY.to_owned()));
    let id = queue(&through, json!({"ms": 3000, "log_every_ms": 100})).await;
    let following = tokio::spawn({
        let through = through.clone();
        async move { follow(&through, id).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // node-2 stops serving; its followers reconnect, now to node-3.
    forwarder.point_at(cluster.node(2).addr);
    cluster.nodes[1].stop().await.unwrap();

    let followed = following.await.unwrap();
    assert_eq!(followed.end.state, TaskState::Succeeded);
    let ticks: Vec<&str> = followed.lines.iter().map(|l| text_of(l)).collect();
    for (i, tick) in ticks.iter().enumerate() {
        assert_eq!(*tick, format!("tick {}", i + 1), "{ticks:?}");
    }
    // The follow went on through node-3.
    let metrics = capstan_testkit::metrics_text(&cluster.node(2).url()).await;
    assert!(
        metrics.contains(
            r#"capstan_http_requests_total{route="/api/tasks/{id}/log",method="GET",status="200"} 1"#
        ),
        "{metrics}"
    );
    let whole = whole_log(&cluster.node(2).client(), id).await;
    assert_eq!(whole, followed.lines.join("\n") + "\n");
}

#[tokio::test]
async fn a_finished_tasks_segments_are_compacted_into_one_object() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let id = queue(&client, json!({"ms": 2500, "log_every_ms": 100})).await;
    let followed = follow(&client, id).await;
    let (segments, bytes) = wait_compacted(
        &cluster.db.url,
        &cluster.blob_dir.0,
        id,
        Duration::from_secs(5),
    )
    .await;
    assert!(segments >= 3, "written in {segments} segment(s)");
    let whole = whole_log(&client, id).await;
    assert_eq!(whole.len() as i64, bytes);
    assert_eq!(whole, followed.lines.join("\n") + "\n");
    // This task's log, and those of the periodic tasks every node queues at start.
    let metrics = capstan_testkit::metrics_text(&cluster.node(0).url()).await;
    let compacted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("capstan_task_logs_compacted_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(compacted >= 2.0, "{metrics}");
}

#[tokio::test]
async fn a_follower_resumes_after_the_last_event_id_and_ends_with_the_final_state() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let id = queue(
        &client,
        json!({"ms": 1200, "log_every_ms": 100, "fail": true}),
    )
    .await;
    let followed = follow(&client, id).await;
    assert_eq!(followed.end.state, TaskState::Failed);
    assert_eq!(
        followed.end.error.as_deref(),
        Some("failed on purpose after 1200 ms")
    );
    wait_compacted(
        &cluster.db.url,
        &cluster.blob_dir.0,
        id,
        Duration::from_secs(5),
    )
    .await;

    // Resume after the fifth line, now from the compacted object.
    let offset: usize = followed.lines[..5].iter().map(|l| l.len() + 1).sum();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/tasks/{id}/log?follow=true",
            cluster.node(0).url()
        ))
        .bearer_auth(ADMIN_KEY)
        .header("Last-Event-ID", offset.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let body = response.text().await.unwrap();
    let expected_first = format!(
        "id: {}\ndata: {}\n",
        offset + followed.lines[5].len() + 1,
        followed.lines[5]
    );
    assert!(body.starts_with(&expected_first), "{body}");
    // The lines after the fifth, then the end.
    assert_eq!(body.matches("data: ").count(), followed.lines.len() - 5 + 1);
    assert!(
        body.ends_with(
            "event: end\ndata: {\"state\":\"failed\",\"error\":\"failed on purpose after 1200 ms\"}\n\n"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn the_cap_cuts_the_log_with_a_marker_and_counts_what_it_dropped() {
    let cluster = TestCluster::start_with(&[None], |s| s.task_log_cap = 64 * 1024).await;
    let client = cluster.node(0).client();
    // About 1 KB a millisecond: the cap is reached within a tenth of a second.
    let id = queue(
        &client,
        json!({"ms": 500, "log_every_ms": 1, "log_bytes": 1000}),
    )
    .await;
    wait_finished(&client, &[id], Duration::from_secs(10)).await;
    let log = whole_log(&client, id).await;
    assert!(log.len() <= 64 * 1024, "{} bytes", log.len());
    let lines: Vec<&str> = log.lines().collect();
    let marker = lines
        .iter()
        .position(|l| l.contains("WARN the log reached its cap of 64 KiB (CAPSTAN_TASK_LOG_CAP); later lines are dropped"))
        .unwrap_or_else(|| panic!("no marker in:\n{log}"));
    assert_eq!(
        marker,
        lines.len() - 2,
        "the marker ends the log, but for the count"
    );
    assert!(
        lines[..marker]
            .iter()
            .all(|l| text_of(l).starts_with("tick "))
    );
    let count = lines[marker + 1];
    assert!(
        count.contains("WARN ")
            && count.contains("line(s) (")
            && count.ends_with("were dropped after the log reached its cap"),
        "{count}"
    );
    let ((_, _, bytes, truncated), _) = log_row(&cluster.db.url, id).await.unwrap();
    assert!(truncated);
    assert_eq!(bytes, log.len() as i64);
}

#[tokio::test]
async fn a_fast_log_is_stored_every_256_kib_not_only_every_second() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let id = queue(
        &client,
        json!({"ms": 1000, "log_every_ms": 1, "log_bytes": 16384}),
    )
    .await;
    wait_finished(&client, &[id], Duration::from_secs(10)).await;
    let (segments, bytes) = wait_compacted(
        &cluster.db.url,
        &cluster.blob_dir.0,
        id,
        Duration::from_secs(5),
    )
    .await;
    println!("{bytes} bytes in {segments} segments");
    assert!(bytes > 1024 * 1024, "only {bytes} bytes logged");
    // Segments of about 256 KiB (a little more while one is being stored); by time
    // alone there would be one or two.
    let average = bytes / i64::from(segments);
    assert!(
        (128 * 1024..=512 * 1024).contains(&average),
        "{segments} segments of {average} bytes on average"
    );
}

#[tokio::test]
async fn a_reader_overtaken_by_compaction_still_gets_the_whole_log_in_order() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    // Many segments of about 256 KiB, far more than the answer's buffers hold.
    let id = queue(
        &client,
        json!({"ms": 1500, "log_every_ms": 1, "log_bytes": 16384}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ((_, _, stored_then, _), _) = log_row(&cluster.db.url, id).await.unwrap();
    let mut reading = client.task_log(id).await.unwrap();
    let mut got = reading.next().await.unwrap().unwrap().to_vec();
    // The task finishes, and its segments are replaced while the reader waits.
    wait_finished(&client, &[id], Duration::from_secs(10)).await;
    let (segments, bytes) = wait_compacted(
        &cluster.db.url,
        &cluster.blob_dir.0,
        id,
        Duration::from_secs(10),
    )
    .await;
    while let Some(chunk) = reading.next().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    println!(
        "read {} of {bytes} bytes ({segments} segments) across the compaction",
        got.len()
    );
    let got = String::from_utf8(got).unwrap();
    assert!(
        stored_then < bytes,
        "{stored_then} of {bytes} bytes at the start"
    );
    // A reader reads the log as it was when it asked, or, if compaction removed a
    // segment under it and it looked again, up to where the log ends now. (Which one
    // depends on how much the socket buffered before the compaction: both are whole.)
    assert!(
        got.len() as i64 >= stored_then && got.len() as i64 <= bytes,
        "read {} bytes; {stored_then} at the start, {bytes} at the end",
        got.len()
    );
    assert!(got.ends_with('\n'), "the read ends on a whole line");
    for (i, line) in got.lines().enumerate() {
        assert!(
            text_of(line).starts_with(&format!("tick {} ", i + 1)),
            "line {i}"
        );
    }
}

#[tokio::test]
async fn a_task_that_logs_nothing_stores_nothing() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let id = queue(&client, json!({"ms": 10})).await;
    wait_finished(&client, &[id], Duration::from_secs(5)).await;
    assert_eq!(whole_log(&client, id).await, "");
    assert!(log_row(&cluster.db.url, id).await.is_none());
    assert!(objects(&cluster.blob_dir.0, id).is_empty());
    let followed = follow(&client, id).await;
    assert!(followed.lines.is_empty());
    assert_eq!(followed.end.state, TaskState::Succeeded);
}

#[tokio::test]
async fn the_log_of_an_unknown_task_is_404_and_a_bad_resume_offset_400() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let err = client.task_log(987_654).await.unwrap_err().to_string();
    assert_eq!(err, "404 Not Found: there is no task with id 987654");
    let err = client
        .follow_task_log(987_654)
        .next()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "404 Not Found: there is no task with id 987654");

    let id = queue(&client, json!({})).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/tasks/{id}/log?follow=true",
            cluster.node(0).url()
        ))
        .bearer_auth(ADMIN_KEY)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "`Last-Event-ID` must be the `id` of an event of this log (a byte offset), got `yesterday`"
    );
}

#[tokio::test]
async fn retention_deletes_old_tasks_with_their_log_objects() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let id = queue(&client, json!({"ms": 300, "log_every_ms": 50})).await;
    wait_finished(&client, &[id], Duration::from_secs(5)).await;
    wait_compacted(
        &cluster.db.url,
        &cluster.blob_dir.0,
        id,
        Duration::from_secs(5),
    )
    .await;
    // A stray object no row names, as a run that lost its lease leaves behind.
    let stray = cluster
        .blob_dir
        .0
        .join(format!("logs/{id}/seg-00000009-stray"));
    std::fs::write(&stray, b"lost\n").unwrap();

    let retention = client
        .create_task(&CreateTaskRequest::new(
            "task-history-retention",
            json!({"older_than_ms": 1}),
        ))
        .await
        .unwrap()
        .id;
    let done = wait_finished(&client, &[retention], Duration::from_secs(5)).await;
    assert_eq!(done[0].state, TaskState::Succeeded, "{:?}", done[0].error);
    let gone = client.get_task(id).await.unwrap_err().to_string();
    assert!(gone.contains("there is no task"), "{gone}");
    assert!(log_row(&cluster.db.url, id).await.is_none());
    assert!(
        objects(&cluster.blob_dir.0, id).is_empty(),
        "{:?}",
        objects(&cluster.blob_dir.0, id)
    );
    // The sleep, and the periodic tasks queued at start, which logged too.
    let said = whole_log(&client, retention).await;
    let line = said
        .lines()
        .find(|l| l.contains("task(s) finished more than 1ms ago"))
        .unwrap_or_default();
    let counts: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        line.contains("INFO deleted ")
            && line.ends_with("of them with their logs")
            && counts.len() >= 3
            && counts[counts.len() - 3] >= 2
            && counts[counts.len() - 3] == counts[counts.len() - 1],
        "{said}"
    );
}

#[tokio::test]
async fn operators_print_and_follow_logs_with_the_cli() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let server = cluster.node(0).url();
    let capstan = move |args: Vec<String>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let output = Command::new(capstan_bin())
                .args(&args)
                .env("CAPSTAN_SERVER", server)
                .env("CAPSTAN_API_KEY", ADMIN_KEY)
                .output()
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
    };

    let id = queue(&client, json!({"ms": 1100, "log_every_ms": 200})).await;
    let (ok, out, err) = capstan(vec![
        "tasks".into(),
        "logs".into(),
        id.to_string(),
        "--follow".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let ticks: Vec<&str> = out.lines().map(text_of).collect();
    assert_eq!(
        ticks,
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"],
        "{out}"
    );
    let (ok, printed, err) = capstan(vec!["tasks".into(), "logs".into(), id.to_string()])
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(printed, out);

    let failing = queue(
        &client,
        json!({"ms": 300, "log_every_ms": 100, "fail": true}),
    )
    .await;
    let (ok, out, err) = capstan(vec![
        "tasks".into(),
        "logs".into(),
        failing.to_string(),
        "-f".into(),
    ])
    .await
    .unwrap();
    assert!(!ok, "{out}{err}");
    assert!(out.contains("INFO tick 2"), "{out}");
    assert_eq!(
        err.trim(),
        format!("capstan: task {failing} failed: failed on purpose after 300 ms")
    );

    let (ok, _, err) = capstan(vec!["tasks".into(), "logs".into(), "424242".into()])
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("there is no task with id 424242"), "{err}");
}

#[tokio::test]
async fn a_sigkilled_node_loses_at_most_its_last_second_of_log() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-log-kill");
    let mut a = super::lost_nodes::start("a", 1, &db, &dir).await;
    let b = super::lost_nodes::start("b", 0, &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));
    let id = queue(
        &client,
        json!({"ms": 20_000, "log_every_ms": 50, "on_node_lost": "fail"}),
    )
    .await;
    let following = tokio::spawn({
        let client = client.clone();
        async move { follow(&client, id).await }
    });
    wait_task(&client, id, Duration::from_secs(5), "running on a", |t| {
        t.state == TaskState::Running && t.node_name.as_deref() == Some("a")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let killed_at = OffsetDateTime::now_utc();
    a.kill_9();
    let followed = following.await.unwrap();
    assert_eq!(followed.end.state, TaskState::Failed);
    let log = whole_log(&client, id).await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines, followed.lines, "the followed lines are the log");
    let last = logged_at(lines.last().expect("some lines survive"));
    let lost = killed_at - last;
    println!(
        "SIGKILL lost the last {lost} of log ({} lines kept)",
        lines.len()
    );
    // A second waiting in memory, the flush in flight, one tick interval.
    assert!(
        lost <= time::Duration::milliseconds(1300),
        "lost {lost} of log"
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(text_of(line), format!("tick {}", i + 1));
    }
    // b compacts what a left in segments once a's grace (ten heartbeats) has passed.
    wait_compacted(&db.url, &dir.0, id, Duration::from_secs(10)).await;
    assert_eq!(whole_log(&client, id).await, log);
}

#[tokio::test]
async fn a_node_that_lost_its_task_adds_nothing_more_to_its_log() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-log-fence");
    let a = super::lost_nodes::start("a", 1, &db, &dir).await;
    let b = super::lost_nodes::start("b", 0, &db, &dir).await;
    let client = ApiClient::new(&b.url(), Some(ADMIN_KEY.to_owned()));
    let id = queue(
        &client,
        json!({"ms": 3000, "log_every_ms": 100, "on_node_lost": "requeue"}),
    )
    .await;
    wait_task(&client, id, Duration::from_secs(5), "running on a", |t| {
        t.state == TaskState::Running && t.node_name.as_deref() == Some("a")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    super::lost_nodes::set_cap(&client, "b", 1).await;

    a.signal("STOP");
    let stopped_at = OffsetDateTime::now_utc();
    wait_task(&client, id, Duration::from_secs(5), "running on b", |t| {
        t.attempt == 2 && t.node_name.as_deref() == Some("b")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // a wakes up with lines in memory and a run it no longer holds.
    a.signal("CONT");
    let done = wait_finished(&client, &[id], Duration::from_secs(10)).await;
    assert_eq!(done[0].state, TaskState::Succeeded);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let attempts = client.task_attempts(id).await.unwrap().items;
    let runs: Vec<_> = attempts
        .iter()
        .map(|a| (a.node_name.as_str(), a.outcome.as_deref()))
        .collect();
    assert_eq!(runs, [("a", Some("lost")), ("b", Some("succeeded"))]);
    let b_started = attempts[1].started_at;

    // a's lines, all logged before it was stopped, then b's, from b's start on: a added
    // nothing once it woke up.
    let log = whole_log(&client, id).await;
    let lines: Vec<&str> = log.lines().collect();
    let (first, second) = lines.split_at(
        lines
            .iter()
            .position(|l| logged_at(l) >= stopped_at)
            .unwrap_or(lines.len()),
    );
    assert!(
        second.iter().all(|l| logged_at(l) >= b_started),
        "a line logged between a's stop and b's start:\n{log}"
    );
    assert!(first.len() > 5, "a's first second is in the log:\n{log}");
    assert!(second.len() >= 20, "b's run is in the log:\n{log}");
    for run in [first, second] {
        for (i, line) in run.iter().enumerate() {
            assert_eq!(text_of(line), format!("tick {}", i + 1), "{log}");
        }
    }
}

#[tokio::test]
async fn followers_beyond_the_nodes_limit_are_told_to_come_back() {
    let cluster = TestCluster::start_with(&[None], |settings| settings.max_log_followers = 1).await;
    let client = cluster.node(0).client();
    let id = queue(&client, json!({"ms": 5000, "log_every_ms": 100})).await;
    let url = format!("{}/api/tasks/{id}/log?follow=true", cluster.node(0).url());
    let http = reqwest::Client::new();
    let first = http.get(&url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(first.status(), 200);

    let second = http.get(&url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "5");
    let problem: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "this node already streams 1 task logs (CAPSTAN_MAX_LOG_FOLLOWERS); try again shortly, or through another node"
    );
    // The whole log is not limited, and a follower that leaves frees its place.
    let whole = http
        .get(format!("{}/api/tasks/{id}/log", cluster.node(0).url()))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    drop(first);
    eventually(Duration::from_secs(5), "the place to be freed", || async {
        let again = http.get(&url).bearer_auth(ADMIN_KEY).send().await.ok()?;
        (again.status() == 200).then_some(())
    })
    .await;
}
