//! `/projects`: the projects a person may see, a page at a time, found by name; and the
//! form for a new project, its problems beside its fields.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Query, State},
    http::Method,
    response::{IntoResponse, Response},
};
use capstan_api::{Problem, ProjectPage, ProjectRequest, ProjectResponse};
use maud::{Markup, html};
use serde::Deserialize;

use super::{described_by, escaped, field_problems, pager, refusal, with_notice};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

/// Projects on one page of the list.
const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
    search: Option<String>,
    done: Option<String>,
}

/// `GET /projects`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    let projects = page_of(&ui, &viewer, &query).await?;
    Ok(projects_page(&viewer, &query, projects, None).into_response())
}

async fn page_of(ui: &Ui, viewer: &Viewer, query: &ListQuery) -> Result<ProjectPage, UiError> {
    let mut path = format!("/api/projects?limit={PAGE_SIZE}");
    if let Some(search) = query.search.as_deref().filter(|s| !s.trim().is_empty()) {
        path.push_str(&format!("&search={}", escaped(search.trim())));
    }
    if let Some(cursor) = &query.cursor {
        path.push_str(&format!("&cursor={}", escaped(cursor)));
    }
    ui.api.get(&viewer.caller, &path).await
}

/// What the new-project form was given, shown again with its problems.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewProject {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /projects`: the project, then its page.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<NewProject>,
) -> Result<Response, UiError> {
    let request = ProjectRequest {
        name: form.name.clone(),
        description: form.description.clone(),
    };
    let answer: Result<ProjectResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/projects",
            &request,
        )
        .await;
    match answer {
        Ok(project) => Ok(see_other(&with_notice(
            &format!("/projects/{}", project.id),
            &format!("Project {} created.", project.name),
        ))),
        Err(error) => {
            let (status, problem) = refusal(error)?;
            let query = ListQuery::default();
            let projects = page_of(&ui, &viewer, &query).await?;
            let shown = projects_page(&viewer, &query, projects, Some((&form, &problem)));
            Ok((status, shown).into_response())
        }
    }
}

fn projects_page(
    viewer: &Viewer,
    query: &ListQuery,
    projects: ProjectPage,
    refused: Option<(&NewProject, &Problem)>,
) -> Markup {
    let search = query.search.as_deref().unwrap_or_default();
    let first = if search.is_empty() {
        "/projects".to_owned()
    } else {
        format!("/projects?search={}", escaped(search))
    };
    page::page(
        "Projects",
        viewer,
        Section::Projects,
        html! {
            h1 { "Projects" }
            @if let Some(done) = &query.done { (page::notice(done)) }
            form.inline.search method="get" action="/projects" role="search" {
                label for="project-search" { "Find projects" }
                input id="project-search" name="search" type="search" value=(search) maxlength="200";
                button.secondary type="submit" { "Find" }
            }
            @if projects.items.is_empty() {
                p.none { (if search.is_empty() { "No projects yet." } else { "No project matches." }) }
            } @else {
                div.table-wrap {
                    table #projects {
                        thead { tr {
                            th scope="col" { "Project" }
                            th scope="col" { "Description" }
                            th scope="col" { "Process version" }
                            th scope="col" { "Created" }
                        } }
                        tbody {
                            @for project in &projects.items {
                                tr id={ "project-" (project.id) } {
                                    th scope="row" { a href={ "/projects/" (project.id) } { (project.name) } }
                                    td { (project.description) }
                                    td { (project.process_version) }
                                    td { (page::time(project.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
            (pager(&first, "cursor", projects.next, query.cursor.is_some()))
            (new_project_form(viewer, refused))
        },
    )
}

fn new_project_form(viewer: &Viewer, refused: Option<(&NewProject, &Problem)>) -> Markup {
    let (form, problem) = match refused {
        Some((form, problem)) => (Some(form), Some(problem)),
        None => (None, None),
    };
    let name_problems = page::errors_of(problem, "name");
    let description_problems = page::errors_of(problem, "description");
    html! {
        section.panel aria-labelledby="new-project-heading" {
            h2 id="new-project-heading" { "New project" }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form #new-project method="post" action="/projects" {
                (page::csrf_field(viewer))
                label for="project-name" { "Name" }
                input #project-name name="name" type="text" required maxlength="200"
                    value=[form.map(|f| f.name.as_str())]
                    aria-invalid=[(!name_problems.is_empty()).then_some("true")]
                    aria-describedby=[described_by("project-name", &name_problems)];
                (field_problems("project-name", &name_problems))
                label for="project-description" { "Description" }
                textarea #project-description name="description" rows="3" maxlength="4000"
                    aria-invalid=[(!description_problems.is_empty()).then_some("true")]
                    aria-describedby=[described_by("project-description", &description_problems)] {
                    (form.map(|f| f.description.as_str()).unwrap_or_default())
                }
                (field_problems("project-description", &description_problems))
                p { button type="submit" { "Create project" } }
            }
        }
    }
}
