//! `/api/roles`: the built-in roles (fixed) and custom ones.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    access::{CreateRoleRequest, RoleList, RoleResponse, UpdateRoleRequest},
};
use capstan_core::access::Permission;
use capstan_db::{DbError, access as db, access::RoleRow};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath},
    problems::Problems,
};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
};

/// Most roles a list shows and a cluster holds.
pub const MAX_ROLES: i64 = 500;
const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 200;

fn role_response(row: RoleRow) -> RoleResponse {
    RoleResponse {
        id: row.id,
        name: row.name,
        description: row.description,
        built_in: row.built_in,
        permissions: row.permissions,
        created_at: row.created_at,
    }
}

/// Checks a role's or a team's name: NFC, visible, trimmed, bounded.
pub(crate) fn check_name(problems: &mut Problems, what: &str, name: &str) -> Option<String> {
    let name = problems.check(
        "name",
        capstan_core::names::normalize(name).map_err(|e| format!("a {what}'s name {e}")),
    )?;
    if name.trim().is_empty() || name.trim() != name {
        problems.add(
            "name",
            format!("a {what}'s name cannot be empty or start or end with spaces"),
        );
    } else if name.chars().count() > MAX_NAME {
        problems.add("name", format!("at most {MAX_NAME} characters"));
    }
    Some(name)
}

/// Checks a description: visible characters, bounded.
pub(crate) fn check_description(problems: &mut Problems, text: &str) -> Option<String> {
    let text = problems.check(
        "description",
        capstan_core::names::normalize(text).map_err(|e| format!("`description` {e}")),
    )?;
    if text.chars().count() > MAX_TEXT {
        problems.add("description", format!("at most {MAX_TEXT} characters"));
    }
    Some(text)
}

/// Checks a role's permissions: known ones, at least one, no repeats.
fn check_permissions(problems: &mut Problems, permissions: &[String]) -> Vec<String> {
    if permissions.is_empty() {
        problems.add("permissions", "name at least one permission");
    }
    if permissions.len() > Permission::ALL.len() {
        problems.add(
            "permissions",
            format!("at most {} permissions", Permission::ALL.len()),
        );
        return Vec::new();
    }
    let mut known = Vec::new();
    for (i, text) in permissions.iter().enumerate() {
        if let Some(p) = problems.check(&format!("permissions[{i}]"), Permission::parse(text)) {
            if known.contains(&p) {
                problems.add(format!("permissions[{i}]"), format!("`{p}` is named twice"));
            }
            known.push(p);
        }
    }
    known.sort();
    known.iter().map(|p| p.as_str().to_owned()).collect()
}

fn role_error(e: DbError, id: i64, name: &str) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "roles_name" => {
            ApiError::conflict(format!("a role named `{name}` already exists"))
        }
        DbError::Conflict { constraint } if constraint == "grants_role_id_fkey" => {
            ApiError::conflict(format!(
                "role {id} is granted to teams; delete those grants first"
            ))
        }
        other => ApiError::from_db(other, || format!("there is no role {id}")),
    }
}

/// The role, locked until `conn`'s transaction ends; refuses a built-in one, naming
/// it.
async fn custom_role_for_update(
    conn: &mut sqlx::PgConnection,
    id: i64,
) -> Result<RoleRow, ApiError> {
    let row = db::get_role_for_update(conn, id)
        .await
        .map_err(|e| role_error(e, id, ""))?;
    if row.built_in {
        return Err(ApiError::conflict(format!(
            "`{}` is a built-in role and cannot be changed or deleted; create a custom role instead",
            row.name
        )));
    }
    Ok(row)
}

/// `GET /api/roles`: built-in roles first, then custom ones.
#[utoipa::path(get, path = "/api/roles", tag = "access",
    responses((status = 200, body = RoleList)))]
pub(crate) async fn list_roles(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<RoleList>, ApiError> {
    let rows = db::list_roles(&ctx.pools.api, MAX_ROLES)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(RoleList {
        items: rows.into_iter().map(role_response).collect(),
    }))
}

/// `GET /api/roles/{id}`.
#[utoipa::path(get, path = "/api/roles/{id}", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 200, body = RoleResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_role(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RoleResponse>, ApiError> {
    let row = db::get_role(&ctx.pools.api, id)
        .await
        .map_err(|e| role_error(e, id, ""))?;
    Ok(Json(role_response(row)))
}

/// `POST /api/roles`: a custom role.
#[utoipa::path(post, path = "/api/roles", tag = "access",
    request_body = CreateRoleRequest, responses(
    (status = 201, body = RoleResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_role(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<CreateRoleRequest>,
) -> Result<(StatusCode, Json<RoleResponse>), ApiError> {
    let mut problems = Problems::new();
    let name = check_name(&mut problems, "role", &request.name);
    let description = check_description(&mut problems, &request.description);
    let permissions = check_permissions(&mut problems, &request.permissions);
    problems.finish()?;
    let name = name.unwrap_or_default();
    let count = db::list_roles(&ctx.pools.api, MAX_ROLES)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .len();
    if count as i64 >= MAX_ROLES {
        return Err(ApiError::conflict(format!(
            "there are {MAX_ROLES} roles already; delete one first"
        )));
    }
    let failed = |e| role_error(e, 0, &name);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = db::create_role(
        &mut *tx,
        &name,
        description.as_deref().unwrap_or_default(),
        &permissions,
    )
    .await
    .map_err(failed)?;
    let role = role_response(row);
    Change::new("role.create")
        .object(role.id, &role.name)
        .after(&role)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(role)))
}

/// `PATCH /api/roles/{id}`: a custom role's name, description or permissions; every
/// node applies new permissions at once.
#[utoipa::path(patch, path = "/api/roles/{id}", tag = "access",
    params(("id" = i64, Path)), request_body = UpdateRoleRequest, responses(
    (status = 200, body = RoleResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_role(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateRoleRequest>,
) -> Result<Json<RoleResponse>, ApiError> {
    if request == UpdateRoleRequest::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: send `name`, `description` and/or `permissions`",
        ));
    }
    let mut problems = Problems::new();
    let name = request
        .name
        .as_deref()
        .and_then(|n| check_name(&mut problems, "role", n));
    let description = request
        .description
        .as_deref()
        .and_then(|d| check_description(&mut problems, d));
    let permissions = request
        .permissions
        .as_deref()
        .map(|p| check_permissions(&mut problems, p));
    problems.finish()?;
    let failed = |e| role_error(e, id, name.as_deref().unwrap_or_default());
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = role_response(custom_role_for_update(&mut tx, id).await?);
    let row = db::update_role(
        &mut *tx,
        id,
        name.as_deref(),
        description.as_deref(),
        permissions.as_deref(),
    )
    .await
    .map_err(failed)?;
    let role = role_response(row);
    Change::new("role.update")
        .object(id, &role.name)
        .before(&before)
        .after(&role)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.access.clear();
    Ok(Json(role))
}

/// `DELETE /api/roles/{id}`: a custom role no grant uses.
#[utoipa::path(delete, path = "/api/roles/{id}", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_role(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| role_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = role_response(custom_role_for_update(&mut tx, id).await?);
    db::delete_role(&mut *tx, id).await.map_err(failed)?;
    Change::new("role.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}
