//! Signing in and out: `POST /api/login` (a password begins a browser session),
//! `POST /api/login/api-key` (a password buys an API key for the command line),
//! `GET /api/login/oidc` and its callback (single sign-on), `GET /api/session`,
//! `POST /api/logout`, and `PUT /api/users/{id}/password`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    extract::{ConnectInfo, FromRequest, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{
    CodeKeyRequest, CreatedApiKey, LoginKeyRequest, LoginRequest, Problem, SessionResponse,
    SetPasswordRequest,
};
use capstan_core::audit::AuthMethod;
use capstan_db::{DbError, audit::NewEvent};
use secrecy::SecretString;

use super::{
    ApiError,
    auth::{SessionCookie, client_address},
    extract::{ApiJson, ApiPath},
};
use crate::{
    config::OidcSettings,
    identity::{
        self, ClientAddress, Principal,
        oidc::{self, OidcError},
        password::{self, LoginError},
        sessions::{self, Lifetimes},
    },
    node::NodeContext,
};

/// A key bought with a password lives this long unless asked otherwise.
const CLI_KEY_LIFETIME: &str = "30d";
/// How long `capstan login --browser` has to exchange its one-time code.
const CODE_LIFETIME: Duration = Duration::from_secs(120);

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Refused => Self::unauthorized(error.to_string()),
            LoginError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<OidcError> for ApiError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::NotConfigured => Self::not_found(error.to_string()),
            OidcError::Provider(_) => {
                tracing::warn!("single sign-on failed: {error}");
                Self::new(StatusCode::BAD_GATEWAY, error.to_string())
            }
            OidcError::Refused(detail) => Self::bad_request(detail),
            OidcError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

/// A login body: JSON, or a form post from a sign-in page.
pub(crate) struct LoginBody<T>(T);

impl<T, S> FromRequest<S> for LoginBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            let axum::Form(value) = axum::Form::<T>::from_request(request, state)
                .await
                .map_err(|e| {
                    ApiError::unprocessable(format!("the form is not valid: {}", e.body_text()))
                })?;
            Ok(Self(value))
        } else {
            let ApiJson(value) = ApiJson::<T>::from_request(request, state).await?;
            Ok(Self(value))
        }
    }
}

fn lifetimes(ctx: &NodeContext) -> Lifetimes {
    Lifetimes {
        idle: ctx.settings.sign_in.session_idle,
        absolute: ctx.settings.sign_in.session_lifetime,
    }
}

fn peer_address(
    ctx: &NodeContext,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
) -> String {
    client_address(ctx, headers, peer.map(|p| (p.0).0))
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text).map_err(|e| ApiError::internal(&e))
}

/// `POST /api/login`: a person's name and password begin a browser session.
#[utoipa::path(post, path = "/api/login", tag = "sign-in", security(()),
    request_body(content = LoginRequest, content_type = "application/json",
        description = "Also accepted as `application/x-www-form-urlencoded`"),
    responses(
    (status = 200, body = SessionResponse,
        description = "Signed in: the answer sets the `capstan_session` cookie (Secure, HttpOnly, SameSite=Lax)"),
    (status = 401, body = Problem, content_type = "application/problem+json",
        description = "The name or password is not valid (the same answer whatever was wrong); answers slow down after failures"),
))]
pub(crate) async fn login(
    State(ctx): State<Arc<NodeContext>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    LoginBody(request): LoginBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let address = peer_address(&ctx, peer, &headers);
    let who = password::login(
        &ctx.pools.api,
        &request.name,
        SecretString::from(request.password),
        &address,
    )
    .await?;
    let begun = sessions::begin(
        &ctx.pools.api,
        who.user_id,
        &who.user_name,
        AuthMethod::Password,
        &address,
        lifetimes(&ctx),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let body = SessionResponse {
        user_id: who.user_id,
        user_name: who.user_name,
        session_id: begun.public_id.clone(),
        login: AuthMethod::Password.as_str().to_owned(),
        csrf_token: sessions::csrf_token(&begun.cookie_value),
    };
    let cookie = header_value(&sessions::set_cookie(&begun.cookie_value, begun.max_age))?;
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// `POST /api/login/api-key`: a person's name and password buy an API key (for
/// `capstan login`); slowed after failures like `POST /api/login`.
#[utoipa::path(post, path = "/api/login/api-key", tag = "sign-in", security(()),
    request_body = LoginKeyRequest, responses(
    (status = 201, body = CreatedApiKey),
    (status = 401, body = Problem, content_type = "application/problem+json",
        description = "The name or password is not valid"),
))]
pub(crate) async fn create_login_key(
    State(ctx): State<Arc<NodeContext>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let address = peer_address(&ctx, peer, &headers);
    let who = password::login(
        &ctx.pools.api,
        &request.name,
        SecretString::from(request.password),
        &address,
    )
    .await?;
    let failed = |e| ApiError::from_db(e, String::new);
    // The key and its login row commit together.
    let mut tx = crate::audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let (key, row) = identity::create_key(
        &mut tx,
        who.user_id,
        &request.purpose,
        Some(request.expires_in.as_deref().unwrap_or(CLI_KEY_LIFETIME)),
        ctx.settings.api_key_max_lifetime,
    )
    .await?;
    let principal = Principal::ApiKey {
        user_id: who.user_id,
        user_name: who.user_name.clone(),
        service: false,
        key_id: row.key_id.clone(),
    };
    let mut actor = principal.actor(Some(address));
    actor.method = AuthMethod::Password;
    sessions::append_login(&mut *tx, &actor, "login")
        .await
        .map_err(failed)?;
    crate::audit::commit(tx).await.map_err(failed)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key,
            api_key: super::users::key_response(row),
        }),
    ))
}

/// `GET /api/session`: who the session cookie belongs to, and its CSRF token.
#[utoipa::path(get, path = "/api/session", tag = "sign-in", responses(
    (status = 200, body = SessionResponse),
    (status = 400, body = Problem, content_type = "application/problem+json",
        description = "The request was made with an API key, not a session"),
))]
pub(crate) async fn get_session(
    Extension(principal): Extension<Principal>,
    cookie: Option<Extension<SessionCookie>>,
) -> Result<Json<SessionResponse>, ApiError> {
    let (
        Principal::Session {
            user_id,
            user_name,
            session_id,
            login,
        },
        Some(Extension(SessionCookie(value))),
    ) = (principal, cookie)
    else {
        return Err(ApiError::bad_request(
            "this request was made with an API key, which has no session; sign in with POST /api/login",
        ));
    };
    Ok(Json(SessionResponse {
        user_id,
        user_name,
        session_id,
        login: login.as_str().to_owned(),
        csrf_token: sessions::csrf_token(&value),
    }))
}

/// `POST /api/logout`: ends the session on every node at once.
#[utoipa::path(post, path = "/api/logout", tag = "sign-in", responses(
    (status = 204, description = "Signed out: the session is refused by every node, and the cookie is cleared"),
    (status = 400, body = Problem, content_type = "application/problem+json",
        description = "The request was made with an API key, not a session"),
    (status = 403, body = Problem, content_type = "application/problem+json",
        description = "The session's CSRF token is missing or wrong"),
))]
pub(crate) async fn logout(
    State(ctx): State<Arc<NodeContext>>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAddress(address)): Extension<ClientAddress>,
) -> Result<Response, ApiError> {
    if !matches!(principal, Principal::Session { .. }) {
        return Err(ApiError::bad_request(
            "signing out ends a browser session; an API key is revoked with DELETE /api/users/{id}/api-keys/{key_id}",
        ));
    }
    sessions::end(&ctx.pools.api, &principal, &address)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let cookie = header_value(&sessions::clear_cookie())?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// `PUT /api/users/{id}/password`: sets a person's password. A person changing their
/// own gives the current one.
#[utoipa::path(put, path = "/api/users/{id}/password", tag = "users",
    params(("id" = i64, Path)), request_body = SetPasswordRequest, responses(
    (status = 204, description = "The password is set"),
    (status = 403, body = Problem, content_type = "application/problem+json",
        description = "The current password is missing or wrong"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json",
        description = "A service account has no password"),
))]
pub(crate) async fn set_password(
    State(ctx): State<Arc<NodeContext>>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAddress(address)): Extension<ClientAddress>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<SetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let new = SecretString::from(request.password);
    password::check_new(&new).map_err(|e| {
        let mut problems = crate::invalid::FieldProblems::new();
        problems.add("password", e.to_string());
        ApiError::from(identity::IdentityError::Invalid(problems))
    })?;
    let user = capstan_db::users::for_login_by_id(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("there is no user {id}")))?;
    if user.kind != "person" {
        return Err(ApiError::conflict(format!(
            "`{}` is a service account: service accounts never sign in, they hold API keys only",
            user.name
        )));
    }
    if principal.user_id() == Some(id) && user.password_hash.is_some() {
        let old = SecretString::from(request.old_password.unwrap_or_default());
        if !password::verify(old, user.password_hash.clone()).await {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "to change your own password, give the current one as `old_password`",
            ));
        }
    }
    let hash = password::hash(new)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut tx = ctx
        .pools
        .api
        .begin()
        .await
        .map_err(|e| ApiError::from_db(DbError::from(e), String::new))?;
    capstan_db::users::set_password(&mut *tx, id, &hash)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("there is no user {id}")))?;
    // Whoever signed in with the old password is signed out; the session changing its
    // own password stays.
    let own_session = match &principal {
        Principal::Session { session_id, .. } if principal.user_id() == Some(id) => {
            Some(session_id.as_str())
        }
        _ => None,
    };
    capstan_db::sessions::end_all_of(&mut *tx, id, own_session)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    capstan_db::audit::append(
        &mut *tx,
        &NewEvent {
            actor: &principal.actor(Some(address)),
            action: "user.set_password",
            object_kind: "user",
            object_id: Some(id.to_string()),
            object_name: Some(user.name.clone()),
            project_id: None,
            environment_id: None,
            // The password itself never: only that it changed.
            before: None,
            after: Some(serde_json::json!({
                "password": capstan_core::audit::sensitive_change(true)
            })),
        },
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(DbError::from(e), String::new))?;
    tracing::info!(user.name = %user.name, "password of {} set by {principal}", user.name);
    Ok(StatusCode::NO_CONTENT)
}

fn oidc_settings(ctx: &NodeContext) -> Result<&OidcSettings, ApiError> {
    ctx.settings
        .sign_in
        .oidc
        .as_ref()
        .ok_or_else(|| OidcError::NotConfigured.into())
}

fn redirect(location: &str, cookies: &[String]) -> Result<Response, ApiError> {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, header_value(location)?)],
    )
        .into_response();
    for cookie in cookies {
        response
            .headers_mut()
            .append(header::SET_COOKIE, header_value(cookie)?);
    }
    Ok(response)
}

/// Appends the `login.failed` row of a refused single sign-on: anonymous, named by
/// the person when the provider vouched for one.
async fn sso_failed(ctx: &NodeContext, name: &str, address: &str) -> Result<(), ApiError> {
    sessions::append_login(
        &ctx.pools.api,
        &sessions::anonymous(name, address),
        "login.failed",
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(())
}

fn browser_cookie(value: &str, max_age: Duration) -> String {
    format!(
        "{}={value}; Path=/api/login/oidc; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        oidc::BROWSER_COOKIE,
        max_age.as_secs()
    )
}

/// `GET /api/login/oidc`: sends the browser to the OpenID provider. With `cli_port`,
/// begun by `capstan login --browser`: the sign-in ends with a one-time code sent to
/// that loopback port instead of a session.
#[utoipa::path(get, path = "/api/login/oidc", tag = "sign-in", security(()),
    params(("cli_port" = Option<u16>, Query)), responses(
    (status = 303, description = "To the provider's sign-in page"),
    (status = 404, body = Problem, content_type = "application/problem+json",
        description = "Single sign-on is not configured"),
    (status = 502, body = Problem, content_type = "application/problem+json",
        description = "The provider's metadata could not be read"),
))]
pub(crate) async fn start_oidc_login(
    State(ctx): State<Arc<NodeContext>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let settings = oidc_settings(&ctx)?;
    let cli_port =
        match query_param(query.as_deref(), "cli_port") {
            None => None,
            Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p >= 1024).ok_or_else(
                || ApiError::unprocessable("`cli_port` must be a port from 1024 to 65535"),
            )?),
        };
    let started = oidc::start(settings, &ctx.pools.api, cli_port).await?;
    redirect(
        &started.authorize_url,
        &[browser_cookie(&started.browser_cookie, oidc::PENDING_FOR)],
    )
}

/// `GET /api/login/oidc/callback`: the provider sends the browser back here; a
/// session begins.
#[utoipa::path(get, path = "/api/login/oidc/callback", tag = "sign-in", security(()),
    params(("code" = String, Query), ("state" = String, Query)), responses(
    (status = 303, description = "Signed in: the answer sets the `capstan_session` cookie and sends the browser to /"),
    (status = 400, body = Problem, content_type = "application/problem+json",
        description = "The sign-in is unknown, used, expired, from another browser, or refused by the provider"),
    (status = 404, body = Problem, content_type = "application/problem+json",
        description = "Single sign-on is not configured"),
    (status = 502, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn finish_oidc_login(
    State(ctx): State<Arc<NodeContext>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let settings = oidc_settings(&ctx)?;
    let param = |name: &str| query_param(query.as_deref(), name);
    if let Some(error) = param("error") {
        let description = param("error_description").unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "the provider did not sign you in: {error} {description}"
        )));
    }
    let (Some(code), Some(state)) = (param("code"), param("state")) else {
        return Err(ApiError::bad_request(
            "the provider's callback needs `code` and `state`",
        ));
    };
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let browser = sessions::cookie(cookies, oidc::BROWSER_COOKIE);
    let address = peer_address(&ctx, peer, &headers);
    let who = match oidc::finish(settings, &ctx.pools.api, &code, &state, browser).await {
        Ok(who) => who,
        Err(e @ OidcError::Refused(_)) => {
            sso_failed(&ctx, "(single sign-on)", &address).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let person = oidc::person_for(&ctx.pools.api, &who).await?;
    if person.disabled {
        sso_failed(&ctx, &person.name, &address).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("`{}` is disabled", person.name),
        ));
    }
    if let Some(port) = who.cli_port {
        // The CLI's listener gets a one-time code; the key is made when it is exchanged.
        let code = sessions::random_base62(32);
        capstan_db::sessions::create_login_code(
            &ctx.pools.api,
            &sessions::digest(&code),
            person.id,
            time::OffsetDateTime::now_utc() + CODE_LIFETIME,
        )
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
        return redirect(
            &format!("http://127.0.0.1:{port}/?code={code}"),
            &[browser_cookie("", Duration::ZERO)],
        );
    }
    let begun = sessions::begin(
        &ctx.pools.api,
        person.id,
        &person.name,
        AuthMethod::Oidc,
        &address,
        lifetimes(&ctx),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    redirect(
        "/",
        &[
            sessions::set_cookie(&begun.cookie_value, begun.max_age),
            browser_cookie("", Duration::ZERO),
        ],
    )
}

/// `POST /api/login/cli-code`: the one-time code `capstan login --browser` received
/// buys an API key of the person who signed in at the provider.
#[utoipa::path(post, path = "/api/login/cli-code", tag = "sign-in", security(()),
    request_body = CodeKeyRequest, responses(
    (status = 201, body = CreatedApiKey),
    (status = 401, body = Problem, content_type = "application/problem+json",
        description = "The code is unknown, used or older than two minutes"),
))]
pub(crate) async fn create_code_key(
    State(ctx): State<Arc<NodeContext>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CodeKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let address = peer_address(&ctx, peer, &headers);
    let refused = || {
        ApiError::unauthorized(
            "the code is not valid (unknown, used, or older than two minutes); sign in again",
        )
    };
    if request.code.len() > 100 {
        return Err(refused());
    }
    let user_id =
        capstan_db::sessions::take_login_code(&ctx.pools.api, &sessions::digest(&request.code))
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?
            .ok_or_else(refused)?;
    let failed = |e| ApiError::from_db(e, String::new);
    // The key and its login row commit together.
    let mut tx = crate::audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let (key, row) = identity::create_key(
        &mut tx,
        user_id,
        &request.purpose,
        Some(request.expires_in.as_deref().unwrap_or(CLI_KEY_LIFETIME)),
        ctx.settings.api_key_max_lifetime,
    )
    .await?;
    let user = capstan_db::users::get(&mut *tx, user_id)
        .await
        .map_err(failed)?;
    let principal = Principal::ApiKey {
        user_id,
        user_name: user.name,
        service: false,
        key_id: row.key_id.clone(),
    };
    let mut actor = principal.actor(Some(address));
    actor.method = AuthMethod::Oidc;
    sessions::append_login(&mut *tx, &actor, "login")
        .await
        .map_err(failed)?;
    crate::audit::commit(tx).await.map_err(failed)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key,
            api_key: super::users::key_response(row),
        }),
    ))
}
