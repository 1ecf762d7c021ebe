//! `/admin/users`: people and service accounts; create one, disable or enable one
//! (disabling asks first).

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    CreateUserRequest, Problem, UpdateUserRequest, UserKind, UserPage, UserResponse,
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

const PAGE_SIZE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Confirmed {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

enum Refused<'a> {
    Nothing,
    Create(&'a UserForm, Problem),
    Other(Problem),
}

/// `GET /admin/users`.
pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(&ui, &viewer, &query, StatusCode::OK, Refused::Nothing).await
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    query: &ListQuery,
    status: StatusCode,
    refused: Refused<'_>,
) -> Result<Response, UiError> {
    let mut path = format!("/api/users?limit={PAGE_SIZE}");
    if let Some(cursor) = &query.cursor {
        path.push_str(&format!("&cursor={}", kit::escaped(cursor)));
    }
    let users: UserPage = match ui.api.get(&viewer.caller, &path).await {
        Ok(users) => users,
        Err(error) => return refused_page(viewer, "Users", error),
    };
    Ok((
        status,
        users_page(viewer, &users, query.done.as_deref(), &refused),
    )
        .into_response())
}

fn users_page(
    viewer: &Viewer,
    users: &UserPage,
    done: Option<&str>,
    refused: &Refused<'_>,
) -> Markup {
    let empty = UserForm::default();
    let (form, problem) = match refused {
        Refused::Create(form, problem) => (*form, Some(problem)),
        _ => (&empty, None),
    };
    page::page(
        "Users",
        viewer,
        Section::Admin,
        html! {
            h1 { "Users" }
            (sub_navigation("users"))
            @if let Some(done) = done { (page::notice(done)) }
            @if let Refused::Other(problem) = refused { (page::problem_box(problem)) }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "User" }
                        th scope="col" { "Display name" }
                        th scope="col" { "Email" }
                        th scope="col" { "Kind" }
                        th scope="col" { "State" }
                        th scope="col" { "Created" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for user in &users.items { (user_row(viewer, user)) }
                    }
                }
            }
            (kit::next_page("/admin/users", users.next.as_deref()))
            h2 id="new-user" { "New user" }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form.panel method="post" action="/admin/users" aria-labelledby="new-user" {
                (page::csrf_field(viewer))
                label for="user-name" { "Name (signs in with it)" }
                input id="user-name" name="name" required maxlength="100" value=(form.name)
                    aria-describedby=[kit::described_by(problem, "name", "user-name-error")];
                (kit::field_error(problem, "name", "user-name-error"))
                label for="user-display-name" { "Display name" }
                input id="user-display-name" name="display_name" maxlength="200" value=(form.display_name);
                label for="user-email" { "Email" }
                input id="user-email" name="email" type="email" maxlength="200" value=(form.email)
                    aria-describedby=[kit::described_by(problem, "email", "user-email-error")];
                (kit::field_error(problem, "email", "user-email-error"))
                label for="user-kind" { "Kind" }
                select id="user-kind" name="kind" {
                    option value="person" selected[form.kind != "service"] { "Person (signs in)" }
                    option value="service" selected[form.kind == "service"] { "Service account (API keys only)" }
                }
                p { button type="submit" { "Create user" } }
            }
        },
    )
}

fn user_row(viewer: &Viewer, user: &UserResponse) -> Markup {
    let action = if user.disabled { "enable" } else { "disable" };
    html! {
        tr id={ "user-" (user.name) } {
            th scope="row" { (user.name) }
            td { (user.display_name) }
            td { (user.email.as_deref().unwrap_or("")) }
            td { (user.kind.as_str()) }
            td { (page::state(if user.disabled { "disabled" } else { "active" })) }
            td { (page::time(user.created_at)) }
            td {
                @if user.id != viewer.user_id {
                    form.inline method="post" action={ "/admin/users/" (user.id) "/" (action) } {
                        (page::csrf_field(viewer))
                        button.secondary type="submit" {
                            (if user.disabled { "Enable " } else { "Disable " })
                            span.visually-hidden { (user.name) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /admin/users`.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<UserForm>,
) -> Result<Response, UiError> {
    let request = CreateUserRequest {
        name: form.name.trim().to_owned(),
        display_name: kit::filled(&form.display_name),
        email: kit::filled(&form.email),
        kind: if form.kind == "service" {
            UserKind::Service
        } else {
            UserKind::Person
        },
    };
    let answer: Result<UserResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/users",
            &request,
        )
        .await;
    match answer {
        Ok(user) => Ok(kit::done(
            "/admin/users",
            &format!("User {} is created.", user.name),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            let query = ListQuery::default();
            shown(
                &ui,
                &viewer,
                &query,
                status,
                Refused::Create(&form, problem),
            )
            .await
        }
    }
}

/// `POST /admin/users/{id}/{disable|enable}`; disabling asks first.
pub(crate) async fn act(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        other => {
            return Err(UiError::not_found(format!(
                "a user has no action `{other}`: disable or enable"
            )));
        }
    };
    let user: UserResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/users/{id}"))
        .await?;
    if disabled && form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Admin,
            question: format!(
                "Disable {}? They cannot sign in and their API keys are refused until enabled again.",
                user.name
            ),
            action: format!("/admin/users/{id}/disable"),
            fields: Vec::new(),
            yes: format!("Yes, disable {}", user.name),
            cancel: "/admin/users",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let request = UpdateUserRequest {
        disabled: Some(disabled),
        ..Default::default()
    };
    let answer: Result<UserResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::PATCH,
            &format!("/api/users/{id}"),
            &request,
        )
        .await;
    match answer {
        Ok(user) => Ok(kit::done(
            "/admin/users",
            &format!("{} is {action}d.", user.name),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            let query = ListQuery::default();
            shown(&ui, &viewer, &query, status, Refused::Other(problem)).await
        }
    }
}
