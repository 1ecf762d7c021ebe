//! The agent protocol, `/api/agent/…`: an agent's credential reaches these routes
//! only, and through them only its own mailbox.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use capstan_api::{
    CommandOutcome, CommandResult, OutputBatch, PollQuery, PollResponse, Problem,
    agents::{
        AGENT_CANCELLING_HEADER, AGENT_VERSION_HEADER, MAX_OUTPUT_BYTES, MAX_OUTPUT_LINES,
        MAX_POLL_WAIT_MS,
    },
};
use capstan_core::CommandState;
use capstan_db::mailbox::{self, Finish, Standing, Stored};

use super::{
    ApiError,
    extract::{AgentJson, ApiPath, ApiQuery},
    observe::Routine,
};
use crate::{
    agents::{
        Contents, Identity,
        credentials::{TokenKind, bearer, digest},
        hand_over::{self, StoredCommand},
    },
    node::NodeContext,
};

/// The largest body an agent may send: a full output batch, JSON-escaped.
pub const MAX_BODY_BYTES: usize = 4 * MAX_OUTPUT_BYTES;
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Most outputs one result may set, and the longest value.
const MAX_OUTPUTS: usize = 100;
const MAX_OUTPUT_VALUE: usize = 64 * 1024;

/// The agent a request comes from, by its credential.
pub(crate) struct AgentAuth {
    pub agent: Identity,
    digest: [u8; 32],
}

impl FromRequestParts<Arc<NodeContext>> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<NodeContext>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "send the agent's credential as `Authorization: Bearer capagt_…`",
            )
        })?;
        if !token.starts_with(TokenKind::Agent.prefix()) {
            return Err(ApiError::unauthorized(
                "this is not an agent credential (those start with `capagt_`); register the agent to get one",
            ));
        }
        let digest = digest(token);
        let agent = identify(ctx, &digest).await?;
        Ok(Self { agent, digest })
    }
}

/// The version an agent sends with each poll, at most 64 characters.
pub(crate) struct AgentVersion(String);

impl FromRequestParts<Arc<NodeContext>> for AgentVersion {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<NodeContext>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get(AGENT_VERSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "unknown".to_owned(), |v| v.chars().take(64).collect()),
        ))
    }
}

/// The commands a poll says its agent was told to cancel and still holds.
pub(crate) struct Cancelling(Vec<i64>);

impl FromRequestParts<Arc<NodeContext>> for Cancelling {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<NodeContext>,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(AGENT_CANCELLING_HEADER) else {
            return Ok(Self(Vec::new()));
        };
        let bad = || {
            ApiError::bad_request(format!(
                "`{AGENT_CANCELLING_HEADER}` lists command ids separated by commas, e.g. `12,15`"
            ))
        };
        let ids = value
            .to_str()
            .map_err(|_| bad())?
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| id.parse::<i64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        Ok(Self(ids))
    }
}

/// Who holds a credential: from memory, or from the database once per node.
async fn identify(ctx: &NodeContext, digest: &[u8; 32]) -> Result<Identity, ApiError> {
    let identity = match ctx.agents.identities.get(digest) {
        Some(identity) => identity,
        None => {
            let found = capstan_db::agents::authenticate(&ctx.pools.api, digest)
                .await
                .map_err(|e| ApiError::from_db(e, String::new))?
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "the agent credential is not valid: the agent was deleted or never registered; register it again",
                    )
                })?;
            let identity = Identity {
                id: found.id,
                name: found.name,
                disabled: found.disabled,
            };
            ctx.agents.identities.remember(*digest, identity.clone());
            identity
        }
    };
    if identity.disabled {
        return Err(ApiError::unauthorized(format!(
            "agent `{}` is disabled; an administrator can enable it again",
            identity.name
        )));
    }
    Ok(identity)
}

/// `GET /api/agent/commands`: the agent's commands not yet acknowledged and the
/// running ones to cancel (but those the agent names in `capstan-agent-cancelling`),
/// at once if there are any, else when some arrive or after `wait_ms`.
#[utoipa::path(get, path = "/api/agent/commands", tag = "agent protocol", params(PollQuery), responses(
    (status = 200, body = PollResponse),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn poll(
    State(ctx): State<Arc<NodeContext>>,
    auth: AgentAuth,
    AgentVersion(version): AgentVersion,
    Cancelling(cancelling): Cancelling,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<Response, ApiError> {
    // A node may hold thousands of these for half a minute each: keep only what the
    // wait needs.
    let AgentAuth { agent, digest } = auth;
    let agent_id = agent.id;
    drop(agent);
    ctx.agents.seen.saw(agent_id, &version);
    drop(version);
    let wait = query.wait_ms.map_or(DEFAULT_WAIT, |ms| {
        Duration::from_millis(ms.min(MAX_POLL_WAIT_MS))
    });
    let deadline = tokio::time::Instant::now() + wait;
    ctx.metrics.agent_polls.increment(1);
    let _waiting = ctx.metrics.agent_polls_waiting.track();
    // A cancel the agent already holds is no news: answering it at once would only
    // bring the agent straight back, over and over while its command stops.
    let held = |id: &i64| cancelling.contains(id);
    loop {
        let mut ticket = ctx.agents.mailboxes.ticket(agent_id);
        match std::mem::take(&mut ticket.contents) {
            Contents::Empty if ticket.cancels.iter().all(held) => {}
            Contents::Handed(commands) => {
                mark_delivered(&ctx, &commands);
                return Ok(Json(hand_over::poll_response(&ctx, commands).await?).into_response());
            }
            // Known empty but for cancels the agent does not name (it restarted, or
            // an answer was lost), or not known: the database says which still stand.
            Contents::Empty | Contents::Unknown => {
                ctx.metrics.agent_mailbox_reads.increment(1);
                let mut deliveries = mailbox::poll(&ctx.pools.api, agent_id)
                    .await
                    .map_err(|e| ApiError::from_db(e, String::new))?;
                let cancels: Vec<i64> = deliveries
                    .iter()
                    .filter(|d| d.cancel)
                    .map(|d| d.id)
                    .collect();
                deliveries.retain(|d| !(d.cancel && held(&d.id)));
                if !deliveries.is_empty() {
                    return Ok(
                        Json(hand_over::poll_response(&ctx, deliveries).await?).into_response()
                    );
                }
                ctx.agents.mailboxes.found_empty(&ticket, cancels);
            }
        }
        tokio::select! {
            () = ticket.changed() => {
                // A revocation wakes the poll too: check the credential again.
                identify(&ctx, &digest).await?;
            }
            () = tokio::time::sleep_until(deadline) => return Ok(nothing_new()),
            () = ctx.http_stop.cancelled() => return Ok(nothing_new()),
        }
    }
}

/// The answer to a poll that found no work: routine, so not worth an info line.
fn nothing_new() -> Response {
    (Extension(Routine), Json(PollResponse::default())).into_response()
}

/// Counts the delivery of commands answered without a query, after the answer: the
/// count is for operators, and the acknowledgement is what the run waits for.
fn mark_delivered(ctx: &Arc<NodeContext>, commands: &[mailbox::Delivery]) {
    let ids: Vec<i64> = commands.iter().map(|c| c.id).collect();
    let db = ctx.pools.api.clone();
    tokio::spawn(async move {
        if let Err(e) = mailbox::mark_delivered(&db, &ids).await {
            tracing::warn!("cannot count the delivery of agent commands {ids:?}: {e}");
        }
    });
}

fn refuse(id: i64, standing: Standing) -> Result<(), ApiError> {
    match standing {
        Standing::Open => Ok(()),
        Standing::Unknown => Err(ApiError::not_found(format!(
            "this agent has no command {id}"
        ))),
        Standing::Closed(state) => Err(ApiError::conflict(format!(
            "command {id} is {state}: do not run it or report on it"
        ))),
        Standing::TaskEnded => Err(ApiError::conflict(format!(
            "command {id} is cancelled (its task is no longer running): do not run it or \
             report on it"
        ))),
    }
}

/// `POST /api/agent/commands/{id}/ack`: the agent is about to run the command. 409 when
/// it was cancelled or finished meanwhile: then it must not run it.
#[utoipa::path(post, path = "/api/agent/commands/{id}/ack", tag = "agent protocol",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Run it"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn ack(
    State(ctx): State<Arc<NodeContext>>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let standing = mailbox::ack(&ctx.pools.api, auth.agent.id, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    refuse(id, standing)?;
    // The next poll here must look again: other commands may still wait.
    ctx.agents.mailboxes.changed(auth.agent.id);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/agent/commands/{id}/output`: lines for the task's log. Lines whose `seq`
/// was stored before are skipped, so a batch may be sent again; a batch numbering a
/// line more than [`MAX_OUTPUT_LINES`] past the last stored is refused.
#[utoipa::path(post, path = "/api/agent/commands/{id}/output", tag = "agent protocol",
    params(("id" = i64, Path)), request_body = OutputBatch, responses(
    (status = 204, description = "Stored"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 413, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn output(
    State(ctx): State<Arc<NodeContext>>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<i64>,
    AgentJson(batch): AgentJson<OutputBatch>,
) -> Result<StatusCode, ApiError> {
    if batch.lines.len() > MAX_OUTPUT_LINES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch holds at most {MAX_OUTPUT_LINES} lines, this one has {}; send the rest in another",
                batch.lines.len()
            ),
        ));
    }
    let bytes: usize = batch.lines.iter().map(|l| l.text.len()).sum();
    if bytes > MAX_OUTPUT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch holds at most {MAX_OUTPUT_BYTES} bytes of text, this one has {bytes}; send the rest in another"
            ),
        ));
    }
    if let Some(line) = batch.lines.iter().find(|l| l.seq == 0) {
        return Err(ApiError::unprocessable(format!(
            "line numbers start at 1; a line has seq 0: `{}`",
            line.text.chars().take(80).collect::<String>()
        )));
    }
    if batch.lines.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let newest = batch.lines.iter().map(|l| l.seq).max().unwrap_or(0);
    let seqs: Vec<i64> = batch
        .lines
        .iter()
        .map(|l| i64::try_from(l.seq).unwrap_or(i64::MAX))
        .collect();
    let streams: Vec<String> = batch
        .lines
        .iter()
        .map(|l| {
            serde_json::to_value(l.stream)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let texts: Vec<String> = batch.lines.into_iter().map(|l| readable(l.text)).collect();
    let lead = MAX_OUTPUT_LINES as i64;
    let stored = mailbox::store_output(
        &ctx.pools.api,
        auth.agent.id,
        id,
        &seqs,
        &streams,
        &texts,
        lead,
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    match stored {
        Stored::Report(report) => reported(&ctx, id, report),
        Stored::TooFarAhead { last_seq } => Err(ApiError::unprocessable(format!(
            "line {newest} is too far ahead: lines are numbered one after another and a \
             batch holds at most {MAX_OUTPUT_LINES}, so after line {last_seq}, the last one \
             stored, a batch numbers its lines up to {} at most",
            last_seq.saturating_add(lead)
        ))),
    }
}

/// Text an agent reports, as PostgreSQL can store it: a NUL has no place in `text` or
/// `jsonb`, and refusing it would leave the command unable to report at all.
fn readable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

/// Every string in `value` made [`readable`].
fn readable_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => *text = readable(std::mem::take(text)),
        serde_json::Value::Array(items) => items.iter_mut().for_each(readable_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(readable_json),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// `POST /api/agent/commands/{id}/result`: how the command ended. Reporting again is
/// fine; the first report counts.
#[utoipa::path(post, path = "/api/agent/commands/{id}/result", tag = "agent protocol",
    params(("id" = i64, Path)), request_body = CommandResult, responses(
    (status = 204, description = "Recorded"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn result(
    State(ctx): State<Arc<NodeContext>>,
    auth: AgentAuth,
    ApiPath(id): ApiPath<i64>,
    AgentJson(result): AgentJson<CommandResult>,
) -> Result<StatusCode, ApiError> {
    if result.outputs.len() > MAX_OUTPUTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a command sets at most {MAX_OUTPUTS} output variables, this one sets {}",
                result.outputs.len()
            ),
        ));
    }
    for (name, value) in &result.outputs {
        capstan_core::service_message::check_output_name(name)
            .map_err(|e| ApiError::unprocessable(format!("outputs: {e}")))?;
        if value.len() > MAX_OUTPUT_VALUE {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "output variable `{name}` is {} bytes; at most {MAX_OUTPUT_VALUE}",
                    value.len()
                ),
            ));
        }
    }
    let error = result
        .error
        .map(|e| readable(e.chars().take(4000).collect::<String>()));
    let mut outputs = serde_json::to_value(&result.outputs).unwrap_or_default();
    if let Some(facts) = &result.facts {
        // Kept with the outputs, where the health check reads them.
        if let (Some(map), Ok(facts)) = (outputs.as_object_mut(), serde_json::to_value(facts)) {
            map.insert("_facts".to_owned(), facts);
        }
    }
    // Names were checked above and hold no control character: only values need it.
    readable_json(&mut outputs);
    let state = match result.outcome {
        CommandOutcome::Succeeded => CommandState::Succeeded,
        CommandOutcome::Failed => CommandState::Failed,
        CommandOutcome::TimedOut => CommandState::TimedOut,
        CommandOutcome::Cancelled => CommandState::Cancelled,
    };
    let finish = Finish {
        state,
        exit_code: result.exit_code,
        error: error.as_deref(),
        outputs,
    };
    let report = mailbox::finish(&ctx.pools.api, auth.agent.id, id, &finish)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    reported(&ctx, id, report)
}

/// Answers a report; when the task's run waits on this node, wakes it now rather than
/// when the NOTIFY comes back from PostgreSQL.
fn reported(ctx: &NodeContext, id: i64, report: mailbox::Report) -> Result<StatusCode, ApiError> {
    if let Some(task_id) = report.changed_task {
        ctx.agents.tasks.wake(task_id);
    }
    refuse(id, report.standing)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/agent/commands/{id}/packages/{index}`: a package the command needs.
#[utoipa::path(get, path = "/api/agent/commands/{id}/packages/{index}", tag = "agent protocol",
    params(("id" = i64, Path), ("index" = usize, Path)), responses(
    (status = 200, description = "The package's bytes", content_type = "application/octet-stream"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn package(
    State(ctx): State<Arc<NodeContext>>,
    auth: AgentAuth,
    ApiPath((id, index)): ApiPath<(i64, usize)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (state, body) = mailbox::body(&ctx.pools.api, auth.agent.id, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .ok_or_else(|| ApiError::not_found(format!("this agent has no command {id}")))?;
    if !matches!(state, CommandState::Delivered | CommandState::Running) {
        return Err(ApiError::conflict(format!("command {id} is {state}")));
    }
    let wanted = match serde_json::from_value::<StoredCommand>(body) {
        Ok(StoredCommand::Script(script)) => script.packages.into_iter().nth(index),
        _ => None,
    }
    .ok_or_else(|| ApiError::not_found(format!("command {id} has no package {index}")))?;
    let row = crate::packages::find(&ctx, &wanted.id, &wanted.version).await?;
    if row.sha256 != wanted.sha256 {
        return Err(ApiError::conflict(format!(
            "package {} {} was replaced after the command was sent (sha256 now {})",
            wanted.id, wanted.version, row.sha256
        )));
    }
    super::packages::send_package(&ctx, &headers, &row).await
}
