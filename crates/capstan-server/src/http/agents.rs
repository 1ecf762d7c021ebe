//! `/api/agents`: registration tokens, registering, and the agents themselves;
//! `/api/environments`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
};
use capstan_api::{
    AgentHealth, AgentPage, AgentQuery, AgentResponse, CreateRegistrationTokenRequest,
    EnvironmentList, EnvironmentRequest, EnvironmentResponse, Problem, RegisterAgentRequest,
    RegisterAgentResponse, RegistrationTokenList, RegistrationTokenResponse, UpdateAgentRequest,
};
use capstan_core::audit::{ActorKind, AuthMethod};
use capstan_core::{
    agent::{check_agent_name, check_environment_name, normalize_tags},
    names,
};
use capstan_db::{
    DbError,
    agents::{self, AgentFilter, AgentRow, EnvironmentRow, NewAgent, RegisterError, TokenRow},
    audit::Actor,
};

use super::{
    ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
    problems::Problems,
};
use crate::{
    agents::credentials::{self, TokenKind, bearer},
    audit::{self, Change, ChangedBy, RequestAddress},
    node::NodeContext,
};

const DEFAULT_TOKEN_LIFE: &str = "24h";
const MAX_TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
const MAX_TOKEN_USES: u32 = 10_000;
const DEFAULT_PAGE: u32 = 100;

/// `POST /api/agents/registration-tokens`: a token agents register with. The secret
/// is in this answer only.
#[utoipa::path(post, path = "/api/agents/registration-tokens", tag = "agents",
    request_body = CreateRegistrationTokenRequest, responses(
    (status = 201, body = RegistrationTokenResponse),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_token(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<CreateRegistrationTokenRequest>,
) -> Result<(StatusCode, Json<RegistrationTokenResponse>), ApiError> {
    let mut problems = Problems::new();
    let life_text = request.expires_in.as_deref().unwrap_or(DEFAULT_TOKEN_LIFE);
    let life = problems
        .check("expires_in", capstan_core::parse_duration(life_text))
        .unwrap_or_default();
    if life > MAX_TOKEN_LIFE || (life.is_zero() && problems.is_empty()) {
        problems.add(
            "expires_in",
            format!("must be more than 0 and at most 365d, got `{life_text}`"),
        );
    }
    let uses = request.uses.unwrap_or(1);
    if !(1..=MAX_TOKEN_USES).contains(&uses) {
        problems.add(
            "uses",
            format!("must be between 1 and {MAX_TOKEN_USES}, got {uses}"),
        );
    }
    problems.finish()?;
    let note = request
        .note
        .map(|n| n.chars().take(500).collect::<String>());
    let token = credentials::generate(TokenKind::Registration);
    let expires_at = time::OffsetDateTime::now_utc()
        + time::Duration::try_from(life).unwrap_or(time::Duration::DAY);
    let failed = |e| ApiError::from_db(e, String::new);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = agents::create_token(
        &mut *tx,
        &token.digest,
        &token.shown_prefix,
        note.as_deref(),
        i32::try_from(uses).unwrap_or(1),
        expires_at,
    )
    .await
    .map_err(failed)?;
    // The answer's copy without the secret, which is in the answer only.
    let mut response = token_response(row);
    Change::new("registration_token.create")
        .object(response.id, &response.prefix)
        .after(&response)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    response.token = Some(token.secret);
    Ok((StatusCode::CREATED, Json(response)))
}

fn token_response(row: TokenRow) -> RegistrationTokenResponse {
    RegistrationTokenResponse {
        id: row.id,
        token: None,
        prefix: row.prefix,
        note: row.note,
        uses_left: u32::try_from(row.uses_left).unwrap_or(0),
        expires_at: row.expires_at,
        created_at: row.created_at,
    }
}

/// `GET /api/agents/registration-tokens`: tokens that can still be used.
#[utoipa::path(get, path = "/api/agents/registration-tokens", tag = "agents", responses(
    (status = 200, body = RegistrationTokenList),
))]
pub(crate) async fn list_tokens(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<RegistrationTokenList>, ApiError> {
    let rows = agents::list_tokens(&ctx.pools.api)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(RegistrationTokenList {
        items: rows.into_iter().map(token_response).collect(),
    }))
}

/// `DELETE /api/agents/registration-tokens/{id}`: revokes a token.
#[utoipa::path(delete, path = "/api/agents/registration-tokens/{id}", tag = "agents",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Revoked"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_token(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no registration token {id}"));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = token_response(
        agents::get_token_for_update(&mut tx, id)
            .await
            .map_err(failed)?,
    );
    agents::delete_token(&mut *tx, id).await.map_err(failed)?;
    Change::new("registration_token.delete")
        .object(id, &before.prefix)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/agents/register`, with a registration token as the bearer: adds the
/// agent and answers with its credential, once.
#[utoipa::path(post, path = "/api/agents/register", tag = "agents",
    request_body = RegisterAgentRequest, responses(
    (status = 201, body = RegisterAgentResponse),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn register(
    State(ctx): State<Arc<NodeContext>>,
    RequestAddress(address): RequestAddress,
    RegistrationToken(token): RegistrationToken,
    ApiJson(request): ApiJson<RegisterAgentRequest>,
) -> Result<(StatusCode, Json<RegisterAgentResponse>), ApiError> {
    let token = token.as_str();
    let mut problems = Problems::new();
    let name = problems.check("name", check_agent_name(&request.name));
    let tags = problems.check("tags", normalize_tags(&request.tags));
    problems.finish()?;
    let (name, tags) = (name.unwrap_or_default(), tags.unwrap_or_default());
    let environment = names::nfc(&request.environment);
    let version: String = request.version.chars().take(64).collect();
    let credential = credentials::generate(TokenKind::Agent);
    let new = NewAgent {
        name: &name,
        environment: &environment,
        tags: &tags,
        version: &version,
        credential_digest: &credential.digest,
    };
    let digest = credentials::digest(token);
    let failed = |e: DbError| register_refused(e.into());
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = agents::register(&mut *tx, &digest, &new)
        .await
        .map_err(register_refused)?;
    let token_id = agents::token_id(&mut *tx, &digest).await.map_err(failed)?;
    // The agent registers itself: it is the actor, proven by the token.
    let actor = Actor {
        kind: ActorKind::Agent,
        id: Some(row.id),
        name: row.name.clone(),
        method: AuthMethod::RegistrationToken,
        credential: token_id.map(|id| id.to_string()),
        address,
    };
    let registered = agent_response(row.clone());
    Change::new("agent.register")
        .object(row.id, &row.name)
        .after(&registered)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    tracing::info!(agent.id = row.id, agent.name = %row.name, "agent registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisterAgentResponse {
            agent: agent_response(row),
            credential: credential.secret,
        }),
    ))
}

pub(crate) fn agent_response(row: AgentRow) -> AgentResponse {
    AgentResponse {
        id: row.id,
        name: row.name,
        environment: row.environment,
        tags: row.tags,
        version: row.version,
        last_seen: row.last_seen,
        last_node: row.last_node,
        health: row.health.parse().unwrap_or(AgentHealth::Unknown),
        health_reason: row.health_reason,
        health_checked_at: row.health_checked_at,
        disabled: row.disabled,
        registered_at: row.registered_at,
    }
}

/// The id of an environment named in a request, or a 422 saying it does not exist.
pub(crate) async fn environment_id(ctx: &NodeContext, name: &str) -> Result<i64, ApiError> {
    agents::find_environment(&ctx.pools.api, name)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?
        .map(|e| e.id)
        .ok_or_else(|| ApiError::unprocessable(format!("there is no environment `{name}`")))
}

/// `GET /api/agents`: by id, filtered by environment, tag and health, in pages.
#[utoipa::path(get, path = "/api/agents", tag = "agents", params(AgentQuery), responses(
    (status = 200, body = AgentPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_agents(
    State(ctx): State<Arc<NodeContext>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiQuery(query): ApiQuery<AgentQuery>,
) -> Result<Json<AgentPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    if let Some(health) = query.health.as_deref() {
        health
            .parse::<AgentHealth>()
            .map_err(ApiError::bad_request)?;
    }
    let environment_id = match query.environment.as_deref() {
        None => None,
        Some(name) => Some(
            environment_id(&ctx, &names::nfc(name))
                .await
                .map_err(|e| ApiError::bad_request(e.detail))?,
        ),
    };
    // An environment the caller may not view is named as a missing one.
    if let (Some(id), Some(name)) = (environment_id, query.environment.as_deref())
        && !caller.may(
            capstan_core::access::Permission::View,
            capstan_core::access::Scope::Environment(id),
        )
    {
        return Err(ApiError::bad_request(format!(
            "there is no environment `{}`",
            names::nfc(name)
        )));
    }
    let tag = query.tag.as_deref().map(names::nfc);
    let rows = agents::list_agents(
        &ctx.pools.api,
        &AgentFilter {
            environment_id,
            tag: tag.as_deref(),
            health: query.health.as_deref(),
            after: keyset.cursor,
            limit: keyset.fetch(),
            viewer: caller.viewer(),
        },
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    let items: Vec<AgentResponse> = rows.into_iter().map(agent_response).collect();
    Ok(Json(AgentPage { items, next }))
}

/// `GET /api/agents/{id}`.
#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents", params(("id" = i64, Path)), responses(
    (status = 200, body = AgentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_agent(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AgentResponse>, ApiError> {
    let row = agents::get_agent(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, || no_agent(id)))?;
    Ok(Json(agent_response(row)))
}

fn no_agent(id: i64) -> String {
    format!("there is no agent {id}")
}

/// `PATCH /api/agents/{id}`: environment, tags, disabled. Disabling refuses the
/// agent on every node at once.
#[utoipa::path(patch, path = "/api/agents/{id}", tag = "agents", params(("id" = i64, Path)),
    request_body = UpdateAgentRequest, responses(
    (status = 200, body = AgentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_agent(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<UpdateAgentRequest>,
) -> Result<Json<AgentResponse>, ApiError> {
    let tags = request
        .tags
        .as_deref()
        .map(normalize_tags)
        .transpose()
        .map_err(|e| Problems::one("tags", e))?;
    let environment_id = match request.environment.as_deref() {
        None => None,
        Some(name) => Some(environment_id(&ctx, &names::nfc(name)).await?),
    };
    let failed = |e| ApiError::from_db(e, || no_agent(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = agents::get_agent_for_update(&mut tx, id)
        .await
        .map_err(failed)?;
    let row = agents::update_agent(
        &mut *tx,
        id,
        environment_id,
        tags.as_deref(),
        request.disabled,
    )
    .await
    .map_err(failed)?;
    let agent = agent_response(row);
    Change::new("agent.update")
        .object(id, &agent.name)
        .before(&agent_response(before))
        .after(&agent)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(agent))
}

/// `DELETE /api/agents/{id}`: removes the agent and its mailbox; its credential is
/// refused on every node at once.
#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents", params(("id" = i64, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_agent(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let failed = |e| ApiError::from_db(e, || no_agent(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = agent_response(
        agents::get_agent_for_update(&mut tx, id)
            .await
            .map_err(failed)?,
    );
    agents::delete_agent(&mut *tx, id).await.map_err(failed)?;
    Change::new("agent.delete")
        .object(id, &before.name)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

fn environment_response(row: EnvironmentRow) -> EnvironmentResponse {
    EnvironmentResponse {
        id: row.id,
        name: row.name,
        description: row.description,
        created_at: row.created_at,
    }
}

fn environment_error(e: DbError, name: &str, id: Option<i64>) -> ApiError {
    match e {
        DbError::Conflict { constraint } if constraint == "environments_name" => {
            ApiError::conflict(format!("an environment named `{name}` already exists"))
        }
        DbError::Conflict { .. } => ApiError::conflict(format!(
            "environment {} still has agents; move or delete them first",
            id.unwrap_or_default()
        )),
        e => ApiError::from_db(e, || {
            format!("there is no environment {}", id.unwrap_or_default())
        }),
    }
}

/// Checks both fields; returns the name in NFC, as it is stored.
fn check_environment(request: &EnvironmentRequest) -> Result<String, ApiError> {
    let mut problems = Problems::new();
    let name = problems.check("name", check_environment_name(&request.name));
    if request.description.len() > 4000 {
        problems.add(
            "description",
            "an environment's description has at most 4,000 bytes",
        );
    }
    problems.finish()?;
    Ok(name.unwrap_or_default())
}

/// `POST /api/environments`.
#[utoipa::path(post, path = "/api/environments", tag = "environments",
    request_body = EnvironmentRequest, responses(
    (status = 201, body = EnvironmentResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_environment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiJson(request): ApiJson<EnvironmentRequest>,
) -> Result<(StatusCode, Json<EnvironmentResponse>), ApiError> {
    let name = check_environment(&request)?;
    let failed = |e| environment_error(e, &name, None);
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = agents::create_environment(&mut *tx, &name, &request.description)
        .await
        .map_err(failed)?;
    let environment = environment_response(row);
    Change::new("environment.create")
        .object(environment.id, &environment.name)
        .environment(environment.id)
        .after(&environment)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok((StatusCode::CREATED, Json(environment)))
}

/// `GET /api/environments`: all of them, by name.
#[utoipa::path(get, path = "/api/environments", tag = "environments", responses(
    (status = 200, body = EnvironmentList),
))]
pub(crate) async fn list_environments(
    State(ctx): State<Arc<NodeContext>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
) -> Result<Json<EnvironmentList>, ApiError> {
    let rows = agents::list_environments(&ctx.pools.api, caller.viewer())
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    Ok(Json(EnvironmentList {
        items: rows.into_iter().map(environment_response).collect(),
    }))
}

/// `GET /api/environments/{id}`.
#[utoipa::path(get, path = "/api/environments/{id}", tag = "environments",
    params(("id" = i64, Path)), responses(
    (status = 200, body = EnvironmentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_environment(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EnvironmentResponse>, ApiError> {
    let row = agents::get_environment(&ctx.pools.api, id)
        .await
        .map_err(|e| environment_error(e, "", Some(id)))?;
    Ok(Json(environment_response(row)))
}

/// `PUT /api/environments/{id}`: renames it or changes its description.
#[utoipa::path(put, path = "/api/environments/{id}", tag = "environments",
    params(("id" = i64, Path)), request_body = EnvironmentRequest, responses(
    (status = 200, body = EnvironmentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn update_environment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<EnvironmentRequest>,
) -> Result<Json<EnvironmentResponse>, ApiError> {
    let name = check_environment(&request)?;
    let failed = |e| environment_error(e, &name, Some(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = agents::get_environment_for_update(&mut tx, id)
        .await
        .map_err(failed)?;
    let row = agents::update_environment(&mut *tx, id, &name, &request.description)
        .await
        .map_err(failed)?;
    let environment = environment_response(row);
    Change::new("environment.update")
        .object(id, &environment.name)
        .environment(id)
        .before(&environment_response(before))
        .after(&environment)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(environment))
}

/// `DELETE /api/environments/{id}`: only once no agent belongs to it.
#[utoipa::path(delete, path = "/api/environments/{id}", tag = "environments",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_environment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    // A scope naming a deleted environment would silently never match again.
    let scoping = capstan_db::projects::scoping_environment(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    if !scoping.is_empty() {
        return Err(ApiError::conflict(format!(
            "environment {id} is in the variable scopes of project(s) {}; remove it from \
             their scopes first",
            scoping.join(", ")
        )));
    }
    let failed = |e| environment_error(e, "", Some(id));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = environment_response(
        agents::get_environment_for_update(&mut tx, id)
            .await
            .map_err(failed)?,
    );
    agents::delete_environment(&mut *tx, id)
        .await
        .map_err(failed)?;
    Change::new("environment.delete")
        .object(id, &before.name)
        .environment(id)
        .before(&before)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why a registration was refused, in HTTP terms.
fn register_refused(e: RegisterError) -> ApiError {
    match e {
        RegisterError::Db(e) => ApiError::from_db(e, String::new),
        e @ (RegisterError::UnknownToken | RegisterError::Expired(_) | RegisterError::UsedUp) => {
            ApiError::unauthorized(e.to_string())
        }
        e @ RegisterError::NoEnvironment(_) => {
            ApiError::unprocessable(format!("{e}; create it first (POST /api/environments)"))
        }
        e @ RegisterError::NameTaken(_) => ApiError::conflict(format!(
            "{e}; pick another name, or delete the old agent first"
        )),
    }
}

/// A registration token that may register an agent now, read from `Authorization`
/// and checked before the body is: a caller without one is refused at once instead
/// of being waited for.
pub(crate) struct RegistrationToken(String);

impl FromRequestParts<Arc<NodeContext>> for RegistrationToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<NodeContext>,
    ) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("send a registration token as `Authorization: Bearer capreg_…`")
        })?;
        if !token.starts_with(TokenKind::Registration.prefix()) {
            return Err(ApiError::unauthorized(
                "this is not a registration token (those start with `capreg_`); an administrator creates one with POST /api/agents/registration-tokens",
            ));
        }
        agents::check_registration_token(&ctx.pools.api, &credentials::digest(token))
            .await
            .map_err(register_refused)?;
        Ok(Self(token.to_owned()))
    }
}
