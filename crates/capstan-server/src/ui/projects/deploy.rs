//! A release's page: what it froze, and the form that deploys it to an environment,
//! to all its targets or only some, then on to the deployment's page.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::Method,
    response::{IntoResponse, Response},
};
use capstan_api::{
    EnvironmentList, Problem, ProjectResponse, ReleaseResponse, VariablesResponse,
    deployments::CreateDeploymentRequest,
};
use maud::{Markup, html};

use super::{
    Done, described_by, field_problems, form_value, form_values, names_in, process, project,
    refusal, trail, variables,
};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

/// `GET /projects/{id}/releases/{release}`.
pub(crate) async fn release(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, release)): Path<(i64, i64)>,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    let (project, release, environments) = read(&ui, &viewer, id, release).await?;
    Ok(release_page(
        &viewer,
        &project,
        &release,
        &environments,
        done.done.as_deref(),
        &[],
        None,
    )
    .into_response())
}

async fn read(
    ui: &Ui,
    viewer: &Viewer,
    id: i64,
    release: i64,
) -> Result<(ProjectResponse, ReleaseResponse, EnvironmentList), UiError> {
    let project = project(ui, viewer, id).await?;
    let release: ReleaseResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/releases/{release}"))
        .await?;
    if release.summary.project_id != id {
        return Err(UiError::not_found(format!(
            "release {} is not a release of {}",
            release.summary.id, project.name
        )));
    }
    let environments: EnvironmentList = ui.api.get(&viewer.caller, "/api/environments").await?;
    Ok((project, release, environments))
}

/// `POST /projects/{id}/releases/{release}/deploy`: queues the deployment and goes to
/// its page.
pub(crate) async fn deploy(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, release)): Path<(i64, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let request = CreateDeploymentRequest {
        release_id: Some(release),
        project_id: Some(id),
        environment: form_value(&form, "environment")
            .unwrap_or_default()
            .to_owned(),
        targets: names_in(form_value(&form, "targets").unwrap_or_default()),
        exclude_targets: names_in(form_value(&form, "exclude_targets").unwrap_or_default()),
        skip_steps: form_values(&form, "skip_steps")
            .map(str::to_owned)
            .collect(),
        guided_failure: form_value(&form, "guided_failure") == Some("on"),
        ..CreateDeploymentRequest::default()
    };
    let token = form_value(&form, "csrf_token").unwrap_or_default();
    let answer: Result<serde_json::Value, _> = ui
        .api
        .send(
            &viewer.submitting(token),
            Method::POST,
            "/api/deployments",
            &request,
        )
        .await;
    match answer {
        Ok(deployment) => match deployment.get("id").and_then(serde_json::Value::as_i64) {
            Some(deployment) => Ok(see_other(&format!("/deployments/{deployment}"))),
            None => Err(UiError::Internal(
                "the API queued a deployment but did not say its id".to_owned(),
            )),
        },
        Err(error) => {
            let (status, problem) = refusal(error)?;
            let (project, release, environments) = read(&ui, &viewer, id, release).await?;
            let shown = release_page(
                &viewer,
                &project,
                &release,
                &environments,
                None,
                &form,
                Some(&problem),
            );
            Ok((status, shown).into_response())
        }
    }
}

fn release_page(
    viewer: &Viewer,
    project: &ProjectResponse,
    release: &ReleaseResponse,
    environments: &EnvironmentList,
    done: Option<&str>,
    typed: &[(String, String)],
    problem: Option<&Problem>,
) -> Markup {
    let version = &release.summary.version;
    page::page(
        &format!("{} {}", project.name, version),
        viewer,
        Section::Projects,
        html! {
            (trail(project, Some(&format!("Release {version}"))))
            h1 { "Release " (version) " of " (project.name) }
            @if let Some(done) = done { (page::notice(done)) }
            dl.facts {
                dt { "Created" } dd { (page::time(release.summary.created_at)) }
                dt { "Process version" } dd { (release.process_version) }
                dt { "Variables version" } dd { (release.variables_version) }
                @if !release.summary.notes.is_empty() {
                    dt { "Notes" } dd { (release.summary.notes) }
                }
            }
            (deploy_form(viewer, project, release, environments, typed, problem))
            @if !release.packages.is_empty() {
                h2 { "Packages" }
                div.table-wrap {
                    table #release-packages {
                        thead { tr {
                            th scope="col" { "Step" }
                            th scope="col" { "Action" }
                            th scope="col" { "Package" }
                            th scope="col" { "Version" }
                        } }
                        tbody {
                            @for package in &release.packages {
                                tr {
                                    td { (package.step) }
                                    td { (package.action) }
                                    th scope="row" { code { (package.package_id) } }
                                    td { (package.version) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Process" }
            (process::outline(&release.steps, None))
            h2 { "Variables" }
            (variables::variables(&VariablesResponse {
                project_id: project.id,
                version: release.variables_version,
                variables: release.variables.clone(),
            }))
        },
    )
}

fn deploy_form(
    viewer: &Viewer,
    project: &ProjectResponse,
    release: &ReleaseResponse,
    environments: &EnvironmentList,
    typed: &[(String, String)],
    problem: Option<&Problem>,
) -> Markup {
    let chosen = form_value(typed, "environment");
    let skipped: Vec<&str> = form_values(typed, "skip_steps").collect();
    let environment_problems = page::errors_of(problem, "environment");
    let targets_problems = page::errors_of(problem, "targets");
    let exclude_problems = page::errors_of(problem, "exclude_targets");
    let skip_problems = page::errors_of(problem, "skip_steps");
    html! {
        section.panel aria-labelledby="deploy-heading" {
            h2 id="deploy-heading" { "Deploy" }
            @if let Some(problem) = problem { div #deploy-form-problem { (page::problem_box(problem)) } }
            @if environments.items.is_empty() {
                p.none { "There is no environment to deploy to yet." }
            } @else {
                form #deploy-form method="post"
                    action={ "/projects/" (project.id) "/releases/" (release.summary.id) "/deploy" } {
                    (page::csrf_field(viewer))
                    label for="deploy-environment" { "Environment" }
                    select #deploy-environment name="environment" required
                        aria-describedby=[described_by("deploy-environment", &environment_problems)] {
                        @for environment in &environments.items {
                            option value=(environment.name)
                                selected[chosen == Some(environment.name.as_str())] { (environment.name) }
                        }
                    }
                    (field_problems("deploy-environment", &environment_problems))
                    label for="deploy-targets" { "Only these targets" }
                    p.hint id="deploy-targets-hint" { "Agent names, separated by commas; empty: every target of the environment." }
                    input #deploy-targets name="targets" type="text"
                        value=[form_value(typed, "targets")]
                        aria-describedby={ "deploy-targets-hint" @if let Some(e) = described_by("deploy-targets", &targets_problems) { " " (e) } };
                    (field_problems("deploy-targets", &targets_problems))
                    label for="deploy-exclude" { "Leave out these targets" }
                    p.hint id="deploy-exclude-hint" { "Agent names, separated by commas." }
                    input #deploy-exclude name="exclude_targets" type="text"
                        value=[form_value(typed, "exclude_targets")]
                        aria-describedby={ "deploy-exclude-hint" @if let Some(e) = described_by("deploy-exclude", &exclude_problems) { " " (e) } };
                    (field_problems("deploy-exclude", &exclude_problems))
                    @if !release.steps.is_empty() {
                        fieldset #deploy-skip-steps {
                            legend { "Skip steps" }
                            @for (n, step) in release.steps.iter().enumerate() {
                                div.check {
                                    input type="checkbox" id={ "deploy-skip-" (n) } name="skip_steps" value=(step.name)
                                        checked[skipped.contains(&step.name.as_str())];
                                    label for={ "deploy-skip-" (n) } { (step.name) }
                                }
                            }
                            (field_problems("deploy-skip-steps", &skip_problems))
                        }
                    }
                    div.check {
                        input #deploy-guided type="checkbox" name="guided_failure"
                            checked[form_value(typed, "guided_failure") == Some("on")];
                        label for="deploy-guided" { "Guided failure: ask an operator on every failure" }
                    }
                    p.actions {
                        button #deploy-submit type="submit" { "Deploy " (release.summary.version) }
                    }
                }
            }
        }
    }
}
