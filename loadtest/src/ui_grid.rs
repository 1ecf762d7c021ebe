//! The deployment page's live grid at size: a running deployment with `--targets`
//! targets (one step, one action) seeded straight into PostgreSQL behind one real node,
//! its page open in a real headless Chromium signed in as a person, and its cells
//! changed in the database at `--rate` changes a second for `--seconds`. Each change's
//! time is recorded here; in the page a MutationObserver stamps each cell's `data-state`
//! as it changes. The lag is the page's stamp minus the database's (same machine, same
//! clock): p50/p99, the changes the page saw per second, and whether every one arrived.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail, ensure};
use capstan_testkit::browser::Browser;
use serde_json::{Value, json};

use crate::agents::percentile;
use crate::database::{Database, connect};
use crate::nodes::{self, ADMIN_KEY};

const PASSWORD: &str = "a long benchmark password";

#[derive(Debug, clap::Args)]
pub struct UiGridArgs {
    #[arg(long, default_value_t = 1000)]
    targets: usize,
    /// Cell changes a second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
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

pub async fn run(args: UiGridArgs) -> anyhow::Result<()> {
    let database = Database::create(&args.database_url, "capstan_ui_grid", 1).await?;
    let result = measure(&args, &database).await;
    database.drop().await;
    result
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A person who may read everything, with a password: (name).
async fn person(http: &reqwest::Client, base: &str) -> anyhow::Result<&'static str> {
    use reqwest::Method;
    let name = "grid-watcher";
    let user = api(
        http,
        base,
        Method::POST,
        "/api/users",
        json!({"name": name, "kind": "person"}),
    )
    .await?;
    let user = user["id"].as_i64().context("a user id")?;
    api(
        http,
        base,
        Method::PUT,
        &format!("/api/users/{user}/password"),
        json!({"password": PASSWORD}),
    )
    .await?;
    let team = api(
        http,
        base,
        Method::POST,
        "/api/teams",
        json!({"name": "watchers"}),
    )
    .await?;
    let team = team["id"].as_i64().context("a team id")?;
    api(
        http,
        base,
        Method::POST,
        &format!("/api/teams/{team}/members"),
        json!({"user_id": user}),
    )
    .await?;
    let roles = api(http, base, Method::GET, "/api/roles", Value::Null).await?;
    let role = roles["items"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "system administrator"))
        .and_then(|r| r["id"].as_i64())
        .context("the system administrator role")?;
    api(
        http,
        base,
        Method::POST,
        &format!("/api/teams/{team}/grants"),
        json!({"role_id": role, "project_ids": null, "environment_ids": null}),
    )
    .await?;
    Ok(name)
}

/// A running deployment of one step on `targets` targets, every cell pending: its id.
/// Its task stays queued on a node that claims nothing (task cap 0), so nothing but
/// this benchmark changes its cells; a deployment without a live task reads as aborted.
async fn seed(db: &tokio_postgres::Client, targets: usize) -> anyhow::Result<i64> {
    let process = json!([{
        "name": "Deploy",
        "target_tags": ["web"],
        "actions": [{ "kind": "script", "syntax": "bash", "body": "true" }],
    }]);
    let targets_json: Vec<Value> = (1..=targets)
        .map(|i| json!({"agent_id": i, "name": format!("web{i:04}"), "tags": ["web"]}))
        .collect();
    db.batch_execute(&format!(
        "INSERT INTO environments (name) VALUES ('Production');
         INSERT INTO projects (name) VALUES ('Grid');
         INSERT INTO releases (project_id, version, version_key, process, process_version,
                               variables_version, packages)
             SELECT id, '1.0.0', '00000001', '{process}', 1, 1, '[]' FROM projects;
         WITH t AS (INSERT INTO tasks (kind, state, on_node_lost)
                    VALUES ('deploy', 'queued', 'fail') RETURNING id)
         INSERT INTO deployments (task_id, project_id, release_id, environment_id, state,
                                  queued_at, started_at, targets)
             SELECT t.id, r.project_id, r.id, e.id, 'running', now(), now(), '{targets}'
             FROM t, releases r, environments e;
         INSERT INTO deployment_cells (deployment_id, step, agent_id, action, target, state)
             SELECT d.id, 0, t, 0, 'web' || lpad(t::text, 4, '0'), 'pending'
             FROM deployments d, generate_series(1, {count}) t;",
        process = process,
        targets = Value::Array(targets_json),
        count = targets,
    ))
    .await
    .context("seeding the deployment")?;
    let row = db.query_one("SELECT id FROM deployments", &[]).await?;
    Ok(row.get(0))
}

/// Stamps every change of a cell's state with the page's clock.
const OBSERVE: &str = r#"
window.__seen = [];
const grid = document.getElementById("grid");
new MutationObserver((records) => {
  const at = Date.now();
  for (const r of records) {
    if (r.attributeName === "data-state") window.__seen.push([r.target.id, r.target.dataset.state, at]);
  }
}).observe(grid, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
return true;
"#;

async fn measure(args: &UiGridArgs, database: &Database) -> anyhow::Result<()> {
    ensure!(args.rate > 0.0, "--rate must be above 0");
    let changes = ((args.rate * args.seconds as f64) as usize).min(args.targets);
    let node = nodes::start(1, 0, &database.url, &args.dir, &[]).await?;
    let base = node[0].url.clone();
    let db = connect(&database.url).await?;
    let id = seed(&db, args.targets).await?;
    let http = reqwest::Client::new();
    let name = person(&http, &base).await?;

    let browser = Browser::start().await;
    browser.sign_in(&base, name, PASSWORD).await;
    let opened = Instant::now();
    browser.open(&format!("{base}/deployments/{id}")).await;
    let load_ms = opened.elapsed().as_secs_f64() * 1000.0;
    browser
        .until(
            Duration::from_secs(30),
            "the grid to be live",
            "document.getElementById('live').dataset.state === 'live'",
        )
        .await;
    let cells = browser
        .client()
        .execute(
            "return document.querySelectorAll('#grid td.cell').length;",
            vec![],
        )
        .await?;
    ensure!(
        cells == json!(args.targets),
        "{cells} cells on the page, expected {}",
        args.targets
    );
    browser.client().execute(OBSERVE, vec![]).await?;

    // Cell i turns running at change i; the time is taken once the row is committed.
    let update = db
        .prepare("UPDATE deployment_cells SET state = 'running', started_at = now() WHERE deployment_id = $1 AND agent_id = $2")
        .await?;
    let mut changed_at: HashMap<String, f64> = HashMap::new();
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    for i in 0..changes {
        tick.tick().await;
        db.execute(&update, &[&id, &((i + 1) as i64)]).await?;
        changed_at.insert(format!("cell-0-0-{i}"), now_ms());
    }
    let sent_for = started.elapsed().as_secs_f64();
    // Whatever is still on its way: the page has a while to catch up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let seen = browser
            .client()
            .execute("return window.__seen;", vec![])
            .await?;
        let seen: Vec<(String, String, f64)> = serde_json::from_value(seen)?;
        let running = seen.iter().filter(|(_, s, _)| s == "running").count();
        if running >= changes || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lags = Vec::new();
    let mut first_seen = f64::MAX;
    let mut last_seen: f64 = 0.0;
    for (cell, state, at) in &seen {
        if state != "running" {
            continue;
        }
        if let Some(changed) = changed_at.get(cell) {
            lags.push(at - changed);
            first_seen = first_seen.min(*at);
            last_seen = last_seen.max(*at);
        }
    }
    let arrived = lags.len();
    if arrived == 0 {
        bail!("the page saw none of the {changes} changes");
    }
    let seen_span = ((last_seen - first_seen) / 1000.0).max(0.001);
    let p50 = percentile(&lags, 50.0);
    let p99 = percentile(&lags, 99.0);
    let max = lags.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "{} targets, page loaded in {load_ms:.0} ms; {changes} changes in {sent_for:.1} s ({:.1}/s); \
         the page saw {arrived} ({:.1}/s): lag p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
        args.targets,
        changes as f64 / sent_for,
        arrived as f64 / seen_span,
    );
    println!(
        "{}",
        json!({
            "targets": args.targets, "changes": changes, "arrived": arrived,
            "changes_per_s": changes as f64 / sent_for, "seen_per_s": arrived as f64 / seen_span,
            "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": max, "page_load_ms": load_ms,
        })
    );
    drop(browser);
    nodes::stop(node).await;
    ensure!(
        arrived == changes,
        "only {arrived} of {changes} changes reached the page"
    );
    Ok(())
}
