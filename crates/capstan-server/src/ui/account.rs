//! `/account`: the signed-in person's own API keys (listed by their public id, a new
//! one shown once, revoked after a confirmation) and their password.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    ApiKeyList, ApiKeyResponse, CreateApiKeyRequest, CreatedApiKey, Problem, SetPasswordRequest,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ui,
    admin::kit::{self, Confirm, ListQuery},
    caller::Viewer,
    error::UiError,
    page::{self, Section},
};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    expires_in: String,
}

/// Passwords are never filled in again when the form comes back.
#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    old_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeated: String,
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
    Key(&'a KeyForm, Problem),
    Password(Problem),
    Other(Problem),
}

/// `GET /account`.
pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    shown(
        &ui,
        &viewer,
        query.done.as_deref(),
        StatusCode::OK,
        Refused::Nothing,
    )
    .await
}

fn keys_path(viewer: &Viewer) -> String {
    format!("/api/users/{}/api-keys", viewer.user_id)
}

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    done: Option<&str>,
    status: StatusCode,
    refused: Refused<'_>,
) -> Result<Response, UiError> {
    let keys: ApiKeyList = ui.api.get(&viewer.caller, &keys_path(viewer)).await?;
    Ok((status, account_page(viewer, &keys.items, done, &refused)).into_response())
}

fn account_page(
    viewer: &Viewer,
    keys: &[ApiKeyResponse],
    done: Option<&str>,
    refused: &Refused<'_>,
) -> Markup {
    let empty = KeyForm::default();
    let (key_form, key_problem) = match refused {
        Refused::Key(form, problem) => (*form, Some(problem)),
        _ => (&empty, None),
    };
    let password_problem = match refused {
        Refused::Password(problem) => Some(problem),
        _ => None,
    };
    page::page(
        "Your account",
        viewer,
        Section::Account,
        html! {
            h1 { "Your account: " (viewer.user_name) }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Refused::Other(problem) = refused { (page::problem_box(problem)) }
            h2 id="keys" { "API keys" }
            p.hint { "A key acts as you from the CLI or a script. Its secret is shown once, when it is created." }
            @if keys.is_empty() {
                p { "You have no API key." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th scope="col" { "Key" }
                            th scope="col" { "Purpose" }
                            th scope="col" { "Created" }
                            th scope="col" { "Expires" }
                            th scope="col" { "Last used" }
                            th scope="col" { "State" }
                            th scope="col" { "Actions" }
                        } }
                        tbody { @for key in keys { (key_row(viewer, key)) } }
                    }
                }
            }
            h3 id="new-key" { "New API key" }
            @if let Some(problem) = key_problem { (page::problem_box(problem)) }
            form.panel method="post" action="/account/api-keys" aria-labelledby="new-key" {
                (page::csrf_field(viewer))
                label for="key-purpose" { "Purpose" }
                input id="key-purpose" name="purpose" required maxlength="200" value=(key_form.purpose)
                    aria-describedby=[kit::described_by(key_problem, "purpose", "key-purpose-error")];
                (kit::field_error(key_problem, "purpose", "key-purpose-error"))
                label for="key-expires" { "Valid for (such as 90d)" }
                input id="key-expires" name="expires_in" value=(key_form.expires_in) placeholder="180d"
                    aria-describedby=[kit::described_by(key_problem, "expires_in", "key-expires-error")];
                (kit::field_error(key_problem, "expires_in", "key-expires-error"))
                p { button type="submit" { "Create key" } }
            }
            h2 id="password" { "Password" }
            @if let Some(problem) = password_problem { (page::problem_box(problem)) }
            form.panel method="post" action="/account/password" aria-labelledby="password" {
                (page::csrf_field(viewer))
                label for="old-password" { "Current password" }
                input id="old-password" name="old_password" type="password" autocomplete="current-password"
                    aria-describedby=[kit::described_by(password_problem, "old_password", "old-password-error")];
                (kit::field_error(password_problem, "old_password", "old-password-error"))
                label for="new-password" { "New password (at least 12 characters)" }
                input id="new-password" name="password" type="password" autocomplete="new-password" required minlength="12"
                    aria-describedby=[kit::described_by(password_problem, "password", "new-password-error")];
                (kit::field_error(password_problem, "password", "new-password-error"))
                label for="repeated-password" { "New password again" }
                input id="repeated-password" name="repeated" type="password" autocomplete="new-password" required
                    aria-describedby=[kit::described_by(password_problem, "repeated", "repeated-password-error")];
                (kit::field_error(password_problem, "repeated", "repeated-password-error"))
                p { button type="submit" { "Change password" } }
            }
        },
    )
}

fn key_row(viewer: &Viewer, key: &ApiKeyResponse) -> Markup {
    html! {
        tr id={ "key-" (key.key_id) } {
            th scope="row" { code { (key.key_id) } }
            td { (key.purpose) }
            td { (page::time(key.created_at)) }
            td { (page::time(key.expires_at)) }
            td {
                (page::maybe_time(key.last_used_at))
                @if let Some(address) = &key.last_used_address { br; small { "from " (address) } }
            }
            td {
                @if let Some(at) = key.revoked_at { (page::state("revoked")) " " (page::time(at)) }
                @else { (page::state("active")) }
            }
            td {
                @if key.revoked_at.is_none() {
                    form.inline method="post" action={ "/account/api-keys/" (key.key_id) "/revoke" } {
                        (page::csrf_field(viewer))
                        button.danger type="submit" {
                            "Revoke " span.visually-hidden { (key.key_id) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /account/api-keys`: the new key, shown this once.
pub(crate) async fn create_key(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<KeyForm>,
) -> Result<Response, UiError> {
    let request = CreateApiKeyRequest {
        purpose: form.purpose.trim().to_owned(),
        expires_in: kit::filled(&form.expires_in),
    };
    let answer: Result<CreatedApiKey, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            &keys_path(&viewer),
            &request,
        )
        .await;
    match answer {
        Ok(created) => Ok(key_created(&viewer, &created).into_response()),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Key(&form, problem)).await
        }
    }
}

fn key_created(viewer: &Viewer, created: &CreatedApiKey) -> Markup {
    page::page(
        "API key created",
        viewer,
        Section::Account,
        html! {
            h1 { "API key created" }
            div.secret-once role="alert" {
                p { strong { "Copy this key now: it is shown this once and never again." }
                    " Only its digest is stored." }
                label for="new-secret" { "API key for " (created.api_key.purpose) }
                input id="new-secret" readonly value=(created.key);
            }
            p { "Send it as " code { "Authorization: Bearer <key>" } "; it expires " (page::time(created.api_key.expires_at)) "." }
            p { a href="/account#keys" { "Back to your account" } }
        },
    )
}

/// `POST /account/api-keys/{key_id}/revoke`, after a confirmation.
pub(crate) async fn revoke_key(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(key_id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Account,
            question: format!(
                "Revoke the API key {key_id}? Whatever uses it is refused from now on; this cannot be undone."
            ),
            action: format!("/account/api-keys/{}/revoke", kit::escaped(&key_id)),
            fields: Vec::new(),
            yes: format!("Yes, revoke {key_id}"),
            cancel: "/account#keys",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("{}/{}", keys_path(&viewer), kit::escaped(&key_id)),
            None::<&()>,
        )
        .await;
    match answer {
        Ok(_) => Ok(kit::done(
            "/account",
            &format!("The API key {key_id} is revoked."),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Other(problem)).await
        }
    }
}

/// `POST /account/password`.
pub(crate) async fn change_password(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    if form.password != form.repeated {
        let problem = Problem::new(422, "Unprocessable Entity", "the password was not changed")
            .with(
                "errors",
                serde_json::json!([{"field": "repeated", "detail": "the two new passwords differ"}]),
            );
        return shown(
            &ui,
            &viewer,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            Refused::Password(problem),
        )
        .await;
    }
    let request = SetPasswordRequest {
        password: form.password,
        old_password: (!form.old_password.is_empty()).then_some(form.old_password),
    };
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::PUT,
            &format!("/api/users/{}/password", viewer.user_id),
            Some(&request),
        )
        .await;
    match answer {
        Ok(_) => Ok(kit::done("/account", "Your password is changed.")),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Password(problem)).await
        }
    }
}
