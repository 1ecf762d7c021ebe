//! `/api/teams`: teams, their members and their grants.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    access::{
        AddMemberRequest, CreateGrantRequest, CreateTeamRequest, GrantList, GrantResponse,
        MAX_SCOPE_IDS, MemberList, MemberResponse, TeamList, TeamResponse, UpdateTeamRequest,
    },
};
use capstan_db::{
    DbError,
    access::{self as db, GrantRow, ScopeTable, TeamRow},
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath},
    problems::Problems,
    roles::{check_description, check_name},
};
use crate::node::NodeContext;

/// Most teams a cluster holds, members a team holds and grants a team holds.
pub const MAX_TEAMS: i64 = 500;
pub const MAX_MEMBERS: i64 = 1000;
pub const MAX_GRANTS: i64 = 100;

fn team_response(row: TeamRow) -> TeamResponse {
    TeamResponse {
        id: row.id,
        name: row.name,
        description: row.description,
        created_at: row.created_at,
    }
}

fn grant_response(row: GrantRow) -> GrantResponse {
    GrantResponse {
        id: row.id,
        team_id: row.team_id,
        role_id: row.role_id,
        role_name: row.role_name,
        project_ids: row.project_ids,
        environment_ids: row.environment_ids,
        created_at: row.created_at,
    }
}

fn team_error(e: DbError, id: i64, name: &str) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "teams_name" => {
            ApiError::conflict(format!("a team named `{name}` already exists"))
        }
        other => ApiError::from_db(other, || format!("there is no team {id}")),
    }
}

async fn existing_team(ctx: &NodeContext, id: i64) -> Result<TeamRow, ApiError> {
    db::get_team(&ctx.pools.api, id)
        .await
        .map_err(|e| team_error(e, id, ""))
}

/// `GET /api/teams`.
#[utoipa::path(get, path = "/api/teams", tag = "access",
    responses((status = 200, body = TeamList)))]
pub(crate) async fn list_teams(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<TeamList>, ApiError> {
    let rows = db::list_teams(&ctx.pools.api, MAX_TEAMS)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(TeamList {
        items: rows.into_iter().map(team_response).collect(),
    }))
}

/// `POST /api/teams`.
#[utoipa::path(post, path = "/api/teams", tag = "access",
    request_body = CreateTeamRequest, responses(
    (status = 201, body = TeamResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_team(
    State(ctx): State<Arc<NodeContext>>,
    ApiJson(request): ApiJson<CreateTeamRequest>,
) -> Result<(StatusCode, Json<TeamResponse>), ApiError> {
    let mut problems = Problems::new();
    let name = check_name(&mut problems, "team", &request.name);
    let description = check_description(&mut problems, &request.description);
    problems.finish()?;
    let name = name.unwrap_or_default();
    let count = db::list_teams(&ctx.pools.api, MAX_TEAMS)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .len();
    if count as i64 >= MAX_TEAMS {
        return Err(ApiError::conflict(format!(
            "there are {MAX_TEAMS} teams already; delete one first"
        )));
    }
    let row = db::create_team(
        &ctx.pools.api,
        &name,
        description.as_deref().unwrap_or_default(),
    )
    .await
    .map_err(|e| team_error(e, 0, &name))?;
    Ok((StatusCode::CREATED, Json(team_response(row))))
}

/// `GET /api/teams/{id}`.
#[utoipa::path(get, path = "/api/teams/{id}", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 200, body = TeamResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_team(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TeamResponse>, ApiError> {
    Ok(Json(team_response(existing_team(&ctx, id).await?)))
}

/// `PATCH /api/teams/{id}`: its name or description.
#[utoipa::path(patch, path = "/api/teams/{id}", tag = "access",
    params(("id" = i64, Path)), request_body = UpdateTeamRequest, responses(
    (status = 200, body = TeamResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_team(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateTeamRequest>,
) -> Result<Json<TeamResponse>, ApiError> {
    if request == UpdateTeamRequest::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: send `name` and/or `description`",
        ));
    }
    let mut problems = Problems::new();
    let name = request
        .name
        .as_deref()
        .and_then(|n| check_name(&mut problems, "team", n));
    let description = request
        .description
        .as_deref()
        .and_then(|d| check_description(&mut problems, d));
    problems.finish()?;
    let row = db::update_team(&ctx.pools.api, id, name.as_deref(), description.as_deref())
        .await
        .map_err(|e| team_error(e, id, name.as_deref().unwrap_or_default()))?;
    Ok(Json(team_response(row)))
}

/// `DELETE /api/teams/{id}`: with its memberships and grants, which end at once.
#[utoipa::path(delete, path = "/api/teams/{id}", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_team(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    db::delete_team(&ctx.pools.api, id)
        .await
        .map_err(|e| team_error(e, id, ""))?;
    ctx.access.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/teams/{id}/members`.
#[utoipa::path(get, path = "/api/teams/{id}/members", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 200, body = MemberList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_members(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MemberList>, ApiError> {
    existing_team(&ctx, id).await?;
    let rows = db::list_members(&ctx.pools.api, id, MAX_MEMBERS)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(MemberList {
        items: rows
            .into_iter()
            .map(|m| MemberResponse {
                user_id: m.user_id,
                name: m.name,
                kind: m.kind,
            })
            .collect(),
    }))
}

/// `POST /api/teams/{id}/members`: adds a user (again is no error).
#[utoipa::path(post, path = "/api/teams/{id}/members", tag = "access",
    params(("id" = i64, Path)), request_body = AddMemberRequest, responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn add_member(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> Result<StatusCode, ApiError> {
    existing_team(&ctx, id).await?;
    let db = &ctx.pools.api;
    if let Err(e) = capstan_db::users::get(db, request.user_id).await {
        return Err(match e {
            DbError::NotFound => ApiError::from(Problems::one(
                "user_id",
                format!("there is no user {}", request.user_id),
            )),
            other => ApiError::from_db(other, String::new),
        });
    }
    let count = db::count_members(db, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    if count >= MAX_MEMBERS {
        return Err(ApiError::conflict(format!(
            "team {id} has {MAX_MEMBERS} members already"
        )));
    }
    db::add_member(db, id, request.user_id)
        .await
        .map_err(|e| team_error(e, id, ""))?;
    ctx.access.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/teams/{id}/members/{user_id}`.
#[utoipa::path(delete, path = "/api/teams/{id}/members/{user_id}", tag = "access",
    params(("id" = i64, Path), ("user_id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn remove_member(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath((id, user_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    db::remove_member(&ctx.pools.api, id, user_id)
        .await
        .map_err(|e| {
            ApiError::from_db(e, || format!("user {user_id} is not a member of team {id}"))
        })?;
    ctx.access.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/teams/{id}/grants`.
#[utoipa::path(get, path = "/api/teams/{id}/grants", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 200, body = GrantList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_grants(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<GrantList>, ApiError> {
    existing_team(&ctx, id).await?;
    let rows = db::list_grants(&ctx.pools.api, id, MAX_GRANTS)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(GrantList {
        items: rows.into_iter().map(grant_response).collect(),
    }))
}

/// Checks a grant's list of projects or environments: not empty (leave it out for
/// all), bounded, no repeats, every id existing.
async fn check_scope(
    ctx: &NodeContext,
    problems: &mut Problems,
    field: &str,
    table: ScopeTable,
    ids: Option<&[i64]>,
) -> Result<Option<Vec<i64>>, ApiError> {
    let Some(ids) = ids else {
        return Ok(None);
    };
    if ids.is_empty() {
        problems.add(
            field,
            "an empty list would allow nothing; leave the field out (or null) for all",
        );
        return Ok(None);
    }
    if ids.len() > MAX_SCOPE_IDS {
        problems.add(field, format!("at most {MAX_SCOPE_IDS} ids"));
        return Ok(None);
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let missing = db::missing_ids(&ctx.pools.api, table, &sorted)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let what = match table {
        ScopeTable::Projects => "project",
        ScopeTable::Environments => "environment",
    };
    for id in missing {
        problems.add(field, format!("there is no {what} {id}"));
    }
    Ok(Some(sorted))
}

/// `POST /api/teams/{id}/grants`: gives the team a role in the projects and
/// environments named (all when left out). Every node applies it at once.
#[utoipa::path(post, path = "/api/teams/{id}/grants", tag = "access",
    params(("id" = i64, Path)), request_body = CreateGrantRequest, responses(
    (status = 201, body = GrantResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_grant(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<CreateGrantRequest>,
) -> Result<(StatusCode, Json<GrantResponse>), ApiError> {
    existing_team(&ctx, id).await?;
    let mut problems = Problems::new();
    match db::get_role(&ctx.pools.api, request.role_id).await {
        Ok(_) => {}
        Err(DbError::NotFound) => {
            problems.add("role_id", format!("there is no role {}", request.role_id));
        }
        Err(e) => return Err(ApiError::from_db(e, String::new)),
    }
    let projects = check_scope(
        &ctx,
        &mut problems,
        "project_ids",
        ScopeTable::Projects,
        request.project_ids.as_deref(),
    )
    .await?;
    let environments = check_scope(
        &ctx,
        &mut problems,
        "environment_ids",
        ScopeTable::Environments,
        request.environment_ids.as_deref(),
    )
    .await?;
    problems.finish()?;
    let count = db::count_grants(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    if count >= MAX_GRANTS {
        return Err(ApiError::conflict(format!(
            "team {id} has {MAX_GRANTS} grants already"
        )));
    }
    let row = db::create_grant(
        &ctx.pools.api,
        id,
        request.role_id,
        projects.as_deref(),
        environments.as_deref(),
    )
    .await
    .map_err(|e| team_error(e, id, ""))?;
    ctx.access.clear();
    Ok((StatusCode::CREATED, Json(grant_response(row))))
}

/// `DELETE /api/teams/{id}/grants/{grant_id}`.
#[utoipa::path(delete, path = "/api/teams/{id}/grants/{grant_id}", tag = "access",
    params(("id" = i64, Path), ("grant_id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_grant(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath((id, grant_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    db::delete_grant(&ctx.pools.api, id, grant_id)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("team {id} has no grant {grant_id}")))?;
    ctx.access.clear();
    Ok(StatusCode::NO_CONTENT)
}
