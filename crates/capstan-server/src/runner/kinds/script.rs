//! `script`: an ad-hoc script run on agents picked when it was queued, at most
//! `max_parallel` at once, each agent's outcome reported on its own
//! (`GET /api/tasks/{id}/commands`). Queued by `POST /api/scripts`.

use std::time::Duration;

use capstan_api::ScriptCommand;
use capstan_core::CommandState;
use capstan_core::NodeLostPolicy;
use capstan_db::{agents::Target, mailbox::NewCommand};
use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use crate::agents::hand_over::{StoredCommand, StoredScript, TargetFacts};

use super::{
    Prepared, Ran, TaskKind, TaskRun,
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

/// A script task's arguments, as stored: sensitive values sealed, templates not yet
/// rendered (see [`crate::agents::hand_over`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptArgs {
    pub targets: Vec<ScriptTarget>,
    pub command: StoredScript,
    pub max_parallel: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTarget {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl ScriptTarget {
    pub fn facts(&self) -> TargetFacts {
        TargetFacts {
            machine: self.name.clone(),
            environment: self.environment.clone(),
            tags: self.tags.clone(),
        }
    }
}

pub struct Script;

/// Checks what an agent will be given: variable names it can export, sizes.
pub fn check_command(command: &ScriptCommand) -> Result<(), String> {
    check_script(&command.script)?;
    check_variables(command.variables.iter().map(|v| (&v.name, Some(&v.value))))
}

/// Checks a command as stored: as [`check_command`], and no sensitive value in clear.
fn check_stored(command: &StoredScript) -> Result<(), String> {
    check_script(&command.script)?;
    if let Some(v) = command
        .variables
        .iter()
        .find(|v| v.sensitive && v.value.is_some())
    {
        return Err(format!(
            "variable `{}` is sensitive: its value is sealed, never stored in clear; run the script with POST /api/scripts",
            v.name
        ));
    }
    if let Some(v) = command
        .variables
        .iter()
        .find(|v| v.value.is_some() == v.secret.is_some())
    {
        return Err(format!(
            "variable `{}` needs either a `value` or, if sensitive, a `secret`",
            v.name
        ));
    }
    check_variables(
        command
            .variables
            .iter()
            .map(|v| (&v.name, v.value.as_ref())),
    )
}

fn check_script(script: &str) -> Result<(), String> {
    if script.trim().is_empty() {
        return Err("`script` is empty".to_owned());
    }
    if script.len() > MAX_SCRIPT {
        return Err(format!(
            "`script` is {} bytes; at most {MAX_SCRIPT}",
            script.len()
        ));
    }
    Ok(())
}

fn check_variables<'a>(
    variables: impl ExactSizeIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), String> {
    if variables.len() > MAX_VARIABLES {
        return Err(format!("at most {MAX_VARIABLES} variables may be given"));
    }
    for (name, value) in variables {
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
        let Some(value) = value else { continue };
        if value.len() > MAX_VALUE {
            return Err(format!(
                "variable `{name}` is longer than {MAX_VALUE} bytes"
            ));
        }
        if value.contains('\0') {
            return Err(format!("variable `{name}` holds a NUL byte"));
        }
    }
    Ok(())
}

/// What `target` is sent, as stored: the script with the facts its system variables
/// read.
fn command_body(
    command: &StoredScript,
    target: &ScriptTarget,
) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(StoredCommand::Script(StoredScript {
        target: Some(target.facts()),
        ..command.clone()
    }))
}

/// The commands a run sends as it starts (the first `max_parallel` targets), for a
/// claim that sends them itself.
pub fn first_commands(args: &ScriptArgs) -> Result<Vec<NewCommand>, serde_json::Error> {
    let timeout_ms = i64::try_from(args.timeout_ms).unwrap_or(i64::MAX);
    args.targets
        .iter()
        .take(args.max_parallel as usize)
        .map(|t| {
            Ok(NewCommand {
                agent_id: t.id,
                body: command_body(&args.command, t)?,
                timeout_ms,
            })
        })
        .collect()
}

impl TaskKind for Script {
    fn name(&self) -> &'static str {
        SCRIPT
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: ScriptArgs = parse_args(args)?;
        check_stored(&parsed.command)?;
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
            // to decide. So a lost node's run is resumed, not repeated: the next
            // attempt waits for the scripts already sent (an agent's journal refuses
            // to start one twice) and sends only to targets that never got one.
            on_node_lost: NodeLostPolicy::Resume,
        })
    }

    fn run(&self, mut run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: ScriptArgs = parse_args(&run.args)?;
            let total = args.targets.len();
            run.log.info(format!(
                "running a {} script on {total} agent(s), at most {} at once, each for at most {}",
                args.command.syntax.as_str(),
                args.max_parallel,
                humantime::format_duration(Duration::from_millis(args.timeout_ms))
            ));
            let jobs = args
                .targets
                .iter()
                .map(|t| {
                    Ok(AgentJob {
                        body: command_body(&args.command, t).map_err(|e| e.to_string())?,
                        target: Target {
                            id: t.id,
                            name: t.name.clone(),
                            environment: t.environment.clone(),
                            tags: t.tags.clone(),
                        },
                    })
                })
                .collect::<Result<_, String>>()?;
            let outcomes = run_on_agents(
                &mut run,
                jobs,
                args.max_parallel as usize,
                Duration::from_millis(args.timeout_ms),
            )
            .await?;
            let failed: Vec<String> = outcomes
                .iter()
                .filter(|o| o.state != CommandState::Succeeded)
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
        .map(|ran| ran.map(|()| Ran::Done))
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
