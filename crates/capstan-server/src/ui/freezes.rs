//! `/freezes`: freeze windows (fixed or recurring), whether each is open now and when
//! it opens next; create one with a form, delete one after a confirmation.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    Problem,
    freezes::{FreezeKind, FreezeList, FreezeRequest, FreezeResponse},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    admin::kit::{self, Confirm, ListQuery},
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FreezeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// `fixed` or `recurring`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    projects: String,
    #[serde(default)]
    environments: String,
}

impl FreezeForm {
    fn request(&self) -> FreezeRequest {
        let recurring = self.kind == "recurring";
        let when = |text: &str, wanted: bool| if wanted { kit::filled(text) } else { None };
        FreezeRequest {
            name: self.name.trim().to_owned(),
            description: self.description.trim().to_owned(),
            start: when(&self.start, !recurring),
            end: when(&self.end, !recurring),
            cron: when(&self.cron, recurring),
            duration: when(&self.duration, recurring),
            time_zone: when(&self.time_zone, recurring),
            projects: kit::names(&self.projects),
            environments: kit::names(&self.environments),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Confirmed {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

enum Refused<'a> {
    Nothing,
    Create(&'a FreezeForm, Problem),
    Other(Problem),
}

/// `GET /freezes`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(
        &ui,
        &viewer,
        query.done.as_deref(),
        StatusCode::OK,
        Refused::Nothing,
    )
    .await
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    done: Option<&str>,
    status: StatusCode,
    refused: Refused<'_>,
) -> Result<Response, UiError> {
    let freezes: FreezeList = ui.api.get(&viewer.caller, "/api/freezes").await?;
    Ok((status, freezes_page(viewer, &freezes.items, done, &refused)).into_response())
}

fn scope(names: &[String], every: &str) -> String {
    if names.is_empty() {
        every.to_owned()
    } else {
        names.join(", ")
    }
}

fn freezes_page(
    viewer: &Viewer,
    freezes: &[FreezeResponse],
    done: Option<&str>,
    refused: &Refused<'_>,
) -> Markup {
    let empty = FreezeForm::default();
    let (form, problem) = match refused {
        Refused::Create(form, problem) => (*form, Some(problem)),
        _ => (&empty, None),
    };
    let recurring = form.kind == "recurring";
    page::page(
        "Freeze windows",
        viewer,
        Section::Freezes,
        html! {
            h1 { "Freeze windows" }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Refused::Other(problem) = refused { (page::problem_box(problem)) }
            p.hint {
                "While a window is open, deployments to its projects and environments wait for it to close "
                "(or are refused, if asked so); an override needs the override_freeze permission."
            }
            @if freezes.is_empty() {
                p { "No freeze window is set." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th scope="col" { "Window" }
                            th scope="col" { "Projects" }
                            th scope="col" { "Environments" }
                            th scope="col" { "When" }
                            th scope="col" { "Now" }
                            th scope="col" { "Next opens" }
                            th scope="col" { "Actions" }
                        } }
                        tbody { @for freeze in freezes { (freeze_row(viewer, freeze)) } }
                    }
                }
            }
            h2 id="new-freeze" { "New freeze window" }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form.panel method="post" action="/freezes" aria-labelledby="new-freeze" {
                (page::csrf_field(viewer))
                (text_field(problem, "name", "Name", &form.name, true, None))
                (text_field(problem, "description", "Description", &form.description, false, None))
                fieldset {
                    legend { "Kind" }
                    label.check { input type="radio" name="kind" value="fixed" checked[!recurring]; " Fixed: from a start to an end" }
                    label.check { input type="radio" name="kind" value="recurring" checked[recurring]; " Recurring: a cron schedule and a duration" }
                }
                fieldset {
                    legend { "Fixed window" }
                    (text_field(problem, "start", "Start (RFC 3339)", &form.start, false, Some("2026-12-24T00:00:00+01:00")))
                    (text_field(problem, "end", "End (RFC 3339)", &form.end, false, Some("2026-12-27T00:00:00+01:00")))
                }
                fieldset {
                    legend { "Recurring window" }
                    (text_field(problem, "cron", "Cron (minute hour day month weekday)", &form.cron, false, Some("0 18 * * 5")))
                    (text_field(problem, "duration", "Duration", &form.duration, false, Some("62h")))
                    (text_field(problem, "time_zone", "Time zone", &form.time_zone, false, Some("Europe/Berlin")))
                }
                (text_field(problem, "projects", "Projects (comma-separated; empty: every project)", &form.projects, false, None))
                (text_field(problem, "environments", "Environments (comma-separated; empty: every environment)", &form.environments, false, None))
                p { button type="submit" { "Create freeze window" } }
            }
        },
    )
}

/// A labelled text input with its errors beside it.
fn text_field(
    problem: Option<&Problem>,
    name: &str,
    label: &str,
    value: &str,
    required: bool,
    example: Option<&str>,
) -> Markup {
    let id = format!("freeze-{name}");
    let error_id = format!("freeze-{name}-error");
    html! {
        label for=(id) { (label) }
        input id=(id) name=(name) value=(value) required[required] placeholder=[example]
            aria-describedby=[kit::described_by(problem, name, &error_id)];
        (kit::field_error(problem, name, &error_id))
    }
}

fn freeze_row(viewer: &Viewer, freeze: &FreezeResponse) -> Markup {
    html! {
        tr id={ "freeze-" (freeze.name) } {
            th scope="row" {
                (freeze.name)
                @if !freeze.description.is_empty() { br; small { (freeze.description) } }
            }
            td { (scope(&freeze.projects, "every project")) }
            td { (scope(&freeze.environments, "every environment")) }
            td {
                @match freeze.kind {
                    FreezeKind::Fixed => {
                        (page::maybe_time(freeze.start)) " to " (page::maybe_time(freeze.end))
                    }
                    FreezeKind::Recurring => {
                        code { (freeze.cron.as_deref().unwrap_or("")) }
                        " for " (freeze.duration.as_deref().unwrap_or(""))
                        " (" (freeze.time_zone.as_deref().unwrap_or("UTC")) ")"
                    }
                }
            }
            td {
                @match freeze.open_until {
                    Some(until) => { (page::state("frozen")) br; small { "until " (page::time(until)) } }
                    None => { (page::state("open")) }
                }
            }
            td { (page::maybe_time(freeze.next_start)) }
            td {
                form.inline method="post" action={ "/freezes/" (freeze.id) "/delete" } {
                    (page::csrf_field(viewer))
                    button.danger type="submit" { "Delete " span.visually-hidden { (freeze.name) } }
                }
            }
        }
    }
}

/// `POST /freezes`.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<FreezeForm>,
) -> Result<Response, UiError> {
    let answer: Result<FreezeResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/freezes",
            &form.request(),
        )
        .await;
    match answer {
        Ok(freeze) => Ok(kit::done(
            "/freezes",
            &format!("Freeze window {} is created.", freeze.name),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Create(&form, problem)).await
        }
    }
}

/// `POST /freezes/{id}/delete`, after a confirmation.
pub(crate) async fn delete(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    let freeze: FreezeResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/freezes/{id}"))
        .await?;
    let name = &freeze.name;
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Freezes,
            question: format!(
                "Delete the freeze window {name}? Deployments it holds may start at once."
            ),
            action: format!("/freezes/{id}/delete"),
            fields: Vec::new(),
            yes: format!("Yes, delete {name}"),
            cancel: "/freezes",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("/api/freezes/{id}"),
            None::<&()>,
        )
        .await;
    match answer {
        Ok(_) => Ok(kit::done(
            "/freezes",
            &format!("Freeze window {name} is deleted."),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Other(problem)).await
        }
    }
}
