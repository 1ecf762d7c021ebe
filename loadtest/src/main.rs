//! Capstan's load generators, run by hand; figures go to `docs/benchmarks.md`.
//!
//! - `capstan-loadtest queue-anchor <drain|e2e|latency>` is the task queue's candidate
//!   for the side-by-side PostgreSQL queue benchmark (`PGQA_EXTRA_CMD`): it starts real
//!   `capstan server` processes on the harness's database and prints one JSON line per
//!   figure.
//! - `capstan-loadtest blob` uploads and downloads one large package through a real
//!   node, against a plain file copy of the same bytes, and samples the node's memory.
//! - `capstan-loadtest agents <roundtrip|idle|fanout>` runs simulated polling agents
//!   against real nodes: command delivery, the cost of idle polls, fan-out to many.
//! - `capstan-loadtest deployments` deploys a release to 1,000 simulated agents on one
//!   and three nodes: the engine's overhead per target-action, reading the grid, node
//!   memory, and how soon another node goes on after the one running it is killed.
//! - `capstan-loadtest dashboard` times `GET /api/dashboard` over 500 projects × 20
//!   environments seeded straight into PostgreSQL, and checks its plan.
//! - `capstan-loadtest ui-dashboard` times the dashboard page in a real browser over
//!   the same data: from navigation start until the table is in the page and loaded.
//! - `capstan-loadtest ui-grid` opens a 1,000-target deployment page in a real browser
//!   and measures how far its live grid falls behind cells changing in the database.
//! - `capstan-loadtest ui-log` opens the task log page over a 100,000-line log in
//!   headless Chromium: time to its last line, time to page back.

mod agents;
mod blob;
mod dashboard;
mod database;
mod deployments;
mod nodes;
mod queue_anchor;
mod ui_dashboard;
mod ui_grid;
mod ui_log;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capstan-loadtest",
    about = "Capstan's load generators, run by hand"
)]
struct Cli {
    #[command(subcommand)]
    command: Benchmark,
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// The task queue as a candidate of the PostgreSQL queue benchmark.
    QueueAnchor {
        /// drain, e2e or latency.
        mode: String,
    },
    /// A large package up to and down from a node, against a plain file copy.
    Blob(blob::BlobArgs),
    /// Simulated agents polling real nodes.
    Agents(agents::AgentsArgs),
    /// A release deployed to simulated agents: overhead, grid reads, memory, resume.
    Deployments(deployments::DeploymentsArgs),
    /// `GET /api/dashboard` over 500 projects × 20 environments seeded in PostgreSQL.
    Dashboard(dashboard::DashboardArgs),
    /// The dashboard page in a browser over 500 projects × 20 environments.
    UiDashboard(ui_dashboard::UiDashboardArgs),
    /// The deployment page's live grid: lag from a cell's change to the page.
    UiGrid(ui_grid::UiGridArgs),
    /// The task log page over a 100,000-line log, in headless Chromium.
    UiLog(ui_log::UiLogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.command {
        // One runtime thread: the node under test shares the machine's two cores with
        // this client, whose file I/O has threads of its own.
        Benchmark::Blob(_) => tokio::runtime::Builder::new_current_thread(),
        Benchmark::QueueAnchor { .. }
        | Benchmark::Agents(_)
        | Benchmark::Deployments(_)
        | Benchmark::Dashboard(_)
        | Benchmark::UiDashboard(_)
        | Benchmark::UiGrid(_)
        | Benchmark::UiLog(_) => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("a tokio runtime");
    let result = match cli.command {
        Benchmark::QueueAnchor { mode } => runtime.block_on(queue_anchor::run(&mode)),
        Benchmark::Blob(args) => runtime.block_on(blob::run(args)),
        Benchmark::Agents(args) => runtime.block_on(agents::run(args)),
        Benchmark::Deployments(args) => runtime.block_on(deployments::run(args)),
        Benchmark::Dashboard(args) => runtime.block_on(dashboard::run(args)),
        Benchmark::UiDashboard(args) => runtime.block_on(ui_dashboard::run(args)),
        Benchmark::UiGrid(args) => runtime.block_on(ui_grid::run(args)),
        Benchmark::UiLog(args) => runtime.block_on(ui_log::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
