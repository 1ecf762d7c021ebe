//! The dashboard page in a real browser at size: `--projects` projects ×
//! `--environments` environments seeded as `capstan-loadtest dashboard` seeds them,
//! behind one real node; a person signs in through the page, then the dashboard is
//! loaded `--loads` times with the default page and with the largest page. Each load
//! is timed by the browser's own Navigation Timing, from navigation start until the
//! document (with the dashboard table) is parsed and until it and its assets have
//! loaded.

use std::path::PathBuf;

use anyhow::{Context as _, ensure};
use capstan_testkit::browser::Browser;
use reqwest::Method;
use serde_json::{Value, json};

use crate::agents::percentile;
use crate::dashboard::seed;
use crate::database::{Database, connect};
use crate::nodes::{self, ADMIN_KEY};

const READY_GOAL_MS: f64 = 1000.0;
const NAME: &str = "dashboard-reader";
const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, clap::Args)]
pub struct UiDashboardArgs {
    #[arg(long, default_value_t = 500)]
    projects: i64,
    #[arg(long, default_value_t = 20)]
    environments: i64,
    /// Deployments of each project × environment.
    #[arg(long, default_value_t = 3)]
    deployments: i64,
    /// Timed loads of each page size (after one that is not timed).
    #[arg(long, default_value_t = 20)]
    loads: usize,
    /// Where the node's log goes.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    #[arg(
        long,
        env = "CAPSTAN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

pub async fn run(args: UiDashboardArgs) -> anyhow::Result<()> {
    let database = Database::create(&args.database_url, "capstan_ui_dashboard", 1).await?;
    let result = measure(&args, &database).await;
    database.drop().await;
    result
}

async fn measure(args: &UiDashboardArgs, database: &Database) -> anyhow::Result<()> {
    let node = nodes::start(1, 4, &database.url, &args.dir, &[]).await?;
    let db = connect(&database.url).await?;
    seed(&db, args.projects, args.environments, args.deployments).await?;
    let base = node[0].url.clone();
    administrator(&base).await?;
    let browser = Browser::start().await;
    browser.sign_in(&base, NAME, PASSWORD).await;

    let largest = 500.min(args.projects);
    let default = 50.min(args.projects);
    let mut results = Vec::new();
    for (page, path, rows) in [
        ("default page", "/".to_owned(), default),
        ("largest page", format!("/?limit={largest}"), largest),
    ] {
        let mut served = Vec::new();
        let mut parsed = Vec::new();
        let mut loaded = Vec::new();
        let mut bytes = 0.0;
        for load in 0..=args.loads {
            let timing = load_once(&browser, &format!("{base}{path}")).await?;
            let shown = timing["rows"].as_i64().unwrap_or_default();
            ensure!(shown == rows, "{page}: {shown} rows, expected {rows}");
            // The first load fills the browser's cache of the assets, as a person's
            // first visit does; the rest are the visits after.
            if load > 0 {
                served.push(timing["served"].as_f64().unwrap_or(f64::NAN));
                parsed.push(timing["parsed"].as_f64().unwrap_or(f64::NAN));
                loaded.push(timing["loaded"].as_f64().unwrap_or(f64::NAN));
                bytes = timing["bytes"].as_f64().unwrap_or_default();
            }
        }
        let cells = rows * args.environments;
        let summary = json!({
            "page": page, "projects": rows, "cells": cells, "html_kib": bytes / 1024.0,
            "response_end_p50_ms": percentile(&served, 50.0),
            "dom_content_loaded_p50_ms": percentile(&parsed, 50.0),
            "dom_content_loaded_p99_ms": percentile(&parsed, 99.0),
            "load_p50_ms": percentile(&loaded, 50.0),
            "load_p99_ms": percentile(&loaded, 99.0),
            "loads": loaded.len(),
        });
        eprintln!(
            "{page} ({rows} projects, {cells} cells, {:.0} KiB of HTML): last byte of the HTML p50 {:.1} ms; DOMContentLoaded p50 {:.1} ms, p99 {:.1} ms; load p50 {:.1} ms, p99 {:.1} ms over {} loads (goal ≤ {READY_GOAL_MS} ms)",
            bytes / 1024.0,
            percentile(&served, 50.0),
            percentile(&parsed, 50.0),
            percentile(&parsed, 99.0),
            percentile(&loaded, 50.0),
            percentile(&loaded, 99.0),
            loaded.len(),
        );
        println!("{summary}");
        results.push(summary);
    }
    drop(browser);
    nodes::stop(node).await;
    let default_ready = results[0]["load_p50_ms"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        default_ready <= READY_GOAL_MS,
        "the default page is ready at p50 {default_ready:.1} ms, over the goal of {READY_GOAL_MS} ms"
    );
    Ok(())
}

/// One navigation to `url`, once loaded: its Navigation Timing (ms since navigation
/// start), the size of the HTML, and the dashboard's rows.
async fn load_once(browser: &Browser, url: &str) -> anyhow::Result<Value> {
    browser.open(url).await;
    let script = "const n = performance.getEntriesByType('navigation')[0];
        if (!n || n.loadEventEnd === 0) { return null; }
        return { served: n.responseEnd, parsed: n.domContentLoadedEventEnd, loaded: n.loadEventEnd,
                 bytes: n.decodedBodySize,
                 rows: document.querySelectorAll('table.dashboard tbody tr').length };";
    for _ in 0..100 {
        let timing = browser
            .client()
            .execute(script, vec![])
            .await
            .context("reading the navigation timing")?;
        if !timing.is_null() {
            return Ok(timing);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} did not finish loading")
}

/// A person `NAME` with a password, in a team granted system administrator, as the
/// admin key makes them.
async fn administrator(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let call = |method, path: &str, body| as_admin(&http, base, method, path.to_owned(), body);
    let user = call(
        Method::POST,
        "/api/users",
        Some(json!({ "name": NAME, "kind": "person" })),
    )
    .await?["id"]
        .as_i64()
        .context("a user id")?;
    call(
        Method::PUT,
        &format!("/api/users/{user}/password"),
        Some(json!({ "password": PASSWORD })),
    )
    .await?;
    let team = call(
        Method::POST,
        "/api/teams",
        Some(json!({ "name": "dashboard readers" })),
    )
    .await?["id"]
        .as_i64()
        .context("a team id")?;
    call(
        Method::POST,
        &format!("/api/teams/{team}/members"),
        Some(json!({ "user_id": user })),
    )
    .await?;
    let roles = call(Method::GET, "/api/roles", None).await?;
    let role = roles["items"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["name"] == "system administrator"))
        .and_then(|r| r["id"].as_i64())
        .context("the system administrator role")?;
    call(
        Method::POST,
        &format!("/api/teams/{team}/grants"),
        Some(json!({ "role_id": role, "project_ids": null, "environment_ids": null })),
    )
    .await?;
    Ok(())
}

/// `method path` with `body` as the admin key: the answer's JSON (null when empty).
async fn as_admin(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: String,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
