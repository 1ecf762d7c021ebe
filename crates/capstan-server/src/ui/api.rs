//! The pages' way into the JSON API: each call is a request to this node's own API
//! router, made in-process with the browser's session cookie, its CSRF token and its
//! address. A page can therefore do nothing the same person could not do with the CLI,
//! and every permission check, limit and audit row is the API's own.

use std::net::SocketAddr;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header},
};
use capstan_api::Problem;
use serde::{Serialize, de::DeserializeOwned};
use tower::ServiceExt;

use super::{caller::Caller, error::UiError};
use crate::identity::sessions;

/// The most of an API answer a page reads (a dashboard page of 500 × 20 cells is
/// about 3 MiB).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Headers of the browser's request the API reads too: who is asking and from where.
const FORWARDED: [HeaderName; 3] = [
    header::USER_AGENT,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-request-id"),
];

/// The node's API router, for pages to call.
#[derive(Clone)]
pub(crate) struct Api(Router);

/// A successful answer of the API.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, UiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| UiError::Internal(format!("the API's answer could not be read: {e}")))
    }
}

impl Api {
    pub(crate) fn new(router: Router) -> Self {
        Self(router)
    }

    /// `GET path` (with its query) as the caller.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        path: &str,
    ) -> Result<T, UiError> {
        self.call(caller, Method::GET, path, None).await?.json()
    }

    /// `method path` with a JSON body, as the caller; the answer's JSON.
    pub(crate) async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, UiError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| UiError::Internal(format!("a request could not be written: {e}")))?;
        self.call(caller, method, path, Some(body)).await?.json()
    }

    /// `method path` with a JSON body (or none), as the caller, whatever the answer's
    /// body.
    pub(crate) async fn act<B: Serialize>(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, UiError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| UiError::Internal(format!("a request could not be written: {e}")))?;
        self.call(caller, method, path, body).await
    }

    /// One request to the API; a 4xx or 5xx answer becomes a [`UiError`].
    pub(crate) async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, UiError> {
        let mut request = Request::builder().method(method).uri(path);
        let headers = request.headers_mut().expect("a fresh request builder");
        for name in FORWARDED {
            if let Some(value) = caller.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        if let Some(cookie) = &caller.session {
            let value = format!("{}={cookie}", sessions::SESSION_COOKIE);
            headers.insert(header::COOKIE, header_value(&value)?);
        }
        if let Some(csrf) = &caller.csrf {
            headers.insert(sessions::CSRF_HEADER, header_value(csrf)?);
        }
        let body = match body {
            Some(bytes) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut request = request
            .body(body)
            .map_err(|e| UiError::Internal(format!("a request could not be made: {e}")))?;
        if let Some(peer) = caller.peer {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
        }
        let response = self
            .0
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| UiError::Internal(format!("the API's answer could not be read: {e}")))?;
        if parts.status.is_client_error() || parts.status.is_server_error() {
            return Err(problem(parts.status, &body, path));
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn header_value(text: &str) -> Result<HeaderValue, UiError> {
    HeaderValue::from_str(text)
        .map_err(|_| UiError::Internal("a header held a character it may not".to_owned()))
}

/// The API's problem, or one made up when its answer was not a problem (a route it
/// does not have answers 404 with no body).
fn problem(status: StatusCode, body: &[u8], path: &str) -> UiError {
    let problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| {
        Problem::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            format!("{path} answered {status}"),
        )
    });
    if status == StatusCode::UNAUTHORIZED {
        return UiError::SignIn(problem.detail);
    }
    UiError::Problem { status, problem }
}
