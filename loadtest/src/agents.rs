//! Simulated polling agents against real `capstan server` processes, many agents in
//! this one process, each on a connection of its own as a real agent would be.
//!
//! - `roundtrip`: one node, one agent long-polling it; a one-agent script is queued
//!   again and again, one at a time. Measured per script: the command round trip (the
//!   `POST /api/scripts` sent → the command in the agent's hands), what of it comes after
//!   the POST's answer, and the full round trip (the POST sent → the agent acknowledges
//!   and reports → `GET /api/tasks/{id}` says succeeded), against `GET /healthz` over
//!   the same client and one durable `INSERT` on the same database, both timed before
//!   each script in the same run.
//! - `idle`: N nodes, thousands of agents long-polling with nothing to do, spread
//!   over the nodes as a load balancer would. PostgreSQL's own transaction counts
//!   over a window, minus those of an equally long window of the same nodes with no
//!   agent polling, give what idle agents cost the database; each node's resident
//!   memory gives what holding their polls costs it.
//! - `fanout`: one no-op script to every agent, `max_parallel` at a time, the agents
//!   answering at once; the wall time over the agent count is the overhead per agent.
//!
//! Each round runs on fresh nodes and a fresh database, dropped afterwards. Node
//! health checks are off so that they add no commands or queries of their own. The
//! summary goes to stderr; stdout gets one JSON line with the medians of all rounds.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use capstan_api::{
    ApiClient, CommandList, CommandOutcome, CommandResult, CreateRegistrationTokenRequest,
    EnvironmentRequest, PollResponse, RegisterAgentRequest, RegisterAgentResponse,
    RunScriptRequest, TaskResponse, agents::AGENT_VERSION_HEADER,
};
use capstan_core::TaskState;
use futures::StreamExt as _;
use serde_json::json;
use time::OffsetDateTime;
use tokio::{sync::mpsc, task::JoinSet};

use crate::database::{Database, connect};
use crate::nodes::{self, ADMIN_KEY, BenchNode};

/// Goals from the agent-gateway issue.
const ROUNDTRIP_GOAL_MS: f64 = 5.0;
const ROUNDTRIP_GOAL_HEALTHZ_RATIO: f64 = 2.0;
const IDLE_QUERIES_GOAL_PER_AGENT_MIN: f64 = 1.0;
const IDLE_RSS_GOAL_MIB: f64 = 150.0;
const FANOUT_GOAL_MS_PER_AGENT: f64 = 2.0;

const ENVIRONMENT: &str = "Production";
const AGENT_VERSION: &str = "loadtest";
/// Longer than the 10 s an idle PostgreSQL backend may keep its counts to itself
/// before they show in `pg_stat_database` (PGSTAT_IDLE_INTERVAL).
const STATS_FLUSH_LAG: Duration = Duration::from_secs(15);
/// File descriptors this process needs besides one per agent.
const SPARE_FDS: u64 = 256;

/// `capstan-loadtest agents`: simulated agents against real nodes.
#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    scenario: Scenario,
    /// Rounds to run, each on fresh nodes and a fresh database; the summary gives
    /// medians.
    #[arg(long, default_value_t = 1, global = true)]
    rounds: u32,
    /// Where each round's node logs and blob store go; kept only when a round fails.
    #[arg(long, default_value_os_t = std::env::temp_dir(), global = true)]
    dir: PathBuf,
    /// The PostgreSQL server on which each round's throwaway database is created.
    #[arg(
        long,
        env = "CAPSTAN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        global = true
    )]
    database_url: String,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// One agent on one node: script delivery and round trip against GET /healthz.
    Roundtrip(RoundtripArgs),
    /// Thousands of idle long-polls: database queries per agent, node memory.
    Idle(IdleArgs),
    /// One no-op script to every agent: wall time per agent.
    Fanout(FanoutArgs),
}

#[derive(Debug, clap::Args)]
struct RoundtripArgs {
    /// Scripts measured per round.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Scripts run first and not measured.
    #[arg(long, default_value_t = 30)]
    warmup: usize,
}

#[derive(Debug, clap::Args)]
struct IdleArgs {
    /// Nodes; the n-th agent polls node n mod this, as a load balancer keeping each
    /// agent's connection on one node would.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 5_000)]
    agents: usize,
    /// How long each poll waits for a command.
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    /// From the first poll to the measured window. The first polls are spread over
    /// one `wait_ms`; the counts of their queries need up to 10 s more to reach
    /// PostgreSQL's statistics, so this should be at least `wait_ms` + 15 s.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    warmup: Duration,
    /// The measured window, and the baseline window without agents before it.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    window: Duration,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 32)]
    register_concurrency: usize,
}

#[derive(Debug, clap::Args)]
struct FanoutArgs {
    /// Nodes; the n-th agent polls node n mod this, the script is queued on the first.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// The script's `max_parallel`: agents running it at once.
    #[arg(long, default_value_t = 100)]
    max_parallel: u32,
    /// Scripts per round, one after the other; the round's figure is their median.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long, default_value_t = 32)]
    register_concurrency: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    capstan_core::parse_duration(s).map_err(|e| e.to_string())
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let (name, agents) = match &args.scenario {
        Scenario::Roundtrip(_) => ("roundtrip", 1),
        Scenario::Idle(idle) => ("idle", idle.agents),
        Scenario::Fanout(fanout) => ("fanout", fanout.agents),
    };
    check_fd_limit(agents)?;
    let work = args
        .dir
        .join(format!("capstan-agents-bench-{}", std::process::id()));
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("{name} round {round}/{}", args.rounds);
        let figures = match &args.scenario {
            Scenario::Roundtrip(rt) => roundtrip(&args, rt, &work, round).await?,
            Scenario::Idle(idle) => idle_round(&args, idle, &work, round).await?,
            Scenario::Fanout(fanout) => fanout_round(&args, fanout, &work, round).await?,
        };
        rounds.push(figures);
    }
    let _ = std::fs::remove_dir(&work);
    let medians = Figures::medians(&rounds);
    match &args.scenario {
        Scenario::Roundtrip(rt) => summarize_roundtrip(rt, &rounds, &medians),
        Scenario::Idle(idle) => summarize_idle(idle, &rounds, &medians),
        Scenario::Fanout(fanout) => summarize_fanout(fanout, &rounds, &medians),
    }
    let settings = match &args.scenario {
        Scenario::Roundtrip(rt) => json!({ "samples": rt.samples, "warmup": rt.warmup }),
        Scenario::Idle(idle) => json!({
            "nodes": idle.nodes, "agents": idle.agents, "wait_ms": idle.wait_ms,
            "warmup_s": idle.warmup.as_secs_f64(), "window_s": idle.window.as_secs_f64(),
        }),
        Scenario::Fanout(fanout) => json!({
            "nodes": fanout.nodes, "agents": fanout.agents,
            "max_parallel": fanout.max_parallel, "repeats": fanout.repeats,
        }),
    };
    let line = json!({
        "system": "capstan",
        "benchmark": "agents",
        "scenario": name,
        "settings": settings,
        "rounds": rounds.len(),
        "median": medians.to_json(),
        "per_round": rounds.iter().map(Figures::to_json).collect::<Vec<_>>(),
    });
    println!("{line}");
    Ok(())
}

/// Every simulated agent holds a socket here, and its node one more there; a soft
/// limit below that fails connections part-way through, which would read as a server
/// fault. The nodes are started from this process and inherit its limit.
pub(crate) fn check_fd_limit(agents: usize) -> anyhow::Result<()> {
    let needed = agents as u64 + SPARE_FDS;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < needed => bail!(
            "{agents} agents need about {needed} open files in this process and in each node, \
             but the limit is {soft}: run `ulimit -n {needed}` (or more) in this shell first"
        ),
        _ => Ok(()),
    }
}

/// Named figures of one round, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub(crate) struct Figures(Vec<(String, f64)>);

impl Figures {
    pub(crate) fn put(&mut self, name: &str, value: f64) {
        self.put_owned(name.to_owned(), value);
    }

    pub(crate) fn put_owned(&mut self, name: String, value: f64) {
        self.0.push((name, value));
    }

    /// Adds every figure of `other`, after this one's.
    pub(crate) fn extend(&mut self, other: &Figures) {
        self.0.extend(other.0.iter().cloned());
    }

    pub(crate) fn get(&self, name: &str) -> f64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }

    pub(crate) fn medians(rounds: &[Figures]) -> Figures {
        let Some(first) = rounds.first() else {
            return Figures::default();
        };
        Figures(
            first
                .0
                .iter()
                .map(|(name, _)| {
                    (
                        name.clone(),
                        median(rounds.iter().map(|r| r.get(name)).collect()),
                    )
                })
                .collect(),
        )
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(name, value)| (name.clone(), json!((value * 1000.0).round() / 1000.0)))
                .collect(),
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The `p`th percentile by nearest rank.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `to - from` in milliseconds, negative when `to` came first.
fn between_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        ms(to - from)
    } else {
        -ms(from - to)
    }
}

/// `later - earlier` in milliseconds; both come from this machine's one clock.
pub(crate) fn wall_ms(earlier: OffsetDateTime, later: OffsetDateTime) -> f64 {
    (later - earlier).as_seconds_f64() * 1000.0
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// One round's nodes on one throwaway database.
pub(crate) struct Bench {
    pub(crate) nodes: Vec<BenchNode>,
    pub(crate) database: Database,
    pub(crate) admin: ApiClient,
    work: PathBuf,
}

impl Bench {
    async fn start(
        args: &AgentsArgs,
        work: &Path,
        scenario: &str,
        round: u32,
        count: usize,
    ) -> anyhow::Result<Self> {
        Self::start_with(&args.database_url, work, scenario, round, count, &[]).await
    }

    /// [`Bench::start`] on the PostgreSQL server at `database_url`, with `extra_env`
    /// added to the nodes' settings (shorter leases, say).
    pub(crate) async fn start_with(
        database_url: &str,
        work: &Path,
        scenario: &str,
        round: u32,
        count: usize,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let work = work.join(format!("{scenario}-r{round}"));
        let blobs = work.join("blobs");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let database = Database::create(database_url, "capstan_bench_agents", round).await?;
        let blob_url = format!("file://{}", blobs.display());
        let mut env = vec![
            ("CAPSTAN_BLOB_URL", blob_url.as_str()),
            ("CAPSTAN_AGENT_HEALTH_CHECK_EVERY", "off"),
        ];
        env.extend_from_slice(extra_env);
        let nodes = match nodes::start(count, 4, &database.url, &work, &env).await {
            Ok(nodes) => nodes,
            Err(e) => {
                database.drop().await;
                return Err(e);
            }
        };
        let admin = ApiClient::new(&nodes[0].url, Some(ADMIN_KEY.to_owned()));
        Ok(Self {
            nodes,
            database,
            admin,
            work,
        })
    }

    /// Stops the nodes and drops the database; the logs stay when the round failed or
    /// `CAPSTAN_BENCH_KEEP_LOGS` is set (to read, say, `RUST_LOG=sqlx::query=debug`).
    pub(crate) async fn stop(self, ok: bool) {
        nodes::stop(self.nodes).await;
        self.database.drop().await;
        if ok && std::env::var_os("CAPSTAN_BENCH_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.work);
        } else {
            eprintln!("node logs kept in {}", self.work.display());
        }
    }

    /// An environment and a registration token good for `uses` agents.
    async fn registration_token(&self, uses: usize) -> anyhow::Result<String> {
        self.admin
            .create_environment(&EnvironmentRequest {
                name: ENVIRONMENT.to_owned(),
                description: String::new(),
            })
            .await?;
        let token = self
            .admin
            .create_registration_token(&CreateRegistrationTokenRequest {
                uses: Some(u32::try_from(uses)?),
                note: Some("capstan-loadtest agents".to_owned()),
                ..Default::default()
            })
            .await?;
        token.token.context("the new token's answer has no secret")
    }

    /// Registers `count` agents named `<prefix>-<n>`, tagged `tag`, the n-th through
    /// node n mod the node count, `concurrency` at a time.
    pub(crate) async fn register(
        &self,
        count: usize,
        prefix: &str,
        tag: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Registered>> {
        let token = self.registration_token(count).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let started = Instant::now();
        let requests = (0..count).map(|i| {
            let (http, token) = (&http, &token);
            let node = i % self.nodes.len();
            let url = format!("{}/api/agents/register", self.nodes[node].url);
            let request = RegisterAgentRequest {
                name: format!("{prefix}-{}", i + 1),
                environment: ENVIRONMENT.to_owned(),
                tags: vec![tag.to_owned()],
                version: AGENT_VERSION.to_owned(),
            };
            async move {
                let response = http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&request)
                    .send()
                    .await?;
                let registered: RegisterAgentResponse = expect_status(response, 201)
                    .await
                    .with_context(|| format!("registering {}", request.name))?
                    .json()
                    .await?;
                anyhow::Ok(Registered {
                    name: request.name,
                    credential: registered.credential,
                    node,
                })
            }
        });
        let registered: Vec<Registered> = futures::stream::iter(requests)
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        eprintln!(
            "  registered {count} agents in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(registered)
    }

    /// Waits until `expected` polls wait on the nodes altogether.
    pub(crate) async fn wait_parked(&self, expected: u64, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut waiting = 0.0;
            for node in &self.nodes {
                waiting += node_metrics(&node.url).await?.waiting;
            }
            if waiting >= expected as f64 {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "only {waiting} of {expected} polls are waiting after {} s",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `response` if it has status `expected`, else an error with its body.
pub(crate) async fn expect_status(
    response: reqwest::Response,
    expected: u16,
) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.as_u16() != expected {
        let url = response.url().path().to_owned();
        let body = response.text().await.unwrap_or_default();
        bail!("{url} answered {status} (expected {expected}): {body}");
    }
    Ok(response)
}

/// What PostgreSQL itself counted for one database so far.
#[derive(Debug, Clone, Copy)]
struct DbCounters {
    /// Committed and rolled-back transactions: each statement outside an explicit
    /// transaction is one, so this undercounts statements only where the server
    /// groups several in one transaction.
    xacts: i64,
    /// Statements executed, when pg_stat_statements is loaded.
    statements: Option<i64>,
}

/// Reads the counters of the round's database from outside it: through the server's
/// maintenance database, so that reading them adds nothing to them.
struct DbWatch {
    admin: tokio_postgres::Client,
    /// A connection to the round's own database, when pg_stat_statements can be read
    /// there; its own reads are the same in both windows and cancel out.
    statements: Option<tokio_postgres::Client>,
    name: String,
}

impl DbWatch {
    async fn open(database: &Database) -> anyhow::Result<Self> {
        let admin = connect(&database.admin_url).await?;
        let preloaded: String = admin
            .query_one("SELECT current_setting('shared_preload_libraries')", &[])
            .await?
            .get(0);
        // The extension can be created anywhere, but it counts nothing unless the
        // server loaded it at start, which takes a restart this benchmark will not do.
        let statements = if preloaded.contains("pg_stat_statements") {
            let own = connect(&database.url).await?;
            own.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await?;
            Some(own)
        } else {
            None
        };
        Ok(Self {
            admin,
            statements,
            name: database.name.clone(),
        })
    }

    fn has_statements(&self) -> bool {
        self.statements.is_some()
    }

    async fn read(&self) -> anyhow::Result<DbCounters> {
        let xacts: i64 = self
            .admin
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await?
            .get(0);
        let statements = match &self.statements {
            Some(own) => Some(
                own.query_one(
                    "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND query NOT LIKE '%pg_stat_statements%'",
                    &[],
                )
                .await?
                .get(0),
            ),
            None => None,
        };
        Ok(DbCounters { xacts, statements })
    }

    /// Connections each node holds to the round's database, by application name.
    async fn connections(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        Ok(self
            .admin
            .query(
                "SELECT application_name, count(*) FROM pg_stat_activity
                 WHERE datname = $1 GROUP BY 1",
                &[&self.name],
            )
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }
}

/// The agent gateway's own counters on one node.
#[derive(Debug, Default, Clone, Copy)]
struct NodeMetrics {
    polls: f64,
    mailbox_reads: f64,
    waiting: f64,
}

async fn node_metrics(url: &str) -> anyhow::Result<NodeMetrics> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut metrics = NodeMetrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = key.split('{').next().unwrap_or(key);
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        match name {
            "capstan_agent_polls_total" => metrics.polls += value,
            "capstan_agent_mailbox_reads_total" => metrics.mailbox_reads += value,
            "capstan_agent_polls_waiting" => metrics.waiting += value,
            _ => {}
        }
    }
    Ok(metrics)
}

pub(crate) struct Registered {
    name: String,
    credential: String,
    /// Which node it polls.
    node: usize,
}

/// A command as one simulated agent handled it.
#[derive(Debug)]
pub(crate) struct Handled {
    task_id: i64,
    /// The poll's answer was read.
    received: Instant,
    /// The acknowledgement was answered.
    acked: Instant,
    /// The result was answered.
    reported: Instant,
}

/// What all simulated agents saw, added up.
#[derive(Default)]
pub(crate) struct AgentStats {
    polls: AtomicU64,
    /// Commands received.
    pub(crate) commands: AtomicU64,
    /// Empty answers well before the poll's wait was up: wake-ups for nothing.
    early_empty: AtomicU64,
    /// Answers well after the wait was up: a stuck poll.
    late: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl AgentStats {
    fn error(&self, agent: &str, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.len() < 10 {
            first.push(format!("{agent}: {e:#}"));
        }
    }

    /// Fails when any agent call failed: the figures of a round with errors are void.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let errors = self.errors.load(Ordering::Relaxed);
        if errors > 0 {
            let first = self
                .first_errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .join("\n  ");
            bail!("{errors} agent calls failed; the first:\n  {first}");
        }
        Ok(())
    }
}

/// How simulated agents behave beyond answering at once, the default.
#[derive(Debug, Clone, Default)]
pub(crate) struct Behaviour {
    /// Milliseconds each command "runs" between its acknowledgement and its result;
    /// shared, so that a benchmark can change it between runs.
    pub(crate) script_ms: Arc<AtomicU64>,
    /// On a connection failure, go on with the next node, as an agent behind a load
    /// balancer would when its node dies, instead of counting an error.
    pub(crate) failover: bool,
}

/// One simulated agent: its own client, so its own connection to its node.
struct SimAgent {
    name: String,
    credential: String,
    /// Every node's URL; the agent uses `node_urls[node]`.
    node_urls: Vec<String>,
    node: usize,
    wait: Duration,
    http: reqwest::Client,
    behaviour: Behaviour,
}

impl SimAgent {
    fn new(
        registered: &Registered,
        bench: &Bench,
        wait: Duration,
        behaviour: &Behaviour,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(wait + Duration::from_secs(30))
            .build()?;
        Ok(Self {
            name: registered.name.clone(),
            credential: registered.credential.clone(),
            node_urls: bench.nodes.iter().map(|n| n.url.clone()).collect(),
            node: registered.node,
            wait,
            http,
            behaviour: behaviour.clone(),
        })
    }

    fn node_url(&self) -> &str {
        &self.node_urls[self.node]
    }

    /// Moves to the next node after `e`, when failing over is on and `e` is the
    /// node's connection failing; false when `e` is an error to count.
    fn fail_over(&mut self, e: &anyhow::Error) -> bool {
        let lost = e
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect() || e.is_request() || e.is_body());
        if self.behaviour.failover && lost {
            self.node = (self.node + 1) % self.node_urls.len();
            return true;
        }
        false
    }

    async fn poll(&self) -> anyhow::Result<PollResponse> {
        let response = self
            .http
            .get(format!("{}/api/agent/commands", self.node_url()))
            .query(&[("wait_ms", self.wait.as_millis() as u64)])
            .bearer_auth(&self.credential)
            .header(AGENT_VERSION_HEADER, AGENT_VERSION)
            .send()
            .await?;
        Ok(expect_status(response, 200).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Option<&CommandResult>) -> anyhow::Result<()> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.node_url()))
            .bearer_auth(&self.credential);
        if let Some(body) = body {
            request = request.json(body);
        }
        expect_status(request.send().await?, 204).await?;
        Ok(())
    }

    /// [`SimAgent::post`], again on the next node while failing over allows.
    async fn post_failing_over(
        &mut self,
        path: &str,
        body: Option<&CommandResult>,
    ) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            match self.post(path, body).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tries += 1;
                    if tries > self.node_urls.len() || !self.fail_over(&e) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Polls until aborted; acknowledges every command and reports it succeeded after
    /// the behaviour's script time, as an agent running `true` would, less the process
    /// start.
    async fn run(
        mut self,
        start_after: Duration,
        stats: Arc<AgentStats>,
        handled_tx: Option<mpsc::UnboundedSender<Handled>>,
    ) {
        tokio::time::sleep(start_after).await;
        let succeeded = CommandResult {
            outcome: CommandOutcome::Succeeded,
            exit_code: Some(0),
            error: None,
            outputs: BTreeMap::new(),
            facts: None,
        };
        loop {
            let sent = Instant::now();
            let poll = match self.poll().await {
                Ok(poll) => poll,
                Err(e) => {
                    if self.fail_over(&e) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else {
                        stats.error(&self.name, &e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let received = Instant::now();
            stats.polls.fetch_add(1, Ordering::Relaxed);
            if poll.commands.is_empty() {
                let took = received - sent;
                if took + Duration::from_secs(1) < self.wait {
                    stats.early_empty.fetch_add(1, Ordering::Relaxed);
                } else if took > self.wait + Duration::from_secs(5) {
                    stats.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            for command in poll.commands {
                stats.commands.fetch_add(1, Ordering::Relaxed);
                let id = command.id;
                let script =
                    Duration::from_millis(self.behaviour.script_ms.load(Ordering::Relaxed));
                let handled = async {
                    self.post_failing_over(&format!("/api/agent/commands/{id}/ack"), None)
                        .await?;
                    let acked = Instant::now();
                    if !script.is_zero() {
                        tokio::time::sleep(script).await;
                    }
                    self.post_failing_over(
                        &format!("/api/agent/commands/{id}/result"),
                        Some(&succeeded),
                    )
                    .await?;
                    anyhow::Ok((acked, Instant::now()))
                }
                .await;
                match handled {
                    Ok((acked, reported)) => {
                        if let Some(handled_tx) = &handled_tx {
                            let _ = handled_tx.send(Handled {
                                task_id: command.task_id,
                                received,
                                acked,
                                reported,
                            });
                        }
                    }
                    Err(e) => stats.error(&self.name, &e),
                }
            }
        }
    }
}

/// Starts one simulated agent per registration, the n-th after `spread` × n / count
/// so that their polls do not all expire together.
pub(crate) fn spawn_agents(
    bench: &Bench,
    registered: &[Registered],
    wait: Duration,
    spread: Duration,
    handled_tx: Option<&mpsc::UnboundedSender<Handled>>,
    behaviour: &Behaviour,
) -> anyhow::Result<(JoinSet<()>, Arc<AgentStats>)> {
    let stats = Arc::new(AgentStats::default());
    let mut agents = JoinSet::new();
    let count = registered.len().max(1) as u32;
    for (n, registered) in registered.iter().enumerate() {
        let agent = SimAgent::new(registered, bench, wait, behaviour)?;
        let start_after = spread * n as u32 / count;
        agents.spawn(agent.run(start_after, stats.clone(), handled_tx.cloned()));
    }
    Ok((agents, stats))
}

/// Runs `body` on a started bench and stops the bench whatever happened.
pub(crate) async fn with_bench<F>(bench: Bench, body: F) -> anyhow::Result<Figures>
where
    F: AsyncFnOnce(&Bench) -> anyhow::Result<Figures>,
{
    let result = body(&bench).await;
    bench.stop(result.is_ok()).await;
    result
}

/// One script's timeline; every offset is from the moment the POST was sent.
struct Trip {
    post_ms: f64,
    /// The POST's answer read → the command in the agent's hands; negative when the
    /// command arrived first, which the node's NOTIFY at commit allows.
    delivery_ms: f64,
    /// The POST sent → `GET /api/tasks/{id}` says succeeded.
    full_ms: f64,
    /// The POST sent → the command in the agent's hands.
    received_ms: f64,
    acked_ms: f64,
    reported_ms: f64,
    /// From the server's timestamps.
    task_started_ms: f64,
    command_queued_ms: f64,
    /// The task's log says the agent succeeded: the run saw the result.
    outcome_logged_ms: f64,
    last_line_ms: f64,
    task_finished_ms: f64,
    /// `GET /api/tasks/{id}` calls it took to see the task succeeded.
    task_gets: usize,
    task_get_ms: Vec<f64>,
    healthz_ms: f64,
    /// One `INSERT` committed on the bench's database: what one durable write costs.
    commit_ms: f64,
}

async fn roundtrip(
    args: &AgentsArgs,
    rt: &RoundtripArgs,
    work: &Path,
    round: u32,
) -> anyhow::Result<Figures> {
    let bench = Bench::start(args, work, "roundtrip", round, 1).await?;
    with_bench(bench, async |bench| {
        let registered = bench.register(1, "rt", "roundtrip", 1).await?;
        let (handled_tx, mut handled_rx) = mpsc::unbounded_channel();
        let (mut agents, stats) = spawn_agents(
            bench,
            &registered,
            Duration::from_secs(30),
            Duration::ZERO,
            Some(&handled_tx),
            &Behaviour::default(),
        )?;
        bench.wait_parked(1, Duration::from_secs(10)).await?;
        let url = bench.nodes[0].url.clone();
        // The operator's client: scripts, task state and /healthz over one connection.
        let operator = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        let request = RunScriptRequest {
            script: "true".to_owned(),
            agents: vec![registered[0].name.clone()],
            max_parallel: Some(1),
            timeout: Some("1m".to_owned()),
            ..Default::default()
        };
        let probe = CommitProbe::new(&bench.database.url).await?;
        let mut trips = Vec::with_capacity(rt.samples);
        let mut reads_before = 0.0;
        for i in 0..rt.warmup + rt.samples {
            if i == rt.warmup {
                reads_before = node_metrics(&url).await?.mailbox_reads;
            }
            let trip = one_trip(&operator, &url, &request, &probe, &mut handled_rx).await?;
            if i >= rt.warmup {
                trips.push(trip);
            }
        }
        let reads = node_metrics(&url).await?.mailbox_reads - reads_before;
        agents.abort_all();
        stats.check()?;
        let mut figures = trip_figures(&trips);
        // Polls answered by the node from the commands handed over in memory read nothing.
        figures.put("mailbox_reads_per_trip", reads / trips.len() as f64);
        Ok(figures)
    })
    .await
}

/// Times one durable `INSERT` on a table of its own in the bench's database.
struct CommitProbe {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
}

impl CommitProbe {
    async fn new(database_url: &str) -> anyhow::Result<Self> {
        let client = connect(database_url).await?;
        client
            .batch_execute("CREATE TABLE bench_commit_probe (id bigserial PRIMARY KEY, body jsonb)")
            .await?;
        let insert = client
            .prepare("INSERT INTO bench_commit_probe (body) VALUES ('{}')")
            .await?;
        Ok(Self { client, insert })
    }

    async fn time(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        self.client.execute(&self.insert, &[]).await?;
        Ok(ms(started.elapsed()))
    }
}

async fn one_trip(
    operator: &reqwest::Client,
    url: &str,
    request: &RunScriptRequest,
    probe: &CommitProbe,
    handled_rx: &mut mpsc::UnboundedReceiver<Handled>,
) -> anyhow::Result<Trip> {
    // Between scripts, on the same warm connection: the cost of HTTP itself.
    let asked = Instant::now();
    let health = operator.get(format!("{url}/healthz")).send().await?;
    expect_status(health, 200).await?.bytes().await?;
    let healthz_ms = ms(asked.elapsed());
    let commit_ms = probe.time().await?;

    let sent_wall = OffsetDateTime::now_utc();
    let sent = Instant::now();
    let response = operator
        .post(format!("{url}/api/scripts"))
        .bearer_auth(ADMIN_KEY)
        .json(request)
        .send()
        .await?;
    let task: TaskResponse = expect_status(response, 201).await?.json().await?;
    let answered = Instant::now();

    let handled = tokio::time::timeout(Duration::from_secs(10), handled_rx.recv())
        .await
        .with_context(|| format!("task {}: the agent got no command within 10 s", task.id))?
        .context("the agent stopped")?;
    ensure!(
        handled.task_id == task.id,
        "the agent got a command of task {}, expected task {}",
        handled.task_id,
        task.id
    );
    // Nothing can have finished before the agent reported, so the tight loop starts
    // there and asks again as soon as each answer is read.
    let mut task_get_ms = Vec::new();
    let (finished, seen) = loop {
        let asked = Instant::now();
        let response = operator
            .get(format!("{url}/api/tasks/{}", task.id))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
        let now: TaskResponse = expect_status(response, 200).await?.json().await?;
        let seen = Instant::now();
        task_get_ms.push(ms(seen - asked));
        match now.state {
            TaskState::Succeeded => break (now, seen),
            TaskState::Queued | TaskState::Running => {}
            other => bail!(
                "task {} ended {}: {}",
                task.id,
                other.as_str(),
                now.error.unwrap_or_default()
            ),
        }
        ensure!(
            seen - handled.reported < Duration::from_secs(10),
            "task {} not succeeded 10 s after its agent reported",
            task.id
        );
    };
    // Untimed: the command's own timestamps.
    let response = operator
        .get(format!("{url}/api/tasks/{}/commands", task.id))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    let commands: CommandList = expect_status(response, 200).await?.json().await?;
    let command = commands.items.first().context("the task has no command")?;
    ensure!(
        command.deliveries == 1,
        "command {} was delivered {} times",
        command.id,
        command.deliveries
    );
    let log = log_lines(operator, url, task.id).await?;
    let outcome_logged = log
        .iter()
        .find(|(_, text)| text.ends_with(&format!("{}: succeeded", command.agent_name)))
        .map(|(t, _)| *t);
    let since_sent = |i: Instant| between_ms(sent, i);
    let stamp = |t: Option<OffsetDateTime>| t.map_or(f64::NAN, |t| wall_ms(sent_wall, t));
    Ok(Trip {
        post_ms: since_sent(answered),
        delivery_ms: between_ms(answered, handled.received),
        full_ms: since_sent(seen),
        received_ms: since_sent(handled.received),
        acked_ms: since_sent(handled.acked),
        reported_ms: since_sent(handled.reported),
        task_started_ms: stamp(finished.started_at),
        command_queued_ms: stamp(Some(command.queued_at)),
        outcome_logged_ms: stamp(outcome_logged),
        last_line_ms: stamp(log.last().map(|(t, _)| *t)),
        task_finished_ms: stamp(finished.finished_at),
        task_gets: task_get_ms.len(),
        task_get_ms,
        healthz_ms,
        commit_ms,
    })
}

fn trip_figures(trips: &[Trip]) -> Figures {
    let column = |f: fn(&Trip) -> f64| trips.iter().map(f).collect::<Vec<_>>();
    let p50 = |f: fn(&Trip) -> f64| percentile(&column(f), 50.0);
    let p99 = |f: fn(&Trip) -> f64| percentile(&column(f), 99.0);
    let gets: Vec<f64> = trips
        .iter()
        .flat_map(|t| t.task_get_ms.iter().copied())
        .collect();
    let mut figures = Figures::default();
    figures.put("samples", trips.len() as f64);
    figures.put("healthz_p50_ms", p50(|t| t.healthz_ms));
    figures.put("healthz_p99_ms", p99(|t| t.healthz_ms));
    figures.put("commit_p50_ms", p50(|t| t.commit_ms));
    figures.put("command_p50_ms", p50(|t| t.received_ms));
    figures.put("command_p99_ms", p99(|t| t.received_ms));
    figures.put("delivery_p50_ms", p50(|t| t.delivery_ms));
    figures.put("delivery_p99_ms", p99(|t| t.delivery_ms));
    figures.put("full_p50_ms", p50(|t| t.full_ms));
    figures.put("full_p99_ms", p99(|t| t.full_ms));
    for (ratio, p50_name) in [
        ("command_to_healthz_ratio", "command_p50_ms"),
        ("delivery_to_healthz_ratio", "delivery_p50_ms"),
        ("full_to_healthz_ratio", "full_p50_ms"),
    ] {
        let value = figures.get(p50_name) / figures.get("healthz_p50_ms");
        figures.put(ratio, value);
    }
    figures.put("post_scripts_p50_ms", p50(|t| t.post_ms));
    figures.put("task_started_p50_ms", p50(|t| t.task_started_ms));
    figures.put("command_queued_p50_ms", p50(|t| t.command_queued_ms));
    figures.put("agent_received_p50_ms", p50(|t| t.received_ms));
    figures.put("agent_acked_p50_ms", p50(|t| t.acked_ms));
    figures.put("agent_reported_p50_ms", p50(|t| t.reported_ms));
    figures.put("outcome_logged_p50_ms", p50(|t| t.outcome_logged_ms));
    figures.put("last_log_line_p50_ms", p50(|t| t.last_line_ms));
    figures.put("task_finished_p50_ms", p50(|t| t.task_finished_ms));
    figures.put("task_get_p50_ms", percentile(&gets, 50.0));
    figures.put("task_gets_per_trip_p50", p50(|t| t.task_gets as f64));
    figures
}

fn summarize_roundtrip(rt: &RoundtripArgs, rounds: &[Figures], m: &Figures) {
    let per_round = |name: &str| {
        rounds
            .iter()
            .map(|r| format!("{:.2}", r.get(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let goal = |p50: f64, ratio: f64| {
        verdict(p50 <= ROUNDTRIP_GOAL_MS && ratio <= ROUNDTRIP_GOAL_HEALTHZ_RATIO)
    };
    eprintln!();
    eprintln!(
        "roundtrip: 1 node, 1 agent, {} scripts per round after {} unmeasured, {} round(s), medians",
        rt.samples,
        rt.warmup,
        rounds.len()
    );
    eprintln!(
        "  GET /healthz            p50 {:>7.3} ms   p99 {:>7.3} ms",
        m.get("healthz_p50_ms"),
        m.get("healthz_p99_ms")
    );
    eprintln!(
        "  one durable INSERT      p50 {:>7.3} ms   {:.1}× healthz (the same database, between scripts)",
        m.get("commit_p50_ms"),
        m.get("commit_p50_ms") / m.get("healthz_p50_ms")
    );
    eprintln!(
        "  command round trip      p50 {:>7.3} ms   p99 {:>7.3} ms   {:.1}× healthz (rounds {})   goal ≤ {ROUNDTRIP_GOAL_MS} ms and ≤ {ROUNDTRIP_GOAL_HEALTHZ_RATIO}×: {}",
        m.get("command_p50_ms"),
        m.get("command_p99_ms"),
        m.get("command_to_healthz_ratio"),
        per_round("command_p50_ms"),
        goal(m.get("command_p50_ms"), m.get("command_to_healthz_ratio"))
    );
    eprintln!(
        "    of it after the POST's answer   p50 {:>7.3} ms   p99 {:>7.3} ms   (negative: the agent had it first)",
        m.get("delivery_p50_ms"),
        m.get("delivery_p99_ms"),
    );
    eprintln!(
        "  full round trip         p50 {:>7.3} ms   p99 {:>7.3} ms   {:.1}× healthz (rounds {})   same goal: {}",
        m.get("full_p50_ms"),
        m.get("full_p99_ms"),
        m.get("full_to_healthz_ratio"),
        per_round("full_p50_ms"),
        goal(m.get("full_p50_ms"), m.get("full_to_healthz_ratio"))
    );
    eprintln!("  timeline, ms after the POST was sent (p50 of each):");
    for (what, name) in [
        ("POST /api/scripts answered", "post_scripts_p50_ms"),
        ("task claimed (server clock)", "task_started_p50_ms"),
        (
            "command in the mailbox (server clock)",
            "command_queued_p50_ms",
        ),
        ("command in the agent's hands", "agent_received_p50_ms"),
        ("acknowledgement answered", "agent_acked_p50_ms"),
        ("result answered", "agent_reported_p50_ms"),
        ("the run logs the agent's outcome", "outcome_logged_p50_ms"),
        ("the run logs its last line", "last_log_line_p50_ms"),
        ("task finished (server clock)", "task_finished_p50_ms"),
        ("GET /api/tasks/{id} says succeeded", "full_p50_ms"),
    ] {
        eprintln!("    {what:<40} {:>7.3}", m.get(name));
    }
    eprintln!(
        "  GET /api/tasks/{{id}} p50 {:.3} ms, {:.0} per trip",
        m.get("task_get_p50_ms"),
        m.get("task_gets_per_trip_p50")
    );
    eprintln!(
        "  mailbox reads per trip {:.2} (rounds {})",
        m.get("mailbox_reads_per_trip"),
        per_round("mailbox_reads_per_trip")
    );
}

async fn idle_round(
    args: &AgentsArgs,
    idle: &IdleArgs,
    work: &Path,
    round: u32,
) -> anyhow::Result<Figures> {
    let bench = Bench::start(args, work, "idle", round, idle.nodes).await?;
    with_bench(bench, async |bench| {
        let registered = bench
            .register(idle.agents, "idle", "idle", idle.register_concurrency)
            .await?;
        let watch = DbWatch::open(&bench.database).await?;
        // An idle backend may hold its counts up to 10 s before they reach
        // pg_stat_database: registration's must be in before the baseline starts.
        tokio::time::sleep(STATS_FLUSH_LAG).await;

        eprintln!(
            "  baseline: {} s with no agent polling",
            idle.window.as_secs()
        );
        let before = watch.read().await?;
        tokio::time::sleep(idle.window).await;
        let after = watch.read().await?;
        let baseline = (after.xacts - before.xacts, diff(after.statements, before.statements));
        let rss_baseline: Vec<f64> = bench
            .nodes
            .iter()
            .map(|n| n.rss_mib().unwrap_or(f64::NAN))
            .collect();

        let wait = Duration::from_millis(idle.wait_ms);
        let (mut agents, stats) = spawn_agents(bench, &registered, wait, wait, None, &Behaviour::default())?;
        eprintln!(
            "  {} agents polling, first polls spread over {} s; warm-up {} s",
            idle.agents,
            wait.as_secs(),
            idle.warmup.as_secs()
        );
        tokio::time::sleep(idle.warmup).await;
        bench
            .wait_parked(idle.agents as u64, Duration::from_secs(30))
            .await?;

        eprintln!("  window: {} s", idle.window.as_secs());
        let metrics_before = all_metrics(bench).await?;
        let polls_before = stats.polls.load(Ordering::Relaxed);
        let before = watch.read().await?;
        let rss_start: Vec<f64> = bench
            .nodes
            .iter()
            .map(|n| n.rss_mib().unwrap_or(f64::NAN))
            .collect();
        let mut rss_max = vec![0.0_f64; bench.nodes.len()];
        let started = Instant::now();
        while started.elapsed() < idle.window {
            tokio::time::sleep(Duration::from_secs(1).min(idle.window - started.elapsed()))
                .await;
            for (max, node) in rss_max.iter_mut().zip(&bench.nodes) {
                *max = max.max(node.rss_mib().unwrap_or(f64::NAN));
            }
        }
        let after = watch.read().await?;
        let polls = stats.polls.load(Ordering::Relaxed) - polls_before;
        let metrics_after = all_metrics(bench).await?;
        let connections = watch.connections().await?;
        let rss_end: Vec<f64> = bench
            .nodes
            .iter()
            .map(|n| n.rss_mib().unwrap_or(f64::NAN))
            .collect();
        agents.abort_all();
        stats.check()?;

        let minutes = idle.window.as_secs_f64() / 60.0;
        let per_agent_min = |n: i64| n as f64 / idle.agents as f64 / minutes;
        let xacts = after.xacts - before.xacts;
        let mut figures = Figures::default();
        figures.put("baseline_xacts", baseline.0 as f64);
        figures.put("window_xacts", xacts as f64);
        figures.put(
            "xacts_per_agent_min",
            per_agent_min(xacts - baseline.0),
        );
        if let (Some(window), Some(base)) =
            (diff(after.statements, before.statements), baseline.1)
        {
            figures.put("baseline_statements", base as f64);
            figures.put("window_statements", window as f64);
            figures.put("statements_per_agent_min", per_agent_min(window - base));
        }
        let sum = |f: fn(&NodeMetrics) -> f64, m: &[NodeMetrics]| m.iter().map(f).sum::<f64>();
        figures.put("client_polls_in_window", polls as f64);
        figures.put(
            "node_polls_in_window",
            sum(|m| m.polls, &metrics_after) - sum(|m| m.polls, &metrics_before),
        );
        figures.put(
            "mailbox_reads_in_window",
            sum(|m| m.mailbox_reads, &metrics_after) - sum(|m| m.mailbox_reads, &metrics_before),
        );
        figures.put("polls_waiting_end", sum(|m| m.waiting, &metrics_after));
        figures.put(
            "early_empty_polls",
            stats.early_empty.load(Ordering::Relaxed) as f64,
        );
        figures.put("late_polls", stats.late.load(Ordering::Relaxed) as f64);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        figures.put("rss_baseline_max_mib", max(&rss_baseline));
        figures.put("rss_window_start_max_mib", max(&rss_start));
        figures.put("rss_end_max_mib", max(&rss_end));
        figures.put("rss_window_peak_mib", max(&rss_max));
        figures.put(
            "rss_per_1000_polls_mib",
            (max(&rss_end) - max(&rss_baseline)) / (idle.agents as f64 / idle.nodes as f64)
                * 1000.0,
        );
        figures.put(
            "db_connections_per_node",
            connections
                .iter()
                .filter(|(name, _)| name.starts_with("capstan"))
                .map(|(_, n)| *n as f64)
                .sum::<f64>()
                / idle.nodes as f64,
        );
        for (i, (base, end)) in rss_baseline.iter().zip(&rss_end).enumerate() {
            eprintln!(
                "  node {}: RSS {base:.1} MiB without agents, {end:.1} MiB holding {:.0} polls at the end",
                i + 1,
                metrics_after[i].waiting
            );
        }
        if !watch.has_statements() {
            eprintln!(
                "  pg_stat_statements is not in shared_preload_libraries: transactions only"
            );
        }
        Ok(figures)
    })
    .await
}

fn diff(after: Option<i64>, before: Option<i64>) -> Option<i64> {
    Some(after? - before?)
}

async fn all_metrics(bench: &Bench) -> anyhow::Result<Vec<NodeMetrics>> {
    let mut all = Vec::new();
    for node in &bench.nodes {
        all.push(node_metrics(&node.url).await?);
    }
    Ok(all)
}

fn summarize_idle(idle: &IdleArgs, rounds: &[Figures], m: &Figures) {
    let per_round = |name: &str, digits: usize| {
        rounds
            .iter()
            .map(|r| format!("{:.digits$}", r.get(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!();
    eprintln!(
        "idle: {} agents polling {} node(s) with wait_ms={}, {} s windows, {} round(s), medians",
        idle.agents,
        idle.nodes,
        idle.wait_ms,
        idle.window.as_secs(),
        rounds.len()
    );
    eprintln!(
        "  transactions   baseline {:.0}, with agents {:.0}",
        m.get("baseline_xacts"),
        m.get("window_xacts")
    );
    eprintln!(
        "  per agent per minute {:.4} (rounds {})   goal < {IDLE_QUERIES_GOAL_PER_AGENT_MIN}: {}",
        m.get("xacts_per_agent_min"),
        per_round("xacts_per_agent_min", 4),
        verdict(m.get("xacts_per_agent_min") < IDLE_QUERIES_GOAL_PER_AGENT_MIN)
    );
    if !m.get("statements_per_agent_min").is_nan() {
        eprintln!(
            "  statements per agent per minute {:.4}",
            m.get("statements_per_agent_min")
        );
    }
    eprintln!(
        "  polls in the window {:.0} (nodes counted {:.0}), mailbox reads {:.0}; {:.0} waiting at the end; early empty answers {:.0}, late {:.0}",
        m.get("client_polls_in_window"),
        m.get("node_polls_in_window"),
        m.get("mailbox_reads_in_window"),
        m.get("polls_waiting_end"),
        m.get("early_empty_polls"),
        m.get("late_polls")
    );
    // A ceiling holds only if every round stays under it.
    let highest_peak = rounds
        .iter()
        .map(|r| r.get("rss_window_peak_mib"))
        .fold(f64::NAN, f64::max);
    eprintln!(
        "  node RSS (largest node)  without agents {:.1} MiB, window start {:.1} MiB, end {:.1} MiB (rounds {}); peak {:.1} MiB (highest round {highest_peak:.1})   goal < {IDLE_RSS_GOAL_MIB} MiB in every round: {}",
        m.get("rss_baseline_max_mib"),
        m.get("rss_window_start_max_mib"),
        m.get("rss_end_max_mib"),
        per_round("rss_end_max_mib", 1),
        m.get("rss_window_peak_mib"),
        verdict(highest_peak < IDLE_RSS_GOAL_MIB)
    );
    eprintln!(
        "  {:.2} MiB per 1,000 polls held; {:.1} database connections per node",
        m.get("rss_per_1000_polls_mib"),
        m.get("db_connections_per_node")
    );
}

async fn fanout_round(
    args: &AgentsArgs,
    fanout: &FanoutArgs,
    work: &Path,
    round: u32,
) -> anyhow::Result<Figures> {
    let bench = Bench::start(args, work, "fanout", round, fanout.nodes).await?;
    with_bench(bench, async |bench| {
        let registered = bench
            .register(fanout.agents, "fan", "fanout", fanout.register_concurrency)
            .await?;
        let wait = Duration::from_secs(30);
        let (mut agents, stats) = spawn_agents(
            bench,
            &registered,
            wait,
            Duration::from_secs(2),
            None,
            &Behaviour::default(),
        )?;
        let parked = Duration::from_secs(30);
        bench.wait_parked(fanout.agents as u64, parked).await?;
        let request = RunScriptRequest {
            script: "true".to_owned(),
            tags: vec!["fanout".to_owned()],
            max_parallel: Some(fanout.max_parallel),
            timeout: Some("1m".to_owned()),
            ..Default::default()
        };
        let mut runs = Vec::new();
        for repeat in 1..=fanout.repeats {
            let run = one_fanout(bench, &request, fanout.agents).await?;
            eprintln!(
                "  script {repeat}/{}: {:.0} ms wall, {:.3} ms per agent",
                fanout.repeats,
                run.get("wall_ms"),
                run.get("ms_per_agent")
            );
            runs.push(run);
            bench.wait_parked(fanout.agents as u64, parked).await?;
        }
        agents.abort_all();
        stats.check()?;
        Ok(Figures::medians(&runs))
    })
    .await
}

async fn one_fanout(
    bench: &Bench,
    request: &RunScriptRequest,
    agents: usize,
) -> anyhow::Result<Figures> {
    let sent = Instant::now();
    let task = bench.admin.run_script(request).await?;
    let answered = Instant::now();
    // Every 5 ms: often enough for a figure in seconds, rare enough to cost the
    // node nothing it would notice.
    let finished = loop {
        let now = bench.admin.get_task(task.id).await?;
        match now.state {
            TaskState::Succeeded => break now,
            TaskState::Queued | TaskState::Running => {}
            other => bail!(
                "task {} ended {}: {}",
                task.id,
                other.as_str(),
                now.error.unwrap_or_default()
            ),
        }
        ensure!(
            sent.elapsed() < Duration::from_secs(300),
            "task {} not finished after 300 s",
            task.id
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = sent.elapsed();

    let commands = bench.admin.task_commands(task.id).await?.items;
    ensure!(
        commands.len() == agents,
        "task {} has {} commands for {agents} agents",
        task.id,
        commands.len()
    );
    let redelivered = commands.iter().filter(|c| c.deliveries != 1).count();
    let not_succeeded = commands
        .iter()
        .filter(|c| c.state != capstan_core::CommandState::Succeeded)
        .count();
    ensure!(
        redelivered == 0 && not_succeeded == 0,
        "task {}: {redelivered} commands delivered other than once, {not_succeeded} not succeeded",
        task.id
    );
    let span = |f: fn(&capstan_api::CommandResponse) -> Option<f64>| {
        let values: Vec<f64> = commands.iter().filter_map(f).collect();
        percentile(&values, 50.0)
    };
    let (log_first, log_last) = log_span(bench, task.id).await?;

    let mut figures = Figures::default();
    figures.put("wall_ms", ms(wall));
    figures.put("ms_per_agent", ms(wall) / agents as f64);
    figures.put("post_scripts_ms", ms(answered - sent));
    if let (Some(started), Some(done)) = (finished.started_at, finished.finished_at) {
        figures.put("task_run_ms", wall_ms(started, done));
        figures.put("queued_to_started_ms", wall_ms(finished.queued_at, started));
    }
    figures.put("log_span_ms", wall_ms(log_first, log_last));
    figures.put(
        "command_queued_to_acked_p50_ms",
        span(|c| Some(wall_ms(c.queued_at, c.started_at?))),
    );
    figures.put(
        "command_acked_to_finished_p50_ms",
        span(|c| Some(wall_ms(c.started_at?, c.finished_at?))),
    );
    figures.put(
        "command_queued_to_finished_p50_ms",
        span(|c| Some(wall_ms(c.queued_at, c.finished_at?))),
    );
    Ok(figures)
}

/// The lines of a task's log, each with its time.
async fn log_lines(
    http: &reqwest::Client,
    url: &str,
    task_id: i64,
) -> anyhow::Result<Vec<(OffsetDateTime, String)>> {
    let response = http
        .get(format!("{url}/api/tasks/{task_id}/log"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    let text = expect_status(response, 200).await?.text().await?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (time, rest) = line.split_once(' ').unwrap_or((line, ""));
            let time = OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("task {task_id}: a log line without a time: {line}"))?;
            Ok((time, rest.to_owned()))
        })
        .collect()
}

/// The times of the first and last lines of a task's log.
async fn log_span(bench: &Bench, task_id: i64) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    let lines = log_lines(&reqwest::Client::new(), &bench.nodes[0].url, task_id).await?;
    let first = lines.first().context("the task's log is empty")?.0;
    let last = lines.last().map_or(first, |(t, _)| *t);
    Ok((first, last))
}

fn summarize_fanout(fanout: &FanoutArgs, rounds: &[Figures], m: &Figures) {
    let per_round = rounds
        .iter()
        .map(|r| format!("{:.3}", r.get("ms_per_agent")))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!();
    eprintln!(
        "fanout: `true` on {} agents over {} node(s), max_parallel {}, median of {} script(s) per round, {} round(s), medians",
        fanout.agents,
        fanout.nodes,
        fanout.max_parallel,
        fanout.repeats,
        rounds.len()
    );
    eprintln!(
        "  wall time {:.0} ms (POST sent → task seen succeeded); {:.3} ms per agent (rounds {per_round})   goal ≤ {FANOUT_GOAL_MS_PER_AGENT} ms: {}",
        m.get("wall_ms"),
        m.get("ms_per_agent"),
        verdict(m.get("ms_per_agent") <= FANOUT_GOAL_MS_PER_AGENT)
    );
    eprintln!(
        "  task: queued → started {:.1} ms, started → finished {:.0} ms; its log spans {:.0} ms",
        m.get("queued_to_started_ms"),
        m.get("task_run_ms"),
        m.get("log_span_ms")
    );
    eprintln!(
        "  each command (p50): mailbox → acknowledged {:.2} ms, acknowledged → result {:.2} ms, mailbox → result {:.2} ms",
        m.get("command_queued_to_acked_p50_ms"),
        m.get("command_acked_to_finished_p50_ms"),
        m.get("command_queued_to_finished_p50_ms")
    );
}
