//! `/environments`: the environments, created and deleted here, and the registration
//! tokens agents register with. A new token is shown once, on the page that answers
//! its creation; lists show only its first characters.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use capstan_api::{
    CreateRegistrationTokenRequest, EnvironmentList, EnvironmentRequest, EnvironmentResponse,
    Problem, RegistrationTokenList, RegistrationTokenResponse,
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

/// What a form sent, to fill it in again beside its problem.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EnvironmentForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    uses: String,
    #[serde(default)]
    expires_in: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Confirmed {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// Which form a refusal belongs to, so its problem is shown beside that form.
enum Refused<'a> {
    Nothing,
    Environment(&'a EnvironmentForm, Problem),
    Token(&'a TokenForm, Problem),
    Other(Problem),
}

/// `GET /environments`.
pub(crate) async fn list(
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

async fn shown(
    ui: &Ui,
    viewer: &Viewer,
    done: Option<&str>,
    status: StatusCode,
    refused: Refused<'_>,
) -> Result<Response, UiError> {
    let environments: EnvironmentList = ui.api.get(&viewer.caller, "/api/environments").await?;
    // Somebody who may not manage agents sees environments without tokens.
    let tokens: Result<RegistrationTokenList, UiError> = ui
        .api
        .get(&viewer.caller, "/api/agents/registration-tokens")
        .await;
    let tokens = match tokens {
        Ok(tokens) => Ok(tokens.items),
        Err(error) => kit::refusal(error).map(|(_, problem)| problem).map(Err)?,
    };
    Ok((
        status,
        environments_page(viewer, &environments.items, &tokens, done, &refused),
    )
        .into_response())
}

fn environments_page(
    viewer: &Viewer,
    environments: &[EnvironmentResponse],
    tokens: &Result<Vec<RegistrationTokenResponse>, Problem>,
    done: Option<&str>,
    refused: &Refused<'_>,
) -> Markup {
    let empty_environment = EnvironmentForm::default();
    let empty_token = TokenForm::default();
    let (environment_form, environment_problem) = match refused {
        Refused::Environment(form, problem) => (*form, Some(problem)),
        _ => (&empty_environment, None),
    };
    let (token_form, token_problem) = match refused {
        Refused::Token(form, problem) => (*form, Some(problem)),
        _ => (&empty_token, None),
    };
    page::page(
        "Environments",
        viewer,
        Section::Environments,
        html! {
            h1 { "Environments" }
            @if let Some(done) = done { (page::notice(done)) }
            @if let Refused::Other(problem) = refused { (page::problem_box(problem)) }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Environment" }
                        th scope="col" { "Description" }
                        th scope="col" { "Created" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for environment in environments {
                            tr id={ "environment-" (environment.name) } {
                                th scope="row" { (environment.name) }
                                td { (environment.description) }
                                td { (page::time(environment.created_at)) }
                                td {
                                    form.inline method="post" action={ "/environments/" (environment.id) "/delete" } {
                                        (page::csrf_field(viewer))
                                        button.danger type="submit" {
                                            "Delete " span.visually-hidden { (environment.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 id="new-environment" { "New environment" }
            @if let Some(problem) = environment_problem { (page::problem_box(problem)) }
            form.panel method="post" action="/environments" aria-labelledby="new-environment" {
                (page::csrf_field(viewer))
                label for="environment-name" { "Name" }
                input id="environment-name" name="name" required maxlength="100"
                    value=(environment_form.name)
                    aria-describedby=[kit::described_by(environment_problem, "name", "environment-name-error")];
                (kit::field_error(environment_problem, "name", "environment-name-error"))
                label for="environment-description" { "Description" }
                input id="environment-description" name="description" value=(environment_form.description);
                p { button type="submit" { "Create environment" } }
            }
            h2 id="tokens" { "Registration tokens" }
            p.hint {
                "An agent registers with a token: "
                code { "capstan-agent register --token … --environment NAME" }
                ". The token is shown once, when it is created."
            }
            @match tokens {
                Err(problem) => { (page::problem_box(problem)) }
                Ok(tokens) => {
                    (token_table(viewer, tokens))
                    h3 id="new-token" { "New registration token" }
                    @if let Some(problem) = token_problem { (page::problem_box(problem)) }
                    form.panel method="post" action="/environments/registration-tokens" aria-labelledby="new-token" {
                        (page::csrf_field(viewer))
                        label for="token-note" { "Note (what it is for)" }
                        input id="token-note" name="note" value=(token_form.note);
                        label for="token-uses" { "Agents that may register with it" }
                        input id="token-uses" name="uses" type="number" min="1" max="10000"
                            value=(token_form.uses) placeholder="1"
                            aria-describedby=[kit::described_by(token_problem, "uses", "token-uses-error")];
                        (kit::field_error(token_problem, "uses", "token-uses-error"))
                        label for="token-expires" { "Valid for (such as 1h or 7d)" }
                        input id="token-expires" name="expires_in" value=(token_form.expires_in) placeholder="24h"
                            aria-describedby=[kit::described_by(token_problem, "expires_in", "token-expires-error")];
                        (kit::field_error(token_problem, "expires_in", "token-expires-error"))
                        p { button type="submit" { "Create token" } }
                    }
                }
            }
        },
    )
}

fn token_table(viewer: &Viewer, tokens: &[RegistrationTokenResponse]) -> Markup {
    html! {
        @if tokens.is_empty() {
            p { "No token is valid now." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Token" }
                        th scope="col" { "Note" }
                        th scope="col" { "Uses left" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Created" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for token in tokens {
                            tr id={ "token-" (token.id) } {
                                th scope="row" { code { (token.prefix) "…" } }
                                td { (token.note.as_deref().unwrap_or("")) }
                                td { (token.uses_left) }
                                td { (page::time(token.expires_at)) }
                                td { (page::time(token.created_at)) }
                                td {
                                    form.inline method="post" action={ "/environments/registration-tokens/" (token.id) "/delete" } {
                                        (page::csrf_field(viewer))
                                        button.danger type="submit" {
                                            "Delete " span.visually-hidden { "token " (token.prefix) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /environments`.
pub(crate) async fn create(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<EnvironmentForm>,
) -> Result<Response, UiError> {
    let request = EnvironmentRequest {
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
    };
    let answer: Result<EnvironmentResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/environments",
            &request,
        )
        .await;
    match answer {
        Ok(created) => Ok(kit::done(
            "/environments",
            &format!("Environment {} is created.", created.name),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(
                &ui,
                &viewer,
                None,
                status,
                Refused::Environment(&form, problem),
            )
            .await
        }
    }
}

/// `POST /environments/{id}/delete`, after a confirmation.
pub(crate) async fn delete(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    let environment: EnvironmentResponse = ui
        .api
        .get(&viewer.caller, &format!("/api/environments/{id}"))
        .await?;
    let name = &environment.name;
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Environments,
            question: format!(
                "Delete the environment {name}? This cannot be undone; the API refuses while agents or deployments still use it."
            ),
            action: format!("/environments/{id}/delete"),
            fields: Vec::new(),
            yes: format!("Yes, delete {name}"),
            cancel: "/environments",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("/api/environments/{id}"),
            None::<&()>,
        )
        .await;
    match answer {
        Ok(_) => Ok(kit::done(
            "/environments",
            &format!("Environment {name} is deleted."),
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Other(problem)).await
        }
    }
}

/// `POST /environments/registration-tokens`: the new token, shown this once.
pub(crate) async fn create_token(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, UiError> {
    let uses = match kit::filled(&form.uses).map(|u| u.parse::<u32>()) {
        None => None,
        Some(Ok(uses)) => Some(uses),
        Some(Err(_)) => {
            let problem = Problem::new(422, "Unprocessable Entity", "the token was not created")
                .with(
                    "errors",
                    serde_json::json!([{"field": "uses", "detail": "a whole number from 1 to 10,000"}]),
                );
            return shown(
                &ui,
                &viewer,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Refused::Token(&form, problem),
            )
            .await;
        }
    };
    let request = CreateRegistrationTokenRequest {
        expires_in: kit::filled(&form.expires_in),
        uses,
        note: kit::filled(&form.note),
    };
    let answer: Result<RegistrationTokenResponse, _> = ui
        .api
        .send(
            &viewer.submitting(&form.csrf_token),
            Method::POST,
            "/api/agents/registration-tokens",
            &request,
        )
        .await;
    match answer {
        Ok(token) => Ok(token_created(&viewer, &token).into_response()),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Token(&form, problem)).await
        }
    }
}

fn token_created(viewer: &Viewer, token: &RegistrationTokenResponse) -> Markup {
    page::page(
        "Registration token created",
        viewer,
        Section::Environments,
        html! {
            h1 { "Registration token created" }
            div.secret-once role="alert" {
                p { strong { "Copy this token now: it is shown this once and never again." }
                    " Only its digest is stored." }
                label for="new-secret" { "Registration token" }
                input id="new-secret" readonly value=(token.token.as_deref().unwrap_or(""));
            }
            p {
                (token.uses_left) " agent(s) may register with it until " (page::time(token.expires_at)) "."
            }
            p { a href="/environments#tokens" { "Back to the environments" } }
        },
    )
}

/// `POST /environments/registration-tokens/{id}/delete`, after a confirmation.
pub(crate) async fn delete_token(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<Confirmed>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        let confirm = Confirm {
            section: Section::Environments,
            question: format!(
                "Delete registration token {id}? No agent can register with it afterwards; agents registered with it keep working."
            ),
            action: format!("/environments/registration-tokens/{id}/delete"),
            fields: Vec::new(),
            yes: "Yes, delete the token".to_owned(),
            cancel: "/environments#tokens",
        };
        return Ok(kit::confirmation(&viewer, &confirm).into_response());
    }
    let answer = ui
        .api
        .act(
            &viewer.submitting(&form.csrf_token),
            Method::DELETE,
            &format!("/api/agents/registration-tokens/{id}"),
            None::<&()>,
        )
        .await;
    match answer {
        Ok(_) => Ok(kit::done(
            "/environments",
            "The registration token is deleted.",
        )),
        Err(error) => {
            let (status, problem) = kit::refusal(error)?;
            shown(&ui, &viewer, None, status, Refused::Other(problem)).await
        }
    }
}
