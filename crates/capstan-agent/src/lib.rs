//! The Capstan agent: runs on a target machine, registers with a cluster, long-polls
//! it for commands, fetches packages into a verified cache, and runs scripts.
//!
//! The crate owns the agent side of the protocol in `capstan_api::agents`, and its
//! HTTP client ([`client::AgentClient`]) is public so a load generator can act as
//! many agents. It must never import `capstan-db`, `capstan-blob` or `capstan-server`:
//! it meets the server only over HTTP, through whichever node the load balancer picks.

pub mod agent;
pub mod cli;
pub mod client;
pub mod command;
pub mod facts;
pub mod home;
pub mod journal;
pub mod logging;
pub mod output;
pub mod packages;
pub mod register;
pub mod retry;
pub mod script;

#[cfg(test)]
mod testing;

pub use agent::{Agent, RunSettings};
pub use client::{AgentClient, CallError, VERSION};
pub use home::{Home, Registration};
