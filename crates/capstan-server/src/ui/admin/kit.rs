//! Small pieces the administration pages share: the `?done=` notice after a change,
//! the confirmation page before a destructive one, and reading list-like form fields.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use capstan_api::Problem;
use maud::{Markup, html};
use serde::Deserialize;

use super::super::{
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

/// The query of a list page: the notice of what was just done, and the page of the list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    pub done: Option<String>,
    pub cursor: Option<String>,
}

/// A `303` to `path`, which then says `text` (Post/Redirect/Get).
pub(crate) fn done(path: &str, text: &str) -> Response {
    let text: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    see_other(&format!("{path}?done={text}"))
}

/// A query parameter's value, escaped.
pub(crate) fn escaped(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The status and problem of a refusal, to show the page again with it; a failure that
/// is not a refusal stays an error.
pub(crate) fn refusal(error: UiError) -> Result<(StatusCode, Problem), UiError> {
    let status = match &error {
        UiError::Problem { status, .. } => *status,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Ok((status, error.into_problem()?))
}

/// A page shown with the status of the refusal it carries (200 without one).
pub(crate) fn shown(status: Option<StatusCode>, body: Markup) -> Response {
    (status.unwrap_or(StatusCode::OK), body).into_response()
}

/// `None` for a field left empty.
pub(crate) fn filled(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The names of a comma-separated field, without blanks.
pub(crate) fn names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a confirmation page asks and where its form goes.
pub(crate) struct Confirm<'a> {
    pub section: Section,
    pub question: String,
    pub action: String,
    /// Hidden fields the confirmed form carries again.
    pub fields: Vec<(&'a str, String)>,
    pub yes: String,
    pub cancel: &'a str,
}

/// A question before a destructive change, as a page of its own (works without
/// JavaScript); its form repeats the request with `confirm=yes`.
pub(crate) fn confirmation(viewer: &Viewer, confirm: &Confirm<'_>) -> Markup {
    page::page(
        "Confirm",
        viewer,
        confirm.section,
        html! {
            h1 { "Confirm" }
            section.confirm aria-labelledby="question" {
                p id="question" { (confirm.question) }
                form method="post" action=(confirm.action) {
                    (page::csrf_field(viewer))
                    input type="hidden" name="confirm" value="yes";
                    @for (name, value) in &confirm.fields {
                        input type="hidden" name=(name) value=(value);
                    }
                    button.danger type="submit" autofocus { (confirm.yes) }
                    " "
                    a.button.secondary href=(confirm.cancel) { "Cancel" }
                }
            }
        },
    )
}

/// The errors of `field` beside it.
pub(crate) fn field_error(problem: Option<&Problem>, field: &str, id: &str) -> Markup {
    let errors = page::errors_of(problem, field);
    html! {
        @if !errors.is_empty() {
            p.field-error id=(id) { @for e in &errors { (e) " " } }
        }
    }
}

/// The `aria-describedby` of a field with errors.
pub(crate) fn described_by(problem: Option<&Problem>, field: &str, id: &str) -> Option<String> {
    (!page::errors_of(problem, field).is_empty()).then(|| id.to_owned())
}

/// A "next page" link when the API said there is one.
pub(crate) fn next_page(path: &str, next: Option<&str>) -> Markup {
    html! {
        @if let Some(next) = next {
            nav.pager aria-label="Pages" {
                a href={ (path) "?cursor=" (escaped(next)) } { "Next page" }
            }
        }
    }
}
