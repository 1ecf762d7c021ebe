//! `/tasks/{id}/log`: a task's log, its last lines rendered here (readable without
//! JavaScript, with a link to page back), then kept live by `assets/log.js`: new lines
//! over server-sent events from the tail's end, earlier ones fetched a page at a time
//! as the reader scrolls up. However long the log, the page holds a few thousand lines
//! at most. [`panel`] is the same view for another page to embed.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use capstan_api::{TaskLogLine, TaskLogPage, TaskResponse};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui, ansi, assets,
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Lines the page shows at first, and each page back holds.
pub(crate) const PAGE_LINES: u32 = 500;

#[derive(Debug, Deserialize)]
pub(crate) struct LogQuery {
    /// Show the lines before this offset instead of the tail (paging back without
    /// JavaScript).
    before: Option<u64>,
}

/// `GET /tasks/{id}/log`.
pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<LogQuery>,
) -> Result<Response, UiError> {
    let task: TaskResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/tasks/{id}"))
        .await?;
    let range = match query.before {
        Some(before) => format!("before={before}&lines={PAGE_LINES}"),
        None => format!("tail={PAGE_LINES}"),
    };
    let lines: TaskLogPage = ui
        .api
        .get(&viewer.caller, &format!("/api/tasks/{id}/log?{range}"))
        .await?;
    let title = format!("Log of task {id}");
    Ok(page::page(
        &title,
        &viewer,
        Section::Tasks,
        html! {
            h1 { (title) }
            p.log-task {
                "A " code { (task.kind) } " task, " (page::state(task.state.as_str()))
                @if let Some(node) = &task.node_name { " on " (node) }
                @if let Some(error) = &task.error { ": " (error) }
            }
            (filled_panel(id, &lines, query.before.is_none()))
        },
    )
    .into_response())
}

/// The log of task `task_id` for another page to embed: its script fetches the last
/// lines and follows. Without JavaScript it offers the log's own page.
pub(crate) fn panel(task_id: i64) -> Markup {
    frame(task_id, None, true)
}

/// The panel with `lines` rendered in it; `at_tail` if they are the log's last lines
/// (the script then follows from their end).
fn filled_panel(task_id: i64, lines: &TaskLogPage, at_tail: bool) -> Markup {
    frame(task_id, Some(lines), at_tail)
}

fn frame(task_id: i64, lines: Option<&TaskLogPage>, at_tail: bool) -> Markup {
    let label = format!("Log of task {task_id}");
    html! {
        section.log-panel aria-label=(label)
            data-task-id=(task_id)
            data-page-lines=(PAGE_LINES)
            data-loaded=(lines.is_some())
            data-at-tail=(at_tail)
            data-start=[lines.map(|l| l.start)]
            data-end=[lines.map(|l| l.end)]
            data-more-before=[lines.map(|l| l.more_before)]
            data-complete=[lines.map(|l| l.complete)] {
            div.log-toolbar {
                @match lines {
                    Some(page) if page.more_before => {
                        a.log-earlier.button href=(format!("/tasks/{task_id}/log?before={}", page.start)) {
                            "Load earlier lines"
                        }
                    }
                    Some(_) => {
                        span.log-earlier.log-at-start { "Start of the log" }
                    }
                    None => {
                        a.log-earlier.button href=(format!("/tasks/{task_id}/log")) { "Load earlier lines" }
                    }
                }
                button.log-follow type="button" aria-pressed="true" hidden { "Stop following" }
                @if !at_tail {
                    a.button href=(format!("/tasks/{task_id}/log")) { "Latest lines" }
                }
                span.log-status role="status" aria-live="polite" {
                    @match lines {
                        Some(page) if page.complete => "Finished",
                        Some(_) if at_tail => "Not following (JavaScript is off)",
                        _ => "",
                    }
                }
                a.log-raw href=(format!("/api/tasks/{task_id}/log")) { "Whole log as text" }
            }
            div.log-view role="log" aria-live="off" tabindex="0" aria-label=(label) {
                @if let Some(page) = lines {
                    @if page.lines.is_empty() {
                        p.log-empty { "Nothing logged yet." }
                    }
                    @for line in &page.lines { (line_html(line)) }
                } @else {
                    noscript { p { a href=(format!("/tasks/{task_id}/log")) { "Open the log" } } }
                }
            }
        }
        script src=(assets::url("log.js")) defer {}
    }
}

/// One line: its time and level apart, its text with colours as classes.
fn line_html(line: &TaskLogLine) -> Markup {
    let mut parts = line.text.splitn(3, ' ');
    let (time, level, text) = (parts.next(), parts.next(), parts.next());
    html! {
        div.log-line data-start=(line.offset_start) data-end=(line.offset_end) {
            @match (time, level, text) {
                (Some(time), Some(level), Some(text)) => {
                    span.log-time { (time) } " "
                    span class=(format!("log-level log-level-{}", level.to_ascii_lowercase())) { (level) } " "
                    span.log-text { (ansi::to_html(text)) }
                }
                _ => { span.log-text { (ansi::to_html(&line.text)) } }
            }
        }
    }
}
