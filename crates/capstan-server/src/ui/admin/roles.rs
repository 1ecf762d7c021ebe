//! `/admin/roles`: the built-in and custom roles with their permissions; create a
//! custom role.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    Problem,
    access::{CreateRoleRequest, RoleList, RoleResponse},
};
use maud::{Markup, html};

use super::{
    kit::{self, ListQuery},
    refused_page, sub_navigation,
};
use crate::ui::{
    Ui,
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Every permission a role can hold, as the API names them.
const PERMISSIONS: &[&str] = &[
    "view",
    "edit_process",
    "create_release",
    "deploy",
    "answer_interventions",
    "manage_projects",
    "manage_environments",
    "manage_agents",
    "manage_nodes",
    "manage_users",
    "view_audit",
    "override_freeze",
];

/// `GET /admin/roles`.
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
    let roles: RoleList = match ui.api.get(&viewer.caller, "/api/roles").await {
        Ok(roles) => roles,
        Err(error) => return refused_page(viewer, "Roles", error),
    };
    let status = refusal.as_ref().map(|(s, _)| *s);
    let problem = refusal.as_ref().map(|(_, p)| p);
    Ok(kit::shown(
        status,
        roles_page(viewer, &roles.items, done, problem),
    ))
}

fn roles_page(
    viewer: &Viewer,
    roles: &[RoleResponse],
    done: Option<&str>,
    problem: Option<&Problem>,
) -> Markup {
    page::page(
        "Roles",
        viewer,
        Section::Admin,
        html! {
            h1 { "Roles" }
            (sub_navigation("roles"))
            @if let Some(done) = done { (page::notice(done)) }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Role" }
                        th scope="col" { "Description" }
                        th scope="col" { "Permissions" }
                        th scope="col" { "Kind" }
                    } }
                    tbody {
                        @for role in roles {
                            tr id={ "role-" (role.name) } {
                                th scope="row" { (role.name) }
                                td { (role.description) }
                                td { @for p in &role.permissions { code { (p) } " " } }
                                td { (if role.built_in { "built in" } else { "custom" }) }
                            }
                        }
                    }
                }
            }
            h2 id="new-role" { "New role" }
            @if let Some(problem) = problem { (page::problem_box(problem)) }
            form.panel method="post" action="/admin/roles" aria-labelledby="new-role" {
                (page::csrf_field(viewer))
                label for="role-name" { "Name" }
                input id="role-name" name="name" required maxlength="100"
                    aria-describedby=[kit::described_by(problem, "name", "role-name-error")];
                (kit::field_error(problem, "name", "role-name-error"))
                label for="role-description" { "Description" }
                input id="role-description" name="description" maxlength="200";
                fieldset {
                    legend { "Permissions" }
                    @for permission in PERMISSIONS {
                        label.check {
                            input type="checkbox" name="permission" value=(permission);
                            " " code { (permission) }
                        }
                    }
                }
                (kit::field_error(problem, "permissions", "role-permissions-error"))
                p { button type="submit" { "Create role" } }
            }
        },
    )
}

/// `POST /admin/roles`: the permission boxes repeat, so fields are read as pairs.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let request = CreateRoleRequest {
        name: value("name"),
        description: value("description"),
        permissions: fields
            .iter()
            .filter(|(n, _)| n == "permission")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    let csrf = value(crate::identity::sessions::CSRF_FIELD);
    let answer: Result<RoleResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&csrf),
            Method::POST,
            "/api/roles",
            &request,
        )
        .await;
    match answer {
        Ok(role) => Ok(kit::done(
            "/admin/roles",
            &format!("Role {} is created.", role.name),
        )),
        Err(error) => {
            let refusal = kit::refusal(error)?;
            shown(&ui, &viewer, None, Some(refusal)).await
        }
    }
    .map(IntoResponse::into_response)
}
