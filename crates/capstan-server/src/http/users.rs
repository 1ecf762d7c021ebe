//! `/api/users`: users, service accounts and their API keys.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    ApiKeyList, ApiKeyResponse, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey, Problem,
    UpdateUserRequest, UserKind, UserPage, UserQuery, UserResponse,
};
use capstan_db::{
    DbError,
    notify::UserNotice,
    users::{self, ApiKeyRow, NewUser, UserChange, UserRow},
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
    problems::Problems,
};
use crate::audit::{self, Change, ChangedBy};
use crate::identity::{self, IdentityError, check_name, check_text};
use crate::node::NodeContext;

const DEFAULT_PAGE: u32 = 100;
/// Most keys one list shows (a user has at most 100 live ones, plus revoked ones).
const MAX_KEYS_LISTED: i64 = 500;

fn user_response(row: UserRow) -> UserResponse {
    UserResponse {
        id: row.id,
        name: row.name,
        display_name: row.display_name,
        email: row.email,
        kind: if row.kind == "service" {
            UserKind::Service
        } else {
            UserKind::Person
        },
        disabled: row.disabled,
        created_at: row.created_at,
    }
}

pub(crate) fn key_response(row: ApiKeyRow) -> ApiKeyResponse {
    ApiKeyResponse {
        key_id: row.key_id,
        user_id: row.user_id,
        purpose: row.purpose,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
        last_used_address: row.last_used_address,
    }
}

fn user_error(e: DbError, id: i64, name: &str) -> IdentityError {
    match e {
        DbError::Conflict { constraint } if constraint == "users_name" => {
            IdentityError::Conflict(format!("a user named `{name}` already exists"))
        }
        other => identity::not_found(other, id),
    }
}

/// `POST /api/users`.
#[utoipa::path(post, path = "/api/users", tag = "users",
    request_body = CreateUserRequest, responses(
    (status = 201, body = UserResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_user(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let mut problems = Problems::new();
    let name = check_name(&mut problems, &request.name);
    let display_name = request
        .display_name
        .as_deref()
        .map(|d| check_text(&mut problems, "display_name", d));
    let email = request
        .email
        .as_deref()
        .map(|e| check_text(&mut problems, "email", e));
    problems.finish()?;
    let name = name.unwrap_or_default();
    let failed = |e| user_error(e, 0, &name);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = users::create(
        &mut *tx,
        &NewUser {
            name: &name,
            display_name: display_name.flatten().as_deref().unwrap_or_default(),
            email: email.flatten().as_deref(),
            kind: request.kind.as_str(),
        },
    )
    .await
    .map_err(failed)?;
    let user = user_response(row);
    Change::new("user.create")
        .object(user.id, &user.name)
        .after(&user)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /api/users`: by id, in pages.
#[utoipa::path(get, path = "/api/users", tag = "users", params(UserQuery),
    responses((status = 200, body = UserPage)))]
pub(crate) async fn list_users(
    State(ctx): State<Arc<NodeContext>>,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let name = query.name.as_deref().map(capstan_core::names::nfc);
    let rows = users::list(
        &ctx.pools.api,
        name.as_deref(),
        keyset.cursor,
        keyset.fetch(),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    let items = rows.into_iter().map(user_response).collect();
    Ok(Json(UserPage { items, next }))
}

/// `GET /api/users/{id}`.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path)), responses(
    (status = 200, body = UserResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_user(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserResponse>, ApiError> {
    let row = users::get(&ctx.pools.api, id)
        .await
        .map_err(|e| user_error(e, id, ""))?;
    Ok(Json(user_response(row)))
}

/// `PATCH /api/users/{id}`: disables or enables a user (its keys stop or start
/// working on every node at once), or changes its display name or email.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path)), request_body = UpdateUserRequest, responses(
    (status = 200, body = UserResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_user(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    if request == UpdateUserRequest::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: send `disabled`, `display_name` and/or `email`",
        ));
    }
    let mut problems = Problems::new();
    let display_name = request
        .display_name
        .as_deref()
        .and_then(|d| check_text(&mut problems, "display_name", d));
    let email = request
        .email
        .as_deref()
        .and_then(|e| check_text(&mut problems, "email", e));
    problems.finish()?;
    let failed = |e| user_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = users::get_for_update(&mut tx, id).await.map_err(failed)?;
    let row = users::update(
        &mut *tx,
        id,
        &UserChange {
            disabled: request.disabled,
            display_name: display_name.as_deref(),
            email: email.as_deref(),
        },
    )
    .await
    .map_err(failed)?;
    Change::new("user.update")
        .object(id, &row.name)
        .before(&user_response(before))
        .after(&user_response(row.clone()))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    // Other nodes hear it through NOTIFY; this one need not wait for its own.
    ctx.api_keys.notified(UserNotice::Changed(id));
    if request.disabled == Some(true) {
        tracing::info!(user.name = %row.name, "disabled user {}", row.name);
    }
    Ok(Json(user_response(row)))
}

/// `DELETE /api/users/{id}`: with its keys, which stop working at once.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_user(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| user_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = user_response(users::get_for_update(&mut tx, id).await.map_err(failed)?);
    users::delete(&mut *tx, id).await.map_err(failed)?;
    Change::new("user.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.api_keys.notified(UserNotice::Changed(id));
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/users/{id}/api-keys`: the key's text is in this answer only.
#[utoipa::path(post, path = "/api/users/{id}/api-keys", tag = "users",
    params(("id" = i64, Path)), request_body = CreateApiKeyRequest, responses(
    (status = 201, body = CreatedApiKey),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_api_key(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let failed = |e| ApiError::from(IdentityError::Db(e));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let (key, row) = identity::create_key(
        &mut tx,
        id,
        &request.purpose,
        request.expires_in.as_deref(),
        ctx.settings.api_key_max_lifetime,
    )
    .await?;
    // The key's public part only: never its text nor its digest.
    let api_key = key_response(row);
    Change::new("api_key.create")
        .object(&api_key.key_id, &api_key.purpose)
        .after(&api_key)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, api_key })))
}

/// `GET /api/users/{id}/api-keys`: never a key's secret.
#[utoipa::path(get, path = "/api/users/{id}/api-keys", tag = "users",
    params(("id" = i64, Path)), responses(
    (status = 200, body = ApiKeyList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_api_keys(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ApiKeyList>, ApiError> {
    users::get(&ctx.pools.api, id)
        .await
        .map_err(|e| user_error(e, id, ""))?;
    let rows = users::list_keys(&ctx.pools.api, id, MAX_KEYS_LISTED)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(ApiKeyList {
        items: rows.into_iter().map(key_response).collect(),
    }))
}

/// `DELETE /api/users/{id}/api-keys/{key_id}`: revokes the key on every node at once.
#[utoipa::path(delete, path = "/api/users/{id}/api-keys/{key_id}", tag = "users",
    params(("id" = i64, Path), ("key_id" = String, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn revoke_api_key(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath((id, key_id)): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| match e {
        DbError::NotFound => ApiError::not_found(format!("user {id} has no API key `{key_id}`")),
        other => ApiError::from_db(other, String::new),
    };
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = users::get_key_for_update(&mut tx, id, &key_id)
        .await
        .map_err(failed)?;
    let row = users::revoke_key(&mut *tx, id, &key_id)
        .await
        .map_err(failed)?;
    Change::new("api_key.revoke")
        .object(&row.key_id, &row.purpose)
        .before(&key_response(before))
        .after(&key_response(row.clone()))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.api_keys.notified(UserNotice::KeyRevoked(row.id));
    tracing::info!(api_key.id = %row.key_id, "revoked API key {}", row.key_id);
    Ok(StatusCode::NO_CONTENT)
}
