//! The task queue as a candidate of the PostgreSQL queue benchmark
//! (`../shared/bench/pg-queue`): the same protocol as its anchors, run by real nodes.
//!
//! - `drain`: W idle nodes with cap C; N no-op tasks queued in one batch
//!   (`POST /api/tasks/batch`); time from the batch's commit to the last outcome
//!   committed.
//! - `e2e`: the same nodes; P producers queue tasks one per call (`POST /api/tasks`)
//!   while the nodes run them; throughput, and queue→start latency of every task.
//! - `latency`: one node with cap 1, idle; queue one task, wait until it started,
//!   repeat.
//!
//! A "no-op task" is the built-in `sleep` kind with `ms: 0`: claimed, leased, recorded
//! as an attempt, run and completed under its fencing token exactly as in production.
//! Start times are the nodes' own "task started" log lines (written when the runner
//! hands the task to its kind, after the claim committed), so latency includes the
//! claim's commit. Completion is observed by polling the table until no task is queued
//! or running, like the anchors.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use capstan_api::{CreateTaskRequest, CreateTasksRequest, CreateTasksResponse, TaskResponse};
use serde_json::json;

use crate::nodes::{self, ADMIN_KEY, BenchNode};

const LATENCY_WARMUP: usize = 50;
/// Logs what the latency figures are read from: the runner's "task started" lines.
const START_LOG_FILTER: &str = "info,capstan_server::runner::supervise=debug";

struct Workload {
    database_url: String,
    round: u32,
    n: usize,
    e2e_n: usize,
    workers: usize,
    concurrency: u32,
    producers: usize,
    latency_samples: usize,
    log_dir: PathBuf,
}

impl Workload {
    fn from_env(mode: &str) -> anyhow::Result<Self> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let round = var("PGQA_ROUND", 0)?;
        let base = std::env::var_os("PGQA_LOGDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let log_dir = base.join(format!("capstan-{mode}-r{round}"));
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self {
            database_url: std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?,
            round,
            n: var("PGQA_N", 20_000)?,
            e2e_n: var("PGQA_E2E_N", 5_000)?,
            workers: var("PGQA_WORKERS", 2)?,
            concurrency: var("PGQA_CONCURRENCY", 24)?,
            producers: var("PGQA_PRODUCERS", 2)?,
            latency_samples: var("PGQA_LAT_SAMPLES", 300)?,
            log_dir,
        })
    }

    fn emit(&self, variant: &str, metric: &str, value: f64, extra: serde_json::Value) {
        let mut line = json!({
            "system": "capstan",
            "variant": variant,
            "metric": metric,
            "value": (value * 1000.0).round() / 1000.0,
            "round": self.round,
        });
        if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
            line.extend(extra.clone());
        }
        println!("{line}");
    }

    fn variant(&self) -> String {
        format!("cap{}", self.concurrency)
    }
}

pub async fn run(mode: &str) -> anyhow::Result<()> {
    let workload = Workload::from_env(mode)?;
    match mode {
        "drain" => drain(&workload).await,
        "e2e" => e2e(&workload).await,
        "latency" => latency(&workload).await,
        other => bail!("unknown mode `{other}`; use drain, e2e or latency"),
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

fn noop() -> CreateTaskRequest {
    CreateTaskRequest::new("sleep", json!({ "ms": 0 }))
}

/// Waits until no task is queued or running and `expected` have finished; returns the
/// wall-clock moment that was seen.
async fn wait_drained(db: &tokio_postgres::Client, expected: i64) -> anyhow::Result<SystemTime> {
    let pending = db
        .prepare(
            "SELECT (SELECT count(*) FROM tasks WHERE state IN ('queued', 'running')),
                    (SELECT count(*) FROM tasks WHERE kind = 'sleep' AND state = 'succeeded')",
        )
        .await?;
    let started = Instant::now();
    loop {
        let row = db.query_one(&pending, &[]).await?;
        let (open, done): (i64, i64) = (row.get(0), row.get(1));
        if open == 0 && done >= expected {
            return Ok(SystemTime::now());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not drained after 600 s: {open} open, {done} of {expected} done");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every task ran exactly once and succeeded (one attempt, none lost); anything else
/// makes the figures void.
async fn check_exactly_once(db: &tokio_postgres::Client, expected: i64) -> anyhow::Result<()> {
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded' AND attempt = 1),
                    (SELECT count(*) FROM task_attempts)
             FROM tasks WHERE kind = 'sleep'",
            &[],
        )
        .await?;
    let (tasks, once, lost): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if tasks != expected || once != expected || lost != 0 {
        bail!(
            "{tasks} tasks, {once} succeeded at attempt 1, {lost} lost attempts; expected {expected}, {expected}, 0"
        );
    }
    Ok(())
}

fn secs(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

/// Resident memory and database connections of each node, sampled while it works.
struct Footprint {
    rss_max_mib: Vec<f64>,
    connections_max: HashMap<String, i64>,
}

async fn sample_footprint(
    nodes: &[BenchNode],
    db: &tokio_postgres::Client,
    footprint: &mut Footprint,
) -> anyhow::Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        if let Some(rss) = node.rss_mib() {
            footprint.rss_max_mib[i] = footprint.rss_max_mib[i].max(rss);
        }
    }
    for row in db
        .query(
            "SELECT application_name, count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'capstan %'
             GROUP BY 1",
            &[],
        )
        .await?
    {
        let name: String = row.get(0);
        let count: i64 = row.get(1);
        let slot = footprint.connections_max.entry(name).or_default();
        *slot = (*slot).max(count);
    }
    Ok(())
}

async fn drain(w: &Workload) -> anyhow::Result<()> {
    let nodes = nodes::start(w.workers, w.concurrency, &w.database_url, &w.log_dir, &[]).await?;
    let db = connect(&w.database_url).await?;
    // Let every node's LISTEN connection settle: the anchors' workers are idle and
    // listening before the batch goes in, too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = CreateTasksRequest {
        tasks: (0..w.n).map(|_| noop()).collect(),
    };
    let client = http();

    let t0 = SystemTime::now();
    let response = client
        .post(format!("{}/api/tasks/batch", nodes[0].url))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("batch refused: {}", response.text().await?);
    }
    let ids: CreateTasksResponse = response.json().await?;
    let t_enqueued = SystemTime::now();

    let mut footprint = Footprint {
        rss_max_mib: vec![0.0; nodes.len()],
        connections_max: HashMap::new(),
    };
    let done = {
        let waiting = wait_drained(&db, ids.ids.len() as i64);
        tokio::pin!(waiting);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                done = &mut waiting => break done?,
                _ = tick.tick() => sample_footprint(&nodes, &db, &mut footprint).await?,
            }
        }
    };
    check_exactly_once(&db, w.n as i64).await?;
    nodes::stop(nodes).await;

    let extra = json!({ "n": w.n, "workers": w.workers, "concurrency": w.concurrency });
    let variant = w.variant();
    w.emit(
        &variant,
        "enqueue_batch_jobs_per_s",
        w.n as f64 / secs(t0, t_enqueued),
        extra.clone(),
    );
    w.emit(
        &variant,
        "drain_jobs_per_s",
        w.n as f64 / secs(t_enqueued, done),
        extra.clone(),
    );
    w.emit(
        &variant,
        "enqueue_plus_drain_jobs_per_s",
        w.n as f64 / secs(t0, done),
        extra.clone(),
    );
    for (i, rss) in footprint.rss_max_mib.iter().enumerate() {
        w.emit(
            &variant,
            &format!("node{}_rss_max_mib", i + 1),
            *rss,
            extra.clone(),
        );
    }
    for (name, count) in &footprint.connections_max {
        let node = name.trim_start_matches("capstan ").replace('-', "_");
        w.emit(
            &variant,
            &format!("{node}_db_connections_max"),
            *count as f64,
            extra.clone(),
        );
    }
    Ok(())
}

async fn e2e(w: &Workload) -> anyhow::Result<()> {
    let env = [
        ("RUST_LOG", START_LOG_FILTER),
        ("CAPSTAN_LOG_FORMAT", "json"),
    ];
    let nodes = nodes::start(w.workers, w.concurrency, &w.database_url, &w.log_dir, &env).await?;
    let db = connect(&w.database_url).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let t0 = SystemTime::now();
    let producers: Vec<_> = (0..w.producers)
        .map(|p| {
            let next = next.clone();
            let url = format!("{}/api/tasks", urls[p % urls.len()]);
            let total = w.e2e_n;
            tokio::spawn(async move {
                let client = http();
                let mut sent: Vec<(i64, SystemTime)> = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let at = SystemTime::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(ADMIN_KEY)
                        .json(&noop())
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("create refused: {}", response.text().await?);
                    }
                    let task: TaskResponse = response.json().await?;
                    sent.push((task.id, at));
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    let mut sent = HashMap::new();
    for producer in producers {
        sent.extend(producer.await??);
    }
    let t_enqueued = SystemTime::now();
    let done = wait_drained(&db, w.e2e_n as i64).await?;
    check_exactly_once(&db, w.e2e_n as i64).await?;
    report_server_time(&nodes).await;
    let logs: Vec<PathBuf> = nodes.iter().map(|n| n.log.clone()).collect();
    nodes::stop(nodes).await;

    let latencies = start_latencies(&logs, &sent)?;
    let extra = json!({
        "n": w.e2e_n, "workers": w.workers, "concurrency": w.concurrency, "producers": w.producers
    });
    let variant = w.variant();
    w.emit(
        &variant,
        "enqueue_single_jobs_per_s",
        w.e2e_n as f64 / secs(t0, t_enqueued),
        extra.clone(),
    );
    w.emit(
        &variant,
        "e2e_jobs_per_s",
        w.e2e_n as f64 / secs(t0, done),
        extra.clone(),
    );
    emit_latencies(w, &variant, "e2e_start_latency", latencies, &extra);
    Ok(())
}

/// Prints (to stderr, for whoever tunes this) how long the nodes themselves spent per
/// `POST /api/tasks`, so client and server time can be told apart.
async fn report_server_time(nodes: &[BenchNode]) {
    for node in nodes {
        let Ok(response) = reqwest::get(format!("{}/metrics", node.url)).await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        let value = |name: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(name)
                        && l.contains("route=\"/api/tasks\"")
                        && l.contains("method=\"POST\"")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (sum, count) = (
            value("capstan_http_request_duration_seconds_sum"),
            value("capstan_http_request_duration_seconds_count"),
        );
        if count > 0.0 {
            eprintln!(
                "{}: {count} POST /api/tasks, {:.3} ms each inside the node",
                node.name,
                sum / count * 1000.0
            );
        }
    }
}

async fn latency(w: &Workload) -> anyhow::Result<()> {
    let env = [
        ("RUST_LOG", START_LOG_FILTER),
        ("CAPSTAN_LOG_FORMAT", "json"),
    ];
    let nodes = nodes::start(1, 1, &w.database_url, &w.log_dir, &env).await?;
    let db = connect(&w.database_url).await?;
    let state = db.prepare("SELECT state FROM tasks WHERE id = $1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = http();
    let url = format!("{}/api/tasks", nodes[0].url);
    let mut sent = HashMap::new();
    for i in 0..LATENCY_WARMUP + w.latency_samples {
        let at = SystemTime::now();
        let task: TaskResponse = client
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .json(&noop())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if i >= LATENCY_WARMUP {
            sent.insert(task.id, at);
        }
        // Wait until it left the queue, then let the completion commit: each sample
        // meets an idle node.
        let waited = Instant::now();
        loop {
            let row = db.query_one(&state, &[&task.id]).await?;
            if row.get::<_, String>(0) != "queued" {
                break;
            }
            if waited.elapsed() > Duration::from_secs(10) {
                bail!("task {} did not start within 10 s", task.id);
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logs = vec![nodes[0].log.clone()];
    nodes::stop(nodes).await;
    let latencies = start_latencies(&logs, &sent)?;
    emit_latencies(
        w,
        "cap1",
        "start_latency",
        latencies,
        &json!({ "samples": w.latency_samples }),
    );
    Ok(())
}

/// Queue→start latency in ms of every task in `sent`, from the nodes' "task started"
/// log lines.
fn start_latencies(logs: &[PathBuf], sent: &HashMap<i64, SystemTime>) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(sent.len());
    for log in logs {
        let text = std::fs::read_to_string(log)?;
        for line in text.lines().filter(|l| l.contains("\"task started\"")) {
            let event: serde_json::Value = serde_json::from_str(line)?;
            let Some(id) = event["task.id"].as_i64() else {
                continue;
            };
            let Some(at) = sent.get(&id) else { continue };
            let stamp = event["timestamp"]
                .as_str()
                .context("a log line without timestamp")?;
            let started =
                time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)?;
            let started = SystemTime::from(started);
            let ms = started
                .duration_since(*at)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            latencies.push(ms);
        }
    }
    if latencies.len() != sent.len() {
        bail!(
            "found {} start lines for {} tasks",
            latencies.len(),
            sent.len()
        );
    }
    Ok(latencies)
}

fn emit_latencies(
    w: &Workload,
    variant: &str,
    prefix: &str,
    mut ms: Vec<f64>,
    extra: &serde_json::Value,
) {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms[i.clamp(1, ms.len()) - 1]
    };
    let avg = ms.iter().sum::<f64>() / ms.len() as f64;
    w.emit(
        variant,
        &format!("{prefix}_p50_ms"),
        pct(50.0),
        extra.clone(),
    );
    w.emit(
        variant,
        &format!("{prefix}_p90_ms"),
        pct(90.0),
        extra.clone(),
    );
    w.emit(
        variant,
        &format!("{prefix}_p99_ms"),
        pct(99.0),
        extra.clone(),
    );
    w.emit(variant, &format!("{prefix}_avg_ms"), avg, extra.clone());
    w.emit(
        variant,
        &format!("{prefix}_max_ms"),
        ms[ms.len() - 1],
        extra.clone(),
    );
}
