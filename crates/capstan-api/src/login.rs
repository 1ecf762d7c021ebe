//! Signing in: a person's password or the OpenID provider begins a browser session
//! (a cookie) or yields an API key for the command line.
//!
//! Passwords travel only in requests and are never in any answer.

use serde::{Deserialize, Serialize};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "capstan_session";
/// The header that carries a session's CSRF token on a request that changes anything.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// The form field that carries it on a form post.
pub const CSRF_FIELD: &str = "csrf_token";

/// `POST /api/login`: as JSON, or as a form (`application/x-www-form-urlencoded`).
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(min_length = 1, max_length = 256, format = Password)]
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Who a session belongs to, and the token its changing requests must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub user_id: i64,
    pub user_name: String,
    /// The session's public id, as audit rows name it.
    pub session_id: String,
    /// How it began: `password` or `oidc`.
    pub login: String,
    /// Send as `X-CSRF-Token` (or the form field `csrf_token`) with every POST, PUT,
    /// PATCH and DELETE made with the session cookie.
    pub csrf_token: String,
}

/// `POST /api/login/api-key`: a person's name and password buy an API key for the
/// command line.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginKeyRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(min_length = 1, max_length = 256, format = Password)]
    pub password: String,
    /// What the key is for, e.g. "capstan CLI on laptop-7".
    #[schema(min_length = 1, max_length = 200)]
    pub purpose: String,
    /// How long the key lives, e.g. `30d` [default: 30d].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

impl std::fmt::Debug for LoginKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginKeyRequest")
            .field("name", &self.name)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// `PUT /api/users/{id}/password`. The user itself gives its current password.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    #[schema(min_length = 12, max_length = 256, format = Password)]
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256, format = Password)]
    pub old_password: Option<String>,
}

impl std::fmt::Debug for SetPasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetPasswordRequest { .. }")
    }
}

/// `POST /api/login/cli-code`: the one-time code that `capstan login --browser`
/// received through the browser buys an API key of the person who signed in.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeKeyRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub code: String,
    #[schema(min_length = 1, max_length = 200)]
    pub purpose: String,
    /// How long the key lives, e.g. `30d` [default: 30d].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

impl std::fmt::Debug for CodeKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeKeyRequest")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}
