//! What a page answers when it cannot show what was asked: the sign-in page for
//! somebody not signed in, or the API's problem in words.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::Problem;
use maud::html;

use super::page;

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum UiError {
    /// Nobody is signed in: to the sign-in page, and back to `next` after.
    SignInFirst { next: String },
    /// The API did not recognise the session (it ended); the detail says why.
    SignIn(String),
    /// The API refused or failed; its problem, shown as it is.
    Problem {
        status: StatusCode,
        problem: Problem,
    },
    /// Something in this node failed that the person cannot fix.
    Internal(String),
}

impl UiError {
    /// A refusal the page itself makes, in the API's shape.
    pub(crate) fn refused(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Problem {
            status,
            problem: Problem::new(
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error"),
                detail,
            ),
        }
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::refused(StatusCode::NOT_FOUND, detail)
    }

    /// The problem of a refusal, to show beside a form that is shown again.
    pub(crate) fn into_problem(self) -> Result<Problem, Self> {
        match self {
            Self::Problem { problem, .. } => Ok(problem),
            other => Err(other),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            Self::SignInFirst { next } => see_other(&page::sign_in_url(&next)),
            Self::SignIn(_) => see_other("/login"),
            Self::Problem { status, problem } => {
                let body = page::bare(
                    &problem.title,
                    html! {
                        h1 { (problem.title) }
                        (page::problem_box(&problem))
                        p { a href="/" { "Back to the dashboard" } }
                    },
                );
                (status, body).into_response()
            }
            Self::Internal(detail) => {
                tracing::error!(%detail, "a page failed");
                let body = page::bare(
                    "Something failed",
                    html! {
                        h1 { "Something failed" }
                        p role="alert" { "This node could not show the page: " (detail) }
                    },
                );
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
        }
    }
}

/// A `303 See Other` to `location` (a path on this site).
pub(crate) fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}
