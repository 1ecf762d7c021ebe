//! The task log page at size: a `--lines`-line log written through a real node's log
//! writer (a simulated agent's output, in batches as the agent protocol sends it),
//! opened `--loads` times in headless Chromium, each timed from navigation to its last
//! line on screen and following live; then paging back timed from scrolling to the top
//! to the earlier lines shown. Also the bytes the node read for the tail (its
//! `x-log-bytes-read`) against the log's length: a tail must not read the log whole.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use capstan_testkit::{
    ADMIN_KEY, TestCluster,
    agents::{SimAgent, ensure_environment, registration_token},
    browser::Browser,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::agents::{ms, percentile};

const READY_GOAL_MS: f64 = 1_000.0;
const PASSWORD: &str = "log reader's long password";

#[derive(Debug, clap::Args)]
pub struct UiLogArgs {
    #[arg(long, default_value_t = 100_000)]
    lines: usize,
    #[arg(long, default_value_t = 20)]
    loads: usize,
    /// Times paging back is measured (each a scroll to the top).
    #[arg(long, default_value_t = 10)]
    pages_back: usize,
}

pub async fn run(args: UiLogArgs) -> anyhow::Result<()> {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let base = node.url();
    let client = node.client();

    ensure_environment(&client, "Production").await;
    let token = registration_token(&client, 1).await;
    let agent = SimAgent::register(&base, &token, "bench01", "Production", &[])
        .await
        .map_err(|e| anyhow::anyhow!("registering an agent: {e:?}"))?;
    let task = client
        .run_script(&capstan_api::RunScriptRequest {
            script: "./long-build.sh".to_owned(),
            agents: vec!["bench01".to_owned()],
            ..Default::default()
        })
        .await?;
    let command = agent
        .poll(5_000)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .commands
        .first()
        .context("the script's command")?
        .id;
    agent
        .ack(command)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;

    let seeding = Instant::now();
    let texts: Vec<String> = (1..=args.lines)
        .map(|n| match n % 7 {
            0 => format!(
                "\u{1b}[32mstep {n} ok\u{1b}[0m compiled module_{n} in 0.{:03}s",
                n % 1000
            ),
            3 => format!("\u{1b}[1;33mwarning\u{1b}[0m: step {n} used a deprecated option"),
            _ => format!("step {n}: copying files for component {}", n % 97),
        })
        .collect();
    for (batch, chunk) in texts.chunks(1_000).enumerate() {
        let lines: Vec<(u64, &str)> = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| ((batch * 1_000 + i + 1) as u64, t.as_str()))
            .collect();
        agent
            .output(command, &lines)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let http = reqwest::Client::new();
    let last = format!("step {}", args.lines);
    let tail = loop {
        let response = http
            .get(format!("{base}/api/tasks/{}/log?tail=500", task.id))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
        let read: u64 = response.headers()["x-log-bytes-read"].to_str()?.parse()?;
        let page: Value = response.json().await?;
        let done = page["lines"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["text"].as_str())
            // No step has a larger number, so only the last line holds this.
            .is_some_and(|t| t.contains(&last));
        if done {
            break (page, read);
        }
        if seeding.elapsed() > Duration::from_secs(300) {
            bail!("the log's last line was not stored within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log_bytes = tail.0["log_bytes"].as_u64().unwrap_or_default();
    eprintln!(
        "seeded {} lines ({:.1} MB) in {:.1} s; the 500-line tail read {} bytes ({:.2}% of the log)",
        args.lines,
        log_bytes as f64 / 1e6,
        seeding.elapsed().as_secs_f64(),
        tail.1,
        100.0 * tail.1 as f64 / log_bytes.max(1) as f64
    );
    let whole = Instant::now();
    let text = http
        .get(format!("{base}/api/tasks/{}/log", task.id))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .bytes()
        .await?;
    eprintln!(
        "for comparison, the whole log as text: {} bytes in {:.0} ms",
        text.len(),
        ms(whole.elapsed())
    );

    administrator(&http, &base, "bench-reader").await?;
    let browser = Browser::start().await;
    browser.sign_in(&base, "bench-reader", PASSWORD).await;
    let url = format!("{base}/tasks/{}/log", task.id);
    let ready = format!(
        "(function() {{ var l = document.querySelector('.log-view .log-line:last-child'); \
         var v = document.querySelector('.log-view'); \
         if (!l || !v) return false; \
         var r = l.getBoundingClientRect(), b = v.getBoundingClientRect(); \
         return l.textContent.includes('{last}') && r.bottom <= b.bottom + 1 && r.top >= b.top \
           && document.querySelector('.log-status').textContent === 'Live'; }})()"
    );
    let mut loads = Vec::new();
    for _ in 0..args.loads {
        let started = Instant::now();
        browser.open(&url).await;
        wait(&browser, &ready).await?;
        loads.push(started.elapsed());
    }
    let lines_shown = eval_u64(
        &browser,
        "document.querySelectorAll('.log-view .log-line').length",
    )
    .await?;

    let mut pages = Vec::new();
    for _ in 0..args.pages_back {
        let first = eval_u64(
            &browser,
            "Number(document.querySelector('.log-view .log-line').dataset.start)",
        )
        .await?;
        let started = Instant::now();
        browser
            .client()
            .execute(
                "document.querySelector('.log-view').scrollTop = 0; return true;",
                vec![],
            )
            .await?;
        wait(
            &browser,
            &format!(
                "Number(document.querySelector('.log-view .log-line').dataset.start) < {first} \
                 && !document.querySelector('.log-panel').dataset.loadingEarlier"
            ),
        )
        .await?;
        pages.push(started.elapsed());
    }
    let lines_after = eval_u64(
        &browser,
        "document.querySelectorAll('.log-view .log-line').length",
    )
    .await?;

    let sorted = sorted_ms(&loads);
    let sorted_pages = sorted_ms(&pages);
    println!(
        "{}",
        json!({
            "lines": args.lines,
            "log_bytes": log_bytes,
            "tail_bytes_read": tail.1,
            "loads": loads.len(),
            "ready_p50_ms": percentile(&sorted, 50.0),
            "ready_p95_ms": percentile(&sorted, 95.0),
            "ready_max_ms": sorted.last(),
            "page_back_p50_ms": percentile(&sorted_pages, 50.0),
            "page_back_max_ms": sorted_pages.last(),
            "lines_in_page_at_open": lines_shown,
            "lines_in_page_after_paging": lines_after,
        })
    );
    ensure!(
        percentile(&sorted, 50.0) <= READY_GOAL_MS,
        "the page took {:.0} ms to be ready (p50), above the {READY_GOAL_MS} ms goal",
        percentile(&sorted, 50.0)
    );
    Ok(())
}

/// Durations in milliseconds, smallest first.
fn sorted_ms(durations: &[Duration]) -> Vec<f64> {
    let mut sorted: Vec<f64> = durations.iter().map(|d| ms(*d)).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

async fn wait(browser: &Browser, condition: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let script = format!("return Boolean({condition});");
    loop {
        if browser.client().execute(&script, vec![]).await? == Value::Bool(true) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("after 30 s, still not: {condition}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn eval_u64(browser: &Browser, expression: &str) -> anyhow::Result<u64> {
    browser
        .client()
        .execute(&format!("return {expression};"), vec![])
        .await?
        .as_u64()
        .with_context(|| format!("{expression} is not a number"))
}

/// A person `name` who is a system administrator and signs in with [`PASSWORD`].
async fn administrator(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<()> {
    let call = |method: Method, path: String, body: Value| {
        let mut request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_KEY);
        if !body.is_null() {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            ensure!(status.is_success(), "{path}: {status} {text}");
            Ok::<Value, anyhow::Error>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let user = call(
        Method::POST,
        "/api/users".into(),
        json!({"name": name, "kind": "person"}),
    )
    .await?;
    let user = user["id"].as_i64().context("a user id")?;
    call(
        Method::PUT,
        format!("/api/users/{user}/password"),
        json!({"password": PASSWORD}),
    )
    .await?;
    let team = call(
        Method::POST,
        "/api/teams".into(),
        json!({"name": format!("{name} administrators")}),
    )
    .await?;
    let team = team["id"].as_i64().context("a team id")?;
    call(
        Method::POST,
        format!("/api/teams/{team}/members"),
        json!({"user_id": user}),
    )
    .await?;
    let roles = call(Method::GET, "/api/roles".into(), Value::Null).await?;
    let role = roles["items"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "system administrator"))
        .and_then(|r| r["id"].as_i64())
        .context("the system administrator role")?;
    call(
        Method::POST,
        format!("/api/teams/{team}/grants"),
        json!({"role_id": role, "project_ids": null, "environment_ids": null}),
    )
    .await?;
    Ok(())
}
