//! Who is asking: the browser's session cookie, address and headers, as a page passes
//! them on to the API; and, once the API has recognised the session, the signed-in
//! [`Viewer`].

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts, OriginalUri},
    http::{HeaderMap, request::Parts},
};
use capstan_api::SessionResponse;

use super::{Ui, error::UiError};
use crate::identity::sessions;

/// The browser behind a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub headers: HeaderMap,
    pub peer: Option<SocketAddr>,
    /// The session cookie's value, if the browser sent one.
    pub session: Option<String>,
    /// The CSRF token a submitted form carried. Only a form's own token is passed on:
    /// the API refuses a change without it, so a form posted from another site fails
    /// there.
    pub csrf: Option<String>,
}

impl Caller {
    /// The same caller, submitting a form that carried `token`.
    pub(crate) fn submitting(&self, token: &str) -> Self {
        Self {
            csrf: Some(token.to_owned()),
            ..self.clone()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = sessions::cookie(
            parts
                .headers
                .get_all(axum::http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            sessions::SESSION_COOKIE,
        )
        .map(str::to_owned);
        Ok(Self {
            headers: parts.headers.clone(),
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            session,
            csrf: None,
        })
    }
}

/// A signed-in person; a page that needs one sends anybody else to the sign-in page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub caller: Caller,
    pub user_id: i64,
    pub user_name: String,
    /// The token this page's forms carry.
    pub csrf_token: String,
}

impl Viewer {
    /// The caller, submitting a form that carried `token`.
    pub(crate) fn submitting(&self, token: &str) -> Caller {
        self.caller.submitting(token)
    }
}

impl FromRequestParts<Arc<Ui>> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Self, UiError> {
        let here = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |uri| uri.0.clone())
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        let caller = Caller::from_request_parts(parts, ui)
            .await
            .unwrap_or_else(|never| match never {});
        if caller.session.is_none() {
            return Err(UiError::SignInFirst { next: here });
        }
        let session: SessionResponse = match ui.api.get(&caller, "/api/session").await {
            Ok(session) => session,
            Err(UiError::SignIn(_)) => return Err(UiError::SignInFirst { next: here }),
            Err(other) => return Err(other),
        };
        Ok(Self {
            caller,
            user_id: session.user_id,
            user_name: session.user_name,
            csrf_token: session.csrf_token,
        })
    }
}
