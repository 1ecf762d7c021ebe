//! Handing commands to their agent. A command is stored (`agent_commands.body`, and a
//! script task's `tasks.args`) with its sensitive values sealed in `secrets` and its
//! templates unrendered. Only as a poll answers with it are the values opened and the
//! script and variables rendered for the agent that runs it; what is opened is sent to
//! that agent and kept nowhere else.

use std::collections::HashMap;

use capstan_api::{
    AgentCommand, CommandBody, CommandVariable, PackageRef, PollResponse, ScriptCommand,
    ScriptSyntax,
};
use capstan_core::variables::{Masker, Template, VariableMap};
use capstan_db::mailbox::Delivery;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{node::NodeContext, secrets::SecretError};

/// A command as stored: what its agent gets once opened and rendered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StoredCommand {
    Script(StoredScript),
    HealthCheck,
}

/// A script as stored. Its JSON reads like the agent's [`ScriptCommand`], except that
/// a sensitive variable holds `secret` (the id of its sealed value) instead of `value`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredScript {
    pub syntax: ScriptSyntax,
    /// A template, rendered for each agent.
    pub script: String,
    #[serde(default)]
    pub variables: Vec<StoredVariable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub packages: Vec<PackageRef>,
    /// The agent the command is for, as it was when the command was made: what the
    /// `Capstan.Machine.*` and `Capstan.Environment.Name` variables read. Absent from a
    /// task's arguments, which serve every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetFacts>,
}

/// A variable as stored. A sensitive one has a `secret` and no `value`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredVariable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Uuid>,
    #[serde(default)]
    pub sensitive: bool,
}

/// What the system variables say of the agent a command runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFacts {
    pub machine: String,
    pub environment: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The system variables of a command of task `task_id` on `target` (see
/// docs/variables.md).
pub fn system_variables(task_id: i64, target: Option<&TargetFacts>) -> Vec<(String, String)> {
    let mut values = vec![("Capstan.Task.Id".to_owned(), task_id.to_string())];
    if let Some(target) = target {
        values.push(("Capstan.Machine.Name".to_owned(), target.machine.clone()));
        values.push(("Capstan.Machine.Tags".to_owned(), target.tags.join(",")));
        values.push((
            "Capstan.Environment.Name".to_owned(),
            target.environment.clone(),
        ));
    }
    values
}

/// Renders a script and its variables' values for one agent: `#{…}` reads the
/// command's variables by name and the `system` variables. The error names what failed
/// to render, with every sensitive value masked.
///
/// The one renderer of commands: the script console checks with it before it queues a
/// script, and hand-over renders with it, so what was accepted is what runs.
pub fn render_script(
    command: ScriptCommand,
    system: &[(String, String)],
) -> Result<ScriptCommand, String> {
    let masker = Masker::new(
        command
            .variables
            .iter()
            .filter(|v| v.sensitive)
            .map(|v| v.value.as_str()),
    );
    let mut values: VariableMap = command
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    for (name, value) in system {
        values.insert(name.clone(), value.clone());
    }
    let render = |what: &dyn Fn() -> String, text: &str| {
        if !text.contains("#{") {
            return Ok(text.to_owned());
        }
        Template::parse(text)
            .and_then(|template| template.render(&values))
            .map_err(|e| format!("{}: {}", what(), e.masked(&masker)))
    };
    let script = render(&|| "`script`".to_owned(), &command.script)?;
    let variables = command
        .variables
        .iter()
        .map(|v| {
            Ok(CommandVariable {
                name: v.name.clone(),
                value: render(&|| format!("variable `{}`", v.name), &v.value)?,
                sensitive: v.sensitive,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ScriptCommand {
        script,
        variables,
        ..command
    })
}

/// The command as stored: each sensitive value sealed under the master key. Returns the
/// ids of the sealed values.
pub async fn seal(
    ctx: &NodeContext,
    command: ScriptCommand,
) -> Result<(StoredScript, Vec<Uuid>), SecretError> {
    let mut sealed = Vec::new();
    let mut variables = Vec::with_capacity(command.variables.len());
    let mut conn = None;
    for variable in command.variables {
        let stored = if variable.sensitive {
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(ctx.pools.api.acquire().await.map_err(SecretError::from)?),
            };
            let id = ctx.secrets.seal(conn, &variable.value).await?;
            sealed.push(id);
            StoredVariable {
                name: variable.name,
                value: None,
                secret: Some(id),
                sensitive: true,
            }
        } else {
            StoredVariable {
                name: variable.name,
                value: Some(variable.value),
                secret: None,
                sensitive: false,
            }
        };
        variables.push(stored);
    }
    Ok((
        StoredScript {
            syntax: command.syntax,
            script: command.script,
            variables,
            working_directory: command.working_directory,
            packages: command.packages,
            target: None,
        },
        sealed,
    ))
}

/// The answer to a poll: each command opened and rendered for its agent.
///
/// A body this code cannot read is a bug: it is logged and left out, and the command's
/// deadline ends it. Failing to open sealed values fails the poll (the agent polls
/// again), so no command is run without them.
pub async fn poll_response(
    ctx: &NodeContext,
    deliveries: Vec<Delivery>,
) -> Result<PollResponse, SecretError> {
    let mut response = PollResponse::default();
    let mut stored = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        if delivery.cancel {
            response.cancel.push(delivery.id);
            continue;
        }
        let Some(body) = delivery.body else { continue };
        match serde_json::from_value::<StoredCommand>(body) {
            Ok(command) => {
                stored.push((delivery.id, delivery.task_id, delivery.timeout_ms, command))
            }
            Err(e) => tracing::error!(command.id = delivery.id, "unreadable command body: {e}"),
        }
    }
    let sealed: Vec<Uuid> = stored
        .iter()
        .filter_map(|(.., command)| match command {
            StoredCommand::Script(script) => Some(script),
            StoredCommand::HealthCheck => None,
        })
        .flat_map(|script| script.variables.iter().filter_map(|v| v.secret))
        .collect();
    let mut opened = open(ctx, &sealed).await?;
    for (id, task_id, timeout_ms, command) in stored {
        let body = match command {
            StoredCommand::HealthCheck => CommandBody::HealthCheck,
            StoredCommand::Script(script) => {
                match script_for_agent(script, id, task_id, &mut opened) {
                    Ok(script) => CommandBody::Script(script),
                    // Checked when queued, with the same inputs: this is a bug.
                    Err(e) => {
                        tracing::error!(command.id = id, "cannot render the command: {e}");
                        continue;
                    }
                }
            }
        };
        response.commands.push(AgentCommand {
            id,
            task_id,
            timeout_ms: u64::try_from(timeout_ms).unwrap_or(0),
            body,
        });
    }
    Ok(response)
}

async fn open(ctx: &NodeContext, ids: &[Uuid]) -> Result<HashMap<Uuid, String>, SecretError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = ctx.pools.api.acquire().await?;
    ctx.secrets.open_many(&mut conn, ids).await
}

fn script_for_agent(
    script: StoredScript,
    id: i64,
    task_id: i64,
    opened: &mut HashMap<Uuid, String>,
) -> Result<ScriptCommand, String> {
    let variables = script
        .variables
        .into_iter()
        .map(|v| {
            let value = match (v.secret, v.value) {
                (Some(secret), _) => opened
                    .get(&secret)
                    .cloned()
                    .ok_or_else(|| format!("the sealed value of `{}` was not opened", v.name))?,
                (None, value) => value.unwrap_or_default(),
            };
            Ok(CommandVariable {
                name: v.name,
                value,
                sensitive: v.sensitive,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut packages = script.packages;
    for (index, package) in packages.iter_mut().enumerate() {
        package.download = format!("/api/agent/commands/{id}/packages/{index}");
    }
    let system = system_variables(task_id, script.target.as_ref());
    render_script(
        ScriptCommand {
            syntax: script.syntax,
            script: script.script,
            variables,
            working_directory: script.working_directory,
            packages,
        },
        &system,
    )
}
