//! `/lifecycles`: each lifecycle with its phases (environments, the rule that completes
//! a phase, whether it deploys by itself, what it keeps); create one, or change one,
//! with a form whose fields show the API's problems beside them.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    Problem,
    lifecycles::{
        LifecycleList, LifecycleRequest, LifecycleResponse, PhaseBody, PhaseRule, RetentionBody,
    },
};
use maud::{Markup, html};

use super::{
    Ui,
    admin::kit::{self, ListQuery},
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Empty phase rows offered below the phases a form already has.
const BLANK_PHASES: usize = 2;

/// `GET /lifecycles`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    let lifecycles: LifecycleList = ui.api.get(&viewer.caller, "/api/lifecycles").await?;
    Ok(lifecycles_page(&viewer, &lifecycles.items, query.done.as_deref()).into_response())
}

fn rule_text(phase: &PhaseBody) -> String {
    match phase.rule {
        PhaseRule::All => "all environments".to_owned(),
        PhaseRule::AtLeast => format!("at least {}", phase.min_count.unwrap_or(1)),
        PhaseRule::Optional => "optional".to_owned(),
    }
}

fn retention_text(retention: Option<&RetentionBody>) -> String {
    match retention {
        Some(RetentionBody {
            keep_releases: Some(n),
            ..
        }) => format!("newest {n} releases"),
        Some(RetentionBody {
            keep_days: Some(n), ..
        }) => format!("{n} days"),
        _ => "all releases".to_owned(),
    }
}

fn lifecycles_page(
    viewer: &Viewer,
    lifecycles: &[LifecycleResponse],
    done: Option<&str>,
) -> Markup {
    page::page(
        "Lifecycles",
        viewer,
        Section::Lifecycles,
        html! {
            h1 { "Lifecycles" }
            @if let Some(done) = done { (page::notice(done)) }
            p.hint { "A lifecycle is the order a project's releases are promoted through environments." }
            p { a.button href="/lifecycles/new" { "New lifecycle" } }
            @if lifecycles.is_empty() { p { "No lifecycle is defined." } }
            @for lifecycle in lifecycles {
                section.lifecycle id={ "lifecycle-" (lifecycle.name) } aria-labelledby={ "lifecycle-" (lifecycle.id) "-title" } {
                    h2 id={ "lifecycle-" (lifecycle.id) "-title" } { (lifecycle.name) }
                    @if !lifecycle.description.is_empty() { p { (lifecycle.description) } }
                    div.table-wrap {
                        table {
                            thead { tr {
                                th scope="col" { "Phase" }
                                th scope="col" { "Environments" }
                                th scope="col" { "Complete when" }
                                th scope="col" { "Automatic" }
                                th scope="col" { "Keeps" }
                            } }
                            tbody {
                                @for phase in &lifecycle.phases {
                                    tr {
                                        th scope="row" { (phase.name) }
                                        td { (phase.environments.join(", ")) }
                                        td { (rule_text(phase)) }
                                        td { (if phase.automatic { "yes" } else { "no" }) }
                                        td { (retention_text(phase.retention.as_ref())) }
                                    }
                                }
                            }
                        }
                    }
                    p { a href={ "/lifecycles/" (lifecycle.id) "/edit" } { "Change " span.visually-hidden { (lifecycle.name) } } }
                }
            }
        },
    )
}

/// A form's content: the request it makes (and, for fields that do not parse, the
/// page's own problems).
struct Draft {
    csrf_token: String,
    request: LifecycleRequest,
    /// Fields the page could not read, in the API's shape.
    unreadable: Vec<(String, String)>,
}

/// `GET /lifecycles/new`.
pub(crate) async fn new(viewer: Viewer) -> Result<Response, UiError> {
    let request = LifecycleRequest {
        name: String::new(),
        description: String::new(),
        phases: Vec::new(),
    };
    Ok(form_page(&viewer, None, &request, None).into_response())
}

/// `GET /lifecycles/{id}/edit`.
pub(crate) async fn edit(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    let lifecycle: LifecycleResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/lifecycles/{id}"))
        .await?;
    let request = LifecycleRequest {
        name: lifecycle.name,
        description: lifecycle.description,
        phases: lifecycle.phases,
    };
    Ok(form_page(&viewer, Some(id), &request, None).into_response())
}

/// `POST /lifecycles`: create.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    save(&ui, &viewer, None, &fields).await
}

/// `POST /lifecycles/{id}`: replace.
pub(crate) async fn update(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    save(&ui, &viewer, Some(id), &fields).await
}

async fn save(
    ui: &Ui,
    viewer: &Viewer,
    id: Option<i64>,
    fields: &[(String, String)],
) -> Result<Response, UiError> {
    let draft = read(fields);
    let refusal = if draft.unreadable.is_empty() {
        let (method, path) = match id {
            None => (Method::POST, "/api/lifecycles".to_owned()),
            Some(id) => (Method::PUT, format!("/api/lifecycles/{id}")),
        };
        let answer: Result<LifecycleResponse, _> = ui
            .api
            .send(
                &viewer.submitting(&draft.csrf_token),
                method,
                &path,
                &draft.request,
            )
            .await;
        match answer {
            Ok(saved) => {
                let verb = if id.is_some() { "saved" } else { "created" };
                return Ok(kit::done(
                    "/lifecycles",
                    &format!("Lifecycle {} is {verb}.", saved.name),
                ));
            }
            Err(error) => kit::refusal(error)?,
        }
    } else {
        let errors: Vec<serde_json::Value> = draft
            .unreadable
            .iter()
            .map(|(field, detail)| serde_json::json!({"field": field, "detail": detail}))
            .collect();
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Problem::new(422, "Unprocessable Entity", "the lifecycle was not saved")
                .with("errors", errors),
        )
    };
    let (status, problem) = refusal;
    Ok((
        status,
        form_page(viewer, id, &draft.request, Some(&problem)),
    )
        .into_response())
}

/// Reads the form: `name`, `description`, and `phases[i].field` for each phase row;
/// rows left empty are dropped (and the rest renumbered, as the API will number them).
fn read(fields: &[(String, String)]) -> Draft {
    let mut csrf_token = String::new();
    let mut name = String::new();
    let mut description = String::new();
    let mut rows: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in fields {
        match key.as_str() {
            crate::identity::sessions::CSRF_FIELD => csrf_token = value.clone(),
            "name" => name = value.trim().to_owned(),
            "description" => description = value.trim().to_owned(),
            other => {
                let parsed = other
                    .strip_prefix("phases[")
                    .and_then(|rest| rest.split_once("]."))
                    .and_then(|(index, field)| Some((index.parse::<usize>().ok()?, field)));
                if let Some((index, field)) = parsed {
                    rows.entry(index)
                        .or_default()
                        .insert(field.to_owned(), value.trim().to_owned());
                }
            }
        }
    }
    let mut unreadable = Vec::new();
    let mut phases = Vec::new();
    for row in rows.values() {
        let get = |f: &str| row.get(f).map(String::as_str).unwrap_or_default();
        if get("name").is_empty() && get("environments").is_empty() {
            continue;
        }
        let i = phases.len();
        let mut number = |field: &str| -> Option<u32> {
            let text = get(field);
            if text.is_empty() {
                return None;
            }
            text.parse().ok().or_else(|| {
                unreadable.push((
                    format!("phases[{i}].{field}"),
                    format!("`{text}` is not a whole number"),
                ));
                None
            })
        };
        let min_count = number("min_count");
        let keep_releases = number("keep_releases");
        let keep_days = number("keep_days");
        let rule = match get("rule") {
            "at_least" => PhaseRule::AtLeast,
            "optional" => PhaseRule::Optional,
            _ => PhaseRule::All,
        };
        phases.push(PhaseBody {
            name: get("name").to_owned(),
            environments: kit::names(get("environments")),
            rule,
            min_count: if rule == PhaseRule::AtLeast {
                min_count
            } else {
                None
            },
            automatic: get("automatic") == "on",
            retention: (keep_releases.is_some() || keep_days.is_some()).then_some(RetentionBody {
                keep_releases,
                keep_days,
            }),
        });
    }
    Draft {
        csrf_token,
        request: LifecycleRequest {
            name,
            description,
            phases,
        },
        unreadable,
    }
}

fn form_page(
    viewer: &Viewer,
    id: Option<i64>,
    request: &LifecycleRequest,
    problem: Option<&Problem>,
) -> Markup {
    let title = if id.is_some() {
        "Change lifecycle"
    } else {
        "New lifecycle"
    };
    let action = id.map_or_else(
        || "/lifecycles".to_owned(),
        |id| format!("/lifecycles/{id}"),
    );
    let rows = request.phases.len() + BLANK_PHASES;
    html! {
        (page::page(title, viewer, Section::Lifecycles, html! {
            h1 { (title) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form.panel method="post" action=(action) {
                (page::csrf_field(viewer))
                label for="lifecycle-name" { "Name" }
                input id="lifecycle-name" name="name" value=(request.name) required maxlength="100"
                    aria-describedby=[kit::described_by(problem, "name", "lifecycle-name-error")];
                (kit::field_error(problem, "name", "lifecycle-name-error"))
                label for="lifecycle-description" { "Description" }
                input id="lifecycle-description" name="description" value=(request.description)
                    aria-describedby=[kit::described_by(problem, "description", "lifecycle-description-error")];
                (kit::field_error(problem, "description", "lifecycle-description-error"))
                h2 { "Phases, in promotion order" }
                p.hint { "Leave a row empty to drop it. Retention: give newest releases or days, not both." }
                // Only the list's own problems here; a phase's sit beside its fields.
                @let own: Vec<String> = problem.map(page::field_errors).unwrap_or_default()
                    .into_iter().filter(|(f, _)| f == "phases").map(|(_, d)| d).collect();
                @if !own.is_empty() {
                    p.field-error id="lifecycle-phases-error" { @for e in &own { (e) " " } }
                }
                @for i in 0..rows {
                    (phase_row(i, request.phases.get(i), problem))
                }
                p { button type="submit" { (if id.is_some() { "Save lifecycle" } else { "Create lifecycle" }) } }
                p { a href="/lifecycles" { "Back to the lifecycles" } }
            }
        }))
    }
}

fn phase_row(i: usize, phase: Option<&PhaseBody>, problem: Option<&Problem>) -> Markup {
    let field = |name: &str| format!("phases[{i}].{name}");
    let id = |name: &str| format!("phase-{i}-{name}");
    let text_input = |name: &str, label: &str, value: String, kind: &str| {
        let error_id = format!("phase-{i}-{name}-error");
        html! {
            div.field {
                label for=(id(name)) { (label) }
                input id=(id(name)) name=(field(name)) type=(kind) value=(value)
                    aria-describedby=[kit::described_by(problem, &field(name), &error_id)];
                (kit::field_error(problem, &field(name), &error_id))
            }
        }
    };
    let rule = phase.map_or(PhaseRule::All, |p| p.rule);
    let retention = phase.and_then(|p| p.retention.as_ref());
    let number = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    html! {
        fieldset.phase {
            legend { "Phase " (i + 1) }
            (text_input("name", "Name", phase.map(|p| p.name.clone()).unwrap_or_default(), "text"))
            (text_input("environments", "Environments (comma-separated)", phase.map(|p| p.environments.join(", ")).unwrap_or_default(), "text"))
            div.field {
                label for=(id("rule")) { "Complete when" }
                select id=(id("rule")) name=(field("rule")) {
                    option value="all" selected[rule == PhaseRule::All] { "deployed to all its environments" }
                    option value="at_least" selected[rule == PhaseRule::AtLeast] { "deployed to at least (below)" }
                    option value="optional" selected[rule == PhaseRule::Optional] { "optional: never blocks" }
                }
                (kit::field_error(problem, &field("rule"), &format!("phase-{i}-rule-error")))
            }
            (text_input("min_count", "At least (environments)", number(phase.and_then(|p| p.min_count)), "text"))
            div.field {
                label.check {
                    input id=(id("automatic")) type="checkbox" name=(field("automatic")) checked[phase.is_some_and(|p| p.automatic)];
                    " Deploys automatically"
                }
                (kit::field_error(problem, &field("automatic"), &format!("phase-{i}-automatic-error")))
            }
            (text_input("keep_releases", "Keep newest releases", number(retention.and_then(|r| r.keep_releases)), "text"))
            (text_input("keep_days", "Keep releases of days", number(retention.and_then(|r| r.keep_days)), "text"))
            (kit::field_error(problem, &field("retention"), &format!("phase-{i}-retention-error")))
        }
    }
}
