//! Deployments of a release to a fleet of simulated agents on real `capstan server`
//! processes: what the engine adds to the agents' own time, what reading a large grid
//! costs, how soon another node goes on after the one running a deployment dies, and
//! what a deployment costs its node in memory.
//!
//! Each round runs, on fresh nodes and a fresh database per node count, once every
//! agent is polling and its node has written that it saw it (one heartbeat):
//!
//! - **wall time**: one deployment of a process of `--steps` steps × one script action,
//!   window `--window`, to `--agents` agents that acknowledge each command and report
//!   success after a fixed script time (each of `--script-ms`). The ideal is the agents'
//!   own time, steps × ⌈agents ÷ window⌉ × script time; the orchestration overhead per
//!   target-action is (wall − ideal) ÷ (steps × agents). Wall time runs from sending
//!   `POST /api/deployments` to a `GET /api/tasks/{id}` of its task that says
//!   succeeded, polled every 5 ms.
//! - **grid read**: `GET /api/deployments/{id}` of each finished deployment, one at a
//!   time on one connection, timed to the body's last byte.
//! - **memory**: the `VmRSS` of every node, read before the POST (idle, agents
//!   polling) and every 20 ms during the deployment; growth is the peak minus idle of
//!   the node that ran it.
//! - **resume**: three nodes with a short heartbeat and lease, a slower script; when
//!   half the commands have reached the agents, the node running the deployment is
//!   SIGKILLed. Measured from the kill to the first cell another node started (the
//!   grid's `started_at`, written when a command is sent); agents of the dead node
//!   move to the next node, as behind a load balancer.
//!
//! A round fails (and the command exits non-zero) when a deployment does not succeed,
//! a cell did not succeed, or an agent call failed; missed targets are only reported.
//! The summary goes to stderr; stdout gets one JSON line with the medians of all rounds.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use capstan_api::{
    ApiClient, CreateReleaseRequest, ProcessRequest, ProjectRequest, TaskResponse,
    deployments::{CreateDeploymentRequest, DeploymentResponse},
    projects::Step,
};
use capstan_core::{TaskState, deployment::CellState, deployment::DeploymentState};
use serde_json::json;
use time::OffsetDateTime;

use crate::agents::{
    Behaviour, Bench, Figures, check_fd_limit, expect_status, ms, percentile, spawn_agents,
    verdict, wall_ms, with_bench,
};
use crate::database::connect;
use crate::nodes::{self, ADMIN_KEY};

/// Targets from the deployments issue.
const OVERHEAD_GOAL_MS: f64 = 1.0;
const GRID_GET_P50_GOAL_MS: f64 = 50.0;
/// Resume: the lease TTL plus this.
const RESUME_SLACK_GOAL_MS: f64 = 1000.0;
const RSS_GROWTH_GOAL_MIB: f64 = 64.0;

const ENVIRONMENT: &str = "Production";
const TAG: &str = "web";

/// `capstan-loadtest deployments`: a release to 1,000 simulated agents.
#[derive(Debug, clap::Args)]
pub struct DeploymentsArgs {
    /// Rounds to run; the summary gives medians.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Steps of the process, each one no-op script action on every agent.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Each step's window: targets running it at once.
    #[arg(long, default_value_t = 100)]
    window: u32,
    /// The agents' script times, one deployment each, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    script_ms: Vec<u64>,
    /// Node counts to measure wall time, grid reads and memory on; agents are spread
    /// over the nodes, the deployment is posted to the first.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// `GET /api/deployments/{id}` calls per finished deployment.
    #[arg(long, default_value_t = 50)]
    gets: usize,
    /// The script time of the resume scenario, in milliseconds.
    #[arg(long, default_value_t = 200)]
    resume_script_ms: u64,
    /// The resume scenario's heartbeat interval (`CAPSTAN_HEARTBEAT_INTERVAL`).
    #[arg(long, default_value = "1s")]
    resume_heartbeat: String,
    /// The resume scenario's lease TTL (`CAPSTAN_LEASE_TTL`), at least three
    /// heartbeats.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    resume_lease_ttl: Duration,
    /// Leave out the resume scenario.
    #[arg(long)]
    no_resume: bool,
    #[arg(long, default_value_t = 32)]
    register_concurrency: usize,
    /// Where each round's node logs and blob store go; kept only when a round fails.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// The PostgreSQL server on which each round's throwaway database is created.
    #[arg(
        long,
        env = "CAPSTAN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    capstan_core::parse_duration(s).map_err(|e| e.to_string())
}

pub async fn run(args: DeploymentsArgs) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        args.steps > 0 && args.window > 0,
        "--steps and --window must be at least 1"
    );
    check_fd_limit(args.agents)?;
    let work = args
        .dir
        .join(format!("capstan-deployments-bench-{}", std::process::id()));
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("deployments round {round}/{}", args.rounds);
        let mut figures = Figures::default();
        for &count in &args.nodes {
            let part = fleet_round(&args, &work, round, count).await?;
            figures.extend(&part);
        }
        if !args.no_resume {
            let part = resume_round(&args, &work, round).await?;
            figures.extend(&part);
        }
        rounds.push(figures);
    }
    let _ = std::fs::remove_dir(&work);
    let medians = Figures::medians(&rounds);
    summarize(&args, &rounds, &medians);
    let line = json!({
        "system": "capstan",
        "benchmark": "deployments",
        "settings": {
            "agents": args.agents, "steps": args.steps, "window": args.window,
            "script_ms": args.script_ms, "nodes": args.nodes, "gets": args.gets,
            "resume_script_ms": args.resume_script_ms,
            "resume_heartbeat": args.resume_heartbeat,
            "resume_lease_ttl_ms": ms(args.resume_lease_ttl),
        },
        "rounds": rounds.len(),
        "median": medians.to_json(),
        "per_round": rounds.iter().map(Figures::to_json).collect::<Vec<_>>(),
    });
    println!("{line}");
    Ok(())
}

/// The agents' own time: every window of every step waits for one script.
fn ideal_ms(args: &DeploymentsArgs, script_ms: u64) -> f64 {
    let windows = args.agents.div_ceil(args.window as usize);
    (args.steps * windows) as f64 * script_ms as f64
}

/// A project whose process is `steps` steps of one no-op script on every agent tagged
/// [`TAG`], and a release of it.
async fn release(admin: &ApiClient, args: &DeploymentsArgs) -> anyhow::Result<i64> {
    let project = admin
        .create_project(&ProjectRequest {
            name: "bench".to_owned(),
            description: String::new(),
        })
        .await?;
    let steps: Vec<Step> = (0..args.steps)
        .map(|i| {
            serde_json::from_value(json!({
                "name": format!("Step {}", i + 1),
                "target_tags": [TAG],
                "window_size": args.window,
                "actions": [{"kind": "script", "syntax": "bash", "body": "true"}],
            }))
        })
        .collect::<Result<_, _>>()?;
    admin
        .put_process(
            project.id,
            &ProcessRequest {
                version: project.process_version,
                steps,
            },
        )
        .await?;
    let release = admin
        .create_release(&CreateReleaseRequest {
            project_id: project.id,
            ..Default::default()
        })
        .await?;
    Ok(release.summary.id)
}

async fn deploy(admin: &ApiClient, release_id: i64) -> anyhow::Result<DeploymentResponse> {
    Ok(admin
        .create_deployment(&CreateDeploymentRequest {
            release_id: Some(release_id),
            environment: ENVIRONMENT.to_owned(),
            ..Default::default()
        })
        .await?)
}

/// Polls the task every 5 ms until it has finished; an error unless it succeeded.
async fn wait_succeeded(
    admin: &ApiClient,
    task_id: i64,
    within: Duration,
) -> anyhow::Result<TaskResponse> {
    let started = Instant::now();
    loop {
        let task = admin.get_task(task_id).await?;
        match task.state {
            TaskState::Succeeded => return Ok(task),
            TaskState::Queued | TaskState::Running => {}
            other => bail!(
                "the deployment's task {task_id} ended {}: {}",
                other.as_str(),
                task.error.unwrap_or_default()
            ),
        }
        ensure!(
            started.elapsed() < within,
            "the deployment's task {task_id} not finished after {} s",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The finished deployment, checked: succeeded, every cell there and succeeded.
async fn check_finished(
    admin: &ApiClient,
    id: i64,
    args: &DeploymentsArgs,
) -> anyhow::Result<DeploymentResponse> {
    let deployment = admin.deployment(id).await?;
    ensure!(
        deployment.summary.state == DeploymentState::Succeeded,
        "deployment {id} is {:?}: {}",
        deployment.summary.state,
        deployment.summary.error.clone().unwrap_or_default()
    );
    let cells = args.steps * args.agents;
    let succeeded = deployment
        .grid
        .iter()
        .filter(|c| c.state == CellState::Succeeded)
        .count();
    ensure!(
        deployment.grid.len() == cells && succeeded == cells,
        "deployment {id}: {} cells, {succeeded} succeeded, expected {cells}",
        deployment.grid.len()
    );
    Ok(deployment)
}

/// Waits until every agent's poll has reached the database as its `last_seen`, which
/// nodes write once per heartbeat: until then the engine takes a target that has an
/// open command for offline, so a fleet registered moments ago would fail.
async fn wait_seen(bench: &Bench, agents: usize, within: Duration) -> anyhow::Result<()> {
    let db = connect(&bench.database.url).await?;
    let started = Instant::now();
    loop {
        let seen: i64 = db
            .query_one(
                "SELECT count(*) FROM agents WHERE last_seen IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if seen >= agents as i64 {
            return Ok(());
        }
        ensure!(
            started.elapsed() < within,
            "only {seen} of {agents} agents have a last_seen after {} s",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every node's `VmRSS` every 20 ms until stopped; the highest of each.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<f64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peaks = vec![0.0_f64; pids.len()];
                loop {
                    for (peak, pid) in peaks.iter_mut().zip(&pids) {
                        *peak = peak.max(nodes::rss_mib(*pid).unwrap_or(0.0));
                    }
                    if stop.load(Ordering::Relaxed) {
                        return peaks;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self { stop, handle }
    }

    async fn peaks(self) -> anyhow::Result<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.handle.await?)
    }
}

/// `count` nodes, the agents spread over them; one deployment per script time.
async fn fleet_round(
    args: &DeploymentsArgs,
    work: &Path,
    round: u32,
    count: usize,
) -> anyhow::Result<Figures> {
    let scenario = format!("deploy-{count}n");
    let bench = Bench::start_with(&args.database_url, work, &scenario, round, count, &[]).await?;
    with_bench(bench, async |bench| {
        let registered = bench
            .register(args.agents, "web", TAG, args.register_concurrency)
            .await?;
        let behaviour = Behaviour::default();
        let wait = Duration::from_secs(30);
        let (mut agents, stats) = spawn_agents(
            bench,
            &registered,
            wait,
            Duration::from_secs(2),
            None,
            &behaviour,
        )?;
        let parked = Duration::from_secs(60);
        bench.wait_parked(args.agents as u64, parked).await?;
        wait_seen(bench, args.agents, Duration::from_secs(60)).await?;
        let release_id = release(&bench.admin, args).await?;
        let operator = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut figures = Figures::default();
        for &script in &args.script_ms {
            behaviour.script_ms.store(script, Ordering::Relaxed);
            let pids: Vec<u32> = bench.nodes.iter().map(nodes::BenchNode::pid).collect();
            let idle: Vec<f64> = pids
                .iter()
                .map(|p| nodes::rss_mib(*p).unwrap_or(f64::NAN))
                .collect();
            let sampler = RssSampler::start(pids);
            let sent_wall = OffsetDateTime::now_utc();
            let sent = Instant::now();
            let deployment = deploy(&bench.admin, release_id).await?;
            let task = wait_succeeded(
                &bench.admin,
                deployment.summary.task_id,
                Duration::from_secs(600),
            )
            .await?;
            let wall = ms(sent.elapsed());
            let peaks = sampler.peaks().await?;
            let finished = check_finished(&bench.admin, deployment.summary.id, args).await?;
            let runner = task
                .node_name
                .as_deref()
                .and_then(|name| bench.nodes.iter().position(|n| n.name == name))
                .context("the deployment's task names no node of the bench")?;

            let url = format!(
                "{}/api/deployments/{}",
                bench.nodes[0].url, deployment.summary.id
            );
            let mut gets = Vec::with_capacity(args.gets);
            let mut body_bytes = 0;
            for _ in 0..args.gets {
                let asked = Instant::now();
                let response = operator.get(&url).bearer_auth(ADMIN_KEY).send().await?;
                body_bytes = expect_status(response, 200).await?.bytes().await?.len();
                gets.push(ms(asked.elapsed()));
            }

            let ideal = ideal_ms(args, script);
            let cells = (args.steps * args.agents) as f64;
            let overhead = (wall - ideal) / cells;
            let server_wall = finished
                .summary
                .finished_at
                .map_or(f64::NAN, |f| wall_ms(sent_wall, f));
            eprintln!(
                "  {count} node(s), script {script} ms: wall {wall:.0} ms (deployment finished at {server_wall:.0} ms), ideal {ideal:.0} ms, overhead {overhead:.3} ms per target-action; \
                 GET p50 {:.1} ms p95 {:.1} ms ({:.0} KiB); RSS of {} {:.1} → {:.1} MiB",
                percentile(&gets, 50.0),
                percentile(&gets, 95.0),
                body_bytes as f64 / 1024.0,
                bench.nodes[runner].name,
                idle[runner],
                peaks[runner]
            );
            let mut put = |name: &str, value: f64| {
                figures.put_owned(format!("n{count}_s{script}_{name}"), value);
            };
            put("wall_ms", wall);
            put("server_wall_ms", server_wall);
            put("ideal_ms", ideal);
            put("overhead_ms", overhead);
            put("get_p50_ms", percentile(&gets, 50.0));
            put("get_p95_ms", percentile(&gets, 95.0));
            put("get_body_kib", body_bytes as f64 / 1024.0);
            put("rss_idle_mib", idle[runner]);
            put("rss_peak_mib", peaks[runner]);
            put("rss_growth_mib", peaks[runner] - idle[runner]);
            bench.wait_parked(args.agents as u64, parked).await?;
        }
        agents.abort_all();
        stats.check()?;
        Ok(figures)
    })
    .await
}

/// Three nodes; the one running a slow deployment is SIGKILLed half way.
async fn resume_round(args: &DeploymentsArgs, work: &Path, round: u32) -> anyhow::Result<Figures> {
    let ttl = format!("{}ms", args.resume_lease_ttl.as_millis());
    let env = [
        ("CAPSTAN_HEARTBEAT_INTERVAL", args.resume_heartbeat.as_str()),
        ("CAPSTAN_LEASE_TTL", ttl.as_str()),
    ];
    let mut bench = Bench::start_with(&args.database_url, work, "resume", round, 3, &env).await?;
    let result = resume(args, &mut bench).await;
    bench.stop(result.is_ok()).await;
    result
}

async fn resume(args: &DeploymentsArgs, bench: &mut Bench) -> anyhow::Result<Figures> {
    let registered = bench
        .register(args.agents, "web", TAG, args.register_concurrency)
        .await?;
    let behaviour = Behaviour {
        failover: true,
        ..Default::default()
    };
    behaviour
        .script_ms
        .store(args.resume_script_ms, Ordering::Relaxed);
    let (mut agents, stats) = spawn_agents(
        bench,
        &registered,
        Duration::from_secs(30),
        Duration::from_secs(2),
        None,
        &behaviour,
    )?;
    bench
        .wait_parked(args.agents as u64, Duration::from_secs(60))
        .await?;
    wait_seen(bench, args.agents, Duration::from_secs(60)).await?;
    let release_id = release(&bench.admin, args).await?;
    let cells = args.steps * args.agents;

    let sent = Instant::now();
    let deployment = deploy(&bench.admin, release_id).await?;
    let task_id = deployment.summary.task_id;
    let commands_before = stats.commands.load(Ordering::Relaxed);
    while stats.commands.load(Ordering::Relaxed) - commands_before < (cells / 2) as u64 {
        ensure!(
            sent.elapsed() < Duration::from_secs(600),
            "half the deployment's commands not sent after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let task = bench.admin.get_task(task_id).await?;
    ensure!(
        task.state == TaskState::Running,
        "the deployment's task is {} half way",
        task.state.as_str()
    );
    let victim = task
        .node_name
        .as_deref()
        .and_then(|name| bench.nodes.iter().position(|n| n.name == name))
        .context("the deployment's task names no node of the bench")?;
    let killed_at_ms = ms(sent.elapsed());
    let killed_wall = OffsetDateTime::now_utc();
    bench.nodes[victim]
        .kill()
        .with_context(|| format!("killing {}", bench.nodes[victim].name))?;
    let killed_name = bench.nodes[victim].name.clone();
    let survivor = ApiClient::new(
        &bench.nodes[(victim + 1) % bench.nodes.len()].url,
        Some(ADMIN_KEY.to_owned()),
    );
    eprintln!(
        "  resume: killed {killed_name} (pid {}) at {killed_at_ms:.0} ms, {} of {cells} commands sent",
        bench.nodes[victim].pid(),
        stats.commands.load(Ordering::Relaxed) - commands_before
    );

    let finished_task = wait_succeeded(&survivor, task_id, Duration::from_secs(600)).await?;
    let wall = ms(sent.elapsed());
    let finished = check_finished(&survivor, deployment.summary.id, args).await?;
    ensure!(
        finished_task.node_name.as_deref() != Some(killed_name.as_str())
            && finished_task.attempt >= 2,
        "the deployment finished on {:?} at attempt {}: not resumed",
        finished_task.node_name,
        finished_task.attempt
    );
    let first_after = finished
        .grid
        .iter()
        .filter_map(|c| c.started_at)
        .filter(|t| *t > killed_wall)
        .min()
        .context("no cell started after the kill")?;
    let kill_to_action = wall_ms(killed_wall, first_after);
    let kill_to_claim = finished_task
        .started_at
        .map_or(f64::NAN, |t| wall_ms(killed_wall, t));
    agents.abort_all();
    stats.check()?;
    eprintln!(
        "  resume: {} took over at attempt {}; kill → task claimed {kill_to_claim:.0} ms, kill → first new action {kill_to_action:.0} ms (lease TTL {} ms); wall {wall:.0} ms",
        finished_task.node_name.as_deref().unwrap_or("?"),
        finished_task.attempt,
        ms(args.resume_lease_ttl)
    );
    let mut figures = Figures::default();
    figures.put("resume_lease_ttl_ms", ms(args.resume_lease_ttl));
    figures.put("resume_killed_at_ms", killed_at_ms);
    figures.put("resume_kill_to_claim_ms", kill_to_claim);
    figures.put("resume_kill_to_action_ms", kill_to_action);
    figures.put("resume_wall_ms", wall);
    figures.put("resume_ideal_ms", ideal_ms(args, args.resume_script_ms));
    Ok(figures)
}

fn summarize(args: &DeploymentsArgs, rounds: &[Figures], m: &Figures) {
    let per_round = |name: &str, digits: usize| {
        rounds
            .iter()
            .map(|r| format!("{:.digits$}", r.get(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!();
    eprintln!(
        "deployments: {} steps × 1 action on {} agents, window {}, {} round(s), medians (rounds)",
        args.steps,
        args.agents,
        args.window,
        rounds.len()
    );
    for &count in &args.nodes {
        for &script in &args.script_ms {
            let key = |name: &str| format!("n{count}_s{script}_{name}");
            let overhead = m.get(&key("overhead_ms"));
            eprintln!(
                "  {count} node(s), script {script} ms: wall {:.0} ms, ideal {:.0} ms; overhead {overhead:.3} ms per target-action ({})   goal ≤ {OVERHEAD_GOAL_MS} ms: {}",
                m.get(&key("wall_ms")),
                m.get(&key("ideal_ms")),
                per_round(&key("overhead_ms"), 3),
                verdict(overhead <= OVERHEAD_GOAL_MS)
            );
            let p50 = m.get(&key("get_p50_ms"));
            eprintln!(
                "    GET /api/deployments/{{id}} ({:.0} KiB) p50 {p50:.1} ms ({}), p95 {:.1} ms   goal p50 ≤ {GRID_GET_P50_GOAL_MS} ms: {}",
                m.get(&key("get_body_kib")),
                per_round(&key("get_p50_ms"), 1),
                m.get(&key("get_p95_ms")),
                verdict(p50 <= GRID_GET_P50_GOAL_MS)
            );
            let growth = m.get(&key("rss_growth_mib"));
            eprintln!(
                "    RSS of the node running it: idle {:.1} MiB, peak {:.1} MiB, +{growth:.1} MiB ({})   goal ≤ +{RSS_GROWTH_GOAL_MIB} MiB: {}",
                m.get(&key("rss_idle_mib")),
                m.get(&key("rss_peak_mib")),
                per_round(&key("rss_growth_mib"), 1),
                verdict(growth <= RSS_GROWTH_GOAL_MIB)
            );
        }
    }
    if !args.no_resume {
        let ttl = m.get("resume_lease_ttl_ms");
        let action = m.get("resume_kill_to_action_ms");
        eprintln!(
            "  resume, 3 nodes, script {} ms, heartbeat {}, lease TTL {ttl:.0} ms: killed at {:.0} ms; kill → task claimed {:.0} ms, kill → first new action {action:.0} ms ({})   goal ≤ TTL + {RESUME_SLACK_GOAL_MS:.0} ms: {}; wall {:.0} ms (ideal {:.0} ms)",
            args.resume_script_ms,
            args.resume_heartbeat,
            m.get("resume_killed_at_ms"),
            m.get("resume_kill_to_claim_ms"),
            per_round("resume_kill_to_action_ms", 0),
            verdict(action <= ttl + RESUME_SLACK_GOAL_MS),
            m.get("resume_wall_ms"),
            m.get("resume_ideal_ms")
        );
    }
}
