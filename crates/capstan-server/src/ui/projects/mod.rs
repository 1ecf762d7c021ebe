//! `/projects`: the list of projects and a form for a new one; a project's page with its
//! process, variables and releases; the process editor; a new release; a release's page
//! with the form that deploys it. Everything is read and done through the JSON API.

mod deploy;
mod list;
mod process;
mod releases;
mod show;
mod variables;

use axum::http::StatusCode;
use capstan_api::{Problem, ProjectResponse};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Ui, caller::Viewer, error::UiError};

pub(crate) use deploy::{deploy, release};
pub(crate) use list::{create, list};
pub(crate) use process::{edit_process, save_process};
pub(crate) use releases::{create_release, new_release};
pub(crate) use show::show;

/// The `?done=` notice a page shows after Post/Redirect/Get.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

/// A refusal of the API as the status and problem to show beside a form; anything
/// else (signed out, a failure of this node) is passed on.
fn refusal(error: UiError) -> Result<(StatusCode, Problem), UiError> {
    let status = match &error {
        UiError::Problem { status, .. } => *status,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Ok((status, error.into_problem()?))
}

/// `path?done=<text>`, the address to land on after a change.
fn with_notice(path: &str, text: &str) -> String {
    let text: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    format!("{path}?done={text}")
}

/// A query value, escaped for an address.
fn escaped(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn project(ui: &Ui, viewer: &Viewer, id: i64) -> Result<ProjectResponse, UiError> {
    ui.api
        .get(&viewer.caller, &format!("/api/projects/{id}"))
        .await
}

/// The trail above a project's pages.
fn trail(project: &ProjectResponse, here: Option<&str>) -> Markup {
    html! {
        nav.trail aria-label="Breadcrumb" {
            ol {
                li { a href="/projects" { "Projects" } }
                @if let Some(here) = here {
                    li { a href={ "/projects/" (project.id) } { (project.name) } }
                    li aria-current="page" { (here) }
                } @else {
                    li aria-current="page" { (project.name) }
                }
            }
        }
    }
}

/// A field's problems, beside it, with the id its input names in `aria-describedby`.
fn field_problems(id: &str, problems: &[String]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div.field-errors id={ (id) "-error" } {
                @for problem in problems { p.field-error { (problem) } }
            }
        }
    }
}

/// The `aria-describedby` of a field with these problems.
fn described_by(id: &str, problems: &[String]) -> Option<String> {
    (!problems.is_empty()).then(|| format!("{id}-error"))
}

/// Comma- or line-separated names, trimmed, empties dropped.
fn names_in(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The first value of `name` in a submitted form.
fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Every value of `name` in a submitted form (checkboxes).
fn form_values<'a>(form: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    form.iter()
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// "Next page" and "first page" links of a list the API pages with a cursor.
fn pager(first: &str, param: &str, next: Option<String>, on_later_page: bool) -> Markup {
    html! {
        @if next.is_some() || on_later_page {
            nav.pager aria-label="Pages" {
                @if on_later_page { a href=(first) { "First page" } }
                @if let Some(next) = next {
                    @let joiner = if first.contains('?') { "&" } else { "?" };
                    a href={ (first) (joiner) (param) "=" (escaped(&next)) } rel="next" { "Next page" }
                }
            }
        }
    }
}
