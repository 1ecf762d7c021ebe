//! The server's behaviour, tested through real HTTP against real nodes and a real
//! PostgreSQL. Files mirror the URL tree and the operator's view.

mod access;
mod agents;
mod alerts;
mod api;
mod approvals;
mod audit;
mod blobs;
mod cli;
mod crash;
mod dashboard;
mod deployments;
mod dev;
mod freezes;
mod haproxy;
mod identity;
mod lifecycles;
mod observability;
mod outage;
mod projects;
mod schedule;
mod secrets;
mod startup;
mod tasks;
mod ui;
mod upgrade;

use std::path::PathBuf;

/// The `capstan` binary built for these tests.
pub fn capstan_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_capstan"))
}
