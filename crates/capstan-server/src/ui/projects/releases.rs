//! A project's releases, newest first, with who made each; and the form for a new
//! release: a version (or the next one), notes, and a version for any package the
//! process deploys (or the one its rule picks).

use std::{collections::BTreeSet, collections::HashMap, sync::Arc};

use axum::{
    Form,
    extract::{Path, State},
    http::Method,
    response::{IntoResponse, Response},
};
use capstan_api::{
    AuditPage, CreateReleaseRequest, PackageSelection, Problem, ProcessResponse, ProjectResponse,
    ReleasePage, ReleaseResponse, ReleaseSummary, projects::Action,
};
use maud::{Markup, html};
use time::format_description::well_known::Rfc3339;

use super::{
    described_by, escaped, field_problems, form_value, pager, project, refusal, trail, with_notice,
};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::{UiError, see_other},
    page::{self, Section},
};

/// Releases on one page of the project's list.
pub(super) const PAGE_SIZE: u32 = 20;

/// One page of the project's releases, from `cursor`, with who made each when the
/// person may read the audit log.
pub(super) async fn page_of(
    ui: &Ui,
    viewer: &Viewer,
    project: i64,
    cursor: Option<&str>,
) -> Result<(ReleasePage, HashMap<i64, String>), UiError> {
    let mut path = format!("/api/releases?project_id={project}&limit={PAGE_SIZE}");
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={}", escaped(cursor)));
    }
    let releases: ReleasePage = ui.api.get(&viewer.caller, &path).await?;
    let makers = makers(ui, viewer, project, &releases.items).await;
    Ok((releases, makers))
}

/// Who made each release, from the audit log's `release.create` rows since the oldest
/// one shown. Somebody who may not read the audit log sees no names.
async fn makers(
    ui: &Ui,
    viewer: &Viewer,
    project: i64,
    releases: &[ReleaseSummary],
) -> HashMap<i64, String> {
    let Some(oldest) = releases.iter().map(|r| r.created_at).min() else {
        return HashMap::new();
    };
    let Ok(since) = oldest.format(&Rfc3339) else {
        return HashMap::new();
    };
    let path = format!(
        "/api/audit?project_id={project}&action=release.create&since={}&limit=100",
        escaped(&since)
    );
    let Ok(rows) = ui.api.get::<AuditPage>(&viewer.caller, &path).await else {
        return HashMap::new();
    };
    rows.items
        .into_iter()
        .filter_map(|row| Some((row.object.id?.parse().ok()?, row.actor.name)))
        .collect()
}

/// The releases table of the project's page.
pub(super) fn list(
    project: &ProjectResponse,
    releases: ReleasePage,
    makers: &HashMap<i64, String>,
    on_later_page: bool,
) -> Markup {
    html! {
        @if releases.items.is_empty() {
            p.none { "No releases yet." }
        } @else {
            div.table-wrap {
                table #releases {
                    thead { tr {
                        th scope="col" { "Version" }
                        th scope="col" { "Created" }
                        th scope="col" { "By" }
                        th scope="col" { "Notes" }
                    } }
                    tbody {
                        @for release in &releases.items {
                            tr id={ "release-" (release.id) } {
                                th scope="row" {
                                    a href={ "/projects/" (project.id) "/releases/" (release.id) } { (release.version) }
                                }
                                td { (page::time(release.created_at)) }
                                td {
                                    @match makers.get(&release.id) {
                                        Some(name) => (name),
                                        None => span.none { "—" },
                                    }
                                }
                                td { (release.notes) }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/projects/{}", project.id), "releases", releases.next, on_later_page))
    }
}

/// `GET /projects/{id}/releases/new`.
pub(crate) async fn new_release(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    let project = project(&ui, &viewer, id).await?;
    let packages = packages_of(&ui, &viewer, id).await?;
    Ok(release_form(&viewer, &project, &packages, &[], None).into_response())
}

/// The packages the process deploys, by id, once each.
async fn packages_of(ui: &Ui, viewer: &Viewer, project: i64) -> Result<Vec<String>, UiError> {
    let process: ProcessResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/projects/{project}/process"))
        .await?;
    let ids: BTreeSet<String> = process
        .steps
        .iter()
        .flat_map(|step| &step.actions)
        .filter_map(|action| match action {
            Action::Package { package_id, .. } => Some(package_id.clone()),
            _ => None,
        })
        .collect();
    Ok(ids.into_iter().collect())
}

/// The field of a package's version is `package:<id>`.
const PACKAGE_FIELD: &str = "package:";

/// `POST /projects/{id}/releases`: the release, then its page (where it is deployed).
pub(crate) async fn create_release(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let version = form_value(&form, "version").unwrap_or_default().trim();
    let request = CreateReleaseRequest {
        project_id: id,
        version: (!version.is_empty()).then(|| version.to_owned()),
        notes: form_value(&form, "notes").unwrap_or_default().to_owned(),
        packages: form
            .iter()
            .filter_map(|(key, value)| {
                let package_id = key.strip_prefix(PACKAGE_FIELD)?;
                let version = value.trim();
                (!version.is_empty()).then(|| PackageSelection {
                    package_id: package_id.to_owned(),
                    version: version.to_owned(),
                })
            })
            .collect(),
    };
    let token = form_value(&form, "csrf_token").unwrap_or_default();
    let answer: Result<ReleaseResponse, _> = ui
        .api
        .send(
            &viewer.submitting(token),
            Method::POST,
            "/api/releases",
            &request,
        )
        .await;
    match answer {
        Ok(release) => Ok(see_other(&with_notice(
            &format!("/projects/{id}/releases/{}", release.summary.id),
            &format!("Release {} created.", release.summary.version),
        ))),
        Err(error) => {
            let (status, problem) = refusal(error)?;
            let project = project(&ui, &viewer, id).await?;
            let packages = packages_of(&ui, &viewer, id).await?;
            let shown = release_form(&viewer, &project, &packages, &form, Some(&problem));
            Ok((status, shown).into_response())
        }
    }
}

fn release_form(
    viewer: &Viewer,
    project: &ProjectResponse,
    packages: &[String],
    typed: &[(String, String)],
    problem: Option<&Problem>,
) -> Markup {
    let version_problems = page::errors_of(problem, "version");
    let notes_problems = page::errors_of(problem, "notes");
    let packages_problems = page::errors_of(problem, "packages");
    page::page(
        &format!("New release of {}", project.name),
        viewer,
        Section::Projects,
        html! {
            (trail(project, Some("New release")))
            h1 { "New release of " (project.name) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            p.hint {
                "A release freezes the process, the variables and the package versions as they are now, "
                "so what is tested in one environment is what reaches the next."
            }
            form #release-form method="post" action={ "/projects/" (project.id) "/releases" } {
                (page::csrf_field(viewer))
                label for="release-version" { "Version" }
                p.hint id="release-version-hint" { "Such as 1.4.0; empty: the newest release's version with its last number raised by one." }
                input #release-version name="version" type="text" maxlength="100"
                    value=[form_value(typed, "version")]
                    aria-invalid=[(!version_problems.is_empty()).then_some("true")]
                    aria-describedby={ "release-version-hint" @if let Some(e) = described_by("release-version", &version_problems) { " " (e) } };
                (field_problems("release-version", &version_problems))
                label for="release-notes" { "Notes" }
                textarea #release-notes name="notes" rows="4"
                    aria-invalid=[(!notes_problems.is_empty()).then_some("true")]
                    aria-describedby=[described_by("release-notes", &notes_problems)] {
                    (form_value(typed, "notes").unwrap_or_default())
                }
                (field_problems("release-notes", &notes_problems))
                @if !packages.is_empty() {
                    fieldset #release-packages {
                        legend { "Package versions" }
                        p.hint { "Empty: the version each action's rule picks from the feed." }
                        @for (n, package) in packages.iter().enumerate() {
                            @let field = format!("{PACKAGE_FIELD}{package}");
                            label for={ "release-package-" (n) } { code { (package) } }
                            input id={ "release-package-" (n) } name=(field) type="text" maxlength="100"
                                value=[form_value(typed, &field)];
                        }
                        (field_problems("release-packages", &packages_problems))
                    }
                }
                p.actions {
                    button #release-create type="submit" { "Create release" }
                    " "
                    a.button.secondary href={ "/projects/" (project.id) } { "Cancel" }
                }
            }
        },
    )
}
