//! `/deployments/{id}`: one deployment with its step × target grid, live over
//! server-sent events ([`events`]); its open interventions answered with a button per
//! answer; cancel after a confirmation. Without JavaScript the page is whole too: the
//! forms post and redirect, and a link reloads it.

mod events;
mod render;

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    AuditPage, Problem,
    deployments::{AnswerRequest, DeploymentResponse, StopRequest},
};
use capstan_core::deployment::InterventionAnswer;
use maud::{Markup, html};
use serde::Deserialize;

pub(crate) use events::stream;

use super::{
    Ui, assets,
    caller::{Caller, Viewer},
    error::{UiError, see_other},
    page::{self, Section},
};
use render::Rendered;

#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// The deployment as the API shows it to `caller`.
async fn read(ui: &Ui, caller: &Caller, id: i64) -> Result<DeploymentResponse, UiError> {
    ui.api.get(caller, &format!("/api/deployments/{id}")).await
}

/// Who queued the deployment, from the audit log; nothing when the caller may not read
/// the log or the row is gone.
async fn queued_by(ui: &Ui, caller: &Caller, id: i64) -> Option<String> {
    let page: AuditPage = ui
        .api
        .get(
            caller,
            &format!(
                "/api/audit?object_kind=deployment&object_id={id}&action=deployment.create&limit=1"
            ),
        )
        .await
        .ok()?;
    page.items.into_iter().next().map(|row| row.actor.name)
}

/// `GET /deployments/{id}`.
pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    let deployment = read(&ui, &viewer.caller, id).await?;
    let by = queued_by(&ui, &viewer.caller, id).await;
    Ok(deployment_page(
        &viewer,
        &deployment,
        by.as_deref(),
        done.done.as_deref(),
        None,
    )
    .into_response())
}

fn deployment_page(
    viewer: &Viewer,
    deployment: &DeploymentResponse,
    queued_by: Option<&str>,
    done: Option<&str>,
    problem: Option<&Problem>,
) -> Markup {
    let d = &deployment.summary;
    let rendered = Rendered::of(deployment, viewer, queued_by);
    let title = format!("Deployment {}", d.id);
    page::page(
        &title,
        viewer,
        Section::Projects,
        html! {
            h1 { "Deployment " (d.id) ": " (d.project) " " (d.release) " to " (d.environment) }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            p.live-bar {
                span id="live" role="status" aria-live="polite" data-state="static" {
                    "Not live: this page shows the deployment as it was when loaded."
                }
                " "
                a href={ "/deployments/" (d.id) } id="refresh" { "Refresh" }
            }
            div id="deployment-header" { (maud::PreEscaped(&rendered.header)) }
            div id="interventions" { (maud::PreEscaped(&rendered.interventions)) }
            h2 { "Steps and targets" }
            div.table-wrap id="grid" data-events={ "/deployments/" (d.id) "/events" }
                data-version=(rendered.version()) data-finished=(rendered.finished) {
                (render::grid(deployment, &rendered))
            }
            h2 { "Log" }
            (super::task_log::panel(d.task_id))
            script src=(assets::url("grid.js")) defer {}
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct CancelForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    note: String,
}

/// `POST /deployments/{id}/cancel`: a confirmation first, then the cancel.
pub(crate) async fn cancel(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CancelForm>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        let deployment = read(&ui, &viewer.caller, id).await?;
        return Ok(confirm_cancel(&viewer, &deployment).into_response());
    }
    let answer: Result<DeploymentResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            &format!("/api/deployments/{id}/cancel"),
            &StopRequest { note: form.note },
        )
        .await;
    match answer {
        Ok(_) => Ok(see_other(&format!(
            "/deployments/{id}?done=The+deployment+is+cancelled."
        ))),
        Err(refusal) => shown_with(&ui, &viewer, id, refusal).await,
    }
}

fn confirm_cancel(viewer: &Viewer, deployment: &DeploymentResponse) -> Markup {
    let d = &deployment.summary;
    page::page(
        "Confirm",
        viewer,
        Section::Projects,
        html! {
            h1 { "Confirm" }
            section.confirm aria-labelledby="question" {
                p id="question" {
                    "Cancel deployment " (d.id) " of " (d.project) " " (d.release) " to "
                    (d.environment) "? Scripts running now are stopped on their agents; "
                    "what has run stays done."
                }
                form method="post" action={ "/deployments/" (d.id) "/cancel" } {
                    (page::csrf_field(viewer))
                    input type="hidden" name="confirm" value="yes";
                    label for="cancel-note" { "Note (optional)" }
                    input id="cancel-note" name="note" type="text" maxlength="4096";
                    p {
                        button.danger type="submit" id="confirm-cancel" autofocus { "Yes, cancel deployment " (d.id) }
                        " "
                        a.button.secondary href={ "/deployments/" (d.id) } { "No, keep it running" }
                    }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnswerForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    note: String,
}

/// `POST /deployments/{id}/interventions/{iid}`: the answer of the button pressed.
pub(crate) async fn answer(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, question)): Path<(i64, i64)>,
    Form(form): Form<AnswerForm>,
) -> Result<Response, UiError> {
    let Ok(answer) = form.answer.parse::<InterventionAnswer>() else {
        let refusal = UiError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`{}` is not an answer; use retry, ignore, exclude, fail, proceed or abort",
                form.answer
            ),
        );
        return shown_with(&ui, &viewer, id, refusal).await;
    };
    let answered: Result<DeploymentResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            &format!("/api/deployments/{id}/interventions/{question}"),
            &AnswerRequest {
                answer,
                note: form.note,
            },
        )
        .await;
    match answered {
        Ok(_) => {
            let done = format!("Intervention {question} answered: {}.", answer.as_str());
            let done: String = url::form_urlencoded::byte_serialize(done.as_bytes()).collect();
            Ok(see_other(&format!("/deployments/{id}?done={done}")))
        }
        Err(refusal) => shown_with(&ui, &viewer, id, refusal).await,
    }
}

/// The deployment page again, with the refusal above it and the API's status.
async fn shown_with(
    ui: &Ui,
    viewer: &Viewer,
    id: i64,
    refusal: UiError,
) -> Result<Response, UiError> {
    let status = match &refusal {
        UiError::Problem { status, .. } => *status,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let problem = refusal.into_problem()?;
    let deployment = read(ui, &viewer.caller, id).await?;
    let by = queued_by(ui, &viewer.caller, id).await;
    Ok((
        status,
        deployment_page(viewer, &deployment, by.as_deref(), None, Some(&problem)),
    )
        .into_response())
}
