//! A Capstan server node: one of several identical, stateless processes behind a load
//! balancer, sharing one PostgreSQL database and one blob store.
//!
//! This crate owns the node's configuration, its life (build, register, heartbeat,
//! drain, shutdown), the HTTP API, metrics and tracing. `capstan server`, `capstan dev`
//! and the test cluster all start nodes through [`Node::build`] and [`Node::run`]. It
//! must never depend on `capstan-agent` or `capstan-testkit`.

pub mod agents;
pub mod audit;
pub mod background;
pub mod blobs;
pub mod config;
pub mod deployments;
pub mod http;
pub mod identity;
pub mod invalid;
pub mod lifecycles;
pub mod metrics;
pub mod node;
pub mod packages;
pub mod projects;
pub mod runner;
pub mod secrets;
pub mod tasks;
pub mod telemetry;
pub mod ui;

pub use config::{LogFormat, ServerArgs, Settings};
pub use node::{Node, NodeState};

/// The version every node reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
