//! `health-check`: asks agents to answer and marks each healthy or unhealthy with a
//! reason. Queued periodically by every node's scheduler, or on demand.

use std::time::Duration;

use capstan_api::{AgentFacts, CommandBody};
use capstan_core::CommandState;
use capstan_core::{NodeLostPolicy, format_size};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{
    Prepared, Ran, TaskKind, TaskRun,
    agent_work::{AgentJob, run_on_agents},
    parse_args,
};

pub const HEALTH_CHECK: &str = "health-check";

const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Which agents to check; all enabled ones when nothing is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckArgs {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

pub struct HealthCheck;

impl HealthCheck {
    pub fn args() -> serde_json::Value {
        serde_json::to_value(HealthCheckArgs {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            ..Default::default()
        })
        .unwrap_or_default()
    }
}

impl TaskKind for HealthCheck {
    fn name(&self) -> &'static str {
        HEALTH_CHECK
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: HealthCheckArgs = parse_args(args)?;
        if !(1_000..=600_000).contains(&parsed.timeout_ms) {
            return Err("`timeout_ms` must be between 1,000 and 600,000".to_owned());
        }
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: NodeLostPolicy::Requeue,
        })
    }

    fn run(&self, mut run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: HealthCheckArgs = parse_args(&run.args)?;
            let ctx = run.ctx.clone();
            let db = &ctx.pools.api;
            let environment_id = match &args.environment {
                None => None,
                Some(name) => Some(
                    capstan_db::agents::find_environment(db, name)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("there is no environment `{name}`"))?
                        .id,
                ),
            };
            let targets = capstan_db::agents::targets(
                db,
                &args.agents,
                &args.tags,
                environment_id,
                super::script::MAX_TARGETS as i64,
            )
            .await
            .map_err(|e| format!("cannot list the agents to check: {e}"))?;
            if targets.is_empty() {
                run.log.info("no enabled agent to check");
                return Ok(());
            }
            let body = serde_json::to_value(CommandBody::HealthCheck).map_err(|e| e.to_string())?;
            let jobs = targets
                .into_iter()
                .map(|target| AgentJob {
                    target,
                    body: body.clone(),
                })
                .collect();
            let outcomes = run_on_agents(
                &mut run,
                jobs,
                super::script::MAX_TARGETS,
                Duration::from_millis(args.timeout_ms),
            )
            .await?;
            let mut unhealthy = Vec::new();
            for outcome in &outcomes {
                let (health, reason) = if outcome.state == CommandState::Succeeded {
                    ("healthy", describe_facts(&outcome.outputs["_facts"]))
                } else {
                    unhealthy.push(format!("{} ({})", outcome.target.name, outcome.describe()));
                    ("unhealthy", outcome.describe())
                };
                capstan_db::agents::set_health(db, outcome.target.id, health, Some(&reason))
                    .await
                    .map_err(|e| {
                        format!("cannot record the health of {}: {e}", outcome.target.name)
                    })?;
            }
            run.log.info(format!(
                "{} healthy, {} unhealthy{}",
                outcomes.len() - unhealthy.len(),
                unhealthy.len(),
                if unhealthy.is_empty() {
                    String::new()
                } else {
                    format!(": {}", unhealthy.join("; "))
                }
            ));
            Ok(())
        }
        .map(|ran| ran.map(|()| Ran::Done))
        .boxed()
    }
}

fn describe_facts(facts: &serde_json::Value) -> String {
    match serde_json::from_value::<AgentFacts>(facts.clone()) {
        Ok(facts) => {
            let shells: Vec<&str> = facts.shells.iter().map(|s| s.as_str()).collect();
            let mut text = format!(
                "capstan-agent {} on {} ({}), shells: {}",
                facts.version,
                facts.os,
                facts.hostname,
                if shells.is_empty() {
                    "none".to_owned()
                } else {
                    shells.join(", ")
                }
            );
            if let Some(free) = facts.free_disk_bytes {
                text.push_str(&format!(", {} free", format_size(free)));
            }
            text
        }
        Err(_) => "answered".to_owned(),
    }
}
