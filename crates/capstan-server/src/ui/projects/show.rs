//! `/projects/{id}`: a project's process in words, its variables and its releases.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use capstan_api::{ProcessResponse, VariablesResponse};
use maud::html;
use serde::Deserialize;

use super::{process, project, releases, trail, variables};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
    /// The releases list's cursor.
    releases: Option<String>,
}

/// `GET /projects/{id}`.
pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, UiError> {
    let project = project(&ui, &viewer, id).await?;
    let process: ProcessResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/projects/{id}/process"))
        .await?;
    let variables: VariablesResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/projects/{id}/variables"))
        .await?;
    let (releases, makers) = releases::page_of(&ui, &viewer, id, query.releases.as_deref()).await?;
    let body = html! {
        (trail(&project, None))
        h1 { (project.name) }
        @if let Some(done) = &query.done { (page::notice(done)) }
        @if !project.description.is_empty() { p.description { (project.description) } }
        section aria-labelledby="releases-heading" {
            h2 id="releases-heading" { "Releases" }
            p { a.button #new-release href={ "/projects/" (id) "/releases/new" } { "Create release" } }
            (releases::list(&project, releases, &makers, query.releases.is_some()))
        }
        section aria-labelledby="process-heading" {
            h2 id="process-heading" { "Process" }
            p.hint {
                "Version " (process.version) ". "
                a #edit-process href={ "/projects/" (id) "/process" } { "Edit the process" }
            }
            (process::outline(&process.steps, None))
        }
        section aria-labelledby="variables-heading" {
            h2 id="variables-heading" { "Variables" }
            (variables::variables(&variables))
        }
    };
    Ok(page::page(&project.name, &viewer, Section::Projects, body).into_response())
}
