//! `GET /api/dashboard` at size: `--projects` projects × `--environments` environments,
//! each pair with `--deployments` deployments (and their `deployment.create` audit
//! rows), seeded straight into PostgreSQL behind one real node, then the whole first
//! page (every project) read `--gets` times, one at a time, timed to the body's last
//! byte. Also prints the cells statement's plan, and fails if it runs a SubPlan per
//! row.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, ensure};

use crate::agents::{ms, percentile};
use crate::database::{Database, connect};
use crate::nodes::{self, ADMIN_KEY};

const P50_GOAL_MS: f64 = 200.0;

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[arg(long, default_value_t = 500)]
    projects: i64,
    #[arg(long, default_value_t = 20)]
    environments: i64,
    /// Deployments of each project × environment.
    #[arg(long, default_value_t = 3)]
    deployments: i64,
    #[arg(long, default_value_t = 50)]
    gets: usize,
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

pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let database = Database::create(&args.database_url, "capstan_dashboard", 1).await?;
    let result = measure(&args, &database).await;
    database.drop().await;
    result
}

/// Seeds `projects` projects × `environments` environments, each pair with
/// `deployments` succeeded deployments (one per release) and their `deployment.create`
/// audit rows, straight into the database behind a node.
pub async fn seed(
    db: &tokio_postgres::Client,
    projects: i64,
    environments: i64,
    deployments: i64,
) -> anyhow::Result<()> {
    let seeded = Instant::now();
    db.batch_execute(&format!(
        "INSERT INTO environments (name)
             SELECT 'env-' || lpad(e::text, 3, '0') FROM generate_series(1, {envs}) e;
         INSERT INTO projects (name)
             SELECT 'project-' || lpad(p::text, 4, '0') FROM generate_series(1, {projects}) p;
         INSERT INTO releases (project_id, version, version_key, process, process_version,
                               variables_version, packages)
             SELECT p.id, v || '.0.0', lpad(v::text, 8, '0'), '[]', 1, 1, '[]'
             FROM projects p, generate_series(1, {releases}) v;
         INSERT INTO deployments (project_id, release_id, environment_id, state, queued_at,
                                  started_at, finished_at)
             SELECT r.project_id, r.id, e.id, 'succeeded', now(), now(), now()
             FROM releases r, environments e ORDER BY r.id, e.id;
         INSERT INTO audit_events (actor_kind, actor_name, auth_method, action, object_kind,
                                   object_id, project_id, environment_id)
             SELECT 'admin_key', 'admin key', 'admin_key', 'deployment.create', 'deployment',
                    d.id::text, d.project_id, d.environment_id FROM deployments d;
         ANALYZE;",
        envs = environments,
        releases = deployments,
    ))
    .await
    .context("seeding")?;
    eprintln!(
        "seeded {} projects × {} environments × {} deployments in {:.1} s",
        projects,
        environments,
        deployments,
        seeded.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(args: &DashboardArgs, database: &Database) -> anyhow::Result<()> {
    let node = nodes::start(1, 4, &database.url, &args.dir, &[]).await?;
    let db = connect(&database.url).await?;
    seed(&db, args.projects, args.environments, args.deployments).await?;

    let http = reqwest::Client::new();
    let url = format!("{}/api/dashboard?limit=500", node[0].url);
    let mut times = Vec::new();
    let mut cells = 0;
    for _ in 0..args.gets {
        let started = Instant::now();
        let response = http.get(&url).bearer_auth(ADMIN_KEY).send().await?;
        ensure!(response.status().is_success(), "{}", response.status());
        let body = response.bytes().await?;
        times.push(ms(started.elapsed()));
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        cells = page["cells"].as_array().map_or(0, Vec::len);
    }
    let expected = usize::try_from(args.projects.min(500) * args.environments)?;
    ensure!(cells == expected, "{cells} cells, expected {expected}");

    let plan: Vec<String> = db
        .query(
            "EXPLAIN ANALYZE SELECT d.id, r.version
             FROM (SELECT id FROM projects ORDER BY name, id LIMIT 500) pid
             CROSS JOIN environments eid
             JOIN LATERAL (SELECT * FROM deployments
                           WHERE project_id = pid.id AND environment_id = eid.id
                           ORDER BY id DESC LIMIT 1) d ON true
             JOIN releases r ON r.id = d.release_id
             LEFT JOIN LATERAL (SELECT actor_name FROM audit_events
                                WHERE object_kind = 'deployment' AND object_id = d.id::text
                                ORDER BY id LIMIT 1) a ON true",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    eprintln!("{}", plan.join("\n"));
    let subplans = plan.iter().any(|line| line.contains("SubPlan"));

    let p50 = percentile(&times, 50.0);
    let p99 = percentile(&times, 99.0);
    eprintln!(
        "GET /api/dashboard ({cells} cells): p50 {p50:.1} ms, p99 {p99:.1} ms over {} requests (goal p50 ≤ {P50_GOAL_MS} ms); per-row subplans: {subplans}",
        times.len()
    );
    println!(
        "{}",
        serde_json::json!({
            "projects": args.projects, "environments": args.environments,
            "cells": cells, "p50_ms": p50, "p99_ms": p99, "requests": times.len(),
            "subplans": subplans,
        })
    );
    nodes::stop(node).await;
    ensure!(!subplans, "the cells statement runs a subplan per row");
    Ok(())
}
