//! `/`: the dashboard. Projects (rows, by name) × environments (columns), each cell the
//! newest deployment of the pair: its release, its state, and a mark when a newer
//! release waits to be promoted there. One page of projects at a time (the API's
//! cursor), so a large installation sends only what is shown.
//!
//! Filters and paging are plain links and a GET form; with htmx, they replace only the
//! table (the node answers such a request with the table alone) and keep the address.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{
    EnvironmentList, Problem, ProjectPage,
    dashboard::{Dashboard, DashboardCell},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Projects per page unless asked otherwise: a laptop's screenful or two.
const DEFAULT_PAGE: u32 = 50;
/// The page sizes offered; the largest is the API's most.
const PAGE_SIZES: [u32; 5] = [25, 50, 100, 250, 500];
/// The most projects a name search offers to choose from.
const CHOICES: u32 = 20;
const RESULTS: &str = "dashboard-results";

/// The page's query. Every field is text: an empty form field means "any", and a bad
/// number is shown as a problem rather than refused by the extractor.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    project: Option<String>,
    project_id: Option<String>,
    environment_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The filters, checked.
#[derive(Debug, Default)]
struct Filters {
    /// Text a project's name contains.
    project: Option<String>,
    project_id: Option<i64>,
    environment_id: Option<i64>,
    limit: u32,
    cursor: Option<String>,
}

/// What the page shows below its filters.
enum Results {
    Table(Dashboard),
    /// A name search that matched several projects: pick one.
    Choices(ProjectPage),
    Refused(StatusCode, Problem),
}

/// `GET /`.
pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Response, UiError> {
    let (filters, results) = match filters(&params) {
        Ok(mut filters) => {
            let results = results(&ui, &viewer, &mut filters).await?;
            (filters, results)
        }
        Err(problem) => (
            Filters {
                limit: DEFAULT_PAGE,
                ..Filters::default()
            },
            Results::Refused(StatusCode::BAD_REQUEST, problem),
        ),
    };
    let status = match &results {
        Results::Refused(status, _) => *status,
        _ => StatusCode::OK,
    };
    let results = results_markup(&filters, &results);
    let markup = if only_results(&headers) {
        results
    } else {
        let environments: EnvironmentList = ui.api.get(&viewer.caller, "/api/environments").await?;
        page::page(
            "Dashboard",
            &viewer,
            Section::Dashboard,
            html! {
                h1 { "Dashboard" }
                (filter_form(&filters, &environments))
                (results)
            },
        )
    };
    Ok((status, [(header::VARY, "HX-Request")], markup).into_response())
}

/// Whether htmx asked for the part it swaps (not a history restore, which needs the
/// whole page).
pub(crate) fn only_results(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request")
}

fn filters(params: &Params) -> Result<Filters, Problem> {
    let limit = match number(params.limit.as_deref(), "limit")? {
        None => DEFAULT_PAGE,
        Some(n) if (1..=i64::from(PAGE_SIZES[PAGE_SIZES.len() - 1])).contains(&n) => n as u32,
        Some(n) => {
            return Err(bad_request(format!(
                "the page size must be from 1 to {}, not {n}",
                PAGE_SIZES[PAGE_SIZES.len() - 1]
            )));
        }
    };
    Ok(Filters {
        project: given(params.project.as_deref()).map(str::to_owned),
        project_id: number(params.project_id.as_deref(), "project_id")?,
        environment_id: number(params.environment_id.as_deref(), "environment_id")?,
        limit,
        cursor: given(params.cursor.as_deref()).map(str::to_owned),
    })
}

/// A form field's text, unless empty.
pub(crate) fn given(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// A whole number from a form field, or none when empty.
pub(crate) fn number(text: Option<&str>, field: &str) -> Result<Option<i64>, Problem> {
    given(text)
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| bad_request(format!("`{field}` must be a whole number, not `{t}`")))
        })
        .transpose()
}

pub(crate) fn bad_request(detail: String) -> Problem {
    Problem::new(400, "Bad Request", detail)
}

async fn results(ui: &Ui, viewer: &Viewer, filters: &mut Filters) -> Result<Results, UiError> {
    if filters.project_id.is_none()
        && let Some(search) = filters.project.clone()
    {
        let path = format!(
            "/api/projects{}",
            query(&[
                ("search", Some(&search)),
                ("limit", Some(&(CHOICES + 1).to_string()))
            ])
        );
        let found: ProjectPage = match ui.api.get(&viewer.caller, &path).await {
            Ok(found) => found,
            Err(refusal) => return refused(refusal),
        };
        let exact = found
            .items
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(&search));
        match (exact, found.items.as_slice()) {
            (Some(project), _) | (None, [project]) => filters.project_id = Some(project.id),
            _ => return Ok(Results::Choices(found)),
        }
    }
    let path = format!(
        "/api/dashboard{}",
        query(&[
            (
                "project_id",
                filters.project_id.map(|n| n.to_string()).as_deref()
            ),
            (
                "environment_id",
                filters.environment_id.map(|n| n.to_string()).as_deref()
            ),
            ("limit", Some(&filters.limit.to_string())),
            ("cursor", filters.cursor.as_deref()),
        ])
    );
    match ui.api.get(&viewer.caller, &path).await {
        Ok(dashboard) => Ok(Results::Table(dashboard)),
        Err(refusal) => refused(refusal),
    }
}

/// A refusal of the API, to show in the page with its status; anything else fails
/// the page.
pub(crate) fn refusal(error: UiError) -> Result<(StatusCode, Problem), UiError> {
    match error {
        UiError::Problem { status, problem } => Ok((status, problem)),
        other => Err(other),
    }
}

fn refused(error: UiError) -> Result<Results, UiError> {
    refusal(error).map(|(status, problem)| Results::Refused(status, problem))
}

/// `?a=1&b=2` of the pairs that have a value (empty when none has).
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            serializer.append_pair(name, value);
        }
    }
    let query = serializer.finish();
    if query.is_empty() {
        query
    } else {
        format!("?{query}")
    }
}

/// This page's address with `filters`, on the page that `cursor` starts.
fn address(filters: &Filters, cursor: Option<&str>) -> String {
    let limit = (filters.limit != DEFAULT_PAGE).then(|| filters.limit.to_string());
    format!(
        "/{}",
        query(&[
            ("project", filters.project.as_deref()),
            (
                "project_id",
                filters.project_id.map(|n| n.to_string()).as_deref()
            ),
            (
                "environment_id",
                filters.environment_id.map(|n| n.to_string()).as_deref()
            ),
            ("limit", limit.as_deref()),
            ("cursor", cursor),
        ])
    )
}

fn filter_form(filters: &Filters, environments: &EnvironmentList) -> Markup {
    html! {
        form.filters method="get" action="/" hx-get="/" hx-target={ "#" (RESULTS) }
            hx-swap="outerHTML" hx-push-url="true" hx-trigger="submit, change" {
            div {
                label for="project" { "Project" }
                input id="project" name="project" type="search" maxlength="200"
                    value=[filters.project.as_deref()] placeholder="Name contains…";
            }
            div {
                label for="environment_id" { "Environment" }
                select id="environment_id" name="environment_id" {
                    option value="" { "All environments" }
                    @for environment in &environments.items {
                        option value=(environment.id)
                            selected[filters.environment_id == Some(environment.id)] {
                            (environment.name)
                        }
                    }
                }
            }
            div {
                label for="limit" { "Projects per page" }
                select id="limit" name="limit" {
                    @for size in PAGE_SIZES {
                        option value=(size) selected[filters.limit == size] { (size) }
                    }
                }
            }
            div { button type="submit" { "Show" } }
        }
    }
}

fn results_markup(filters: &Filters, results: &Results) -> Markup {
    html! {
        div id=(RESULTS) {
            @match results {
                Results::Refused(status, problem) => {
                    (page::problem_box(problem))
                    p.hint { "The node answered " (status.as_u16()) "." }
                }
                Results::Choices(found) => (choices(filters, found)),
                Results::Table(dashboard) => (table(filters, dashboard)),
            }
        }
    }
}

fn choices(filters: &Filters, found: &ProjectPage) -> Markup {
    let search = filters.project.as_deref().unwrap_or_default();
    html! {
        @if found.items.is_empty() {
            p.notice role="status" { "No project's name contains “" (search) "”." }
        } @else {
            p role="status" {
                @if found.next.is_some() || found.items.len() > CHOICES as usize {
                    "More than " (CHOICES) " projects' names contain “" (search) "”; the first ones:"
                } @else {
                    (found.items.len()) " projects' names contain “" (search) "”; choose one:"
                }
            }
            ul.choices {
                @for project in found.items.iter().take(CHOICES as usize) {
                    li {
                        a href=(address(&Filters {
                            project: None,
                            project_id: Some(project.id),
                            environment_id: filters.environment_id,
                            limit: filters.limit,
                            cursor: None,
                        }, None)) { (project.name) }
                    }
                }
            }
        }
    }
}

fn table(filters: &Filters, dashboard: &Dashboard) -> Markup {
    let cells: HashMap<(i64, i64), &DashboardCell> = dashboard
        .cells
        .iter()
        .map(|c| ((c.project_id, c.environment_id), c))
        .collect();
    let first_page = filters.cursor.is_some().then(|| address(filters, None));
    let next_page = dashboard
        .next
        .as_deref()
        .map(|cursor| address(filters, Some(cursor)));
    html! {
        @if dashboard.projects.is_empty() {
            p.notice role="status" {
                @if filters.cursor.is_some() { "No more projects." }
                @else { "No project to show." }
            }
        } @else {
            p.hint {
                (dashboard.projects.len()) " projects × " (dashboard.environments.len())
                " environments. " span.newer aria-hidden="true" { "▲" }
                " marks a newer release that waits to be promoted there."
            }
            div.table-wrap.dashboard-wrap {
                table.dashboard {
                    caption.visually-hidden { "The newest deployment of each project in each environment" }
                    thead { tr {
                        th scope="col" { "Project" }
                        @for environment in &dashboard.environments {
                            th scope="col" { (environment.name) }
                        }
                    } }
                    tbody {
                        @for project in &dashboard.projects {
                            tr {
                                th scope="row" {
                                    a href={ "/projects/" (project.id) } { (project.name) }
                                    @if let Some(latest) = &project.latest_release { " " small { (latest) } }
                                }
                                @for environment in &dashboard.environments {
                                    @match cells.get(&(project.id, environment.id)) {
                                        Some(cell) => (cell_markup(cell)),
                                        None => td.empty { "—" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if let Some(first) = &first_page {
                a href=(first) hx-get=(first) hx-target={ "#" (RESULTS) } hx-swap="outerHTML"
                    hx-push-url="true" { "First page" }
            }
            @if let Some(next) = &next_page {
                a href=(next) rel="next" hx-get=(next) hx-target={ "#" (RESULTS) }
                    hx-swap="outerHTML" hx-push-url="true" { "Next page" }
            }
        }
    }
}

/// One cell: the release and the state word, linked to the deployment. Kept small: a
/// page of 500 projects has 10,000 of them.
fn cell_markup(cell: &DashboardCell) -> Markup {
    let state = cell.state.as_str();
    html! {
        td {
            a href={ "/deployments/" (cell.deployment_id) } {
                (cell.release) " " span class={ "state state-" (state) } { (state) }
            }
            @if cell.newer_release {
                " " span.newer title="A newer release waits to be promoted here" {
                    span aria-hidden="true" { "▲" } span.visually-hidden { "newer release waits" }
                }
            }
        }
    }
}
