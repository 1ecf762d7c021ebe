//! `/tasks`: the queue (each queued task's place in line and why it has not started,
//! in words), the running tasks and their nodes, and the history with its filters and
//! pages; cancelling a queued or running task after a confirmation.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{Problem, TaskPage, TaskResponse};
use capstan_core::TaskState;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    caller::Viewer,
    dashboard::{bad_request, given, number, query, refusal},
    error::{UiError, see_other},
    page::{self, Section},
};

/// Queued and running tasks shown at once; more are a link away.
const SHOWN: u32 = 100;
const DEFAULT_HISTORY: u32 = 50;
const MAX_PAGE: i64 = 500;

/// The page's query; text, so that a bad value is shown as a problem.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    /// History filters.
    state: Option<String>,
    kind: Option<String>,
    node: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    /// The queue's next page.
    queue_cursor: Option<String>,
    done: Option<String>,
}

/// The history's filters, checked.
#[derive(Debug)]
struct History {
    state: Option<TaskState>,
    kind: Option<String>,
    node: Option<String>,
    limit: u32,
    cursor: Option<String>,
}

impl History {
    fn read(params: &Params) -> Result<Self, Problem> {
        let state = given(params.state.as_deref())
            .map(|s| {
                TaskState::ALL
                    .into_iter()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| {
                        bad_request(format!(
                            "`{s}` is not a task state: queued, running, succeeded, failed or cancelled"
                        ))
                    })
            })
            .transpose()?;
        let limit = match number(params.limit.as_deref(), "limit")? {
            None => DEFAULT_HISTORY,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n as u32,
            Some(n) => {
                return Err(bad_request(format!(
                    "the page size must be from 1 to {MAX_PAGE}, not {n}"
                )));
            }
        };
        Ok(Self {
            state,
            kind: given(params.kind.as_deref()).map(str::to_owned),
            node: given(params.node.as_deref()).map(str::to_owned),
            limit,
            cursor: given(params.cursor.as_deref()).map(str::to_owned),
        })
    }

    fn api_path(&self) -> String {
        format!(
            "/api/tasks{}",
            query(&[
                ("state", self.state.map(TaskState::as_str)),
                ("kind", self.kind.as_deref()),
                ("node", self.node.as_deref()),
                ("limit", Some(&self.limit.to_string())),
                ("cursor", self.cursor.as_deref()),
            ])
        )
    }

    /// This page's address with these filters, on the history page `cursor` starts.
    fn address(&self, cursor: Option<&str>) -> String {
        let limit = (self.limit != DEFAULT_HISTORY).then(|| self.limit.to_string());
        format!(
            "/tasks{}#history",
            query(&[
                ("state", self.state.map(TaskState::as_str)),
                ("kind", self.kind.as_deref()),
                ("node", self.node.as_deref()),
                ("limit", limit.as_deref()),
                ("cursor", cursor),
            ])
        )
    }
}

/// A list the page shows, or the API's refusal of it.
type Shown = Result<TaskPage, (StatusCode, Problem)>;

async fn fetch(ui: &Ui, viewer: &Viewer, path: &str) -> Result<Shown, UiError> {
    match ui.api.get::<TaskPage>(&viewer.caller, path).await {
        Ok(page) => Ok(Ok(page)),
        Err(error) => refusal(error).map(Err),
    }
}

/// `GET /tasks`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, UiError> {
    tasks_page(&ui, &viewer, &params, None).await
}

async fn tasks_page(
    ui: &Ui,
    viewer: &Viewer,
    params: &Params,
    problem: Option<(StatusCode, Problem)>,
) -> Result<Response, UiError> {
    let queue_cursor = given(params.queue_cursor.as_deref());
    let queue = fetch(
        ui,
        viewer,
        &format!(
            "/api/tasks{}",
            query(&[
                ("state", Some("queued")),
                ("limit", Some(&SHOWN.to_string())),
                ("cursor", queue_cursor),
            ])
        ),
    )
    .await?;
    let running = fetch(
        ui,
        viewer,
        &format!("/api/tasks?state=running&limit={SHOWN}"),
    )
    .await?;
    let history = History::read(params);
    let history_page = match &history {
        Ok(history) => fetch(ui, viewer, &history.api_path()).await?,
        Err(problem) => Err((StatusCode::BAD_REQUEST, problem.clone())),
    };
    let status = problem
        .as_ref()
        .map(|(status, _)| *status)
        .or_else(|| history_page.as_ref().err().map(|(status, _)| *status))
        .unwrap_or(StatusCode::OK);
    let history = history.unwrap_or(History {
        state: None,
        kind: None,
        node: None,
        limit: DEFAULT_HISTORY,
        cursor: None,
    });
    let body = html! {
        h1 { "Tasks" }
        @if let Some(done) = given(params.done.as_deref()) { (page::notice(done)) }
        @if let Some((_, problem)) = &problem { (page::problem_box(problem)) }
        section aria-labelledby="queue-heading" {
            h2 id="queue-heading" { "Queue" }
            (queue_table(viewer, &queue, queue_cursor.is_some()))
        }
        section aria-labelledby="running-heading" {
            h2 id="running-heading" { "Running" }
            (running_table(viewer, &running))
        }
        (history_section(&history, &history_page))
    };
    Ok((status, page::page("Tasks", viewer, Section::Tasks, body)).into_response())
}

/// What a task does, linked where there is a page for it.
fn what(task: &TaskResponse) -> Markup {
    let deployment = (task.kind == "deploy")
        .then(|| {
            task.args
                .get("deployment_id")
                .and_then(serde_json::Value::as_i64)
        })
        .flatten();
    html! {
        code { (task.kind) }
        @if let Some(deployment) = deployment {
            " " a href={ "/deployments/" (deployment) } { "deployment " (deployment) }
        }
    }
}

fn task_link(task: &TaskResponse) -> Markup {
    html! { a href={ "/tasks/" (task.id) "/log" } { "Task " (task.id) } }
}

fn refused_box((status, problem): &(StatusCode, Problem)) -> Markup {
    html! {
        (page::problem_box(problem))
        p.hint { "The node answered " (status.as_u16()) "." }
    }
}

fn queue_table(viewer: &Viewer, queue: &Shown, later_page: bool) -> Markup {
    let page = match queue {
        Ok(page) => page,
        Err(refused) => return refused_box(refused),
    };
    let mut tasks: Vec<&TaskResponse> = page.items.iter().collect();
    // In line order: the API lists newest first.
    tasks.sort_by_key(|t| (t.blocked_by.as_ref().map_or(0, |b| b.position), t.id));
    html! {
        @if tasks.is_empty() {
            p.none { "Nothing waits." }
        } @else {
            div.table-wrap {
                table.tasks-queue {
                    thead { tr {
                        th scope="col" { "Place" }
                        th scope="col" { "Task" }
                        th scope="col" { "What" }
                        th scope="col" { "Queued" }
                        th scope="col" { "Why it waits" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for task in &tasks {
                            tr id={ "task-" (task.id) } {
                                td.position {
                                    @match &task.blocked_by {
                                        Some(blocked) => (ordinal(blocked.position)),
                                        None => "—",
                                    }
                                }
                                th scope="row" { (task_link(task)) }
                                td { (what(task)) }
                                td { (page::time(task.queued_at)) }
                                td.why { (why(task)) }
                                td { (cancel_form(viewer, task)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages of the queue" {
            @if later_page { a href="/tasks" { "Start of the queue" } }
            @if let Some(next) = &page.next {
                a href={ "/tasks" (query(&[("queue_cursor", Some(next))])) } { "More of the queue" }
            }
        }
    }
}

/// Why a queued task has not started, in words: its place behind others, and the
/// reasons.
fn why(task: &TaskResponse) -> Markup {
    let Some(blocked) = &task.blocked_by else {
        return html! { "Being claimed now." };
    };
    let behind = if blocked.ahead.is_empty() {
        String::new()
    } else {
        let ids: Vec<String> = blocked.ahead.iter().map(i64::to_string).collect();
        let more = (blocked.position as usize)
            .saturating_sub(1)
            .saturating_sub(blocked.ahead.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let tasks = if ids.len() == 1 { "task" } else { "tasks" };
        format!("Behind {tasks} {}{more}. ", ids.join(", "))
    };
    html! {
        (behind)
        @if blocked.reasons.len() > 1 {
            ul.reasons { @for reason in &blocked.reasons { li { (reason.in_words()) } } }
        } @else {
            (sentence(&blocked.summary))
        }
    }
}

/// `text` with a capital first letter and a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn cancel_form(viewer: &Viewer, task: &TaskResponse) -> Markup {
    html! {
        @if task.cancel_requested {
            span.hint { "Cancel requested" }
        } @else {
            form.inline method="post" action={ "/tasks/" (task.id) "/cancel" } {
                (page::csrf_field(viewer))
                button.secondary type="submit" {
                    "Cancel" span.visually-hidden { " task " (task.id) }
                }
            }
        }
    }
}

fn running_table(viewer: &Viewer, running: &Shown) -> Markup {
    let page = match running {
        Ok(page) => page,
        Err(refused) => return refused_box(refused),
    };
    html! {
        @if page.items.is_empty() {
            p.none { "Nothing runs." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Task" }
                        th scope="col" { "What" }
                        th scope="col" { "Node" }
                        th scope="col" { "Started" }
                        th scope="col" { "Attempt" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for task in &page.items {
                            tr id={ "task-" (task.id) } {
                                th scope="row" { (task_link(task)) }
                                td { (what(task)) }
                                td { (task.node_name.as_deref().unwrap_or("—")) }
                                td { (page::maybe_time(task.started_at)) }
                                td { (task.attempt) }
                                td { (cancel_form(viewer, task)) }
                            }
                        }
                    }
                }
            }
            @if page.next.is_some() {
                p.hint { "More than " (SHOWN) " tasks run; the history lists them all (state running)." }
            }
        }
    }
}

fn history_section(history: &History, shown: &Shown) -> Markup {
    html! {
        section id="history" aria-labelledby="history-heading" {
            h2 id="history-heading" { "History" }
            form.filters method="get" action="/tasks" hx-get="/tasks"
                hx-select="#history" hx-target="#history" hx-swap="outerHTML" hx-push-url="true" {
                div {
                    label for="state" { "State" }
                    select id="state" name="state" {
                        option value="" { "Any state" }
                        @for state in TaskState::ALL {
                            option value=(state.as_str()) selected[history.state == Some(state)] { (state.as_str()) }
                        }
                    }
                }
                div {
                    label for="kind" { "Kind" }
                    input id="kind" name="kind" type="text" maxlength="100" value=[history.kind.as_deref()];
                }
                div {
                    label for="node" { "Node" }
                    input id="node" name="node" type="text" maxlength="200" value=[history.node.as_deref()];
                }
                div {
                    label for="limit" { "Per page" }
                    input id="limit" name="limit" type="number" min="1" max=(MAX_PAGE) value=(history.limit);
                }
                div { button type="submit" { "Show" } }
            }
            @match shown {
                Err(refused) => (refused_box(refused)),
                Ok(page) => (history_table(history, page)),
            }
        }
    }
}

fn history_table(history: &History, page: &TaskPage) -> Markup {
    html! {
        @if page.items.is_empty() {
            p.none { "No task matches." }
        } @else {
            div.table-wrap {
                table.tasks-history {
                    thead { tr {
                        th scope="col" { "Task" }
                        th scope="col" { "What" }
                        th scope="col" { "State" }
                        th scope="col" { "Node" }
                        th scope="col" { "Queued" }
                        th scope="col" { "Finished" }
                        th scope="col" { "Error" }
                    } }
                    tbody {
                        @for task in &page.items {
                            tr {
                                th scope="row" { (task_link(task)) }
                                td { (what(task)) }
                                td { (page::state(task.state.as_str())) }
                                td { (task.node_name.as_deref().unwrap_or("—")) }
                                td { (page::time(task.queued_at)) }
                                td { (page::maybe_time(task.finished_at)) }
                                td { (task.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages of the history" {
            @if history.cursor.is_some() {
                a href=(history.address(None)) { "Newest" }
            }
            @if let Some(next) = &page.next {
                a href=(history.address(Some(next))) rel="next" { "Older" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CancelForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /tasks/{id}/cancel`: first a confirmation page, then the cancel.
pub(crate) async fn cancel(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CancelForm>,
) -> Result<Response, UiError> {
    let task: TaskResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/tasks/{id}"))
        .await?;
    if form.confirm.as_deref() != Some("yes") {
        return Ok(confirmation(&viewer, &task).into_response());
    }
    let answer = ui
        .api
        .act::<()>(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            None,
        )
        .await;
    match answer {
        Ok(answer) => {
            let done = if answer.status == StatusCode::ACCEPTED {
                format!("Task {id} is running; its node is stopping it.")
            } else {
                format!("Task {id} is cancelled.")
            };
            Ok(see_other(&format!(
                "/tasks{}",
                query(&[("done", Some(&done))])
            )))
        }
        Err(error) => {
            let refused = refusal(error)?;
            tasks_page(&ui, &viewer, &Params::default(), Some(refused)).await
        }
    }
}

fn confirmation(viewer: &Viewer, task: &TaskResponse) -> Markup {
    let running = task.state == TaskState::Running;
    page::page(
        "Confirm",
        viewer,
        Section::Tasks,
        html! {
            h1 { "Confirm" }
            section.confirm aria-labelledby="question" {
                p id="question" {
                    "Cancel task " (task.id) " (" (what(task)) ")? "
                    @if running {
                        "It runs on " (task.node_name.as_deref().unwrap_or("a node"))
                        "; its node stops it."
                    } @else {
                        "It leaves the queue and never starts."
                    }
                }
                form method="post" action={ "/tasks/" (task.id) "/cancel" } {
                    (page::csrf_field(viewer))
                    input type="hidden" name="confirm" value="yes";
                    button.danger type="submit" autofocus { "Yes, cancel task " (task.id) }
                    " "
                    a.button.secondary href="/tasks" { "Keep it" }
                }
            }
        },
    )
}
