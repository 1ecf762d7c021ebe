//! Bearer API keys: `CAPSTAN_ADMIN_API_KEY`, or a user's or service account's key
//! (`capk_…`, see [`crate::identity::keys`]); without an `Authorization` header, a
//! person's session cookie (see [`crate::identity::sessions`]). The request's
//! [`Principal`] goes into its extensions; what it may do is the next layer's question
//! (see [`super::access`]).
//!
//! A request made with the session cookie that changes anything (POST, PUT, PATCH,
//! DELETE) must carry the session's CSRF token, in the `X-CSRF-Token` header or, for a
//! form post, the `csrf_token` field: a browser sends the cookie with a forged request
//! from another site, but that site cannot know the token. Bearer keys are never sent
//! by a browser on its own, so their requests are exempt.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{ApiError, client_addr};
use crate::{
    identity::{ClientAddress, Principal, keys, sessions},
    node::NodeContext,
};

pub(crate) async fn require_api_key(
    State(ctx): State<Arc<NodeContext>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(header) = request.headers().get(header::AUTHORIZATION) else {
        return with_session(&ctx, request, next).await;
    };
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <key>`"))?;
    if presented.starts_with("capagt_") || presented.starts_with("capreg_") {
        return Err(ApiError::unauthorized(
            "agent credentials and registration tokens reach only the agent protocol (/api/agent/…, /api/agents/register); send an API key",
        ));
    }
    let address = address(&ctx, &request);
    let principal = if presented.starts_with(keys::PREFIX) {
        let key = keys::parse(presented).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        ctx.api_keys
            .authenticate(&ctx.pools.api, &key, address.clone())
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?
            .map_err(|refused| ApiError::unauthorized(refused.to_string()))?
    } else {
        let Some(admin_key) = &ctx.settings.admin_api_key else {
            return Err(ApiError::unauthorized(
                "the API key is not valid (this node has no admin key: CAPSTAN_ADMIN_API_KEY is unset)",
            ));
        };
        if !same_secret(presented, admin_key.expose_secret()) {
            return Err(ApiError::unauthorized("the API key is not valid"));
        }
        Principal::AdminKey
    };
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(ClientAddress(address));
    Ok(named(next.run(request).await, principal))
}

/// The response carries its principal too, so the request's log line names who sent it.
fn named(mut response: Response, principal: Principal) -> Response {
    response.extensions_mut().insert(principal);
    response
}

/// The value of a request's session cookie, put into its extensions next to a
/// session's [`Principal`]: `GET /api/session` derives the CSRF token from it.
#[derive(Clone)]
pub(crate) struct SessionCookie(pub String);

/// The most a form post may hold when its CSRF field must be read from it.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Authenticates a request without an `Authorization` header by its session cookie.
async fn with_session(
    ctx: &NodeContext,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let cookies = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(value) = sessions::cookie(cookies, sessions::SESSION_COOKIE).map(str::to_owned) else {
        return Err(ApiError::unauthorized(
            "send an API key as `Authorization: Bearer <key>`, or sign in (POST /api/login)",
        ));
    };
    let principal =
        sessions::authenticate(&ctx.pools.api, &value, ctx.settings.sign_in.session_idle)
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "the session has ended (signed out, expired or idle too long); sign in again",
                )
            })?;
    if changes_something(request.method()) {
        request = check_csrf(request, &value).await?;
    }
    let address = address(ctx, &request);
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(ClientAddress(address));
    request.extensions_mut().insert(SessionCookie(value));
    Ok(named(next.run(request).await, principal))
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Passes a request that carries the session's CSRF token, in its header or (for a
/// form post) its form; the body read for the form is put back.
async fn check_csrf(request: Request, cookie: &str) -> Result<Request, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a request made with the session cookie that changes anything must carry the session's CSRF token in the `{}` header (or the `{}` form field); GET /api/session gives it",
                sessions::CSRF_HEADER,
                sessions::CSRF_FIELD
            ),
        )
    };
    if let Some(token) = request.headers().get(sessions::CSRF_HEADER) {
        return match token.to_str() {
            Ok(token) if sessions::csrf_matches(cookie, token) => Ok(request),
            _ => Err(refused()),
        };
    }
    if !is_form(request.headers()) {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a form post holds at most {MAX_FORM_BYTES} bytes"),
            )
        })?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == sessions::CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    match token {
        Some(token) if sessions::csrf_matches(cookie, &token) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The client's address, as the request log records it.
fn address(ctx: &NodeContext, request: &Request) -> String {
    client_address(
        ctx,
        request.headers(),
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0),
    )
}

/// The client's address from the peer and `X-Forwarded-For` through the trusted
/// proxies.
pub(crate) fn client_address(
    ctx: &NodeContext,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> String {
    client_addr::of_request(peer.map(|p| p.ip()), headers, &ctx.settings.trusted_proxies)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// Compares digests so the time taken does not reveal how much of a key was right.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    keys::same_digest(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!same_secret("abcdefghijklmnoq", "abcdefghijklmnop"));
        assert!(!same_secret("", "abcdefghijklmnop"));
    }
}
