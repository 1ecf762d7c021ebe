//! `/audit`: the audit log, newest first, with the API's filters (actor, action,
//! object, project, environment, time range) and its pages. Sensitive values arrive
//! from the API already reduced to "changed" or "unchanged".

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use capstan_api::{AuditEvent, AuditPage, Problem, audit::MAX_PAGE};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    caller::Viewer,
    dashboard::{bad_request, given, number, query, refusal},
    error::UiError,
    page::{self, Section},
};

const DEFAULT_PAGE: u32 = 50;
/// The most of a row's before or after the page shows; the API has the rest.
const MAX_SHOWN_CHANGE: usize = 4000;
const ACTOR_KINDS: [&str; 6] = [
    "person",
    "service",
    "admin_key",
    "agent",
    "anonymous",
    "system",
];

/// The page's query, as the form sends it (text, so that a bad value is shown as a
/// problem).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    actor: Option<String>,
    actor_kind: Option<String>,
    action: Option<String>,
    object_kind: Option<String>,
    object_id: Option<String>,
    project_id: Option<String>,
    environment_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The filters as the API takes them, by name, in the form's order.
struct Filters {
    pairs: Vec<(&'static str, Option<String>)>,
    limit: u32,
    cursor: Option<String>,
}

impl Filters {
    fn read(params: &Params) -> Result<Self, Problem> {
        let text = |t: &Option<String>| given(t.as_deref()).map(str::to_owned);
        let id = |t: &Option<String>, field| {
            number(t.as_deref(), field).map(|n| n.map(|n| n.to_string()))
        };
        let limit = match number(params.limit.as_deref(), "limit")? {
            None => DEFAULT_PAGE,
            Some(n) if (1..=i64::from(MAX_PAGE)).contains(&n) => n as u32,
            Some(n) => {
                return Err(bad_request(format!(
                    "the page size must be from 1 to {MAX_PAGE}, not {n}"
                )));
            }
        };
        Ok(Self {
            pairs: vec![
                ("actor", text(&params.actor)),
                ("actor_kind", text(&params.actor_kind)),
                ("action", text(&params.action)),
                ("object_kind", text(&params.object_kind)),
                ("object_id", text(&params.object_id)),
                ("project_id", id(&params.project_id, "project_id")?),
                (
                    "environment_id",
                    id(&params.environment_id, "environment_id")?,
                ),
                ("since", given(params.since.as_deref()).map(instant)),
                ("until", given(params.until.as_deref()).map(instant)),
            ],
            limit,
            cursor: text(&params.cursor),
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn with(&self, limit: Option<String>, cursor: Option<&str>) -> String {
        let mut pairs: Vec<(&str, Option<&str>)> =
            self.pairs.iter().map(|(n, v)| (*n, v.as_deref())).collect();
        pairs.push(("limit", limit.as_deref()));
        pairs.push(("cursor", cursor));
        query(&pairs)
    }

    fn api_path(&self) -> String {
        format!(
            "/api/audit{}",
            self.with(Some(self.limit.to_string()), self.cursor.as_deref())
        )
    }

    fn address(&self, cursor: Option<&str>) -> String {
        let limit = (self.limit != DEFAULT_PAGE).then(|| self.limit.to_string());
        format!("/audit{}", self.with(limit, cursor))
    }
}

/// A time as typed: RFC 3339 as it is; a date, or a date and minute as a browser's
/// date-time field gives it, read as UTC.
fn instant(text: &str) -> String {
    let text = text.trim();
    match text.len() {
        10 => format!("{text}T00:00:00Z"),
        16 => format!("{text}:00Z"),
        _ => text.to_owned(),
    }
}

/// `GET /audit`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, UiError> {
    let filters = Filters::read(&params);
    let shown: Result<AuditPage, (StatusCode, Problem)> = match &filters {
        Ok(filters) => match ui.api.get(&viewer.caller, &filters.api_path()).await {
            Ok(page) => Ok(page),
            Err(error) => Err(refusal(error)?),
        },
        Err(problem) => Err((StatusCode::BAD_REQUEST, problem.clone())),
    };
    let status = shown.as_ref().err().map_or(StatusCode::OK, |(s, _)| *s);
    let filters = filters.unwrap_or_else(|_| Filters {
        pairs: Vec::new(),
        limit: DEFAULT_PAGE,
        cursor: None,
    });
    let body = html! {
        h1 { "Audit log" }
        (filter_form(&filters, &params))
        div id="audit-results" {
            @match &shown {
                Err((status, problem)) => {
                    (page::problem_box(problem))
                    p.hint { "The node answered " (status.as_u16()) "." }
                }
                Ok(page) => (table(&filters, page)),
            }
        }
    };
    Ok((
        status,
        page::page("Audit log", &viewer, Section::Audit, body),
    )
        .into_response())
}

fn filter_form(filters: &Filters, params: &Params) -> Markup {
    // Times are shown as typed, not as sent.
    let typed = |t: &Option<String>| given(t.as_deref()).map(str::to_owned);
    let field = |name: &str, label: &str, hint: Option<&str>| {
        html! {
            div {
                label for=(name) { (label) }
                input id=(name) name=(name) type="text" maxlength="200"
                    value=[filters.get(name)] placeholder=[hint];
            }
        }
    };
    html! {
        form.filters method="get" action="/audit" hx-get="/audit" hx-select="#audit-results"
            hx-target="#audit-results" hx-swap="outerHTML" hx-push-url="true" {
            (field("actor", "Actor", Some("Whole name")))
            div {
                label for="actor_kind" { "Actor kind" }
                select id="actor_kind" name="actor_kind" {
                    option value="" { "Any" }
                    @for kind in ACTOR_KINDS {
                        option value=(kind) selected[filters.get("actor_kind") == Some(kind)] { (kind) }
                    }
                }
            }
            (field("action", "Action", Some("deployment or deployment.cancel")))
            (field("object_kind", "Object kind", Some("project, deployment, …")))
            (field("object_id", "Object id", None))
            (field("project_id", "Project id", None))
            (field("environment_id", "Environment id", None))
            div {
                label for="since" { "Since" }
                input id="since" name="since" type="text" maxlength="40"
                    value=[typed(&params.since)] placeholder="2026-12-01 or RFC 3339";
            }
            div {
                label for="until" { "Until" }
                input id="until" name="until" type="text" maxlength="40"
                    value=[typed(&params.until)] placeholder="2026-12-31 or RFC 3339";
            }
            div {
                label for="limit" { "Per page" }
                input id="limit" name="limit" type="number" min="1" max=(MAX_PAGE) value=(filters.limit);
            }
            div { button type="submit" { "Show" } }
        }
        p.hint { "Times are UTC. Every filter given must match." }
    }
}

fn table(filters: &Filters, page: &AuditPage) -> Markup {
    html! {
        @if page.items.is_empty() {
            p.notice role="status" { "No row matches." }
        } @else {
            div.table-wrap {
                table.audit {
                    thead { tr {
                        th scope="col" { "When" }
                        th scope="col" { "Actor" }
                        th scope="col" { "Action" }
                        th scope="col" { "Object" }
                        th scope="col" { "Change" }
                    } }
                    tbody {
                        @for event in &page.items { (row(event)) }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if filters.cursor.is_some() { a href=(filters.address(None)) { "Newest" } }
            @if let Some(next) = &page.next {
                a href=(filters.address(Some(next))) rel="next" { "Older" }
            }
        }
    }
}

fn row(event: &AuditEvent) -> Markup {
    let actor = &event.actor;
    html! {
        tr id={ "audit-" (event.id) } {
            td { (page::time(event.at)) }
            th scope="row" {
                (actor.name)
                br;
                small {
                    (actor.kind) " · " (actor.method)
                    @if let Some(address) = &actor.address { " · " (address) }
                }
            }
            td { code { (event.action) } }
            td { (object(event)) }
            td { (change(event)) }
        }
    }
}

/// The object, linked to its page where it has one.
fn object(event: &AuditEvent) -> Markup {
    let object = &event.object;
    let href = object
        .id
        .as_deref()
        .and_then(|id| match object.kind.as_str() {
            "project" => Some(format!("/projects/{id}")),
            "deployment" => Some(format!("/deployments/{id}")),
            "task" => Some(format!("/tasks/{id}/log")),
            _ => None,
        });
    let label = html! {
        (object.kind)
        @if let Some(id) = &object.id { " " (id) }
    };
    html! {
        @match href {
            Some(href) => a href=(href) { (label) },
            None => (label),
        }
        @if let Some(name) = &object.name { br; small { (name) } }
    }
}

fn change(event: &AuditEvent) -> Markup {
    if event.before.is_none() && event.after.is_none() {
        return html! { span.none { "—" } };
    }
    html! {
        details {
            summary { "Before and after" span.visually-hidden { " of row " (event.id) } }
            @if let Some(before) = &event.before {
                p { strong { "Before" } }
                pre.change { (shown(before)) }
            }
            @if let Some(after) = &event.after {
                p { strong { "After" } }
                pre.change { (shown(after)) }
            }
        }
    }
}

fn shown(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() > MAX_SHOWN_CHANGE {
        let mut end = MAX_SHOWN_CHANGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n… (the API's GET /api/audit has the rest)");
    }
    text
}
