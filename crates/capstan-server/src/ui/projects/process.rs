//! A project's process: its steps and their actions in words, and the editor. The
//! editor holds the steps as JSON; on save the API checks them, and each problem it
//! names (`steps[1].window_size`) is shown beside that step's field in the outline
//! under the editor, while the text typed stays in the editor.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    Problem, ProcessResponse, ProjectResponse, Warning,
    projects::{Action, FailurePolicy, LockScope, RunCondition, StartTrigger, Step},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Done, project, refusal, trail, with_notice};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

/// The longest piece of a script the outline shows; the editor has all of it.
const SHOWN_SCRIPT_CHARS: usize = 400;

/// `GET /projects/{id}/process`: the editor, holding the saved steps.
pub(crate) async fn edit_process(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(done): Query<Done>,
) -> Result<Response, UiError> {
    let project = project(&ui, &viewer, id).await?;
    let process: ProcessResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/projects/{id}/process"))
        .await?;
    let text = serde_json::to_string_pretty(&process.steps)
        .map_err(|e| UiError::Internal(format!("the process could not be shown: {e}")))?;
    let editing = Editing {
        version: process.version,
        text,
        steps: Some(process.steps),
        warnings: process.warnings,
        problem: None,
    };
    Ok(editor(&viewer, &project, &editing, done.done.as_deref()).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProcessForm {
    #[serde(default)]
    csrf_token: String,
    version: i64,
    #[serde(default)]
    steps: String,
}

/// `POST /projects/{id}/process`: saves the steps typed, or shows the editor again
/// with them and the problems found.
pub(crate) async fn save_process(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<ProcessForm>,
) -> Result<Response, UiError> {
    let project = project(&ui, &viewer, id).await?;
    // Browsers send line ends as CRLF; JSON does not care, but the text shown again
    // should be what was typed.
    let text = form.steps.replace("\r\n", "\n");
    let steps: serde_json::Value = match serde_json::from_str(&text) {
        Ok(steps) => steps,
        Err(e) => {
            let problem = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY.as_u16(),
                "The steps are not valid JSON",
                format!(
                    "line {}, column {}: {}",
                    e.line(),
                    e.column(),
                    malformed_reason(&e)
                ),
            );
            return Ok(again(&viewer, &project, form.version, text, problem));
        }
    };
    let body = serde_json::json!({ "version": form.version, "steps": steps });
    let answer = ui
        .api
        .send::<_, ProcessResponse>(
            &viewer.submitting(&form.csrf_token),
            Method::PUT,
            &format!("/api/projects/{id}/process"),
            &body,
        )
        .await;
    match answer {
        Ok(saved) => {
            let notice = if saved.warnings.is_empty() {
                format!("Process saved (version {}).", saved.version)
            } else {
                format!(
                    "Process saved (version {}), with {} warning(s).",
                    saved.version,
                    saved.warnings.len()
                )
            };
            Ok(see_other(&with_notice(
                &format!("/projects/{id}/process"),
                &notice,
            )))
        }
        Err(error) => {
            let (status, problem) = refusal(error)?;
            let mut shown = again(&viewer, &project, form.version, text, problem);
            *shown.status_mut() = status;
            Ok(shown)
        }
    }
}

/// serde's message without its own "at line … column …", which the page says first.
fn malformed_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The editor shown again with the text typed and its problem (422).
fn again(
    viewer: &Viewer,
    project: &ProjectResponse,
    version: i64,
    text: String,
    problem: Problem,
) -> Response {
    let steps = serde_json::from_str::<Vec<Step>>(&text).ok();
    let editing = Editing {
        version,
        text,
        steps,
        warnings: Vec::new(),
        problem: Some(problem),
    };
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        editor(viewer, project, &editing, None),
    )
        .into_response()
}

/// What the editor shows.
struct Editing {
    version: i64,
    text: String,
    /// The steps the text holds, when it holds steps.
    steps: Option<Vec<Step>>,
    warnings: Vec<Warning>,
    problem: Option<Problem>,
}

fn editor(
    viewer: &Viewer,
    project: &ProjectResponse,
    editing: &Editing,
    done: Option<&str>,
) -> Markup {
    let problem = editing.problem.as_ref();
    page::page(
        &format!("Process of {}", project.name),
        viewer,
        Section::Projects,
        html! {
            (trail(project, Some("Process")))
            h1 { "Process of " (project.name) }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            @if problem.is_some_and(|p| p.status == StatusCode::CONFLICT.as_u16()) {
                p #process-outdated {
                    "Someone saved the process after this text was loaded. Copy what you need, then "
                    a href={ "/projects/" (project.id) "/process" } { "open the version saved since" }
                    " and make the change there."
                }
            }
            (warnings(&editing.warnings))
            div.process-editor {
                        form #process-form method="post" action={ "/projects/" (project.id) "/process" } {
                (page::csrf_field(viewer))
                input type="hidden" name="version" value=(editing.version);
                label for="process-steps" { "Steps (JSON)" }
                p.hint id="process-steps-hint" {
                    "A list of steps, each with its name, target_tags and actions; see docs/projects.md. "
                    "Saving checks everything and names each problem beside its step. "
                    "Based on version " (editing.version) ": if someone saves first, this save is refused "
                    "and the text kept, so nothing is overwritten."
                }
                textarea #process-steps name="steps" rows="30" spellcheck="false"
                    aria-describedby="process-steps-hint"
                    aria-invalid=[problem.map(|_| "true")] {
                    (editing.text)
                }
                p.actions {
                    button #process-save type="submit" { "Save process" }
                    " "
                    a.button.secondary href={ "/projects/" (project.id) } { "Back to the project" }
                }
            }
            section.process-outline aria-labelledby="process-outline-heading" {
                h2 id="process-outline-heading" { "Steps" }
                @match &editing.steps {
                    Some(steps) => (outline(steps, problem)),
                    None => p.none { "The text does not hold a list of steps yet; fix it and save to see them here." },
                }
            }
            }
        },
    )
}

fn warnings(warnings: &[Warning]) -> Markup {
    html! {
        @if !warnings.is_empty() {
            div.warnings role="status" {
                p { strong { "Saved, but probably wrong:" } }
                ul {
                    @for warning in warnings {
                        li { code { (warning.field) } ": " (warning.detail) }
                    }
                }
            }
        }
    }
}

/// The steps in words, each field with the problems the API found in it. Also the
/// read-only view on the project's page (with no problems).
pub(super) fn outline(steps: &[Step], problem: Option<&Problem>) -> Markup {
    let whole = exact_errors(problem, "steps");
    html! {
        @if steps.is_empty() {
            p.none { "No steps yet: a release of this project would do nothing." }
        }
        @if !whole.is_empty() {
            (details_errors(&whole))
        }
        ol.steps {
            @for (i, step) in steps.iter().enumerate() {
                li { (step_outline(i, step, problem)) }
            }
        }
    }
}

fn step_outline(i: usize, step: &Step, problem: Option<&Problem>) -> Markup {
    let at = |field: &str| format!("steps[{i}].{field}");
    let id = |field: &str| format!("step-{i}-{field}");
    let own = exact_errors(problem, &format!("steps[{i}]"));
    let failed = !page::errors_of(problem, &format!("steps[{i}]")).is_empty();
    html! {
        section.step.has-error[failed] id={ "step-" (i) } aria-labelledby={ "step-" (i) "-title" }
            data-field={ "steps[" (i) "]" } {
            h3 id={ "step-" (i) "-title" } { "Step " (i + 1) ": " (step.name) }
            (details_errors(&own))
            dl.fields {
                (row(&id("name"), "Name", html! { (step.name) }, problem, &at("name")))
                (row(&id("target_tags"), "Runs on targets tagged", tags(&step.target_tags), problem, &at("target_tags")))
                (row(&id("start_trigger"), "Starts", html! { (start_trigger(step.start_trigger)) }, problem, &at("start_trigger")))
                (row(&id("run_condition"), "Runs", run_condition(&step.run_condition), problem, &at("run_condition")))
                (row(&id("window_size"), "Rolling window", html! { (limit(step.window_size, "all targets at once")) }, problem, &at("window_size")))
                (row(&id("max_parallelism"), "Most targets at once", html! { (limit(step.max_parallelism, "no limit")) }, problem, &at("max_parallelism")))
                (row(&id("failure_policy"), "On failure", html! { (failure_policy(&step.failure_policy)) }, problem, &at("failure_policy")))
                (row(&id("lock"), "Lock", html! { (lock(step)) }, problem, &at("lock")))
                (row(&id("timeout"), "Action timeout", html! { (step.timeout.as_deref().unwrap_or("1h (default)")) }, problem, &at("timeout")))
                (row(&id("bypass_machine_mutex"), "Machine mutex", html! {
                    (if step.bypass_machine_mutex { "bypassed" } else { "taken (one deployment per target at a time)" })
                }, problem, &at("bypass_machine_mutex")))
            }
            @let actions_own = exact_errors(problem, &at("actions"));
            (details_errors(&actions_own))
            ol.actions {
                @for (a, action) in step.actions.iter().enumerate() {
                    li { (action_outline(i, a, action, problem)) }
                }
            }
        }
    }
}

fn action_outline(i: usize, a: usize, action: &Action, problem: Option<&Problem>) -> Markup {
    let path = format!("steps[{i}].actions[{a}]");
    let at = |field: &str| format!("{path}.{field}");
    let id = |field: &str| format!("step-{i}-action-{a}-{field}");
    let own = exact_errors(problem, &path);
    html! {
        section.action id={ "step-" (i) "-action-" (a) } data-field=(path)
            aria-label={ "Action " (a + 1) " of step " (i + 1) } {
            h4 { "Action " (a + 1) ": " (action.display_name(a)) }
            (details_errors(&own))
            dl.fields {
                (row(&id("name"), "Name", html! { (action.name().unwrap_or("(none)")) }, problem, &at("name")))
                @match action {
                    Action::Script { syntax, body, .. } => {
                        (row(&id("kind"), "Kind", html! { "script (" (syntax.as_str()) ")" }, problem, &at("syntax")))
                        (row(&id("body"), "Script", script(body), problem, &at("body")))
                    }
                    Action::Package { package_id, version, version_rule, syntax, deploy_script, acquisition_parallelism, .. } => {
                        (row(&id("kind"), "Kind", html! { "package (" (syntax.as_str()) ")" }, problem, &at("syntax")))
                        (row(&id("package_id"), "Package", html! { code { (package_id) } }, problem, &at("package_id")))
                        (row(&id("version"), "Version", html! { (version.as_deref().unwrap_or("picked by the rule")) }, problem, &at("version")))
                        (row(&id("version_rule"), "Version rule", html! { (version_rule.as_deref().unwrap_or("newest")) }, problem, &at("version_rule")))
                        (row(&id("deploy_script"), "Deploy script", script(deploy_script), problem, &at("deploy_script")))
                        (row(&id("acquisition_parallelism"), "Most fetching at once", html! { (limit(*acquisition_parallelism, "no limit")) }, problem, &at("acquisition_parallelism")))
                    }
                    Action::ManualIntervention { instructions, responsible_role, .. } => {
                        (row(&id("kind"), "Kind", html! { "manual intervention" }, problem, &at("kind")))
                        (row(&id("instructions"), "Instructions", html! { (instructions) }, problem, &at("instructions")))
                        (row(&id("responsible_role"), "Answered by", html! { (responsible_role.as_deref().unwrap_or("anyone allowed")) }, problem, &at("responsible_role")))
                    }
                }
            }
        }
    }
}

/// One field of the outline: its name, its value, and the problems the API found in
/// it (or in fields inside it) right beside it.
fn row(id: &str, label: &str, value: Markup, problem: Option<&Problem>, field: &str) -> Markup {
    let problems = page::errors_of(problem, field);
    html! {
        div.field.has-error[!problems.is_empty()] id=(id) data-field=(field) {
            dt { (label) }
            dd {
                (value)
                @if !problems.is_empty() {
                    @for detail in &problems {
                        p.field-error id={ (id) "-error" } {
                            span.visually-hidden { (label) ": " }
                            (detail)
                        }
                    }
                }
            }
        }
    }
}

/// Problems named at exactly this path (not at a field inside it).
fn exact_errors(problem: Option<&Problem>, path: &str) -> Vec<String> {
    problem
        .map(page::field_errors)
        .unwrap_or_default()
        .into_iter()
        .filter(|(field, _)| field == path)
        .map(|(_, detail)| detail)
        .collect()
}

fn details_errors(problems: &[String]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div.field-errors { @for detail in problems { p.field-error { (detail) } } }
        }
    }
}

fn tags(tags: &[String]) -> Markup {
    html! {
        @if tags.is_empty() {
            span.none { "no tags: it runs nowhere" }
        } @else {
            @for (n, tag) in tags.iter().enumerate() {
                @if n > 0 { " or " }
                code.tag { (tag) }
            }
        }
    }
}

fn start_trigger(trigger: StartTrigger) -> &'static str {
    match trigger {
        StartTrigger::AfterPrevious => "after the previous steps finish",
        StartTrigger::WithPrevious => "together with the previous step",
    }
}

fn run_condition(condition: &RunCondition) -> Markup {
    html! {
        @match condition {
            RunCondition::Success => "only if every earlier step succeeded",
            RunCondition::Failure => "only if an earlier step failed",
            RunCondition::Always => "always",
            RunCondition::Variable { expression } => { "if " code { (expression) } " is true" }
        }
    }
}

fn limit(value: Option<u32>, otherwise: &str) -> String {
    value.map_or_else(|| otherwise.to_owned(), |n| n.to_string())
}

fn failure_policy(policy: &FailurePolicy) -> String {
    match policy {
        FailurePolicy::Fail => "the step fails".to_owned(),
        FailurePolicy::Guided => "ask an operator".to_owned(),
        FailurePolicy::Continue { max_failed_targets } => {
            let budget = serde_json::to_value(max_failed_targets)
                .map(|v| match v {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                })
                .unwrap_or_default();
            format!("carry on while at most {budget} targets fail")
        }
    }
}

fn lock(step: &Step) -> String {
    match &step.lock {
        None => "none".to_owned(),
        Some(lock) => format!(
            "{} (per {})",
            lock.name,
            match lock.scope {
                LockScope::Machine => "machine",
                LockScope::Environment => "environment",
            }
        ),
    }
}

fn script(body: &str) -> Markup {
    let shown: String = body.chars().take(SHOWN_SCRIPT_CHARS).collect();
    let cut = shown.len() < body.len();
    html! {
        pre.script { (shown) @if cut { "\n…" } }
    }
}
