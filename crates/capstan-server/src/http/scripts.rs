//! `POST /api/scripts` (the script console) and `GET /api/tasks/{id}/commands`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{
    CommandList, CommandResponse, CreateTaskRequest, Problem, RunScriptRequest, ScriptCommand,
    TaskResponse,
};

use capstan_core::agent::normalize_tags;
use capstan_db::{DbError, audit::Actor, tasks::TaskRow};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath},
    problems::Problems,
};

use crate::{
    agents::{
        hand_over::{self, StoredScript, render_script, system_variables},
        targets::{self, TargetQuery},
    },
    audit::{Change, ChangedBy},
    node::NodeContext,
    packages::PackageError,
    runner::{
        self,
        kinds::script::{
            MAX_TARGETS, SCRIPT, ScriptArgs, ScriptTarget, check_command, first_commands,
        },
    },
};

const DEFAULT_PARALLEL: u32 = 10;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_PACKAGES: usize = 20;
/// Machines a script run's audit row names before it says how many more.
const NAMED_MACHINES: usize = 10;

/// `POST /api/scripts`: runs a script on every enabled agent matching the names, tags
/// and environment given, as a `script` task. 422 when nothing matches.
#[utoipa::path(post, path = "/api/scripts", tag = "scripts", request_body = RunScriptRequest, responses(
    (status = 201, body = TaskResponse),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn run_script(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<RunScriptRequest>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let timeout = match request.timeout.as_deref() {
        None => Some(DEFAULT_TIMEOUT),
        Some(text) => problems.check("timeout", capstan_core::parse_duration(text)),
    };
    let max_parallel = request.max_parallel.unwrap_or(DEFAULT_PARALLEL);
    if max_parallel == 0 {
        problems.add("max_parallel", "must be at least 1");
    }
    if request.packages.len() > MAX_PACKAGES {
        problems.add(
            "packages",
            format!("at most {MAX_PACKAGES} packages per script"),
        );
    }
    if request.script.trim().is_empty() {
        problems.add("script", "the script is empty");
    }
    let tags = problems.check("tags", normalize_tags(&request.tags));
    problems.finish()?;
    let (timeout, tags) = (timeout.unwrap_or_default(), tags.unwrap_or_default());
    let packages = crate::packages::pin(&ctx, &request.packages)
        .await
        .map_err(package_error)?;
    let command = ScriptCommand {
        syntax: request.syntax,
        script: request.script,
        variables: request.variables,
        working_directory: request.working_directory,
        packages,
    };
    check_command(&command).map_err(ApiError::unprocessable)?;
    let query = TargetQuery {
        agents: request.agents,
        tags,
        environment: request.environment,
    };
    let targets = targets::select(&ctx, &query).await?;
    // Rendered at hand-over, for each agent; checked here with the same inputs (task
    // id aside, which renders the same for any id), so what is accepted runs.
    for target in &targets {
        let system = system_variables(0, Some(&target.facts()));
        render_script(command.clone(), &system).map_err(ApiError::unprocessable)?;
    }
    let (command, sealed) = hand_over::seal(&ctx, command).await?;
    let queued = queue(&ctx, actor, targets, command, max_parallel, timeout).await;
    let row = match queued {
        Ok(row) => row,
        Err(e) => {
            // Nothing was queued: the sealed values belong to no task and would never
            // be deleted.
            if !sealed.is_empty()
                && let Err(cleanup) = capstan_db::secrets::delete(&ctx.pools.api, &sealed).await
            {
                tracing::warn!("cannot delete the sealed values of a script not queued: {cleanup}");
            }
            return Err(e);
        }
    };
    let id = row.id;
    if !sealed.is_empty() {
        capstan_db::secrets::belong_to_task(&ctx.pools.api, id, &sealed)
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?;
    }
    let mut response = (StatusCode::CREATED, Json(super::tasks::to_response(row))).into_response();
    if let Ok(location) = format!("/api/tasks/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Queues the script task for `targets`.
async fn queue(
    ctx: &Arc<NodeContext>,
    actor: Actor,
    targets: Vec<ScriptTarget>,
    command: StoredScript,
    max_parallel: u32,
    timeout: Duration,
) -> Result<TaskRow, ApiError> {
    let args = ScriptArgs {
        targets,
        command,
        max_parallel,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let commands = first_commands(&args).map_err(|e| ApiError::internal(&e))?;
    let task = super::tasks::prepare(
        ctx,
        CreateTaskRequest::new(
            SCRIPT,
            serde_json::to_value(args).map_err(|e| ApiError::internal(&e))?,
        ),
    )
    .map_err(ApiError::unprocessable)?;
    // Who ran what on which machines: the script (its secrets masked) and its targets.
    // The name lists the first machines; the arguments hold every target.
    let machines: Vec<&str> = args_targets(&task.args);
    let mut named = machines
        .iter()
        .take(NAMED_MACHINES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if machines.len() > NAMED_MACHINES {
        named.push_str(&format!(" and {} more", machines.len() - NAMED_MACHINES));
    }
    let change = Change::new("script.run")
        .object_name(format!("script on {} machine(s): {named}", machines.len()))
        .after(&serde_json::json!({
            "kind": task.kind,
            "args": runner::redact(&task.kind, task.args.clone()),
        }));
    runner::queue_one_sending(ctx.clone(), task, commands, Some((actor, change)))
        .await
        .map_err(|e| match e {
            DbError::Conflict { constraint } if constraint == "agent_commands_agent_id_fkey" => {
                ApiError::conflict(
                    "an agent picked for this script was deleted meanwhile; nothing was run, send it again",
                )
            }
            e => ApiError::from_db(e, String::new),
        })
}

/// The names of a script task's targets, as its arguments hold them.
fn args_targets(args: &serde_json::Value) -> Vec<&str> {
    args.get("targets")
        .and_then(serde_json::Value::as_array)
        .map(|targets| {
            targets
                .iter()
                .filter_map(|t| t.get("name").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// A package of the body that is not in the feed is the body's problem, a 422, where
/// the same package in a download's path is a 400 or 404.
fn package_error(error: PackageError) -> ApiError {
    match error {
        PackageError::Db(e) => ApiError::from_db(e, String::new),
        e @ (PackageError::Invalid(_) | PackageError::NotInFeed { .. }) => {
            ApiError::unprocessable(format!("`packages`: {e}"))
        }
    }
}

/// `GET /api/tasks/{id}/commands`: what each agent did for the task.
#[utoipa::path(get, path = "/api/tasks/{id}/commands", tag = "tasks", params(("id" = i64, Path)), responses(
    (status = 200, body = CommandList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn task_commands(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandList>, ApiError> {
    capstan_db::tasks::get(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("there is no task {id}")))?;
    let rows = capstan_db::mailbox::of_task(&ctx.pools.api, id, MAX_TARGETS as i64)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(CommandList {
        items: rows
            .into_iter()
            .map(|row| {
                let mut outputs = std::collections::BTreeMap::new();
                if let serde_json::Value::Object(map) = row.outputs {
                    for (name, value) in map {
                        if let (false, Some(value)) = (name.starts_with('_'), value.as_str()) {
                            outputs.insert(name, value.to_owned());
                        }
                    }
                }
                CommandResponse {
                    id: row.id,
                    agent_id: row.agent_id,
                    agent_name: row.agent_name,
                    state: row.state,
                    deliveries: u32::try_from(row.deliveries).unwrap_or(0),
                    exit_code: row.exit_code,
                    error: row.error,
                    outputs,
                    queued_at: row.queued_at,
                    started_at: row.started_at,
                    finished_at: row.finished_at,
                }
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_of_the_body_missing_from_the_feed_is_a_422() {
        let error = package_error(PackageError::NotInFeed {
            id: capstan_core::PackageId::parse("web").unwrap(),
            version: capstan_core::PackageVersion::parse("1.0.0").unwrap(),
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.detail,
            "`packages`: there is no package web 1.0.0 in the feed"
        );
    }
}
