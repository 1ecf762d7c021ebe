//! Signing in (password, or single sign-on when the node has a provider) and out.
//!
//! The sign-in form is protected against a forged post (which would sign a victim into
//! the forger's account) by a double-submitted token: the page sets it in a cookie only
//! this site can read and in the form; a post must carry both, equal.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::LoginRequest;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    caller::Caller,
    error::{UiError, see_other},
    page,
};
use crate::identity::sessions;

/// The cookie holding the sign-in form's token.
const LOGIN_COOKIE: &str = "capstan_login";

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path on this site, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next
        }
        _ => "/",
    }
}

/// `GET /login`.
pub(crate) async fn form(State(ui): State<Arc<Ui>>, Query(query): Query<Next>) -> Response {
    let token = sessions::random_base62(32);
    let body = sign_in_page(&ui, safe_next(query.next.as_deref()), &token, None, "");
    with_login_cookie(body.into_response(), &token)
}

fn with_login_cookie(mut response: Response, token: &str) -> Response {
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn sign_in_page(
    ui: &Ui,
    next: &str,
    token: &str,
    problem: Option<&capstan_api::Problem>,
    name: &str,
) -> Markup {
    let sso = ui.ctx.settings.sign_in.oidc.is_some();
    page::bare(
        "Sign in",
        html! {
            section.sign-in {
                h1 { "Sign in" }
                @if let Some(problem) = problem { (page::problem_box(problem)) }
                form method="post" action="/login" {
                    input type="hidden" name="login_token" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="name" { "Name" }
                    input id="name" name="name" type="text" autocomplete="username" required autofocus value=(name);
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
                @if sso {
                    p.or { "or" }
                    a.button href="/api/login/oidc" { "Sign in with single sign-on" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    login_token: String,
}

/// `POST /login`: the API's `POST /api/login`, and its cookie handed to the browser.
pub(crate) async fn sign_in(
    State(ui): State<Arc<Ui>>,
    caller: Caller,
    Form(form): Form<SignIn>,
) -> Result<Response, UiError> {
    let next = safe_next(form.next.as_deref()).to_owned();
    let cookie = sessions::cookie(
        caller
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        LOGIN_COOKIE,
    );
    if form.login_token.is_empty() || cookie != Some(form.login_token.as_str()) {
        let token = sessions::random_base62(32);
        let problem = capstan_api::Problem::new(
            403,
            "Forbidden",
            "the sign-in form had expired or was not this site's; sign in again",
        );
        let body = sign_in_page(&ui, &next, &token, Some(&problem), &form.name);
        return Ok(with_login_cookie(
            (StatusCode::FORBIDDEN, body).into_response(),
            &token,
        ));
    }
    let request = LoginRequest {
        name: form.name.clone(),
        password: form.password,
    };
    let anonymous = Caller {
        session: None,
        ..caller
    };
    match ui
        .api
        .act(&anonymous, Method::POST, "/api/login", Some(&request))
        .await
    {
        Ok(answer) => {
            let mut response = see_other(&next);
            for cookie in answer.headers.get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            Ok(response)
        }
        Err(UiError::SignIn(detail)) => {
            let problem = capstan_api::Problem::new(401, "Unauthorized", detail);
            let body = sign_in_page(&ui, &next, &form.login_token, Some(&problem), &form.name);
            Ok((StatusCode::UNAUTHORIZED, body).into_response())
        }
        Err(other) => {
            let status = match &other {
                UiError::Problem { status, .. } => *status,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let problem = other.into_problem()?;
            let body = sign_in_page(&ui, &next, &form.login_token, Some(&problem), &form.name);
            Ok((status, body).into_response())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SignOut {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /logout`: the API's `POST /api/logout` (which checks the form's token).
pub(crate) async fn sign_out(
    State(ui): State<Arc<Ui>>,
    caller: Caller,
    Form(form): Form<SignOut>,
) -> Result<Response, UiError> {
    let answer = ui
        .api
        .act::<()>(
            &caller.submitting(&form.csrf_token),
            Method::POST,
            "/api/logout",
            None,
        )
        .await;
    let mut response = see_other("/login");
    match answer {
        Ok(answer) => {
            for cookie in answer.headers.get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
        }
        // The session had ended already: signed out all the same.
        Err(UiError::SignIn(_)) => {}
        Err(other) => return Err(other),
    }
    Ok(response)
}
