//! `/agents`: every agent with its health, what its last check saw, when and through
//! which node it last polled, its tags and environment; disable, enable and delete
//! (after a confirmation), and a health check now (a `health-check` task for it).

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{AgentPage, AgentResponse, CreateTaskRequest, Problem, UpdateAgentRequest};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    admin::kit::{self, Confirm, ListQuery},
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Agents on one page of the list.
const PAGE_SIZE: u32 = 50;

/// `GET /agents`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(&ui, &viewer, &query, None).await
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    query: &ListQuery,
    refusal: Option<(StatusCode, Problem)>,
) -> Result<Response, UiError> {
    let mut path = format!("/api/agents?limit={PAGE_SIZE}");
    if let Some(cursor) = &query.cursor {
        path.push_str(&format!("&cursor={}", kit::escaped(cursor)));
    }
    let agents: AgentPage = ui.api.get(&viewer.caller, &path).await?;
    let status = refusal.as_ref().map(|(s, _)| *s);
    let problem = refusal.as_ref().map(|(_, p)| p);
    Ok(kit::shown(
        status,
        agents_page(viewer, &agents, query.done.as_deref(), problem),
    ))
}

fn agents_page(
    viewer: &Viewer,
    agents: &AgentPage,
    done: Option<&str>,
    problem: Option<&Problem>,
) -> Markup {
    page::page(
        "Agents",
        viewer,
        Section::Agents,
        html! {
            h1 { "Agents" }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            p.hint {
                "Agents register with a token from the "
                a href="/environments" { "environments page" }
                ". A disabled agent is refused by every node and gets no work; "
                "a health check asks the agent for its facts (version, system, host, shells, free disk)."
            }
            @if agents.items.is_empty() {
                p { "No agent has registered yet." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th scope="col" { "Agent" }
                            th scope="col" { "Health" }
                            th scope="col" { "Facts" }
                            th scope="col" { "Environment" }
                            th scope="col" { "Tags" }
                            th scope="col" { "Last seen" }
                            th scope="col" { "Polls node" }
                            th scope="col" { "Actions" }
                        } }
                        tbody { @for agent in &agents.items { (agent_row(viewer, agent)) } }
                    }
                }
            }
            (kit::next_page("/agents", agents.next.as_deref()))
        },
    )
}

fn agent_row(viewer: &Viewer, agent: &AgentResponse) -> Markup {
    html! {
        tr id={ "agent-" (agent.name) } {
            th scope="row" {
                (agent.name)
                @if agent.disabled { " " (page::state("disabled")) }
                br; small { "version " (agent.version) }
            }
            td {
                (page::state(agent.health.as_str()))
                br; small { "checked " (page::maybe_time(agent.health_checked_at)) }
            }
            td.facts {
                @match &agent.health_reason {
                    Some(reason) => { (reason) }
                    None => { span.none { "not checked yet" } }
                }
            }
            td { (agent.environment) }
            td {
                @if agent.tags.is_empty() { span.none { "—" } }
                @for tag in &agent.tags { span.tag { (tag) } " " }
            }
            td { (page::maybe_time(agent.last_seen)) }
            td { @match &agent.last_node { Some(node) => { (node) } None => { span.none { "—" } } } }
            td.actions {
                (action_button(viewer, agent, "check", "Check health"))
                @if agent.disabled {
                    (action_button(viewer, agent, "enable", "Enable"))
                } @else {
                    (action_button(viewer, agent, "disable", "Disable"))
                }
                (action_button(viewer, agent, "delete", "Delete"))
            }
        }
    }
}

fn action_button(viewer: &Viewer, agent: &AgentResponse, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/agents/" (agent.id) "/" (action) } {
            (page::csrf_field(viewer))
            button.secondary[action != "delete"].danger[action == "delete"] type="submit" {
                (label) " " span.visually-hidden { (agent.name) }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AgentAction {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /agents/{id}/{check|enable|disable|delete}`; disabling and deleting ask first.
pub(crate) async fn act(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<AgentAction>,
) -> Result<Response, UiError> {
    let agent: AgentResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/agents/{id}"))
        .await?;
    let name = &agent.name;
    let question = match action.as_str() {
        "disable" => Some(format!(
            "Disable {name}? Every node refuses it and it gets no work until enabled again."
        )),
        "delete" => Some(format!(
            "Delete {name}? Its credential stops working at once; to come back it must register again with a new token."
        )),
        "check" | "enable" => None,
        other => {
            return Err(UiError::not_found(format!(
                "an agent has no action `{other}`: check, enable, disable or delete"
            )));
        }
    };
    if let Some(question) = question
        && form.confirm.as_deref() != Some("yes")
    {
        let confirm = Confirm {
            section: Section::Agents,
            question,
            action: format!("/agents/{id}/{action}"),
            fields: Vec::new(),
            yes: format!("Yes, {action} {name}"),
            cancel: "/agents",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let caller = viewer.submitting(&form.csrf_token);
    let path = format!("/api/agents/{id}");
    let answer = match action.as_str() {
        "check" => {
            let task =
                CreateTaskRequest::new("health-check", serde_json::json!({ "agents": [name] }));
            ui.api
                .act(&caller, Method::POST, "/api/tasks", Some(&task))
                .await
                .map(|answer| {
                    let id = answer
                        .json::<serde_json::Value>()
                        .ok()
                        .and_then(|task| task.get("id").and_then(serde_json::Value::as_i64));
                    match id {
                        Some(id) => format!("A health check of {name} is queued (task {id})."),
                        None => format!("A health check of {name} is queued."),
                    }
                })
        }
        "delete" => ui
            .api
            .act(&caller, Method::DELETE, &path, None::<&()>)
            .await
            .map(|_| format!("{name} is deleted.")),
        _ => {
            let disabled = action == "disable";
            let request = UpdateAgentRequest {
                disabled: Some(disabled),
                ..Default::default()
            };
            ui.api
                .send::<_, AgentResponse>(&caller, Method::PATCH, &path, &request)
                .await
                .map(|_| {
                    if disabled {
                        format!("{name} is disabled.")
                    } else {
                        format!("{name} is enabled.")
                    }
                })
        }
    };
    match answer {
        Ok(done) => Ok(kit::done("/agents", &done)),
        Err(error) => {
            let refusal = kit::refusal(error)?;
            shown(&ui, &viewer, &ListQuery::default(), Some(refusal)).await
        }
    }
}
