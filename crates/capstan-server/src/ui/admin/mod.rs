//! The administrators' pages: users, teams (members and grants) and roles. Somebody
//! who may not manage users sees the API's refusal in words inside the page.

pub(crate) mod kit;
pub(crate) mod roles;
pub(crate) mod teams;
pub(crate) mod users;

use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

/// Links between the three administration pages.
fn sub_navigation(current: &str) -> Markup {
    let pages = [
        ("users", "/admin/users", "Users"),
        ("teams", "/admin/teams", "Teams"),
        ("roles", "/admin/roles", "Roles"),
    ];
    html! {
        nav.subnav aria-label="Administration" {
            ul {
                @for (name, href, label) in pages {
                    li {
                        a href=(href) aria-current=[(name == current).then_some("page")] { (label) }
                    }
                }
            }
        }
    }
}

/// A page the API refused to fill (most often 403: the viewer may not manage users),
/// with the refusal in words, in the frame, under the refusal's status.
fn refused_page(viewer: &Viewer, title: &str, error: UiError) -> Result<Response, UiError> {
    let (status, problem) = kit::refusal(error)?;
    let body = page::page(
        title,
        viewer,
        Section::Admin,
        html! {
            h1 { (title) }
            (page::problem_box(&problem))
            @if status == axum::http::StatusCode::FORBIDDEN {
                p { "Managing users, teams and roles needs the " code { "manage_users" }
                    " permission. An administrator can grant it to one of your teams." }
            }
        },
    );
    Ok((status, body).into_response())
}
