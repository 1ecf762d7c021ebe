//! Users (people and service accounts) and their API keys.
//!
//! A key's text (`capk_…`) is in the answer to its creation only; lists show its
//! public `key_id`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a user is: a person, or a service account (API only, never logs in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Person,
    Service,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Service => "service",
        }
    }
}

/// `POST /api/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub email: Option<String>,
    pub kind: UserKind,
}

/// `PATCH /api/users/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserResponse {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub kind: UserKind,
    pub disabled: bool,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// `GET /api/users?name=&limit=&cursor=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// A whole name, in any case.
    pub name: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One page of `GET /api/users`, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<UserResponse>,
    pub next: Option<String>,
}

/// `POST /api/users/{id}/api-keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub purpose: String,
    /// How long the key lives, such as `90d` (default 180 days, at most
    /// `CAPSTAN_API_KEY_MAX_LIFETIME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyResponse {
    /// The public part of the key.
    pub key_id: String,
    pub user_id: i64,
    pub purpose: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_address: Option<String>,
}

/// The answer to `POST /api/users/{id}/api-keys`: the only time `key` is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// Send as `Authorization: Bearer <key>`; it is not stored and cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKeyResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyResponse>,
}
