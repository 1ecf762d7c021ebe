//! `script`: an ad-hoc script run on agents picked when it was queued, at most
//! `max_parallel` at once, each agent's outcome reported on its own
//! (`GET /api/tasks/{id}/commands`). Queued by `POST /api/scripts`.

use std::time::Duration;

use capstan_api::{CommandBody, ScriptCommand};
use capstan_core::NodeLostPolicy;
use capstan_db::{agents::Target, mailbox::NewCommand};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{
    Prepared, TaskKind, TaskRun,
    agent_work::{AgentJob, run_on_agents},
    parse_args,
};

pub const SCRIPT: &str = "script";

/// Most agents one script run may target.
pub const MAX_TARGETS: usize = 10_000;
/// Most variables, the longest value, and the longest script.
const MAX_VARIABLES: usize = 500;
const MAX_VALUE: usize = 64 * 1024;
const MAX_SCRIPT: usize = 512 * 1024;
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// A script task's arguments, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptArgs {
    pub targets: Vec<ScriptTarget>,
    pub command: ScriptCommand,
    pub max_parallel: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTarget {
    pub id: i64,
    pub name: String,
}

pub struct Script;

/// Checks what an agent will be given: variable names it can export, sizes.
pub fn check_command(command: &ScriptCommand) -> Result<(), String> {
    if command.script.trim().is_empty() {
        return Err("`script` is empty".to_owned());
    }
    if command.script.len() > MAX_SCRIPT {
        return Err(format!(
            "`script` is {} bytes; at most {MAX_SCRIPT}",
            command.script.len()
        ));
    }
    if command.variables.len() > MAX_VARIABLES {
        return Err(format!("at most {MAX_VARIABLES} variables may be given"));
    }
    for variable in &command.variables {
        let name = &variable.name;
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= 200;
        if !valid {
            return Err(format!(
                "variable `{name}` cannot be an environment variable: use letters, digits and `_`, not starting with a digit"
            ));
        }
        if variable.value.len() > MAX_VALUE {
            return Err(format!(
                "variable `{name}` is longer than {MAX_VALUE} bytes"
            ));
        }
        if variable.value.contains('\0') {
            return Err(format!("variable `{name}` holds a NUL byte"));
        }
    }
    Ok(())
}

/// What every target agent is sent.
fn command_body(command: ScriptCommand) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(CommandBody::Script(command))
}

/// The commands a run sends as it starts (the first `max_parallel` targets), for a
/// claim that sends them itself.
pub fn first_commands(args: &ScriptArgs) -> Result<Vec<NewCommand>, serde_json::Error> {
    let body = command_body(args.command.clone())?;
    let timeout_ms = i64::try_from(args.timeout_ms).unwrap_or(i64::MAX);
    Ok(args
        .targets
        .iter()
        .take(args.max_parallel as usize)
        .map(|t| NewCommand {
            agent_id: t.id,
            body: body.clone(),
            timeout_ms,
        })
        .collect())
}

impl TaskKind for Script {
    fn name(&self) -> &'static str {
        SCRIPT
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: ScriptArgs = parse_args(args)?;
        check_command(&parsed.command)?;
        if parsed.targets.is_empty() {
            return Err("`targets` is empty".to_owned());
        }
        if parsed.targets.len() > MAX_TARGETS {
            return Err(format!("at most {MAX_TARGETS} targets"));
        }
        if parsed.max_parallel == 0 {
            return Err("`max_parallel` must be at least 1".to_owned());
        }
        if parsed.timeout_ms == 0 || parsed.timeout_ms > MAX_TIMEOUT_MS {
            return Err("`timeout_ms` must be between 1 and 86,400,000 (24h)".to_owned());
        }
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            // A script may change the machine: running it twice is not for Capstan
            // to decide.
            on_node_lost: NodeLostPolicy::Fail,
        })
    }

    fn run(&self, mut run: TaskRun) -> BoxFuture<'static, Result<(), String>> {
        async move {
            let args: ScriptArgs = parse_args(&run.args)?;
            let total = args.targets.len();
            run.log.info(format!(
                "running a {} script on {total} agent(s), at most {} at once, each for at most {}",
                args.command.syntax.as_str(),
                args.max_parallel,
                humantime::format_duration(Duration::from_millis(args.timeout_ms))
            ));
            let body = command_body(args.command).map_err(|e| e.to_string())?;
            let jobs = args
                .targets
                .into_iter()
                .map(|t| AgentJob {
                    target: Target {
                        id: t.id,
                        name: t.name,
                    },
                    body: body.clone(),
                })
                .collect();
            let outcomes = run_on_agents(
                &mut run,
                jobs,
                args.max_parallel as usize,
                Duration::from_millis(args.timeout_ms),
            )
            .await?;
            let failed: Vec<String> = outcomes
                .iter()
                .filter(|o| o.state != "succeeded")
                .map(|o| format!("{} ({})", o.target.name, o.describe()))
                .collect();
            if failed.is_empty() {
                run.log
                    .info(format!("the script succeeded on all {total} agent(s)"));
                Ok(())
            } else {
                Err(format!(
                    "the script failed on {} of {total} agent(s): {}",
                    failed.len(),
                    failed.join("; ")
                ))
            }
        }
        .boxed()
    }
}

/// The arguments with sensitive values masked, for showing.
pub fn redact(mut args: serde_json::Value) -> serde_json::Value {
    if let Some(variables) = args
        .pointer_mut("/command/variables")
        .and_then(|v| v.as_array_mut())
    {
        for variable in variables {
            if variable["sensitive"] == serde_json::Value::Bool(true) {
                variable["value"] = serde_json::Value::String("********".to_owned());
            }
        }
    }
    args
}
