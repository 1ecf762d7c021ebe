//! `/admin/teams`: each team with its members and grants; create a team, add and
//! remove members, add and remove grants (a role in all or some environments).

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    EnvironmentList, EnvironmentResponse, Problem, UserPage, UserResponse,
    access::{
        AddMemberRequest, CreateGrantRequest, CreateTeamRequest, GrantList, GrantResponse,
        MemberList, RoleList, RoleResponse, TeamList, TeamResponse,
    },
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    kit::{self, Confirm, ListQuery},
    refused_page, sub_navigation,
};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// A team as shown: with its members and grants.
struct TeamView {
    team: TeamResponse,
    members: MemberList,
    grants: GrantList,
}

/// What the page needs besides the teams: roles and environments for the grant form.
struct Choices {
    roles: Vec<RoleResponse>,
    environments: Vec<EnvironmentResponse>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TeamForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MemberForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Confirmed {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `GET /admin/teams`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(&ui, &viewer, query.done.as_deref(), None).await
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    done: Option<&str>,
    refusal: Option<(StatusCode, Problem)>,
) -> Result<Response, UiError> {
    let teams: TeamList = match ui.api.get(&viewer.caller, "/api/teams").await {
        Ok(teams) => teams,
        Err(error) => return refused_page(viewer, "Teams", error),
    };
    let mut views = Vec::with_capacity(teams.items.len());
    for team in teams.items {
        let members = ui
            .api
            .get(&viewer.caller, &format!("/api/teams/{}/members", team.id))
            .await?;
        let grants = ui
            .api
            .get(&viewer.caller, &format!("/api/teams/{}/grants", team.id))
            .await?;
        views.push(TeamView {
            team,
            members,
            grants,
        });
    }
    let roles: RoleList = ui.api.get(&viewer.caller, "/api/roles").await?;
    let environments: EnvironmentList = ui.api.get(&viewer.caller, "/api/environments").await?;
    let choices = Choices {
        roles: roles.items,
        environments: environments.items,
    };
    let status = refusal.as_ref().map(|(s, _)| *s);
    let problem = refusal.as_ref().map(|(_, p)| p);
    Ok(kit::shown(
        status,
        teams_page(viewer, &views, &choices, done, problem),
    ))
}

fn teams_page(
    viewer: &Viewer,
    teams: &[TeamView],
    choices: &Choices,
    done: Option<&str>,
    problem: Option<&Problem>,
) -> Markup {
    page::page(
        "Teams",
        viewer,
        Section::Admin,
        html! {
            h1 { "Teams" }
            (sub_navigation("teams"))
            @if let Some(done) = done { (page::notice(done)) }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            p.hint { "A grant gives a team's members a role, in every environment or in those chosen." }
            @for view in teams { (team_section(viewer, view, choices)) }
            h2 id="new-team" { "New team" }
            form.panel method="post" action="/admin/teams" aria-labelledby="new-team" {
                (page::csrf_field(viewer))
                label for="team-name" { "Name" }
                input id="team-name" name="name" required maxlength="100"
                    aria-describedby=[kit::described_by(problem, "name", "team-name-error")];
                (kit::field_error(problem, "name", "team-name-error"))
                label for="team-description" { "Description" }
                input id="team-description" name="description" maxlength="200";
                p { button type="submit" { "Create team" } }
            }
        },
    )
}

fn environment_names(ids: &Option<Vec<i64>>, choices: &Choices) -> String {
    match ids {
        None => "every environment".to_owned(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                choices
                    .environments
                    .iter()
                    .find(|e| e.id == *id)
                    .map_or_else(|| format!("#{id}"), |e| e.name.clone())
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn grant_scope(grant: &GrantResponse, choices: &Choices) -> String {
    let projects = match &grant.project_ids {
        None => "every project".to_owned(),
        Some(ids) => format!(
            "projects {}",
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{projects}; {}",
        environment_names(&grant.environment_ids, choices)
    )
}

fn team_section(viewer: &Viewer, view: &TeamView, choices: &Choices) -> Markup {
    let team = &view.team;
    let heading = format!("team-{}", team.id);
    html! {
        section.team id={ "team-" (team.name) } aria-labelledby=(heading) {
            h2 id=(heading) { (team.name) }
            @if !team.description.is_empty() { p { (team.description) } }
            h3 { "Members" }
            @if view.members.items.is_empty() { p.none { "No members." } }
            ul.members {
                @for member in &view.members.items {
                    li {
                        (member.name) " " small { "(" (member.kind) ")" } " "
                        form.inline method="post" action={ "/admin/teams/" (team.id) "/members/" (member.user_id) "/remove" } {
                            (page::csrf_field(viewer))
                            button.secondary type="submit" {
                                "Remove " span.visually-hidden { (member.name) " from " (team.name) }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ "/admin/teams/" (team.id) "/members" } {
                (page::csrf_field(viewer))
                label for={ "member-" (team.id) } { "User name" }
                input id={ "member-" (team.id) } name="user" required;
                button type="submit" { "Add member" span.visually-hidden { " to " (team.name) } }
            }
            h3 { "Grants" }
            @if view.grants.items.is_empty() { p.none { "No grants." } }
            ul.grants {
                @for grant in &view.grants.items {
                    li {
                        strong { (grant.role_name) } " in " (grant_scope(grant, choices)) " "
                        form.inline method="post" action={ "/admin/teams/" (team.id) "/grants/" (grant.id) "/remove" } {
                            (page::csrf_field(viewer))
                            button.secondary type="submit" {
                                "Remove " span.visually-hidden { "grant " (grant.role_name) " of " (team.name) }
                            }
                        }
                    }
                }
            }
            form.grant method="post" action={ "/admin/teams/" (team.id) "/grants" } {
                (page::csrf_field(viewer))
                label for={ "role-" (team.id) } { "Role" }
                select id={ "role-" (team.id) } name="role_id" {
                    @for role in &choices.roles { option value=(role.id) { (role.name) } }
                }
                fieldset {
                    legend { "Environments (none chosen: every environment)" }
                    @for environment in &choices.environments {
                        label.check {
                            input type="checkbox" name="environment_id" value=(environment.id);
                            " " (environment.name)
                        }
                    }
                }
                button type="submit" { "Add grant" span.visually-hidden { " to " (team.name) } }
            }
        }
    }
}

/// `POST /admin/teams`.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<TeamForm>,
) -> Result<Response, UiError> {
    let request = CreateTeamRequest {
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
    };
    let answer: Result<TeamResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/teams",
            &request,
        )
        .await;
    finish(
        &ui,
        &viewer,
        answer.map(|team| format!("Team {} is created.", team.name)),
    )
    .await
}

/// `POST /admin/teams/{id}/members`: by the user's name.
pub(crate) async fn add_member(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(team): Path<i64>,
    Form(form): Form<MemberForm>,
) -> Result<Response, UiError> {
    let name = form.user.trim();
    let users: UserPage = ui
        .api
        .get(
            &viewer.caller,
            &format!("/api/users?name={}", kit::escaped(name)),
        )
        .await?;
    let answer = match users.items.first() {
        None => Err(UiError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("there is no user named `{name}`"),
        )),
        Some(UserResponse { id, name, .. }) => ui
            .api
            .act(
                &viewer.submitting(&form.csrf_token),
                Method::POST,
                &format!("/api/teams/{team}/members"),
                Some(&AddMemberRequest { user_id: *id }),
            )
            .await
            .map(|_| format!("{name} is a member now.")),
    };
    finish(&ui, &viewer, answer).await
}

/// `POST /admin/teams/{id}/members/{user_id}/remove`, after a confirmation.
pub(crate) async fn remove_member(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((team, user)): Path<(i64, i64)>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Admin,
            question: format!(
                "Remove user {user} from team {team}? They lose what the team's grants gave them."
            ),
            action: format!("/admin/teams/{team}/members/{user}/remove"),
            fields: Vec::new(),
            yes: "Yes, remove the member".to_owned(),
            cancel: "/admin/teams",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("/api/teams/{team}/members/{user}"),
            None::<&()>,
        )
        .await
        .map(|_| "The member is removed.".to_owned());
    finish(&ui, &viewer, answer).await
}

/// `POST /admin/teams/{id}/grants`: the form's fields repeat (`environment_id`), so
/// they are read as pairs.
pub(crate) async fn add_grant(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(team): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let csrf = value(crate::identity::sessions::CSRF_FIELD).to_owned();
    let Ok(role_id) = value("role_id").parse::<i64>() else {
        let refusal = UiError::refused(StatusCode::UNPROCESSABLE_ENTITY, "choose a role");
        return finish(&ui, &viewer, Err(refusal)).await;
    };
    let environments: Vec<i64> = fields
        .iter()
        .filter(|(n, _)| n == "environment_id")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let request = CreateGrantRequest {
        role_id,
        project_ids: None,
        environment_ids: (!environments.is_empty()).then_some(environments),
    };
    let answer: Result<GrantResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&csrf),
            Method::POST,
            &format!("/api/teams/{team}/grants"),
            &request,
        )
        .await;
    finish(
        &ui,
        &viewer,
        answer.map(|grant| format!("The team has the role {} now.", grant.role_name)),
    )
    .await
}

/// `POST /admin/teams/{id}/grants/{grant_id}/remove`, after a confirmation.
pub(crate) async fn remove_grant(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((team, grant)): Path<(i64, i64)>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Admin,
            question: format!(
                "Remove grant {grant} of team {team}? Its members lose what it gave them."
            ),
            action: format!("/admin/teams/{team}/grants/{grant}/remove"),
            fields: Vec::new(),
            yes: "Yes, remove the grant".to_owned(),
            cancel: "/admin/teams",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("/api/teams/{team}/grants/{grant}"),
            None::<&()>,
        )
        .await
        .map(|_| "The grant is removed.".to_owned());
    finish(&ui, &viewer, answer).await
}

/// After a change: back to the list saying what was done, or the list with the refusal.
async fn finish(
    ui: &Ui,
    viewer: &Viewer,
    answer: Result<String, UiError>,
) -> Result<Response, UiError> {
    match answer {
        Ok(done) => Ok(kit::done("/admin/teams", &done)),
        Err(error) => {
            let refusal = kit::refusal(error)?;
            shown(ui, viewer, None, Some(refusal)).await
        }
    }
}
