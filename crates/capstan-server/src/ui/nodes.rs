//! `/nodes`: every node with its state, cap, running tasks and last heartbeat; drain,
//! undrain and set the cap, each after a confirmation (a page of its own, so it works
//! without JavaScript).

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{NodeResponse, Problem, UpdateNodeRequest};
use capstan_core::TaskCap;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    Ui,
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// `GET /nodes`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    let nodes: Vec<NodeResponse> = ui.api.get(&viewer.caller, "/api/nodes").await?;
    Ok(nodes_page(&viewer, &nodes, done.done.as_deref(), None).into_response())
}

fn nodes_page(
    viewer: &Viewer,
    nodes: &[NodeResponse],
    done: Option<&str>,
    problem: Option<&Problem>,
) -> Markup {
    page::page(
        "Nodes",
        viewer,
        Section::Nodes,
        html! {
            h1 { "Nodes" }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            p.hint {
                "A draining node takes no new tasks and answers its load balancer's ping with 418; "
                "the tasks it runs finish. A cap of 0 makes a node serve the API and pages only."
            }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Node" }
                        th scope="col" { "State" }
                        th scope="col" { "Running" }
                        th scope="col" { "Task cap" }
                        th scope="col" { "Last heartbeat" }
                        th scope="col" { "Version" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for node in nodes { (node_row(viewer, node)) }
                    }
                }
            }
        },
    )
}

fn node_state(node: &NodeResponse) -> &'static str {
    match (node.online, node.draining) {
        (false, _) => "offline",
        (true, true) => "draining",
        (true, false) => "online",
    }
}

fn node_row(viewer: &Viewer, node: &NodeResponse) -> Markup {
    html! {
        tr id={ "node-" (node.name) } {
            th scope="row" { (node.name) br; small { (node.url) } }
            td { (page::state(node_state(node))) }
            td { (node.running_tasks) }
            td {
                form.inline method="post" action={ "/nodes/" (node.id) "/cap" } {
                    (page::csrf_field(viewer))
                    label.visually-hidden for={ "cap-" (node.id) } { "Task cap of " (node.name) }
                    input id={ "cap-" (node.id) } name="task_cap" type="number" min="0" max="1000"
                        value=(node.task_cap) required;
                    button type="submit" { "Set cap" }
                }
            }
            td { (page::time(node.last_seen)) }
            td { (node.version) }
            td {
                form.inline method="post" action={ "/nodes/" (node.id) (if node.draining { "/undrain" } else { "/drain" }) } {
                    (page::csrf_field(viewer))
                    button type="submit" {
                        (if node.draining { "Undrain " } else { "Drain " })
                        span.visually-hidden { (node.name) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NodeAction {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    task_cap: Option<String>,
}

/// What an action asks of the API, and how the page says it.
struct Change {
    request: UpdateNodeRequest,
    question: String,
    done: String,
}

fn change(action: &str, name: &str, task_cap: Option<&str>) -> Result<Change, UiError> {
    match action {
        "drain" => Ok(Change {
            request: UpdateNodeRequest {
                draining: Some(true),
                task_cap: None,
            },
            question: format!(
                "Drain {name}? It stops taking tasks and its ping answers 418, so the load balancer takes it out; the tasks it runs finish."
            ),
            done: format!("{name} is draining."),
        }),
        "undrain" => Ok(Change {
            request: UpdateNodeRequest {
                draining: Some(false),
                task_cap: None,
            },
            question: format!("Undrain {name}? It takes tasks and traffic again."),
            done: format!("{name} takes tasks again."),
        }),
        "cap" => {
            let text = task_cap.unwrap_or_default().trim();
            let cap = text
                .parse::<i64>()
                .ok()
                .and_then(|n| TaskCap::new(n).ok())
                .ok_or_else(|| {
                    UiError::refused(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("the task cap must be a whole number from 0 to 1000, not `{text}`"),
                    )
                })?;
            Ok(Change {
                request: UpdateNodeRequest {
                    draining: None,
                    task_cap: Some(cap),
                },
                question: format!(
                    "Set the task cap of {name} to {cap}? Above the tasks it runs now, it claims more at once; below, the running ones finish and it claims no more until under the cap."
                ),
                done: format!("{name} now runs at most {cap} tasks at once."),
            })
        }
        other => Err(UiError::not_found(format!(
            "a node has no action `{other}`: drain, undrain or cap"
        ))),
    }
}

/// `POST /nodes/{id}/{drain|undrain|cap}`: first a confirmation page, then the change.
pub(crate) async fn act(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, action)): Path<(Uuid, String)>,
    Form(form): Form<NodeAction>,
) -> Result<Response, UiError> {
    let node: NodeResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/nodes/{id}"))
        .await?;
    let change = match change(&action, &node.name, form.task_cap.as_deref()) {
        Ok(change) => change,
        Err(refusal) => return shown_with(&ui, &viewer, refusal).await,
    };
    if form.confirm.as_deref() != Some("yes") {
        return Ok(confirmation(&viewer, &node, &action, &form, &change.question).into_response());
    }
    let answer: Result<NodeResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::PATCH,
            &format!("/api/nodes/{id}"),
            &change.request,
        )
        .await;
    match answer {
        Ok(_) => {
            let done: String =
                url::form_urlencoded::byte_serialize(change.done.as_bytes()).collect();
            Ok(see_other(&format!("/nodes?done={done}")))
        }
        Err(refusal) => shown_with(&ui, &viewer, refusal).await,
    }
}

/// The nodes page again, with the refusal above it.
async fn shown_with(ui: &Ui, viewer: &Viewer, refusal: UiError) -> Result<Response, UiError> {
    let status = match &refusal {
        UiError::Problem { status, .. } => *status,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let problem = refusal.into_problem()?;
    let nodes: Vec<NodeResponse> = ui.api.get(&viewer.caller, "/api/nodes").await?;
    Ok((status, nodes_page(viewer, &nodes, None, Some(&problem))).into_response())
}

fn confirmation(
    viewer: &Viewer,
    node: &NodeResponse,
    action: &str,
    form: &NodeAction,
    question: &str,
) -> Markup {
    page::page(
        "Confirm",
        viewer,
        Section::Nodes,
        html! {
            h1 { "Confirm" }
            section.confirm aria-labelledby="question" {
                p id="question" { (question) }
                form method="post" action={ "/nodes/" (node.id) "/" (action) } {
                    (page::csrf_field(viewer))
                    input type="hidden" name="confirm" value="yes";
                    @if let Some(cap) = &form.task_cap {
                        input type="hidden" name="task_cap" value=(cap);
                    }
                    button type="submit" autofocus { "Yes, " (action) " " (node.name) }
                    " "
                    a.button.secondary href="/nodes" { "Cancel" }
                }
            }
        },
    )
}
