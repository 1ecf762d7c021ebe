//! `/approvals`: the deployments waiting for approval that the viewer may see, each
//! with approve and deny (a denial must say why), and the approval rules.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::Response,
};
use capstan_api::{
    Problem,
    approvals::{ApprovalRuleList, AwaitingApproval, AwaitingApprovalList, DecisionRequest},
    deployments::DeploymentResponse,
};
use capstan_core::approval::Decision;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    admin::kit::{self, ListQuery},
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

/// A refusal of one deployment's decision, shown beside its form.
struct Refused {
    deployment: i64,
    note: String,
    problem: Problem,
}

/// `GET /approvals`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(&ui, &viewer, query.done.as_deref(), StatusCode::OK, None).await
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    done: Option<&str>,
    status: StatusCode,
    refused: Option<Refused>,
) -> Result<Response, UiError> {
    let awaiting: AwaitingApprovalList = ui.api.get(&viewer.caller, "/api/approvals").await?;
    let rules: ApprovalRuleList = ui.api.get(&viewer.caller, "/api/approval-rules").await?;
    let status = Some(status);
    Ok(kit::shown(
        status,
        approvals_page(viewer, &awaiting, &rules, done, refused.as_ref()),
    ))
}

fn approvals_page(
    viewer: &Viewer,
    awaiting: &AwaitingApprovalList,
    rules: &ApprovalRuleList,
    done: Option<&str>,
    refused: Option<&Refused>,
) -> Markup {
    page::page(
        "Approvals",
        viewer,
        Section::Approvals,
        html! {
            h1 { "Approvals" }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(refused) = refused
                && !awaiting.items.iter().any(|a| a.deployment.id == refused.deployment)
            {
                (page::problem_box(&refused.problem))
            }
            h2 id="awaiting" { "Waiting for approval" }
            @if awaiting.items.is_empty() {
                p { "No deployment is waiting for approval." }
            }
            @for item in &awaiting.items {
                (awaiting_item(viewer, item, refused.filter(|r| r.deployment == item.deployment.id)))
            }
            h2 id="rules" { "Approval rules" }
            @if rules.items.is_empty() {
                p { "No environment needs approvals." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th scope="col" { "Environment" }
                            th scope="col" { "Project" }
                            th scope="col" { "Approved by team" }
                            th scope="col" { "Approvals needed" }
                            th scope="col" { "Deployer may approve" }
                            th scope="col" { "Updated" }
                        } }
                        tbody {
                            @for rule in &rules.items {
                                tr {
                                    th scope="row" { (rule.environment) }
                                    td { (rule.project.as_deref().unwrap_or("every project")) }
                                    td { (rule.team) }
                                    td { (rule.needed) }
                                    td { (if rule.deployer_may_approve { "yes" } else { "no" }) }
                                    td { (page::time(rule.updated_at)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn awaiting_item(viewer: &Viewer, item: &AwaitingApproval, refused: Option<&Refused>) -> Markup {
    let deployment = &item.deployment;
    let heading = format!("deployment-{}-title", deployment.id);
    let note_id = format!("note-{}", deployment.id);
    let error_id = format!("note-{}-error", deployment.id);
    let problem = refused.map(|r| &r.problem);
    html! {
        section.awaiting id={ "deployment-" (deployment.id) } aria-labelledby=(heading) {
            h3 id=(heading) {
                (deployment.project) " " (deployment.release) " to " (deployment.environment)
            }
            p {
                "Deployment " (deployment.id) ", queued " (page::time(deployment.queued_at))
                @if let Some(by) = &item.queued_by { " by " (by) }
                ". " strong { (item.given) " of " (item.needed) } " approvals from team " (item.team)
                @if !item.deployer_may_approve { " (not from whoever queued it)" }
                "."
            }
            @if !item.approvals.is_empty() {
                ul {
                    @for approval in &item.approvals {
                        li {
                            (page::state(if approval.decision == Decision::Approve { "approved" } else { "denied" })) " by " (approval.by) " " (page::time(approval.at))
                            @if !approval.note.is_empty() { ": " q { (approval.note) } }
                        }
                    }
                }
            }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form method="post" action={ "/approvals/" (deployment.id) } {
                (page::csrf_field(viewer))
                label for=(note_id) { "Note (a denial must give one)" }
                textarea id=(note_id) name="note" rows="2" maxlength="4096"
                    aria-describedby=[kit::described_by(problem, "note", &error_id)] {
                    (refused.map(|r| r.note.as_str()).unwrap_or(""))
                }
                (kit::field_error(problem, "note", &error_id))
                p {
                    button type="submit" name="decision" value="approve" {
                        "Approve" span.visually-hidden { " deployment " (deployment.id) }
                    }
                    " "
                    button.danger type="submit" name="decision" value="deny" {
                        "Deny" span.visually-hidden { " deployment " (deployment.id) }
                    }
                }
            }
        }
    }
}

/// `POST /approvals/{deployment_id}`: approve or deny, as the form's button said.
pub(crate) async fn decide(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, UiError> {
    let decision = match form.decision.as_str() {
        "approve" | "deny" => form.decision.as_str(),
        other => {
            return Err(UiError::not_found(format!(
                "`{other}` is no decision: approve or deny"
            )));
        }
    };
    let note = form.note.trim().to_owned();
    let answer: Result<DeploymentResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            &format!("/api/deployments/{id}/{decision}"),
            &DecisionRequest { note: note.clone() },
        )
        .await;
    match answer {
        Ok(_) => {
            let done = if decision == "approve" {
                format!("Deployment {id} is approved by you.")
            } else {
                format!("Deployment {id} is denied, and cancelled.")
            };
            Ok(kit::done("/approvals", &done))
        }
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            let refused = Refused {
                deployment: id,
                note,
                problem,
            };
            shown(&ui, &viewer, None, status, Some(refused)).await
        }
    }
}
