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
    access::{self as db, GrantRow, MemberRow, ScopeTable, TeamRow},
};
use serde::Serialize;

use super::{
    ApiError,
    extract::{ApiJson, ApiPath},
    problems::Problems,
    roles::{check_description, check_name},
};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
};

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

fn member_response(row: MemberRow) -> MemberResponse {
    MemberResponse {
        user_id: row.user_id,
        name: row.name,
        kind: row.kind,
    }
}

/// A grant as its audit row shows it: as the API does, with the names of its team,
/// projects and environments, so the row alone says who was given what where.
#[derive(Debug, Serialize)]
struct GrantRecord {
    #[serde(flatten)]
    grant: GrantResponse,
    team_name: String,
    /// `null`: every project.
    project_names: Option<Vec<String>>,
    /// `null`: every environment.
    environment_names: Option<Vec<String>>,
}

impl GrantRecord {
    async fn read(
        conn: &mut sqlx::PgConnection,
        team: &TeamRow,
        grant: GrantResponse,
    ) -> Result<Self, DbError> {
        let project_names = match &grant.project_ids {
            Some(ids) => Some(db::names(&mut *conn, ScopeTable::Projects, ids).await?),
            None => None,
        };
        let environment_names = match &grant.environment_ids {
            Some(ids) => Some(db::names(&mut *conn, ScopeTable::Environments, ids).await?),
            None => None,
        };
        Ok(Self {
            grant,
            team_name: team.name.clone(),
            project_names,
            environment_names,
        })
    }

    /// The row's object name: `<role> for team <team>`.
    fn name(&self) -> String {
        format!("{} for team {}", self.grant.role_name, self.team_name)
    }
}

fn team_error(e: DbError, id: i64, name: &str) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "teams_name" => {
            ApiError::conflict(format!("a team named `{name}` already exists"))
        }
        // Approvals: a rule's team cannot go, or the rule would let everything through.
        DbError::Conflict { constraint } if constraint == "approval_rules_team" => {
            ApiError::conflict(format!(
                "team {id} approves deployments under approval rules (GET /api/approval-rules); give them another team or delete them first"
            ))
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
    ChangedBy(actor): ChangedBy,
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
    let failed = |e| team_error(e, 0, &name);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = db::create_team(&mut *tx, &name, description.as_deref().unwrap_or_default())
        .await
        .map_err(failed)?;
    let team = team_response(row);
    Change::new("team.create")
        .object(team.id, &team.name)
        .after(&team)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(team)))
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
    ChangedBy(actor): ChangedBy,
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
    let failed = |e| team_error(e, id, name.as_deref().unwrap_or_default());
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = team_response(db::get_team_for_update(&mut tx, id).await.map_err(failed)?);
    let row = db::update_team(&mut *tx, id, name.as_deref(), description.as_deref())
        .await
        .map_err(failed)?;
    let team = team_response(row);
    Change::new("team.update")
        .object(id, &team.name)
        .before(&before)
        .after(&team)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(team))
}

/// `DELETE /api/teams/{id}`: with its memberships and grants, which end at once.
#[utoipa::path(delete, path = "/api/teams/{id}", tag = "access",
    params(("id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_team(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| team_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = team_response(db::get_team_for_update(&mut tx, id).await.map_err(failed)?);
    db::delete_team(&mut *tx, id).await.map_err(failed)?;
    Change::new("team.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
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
        items: rows.into_iter().map(member_response).collect(),
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
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> Result<StatusCode, ApiError> {
    let user_id = request.user_id;
    let failed = |e| team_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let team = db::get_team_for_update(&mut tx, id).await.map_err(failed)?;
    let user = match capstan_db::users::get(&mut *tx, user_id).await {
        Ok(user) => user,
        Err(DbError::NotFound) => {
            return Err(ApiError::from(Problems::one(
                "user_id",
                format!("there is no user {user_id}"),
            )));
        }
        Err(other) => return Err(ApiError::from_db(other, String::new)),
    };
    let before = db::get_member_for_update(&mut tx, id, user_id)
        .await
        .map_err(failed)?
        .map(member_response);
    if before.is_none() {
        let count = db::count_members(&mut *tx, id).await.map_err(failed)?;
        if count >= MAX_MEMBERS {
            return Err(ApiError::conflict(format!(
                "team {id} has {MAX_MEMBERS} members already"
            )));
        }
    }
    db::add_member(&mut *tx, id, user_id)
        .await
        .map_err(failed)?;
    let after = MemberResponse {
        user_id,
        name: user.name,
        kind: user.kind,
    };
    // The team is the object; the member is what changed in it.
    let mut change = Change::new("team.member_add").object(id, &team.name);
    if let Some(before) = &before {
        change = change.before(before);
    }
    change
        .after(&after)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
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
    ChangedBy(actor): ChangedBy,
    ApiPath((id, user_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let failed =
        |e| ApiError::from_db(e, || format!("user {user_id} is not a member of team {id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let team = db::get_team_for_update(&mut tx, id)
        .await
        .map_err(|e| team_error(e, id, ""))?;
    let before = db::get_member_for_update(&mut tx, id, user_id)
        .await
        .map_err(failed)?
        .map(member_response)
        .ok_or_else(|| failed(DbError::NotFound))?;
    db::remove_member(&mut *tx, id, user_id)
        .await
        .map_err(failed)?;
    Change::new("team.member_remove")
        .object(id, &team.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
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
    ChangedBy(actor): ChangedBy,
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
    let failed = |e| team_error(e, id, "");
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let team = db::get_team_for_update(&mut tx, id).await.map_err(failed)?;
    let count = db::count_grants(&mut *tx, id).await.map_err(failed)?;
    if count >= MAX_GRANTS {
        return Err(ApiError::conflict(format!(
            "team {id} has {MAX_GRANTS} grants already"
        )));
    }
    let row = db::create_grant(
        &mut *tx,
        id,
        request.role_id,
        projects.as_deref(),
        environments.as_deref(),
    )
    .await
    .map_err(failed)?;
    let grant = grant_response(row);
    let record = GrantRecord::read(&mut tx, &team, grant.clone())
        .await
        .map_err(failed)?;
    Change::new("grant.create")
        .object(grant.id, record.name())
        .after(&record)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.access.clear();
    Ok((StatusCode::CREATED, Json(grant)))
}

/// `DELETE /api/teams/{id}/grants/{grant_id}`.
#[utoipa::path(delete, path = "/api/teams/{id}/grants/{grant_id}", tag = "access",
    params(("id" = i64, Path), ("grant_id" = i64, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_grant(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath((id, grant_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("team {id} has no grant {grant_id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let team = db::get_team_for_update(&mut tx, id)
        .await
        .map_err(|e| team_error(e, id, ""))?;
    let before = grant_response(
        db::get_grant_for_update(&mut tx, id, grant_id)
            .await
            .map_err(failed)?,
    );
    let record = GrantRecord::read(&mut tx, &team, before)
        .await
        .map_err(failed)?;
    db::delete_grant(&mut *tx, id, grant_id)
        .await
        .map_err(failed)?;
    Change::new("grant.delete")
        .object(grant_id, record.name())
        .before(&record)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.access.clear();
    Ok(StatusCode::NO_CONTENT)
}
