//! `/api/deployments`: queue a release on an environment, read it with its grid,
//! cancel or abandon it, answer its questions.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use capstan_api::{
    Problem,
    deployments::{
        AnswerRequest, CreateDeploymentRequest, DeploymentPage, DeploymentQuery,
        DeploymentResponse, StopRequest,
    },
};
use capstan_db::{
    audit::Actor,
    deployments::{self as db, DeploymentFilter},
};

use super::{
    ApiError, client_addr,
    extract::{ApiJson, ApiPath, ApiQuery},
    paging::Keyset,
};
use crate::audit::ChangedBy;
use crate::deployments::{self, Caller};
use crate::identity::Principal;
use crate::node::NodeContext;

const DEFAULT_PAGE: u32 = 50;

/// Who is asking: the credential the auth layer accepted (the admin key, or a user's
/// or service account's key) and the client's address through the trusted proxies.
fn caller(
    ctx: &NodeContext,
    by: Actor,
    principal: Option<Extension<Principal>>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Caller {
    Caller {
        who: principal.map_or_else(|| "admin key".to_owned(), |p| p.0.to_string()),
        by,
        note: String::new(),
        address: client_addr::of_request(
            peer.map(|p| p.ip()),
            headers,
            &ctx.settings.trusted_proxies,
        )
        .map(|ip| ip.to_string()),
    }
}

/// The note of a cancel or an abandon: the body is optional.
fn stop_note(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let request: StopRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::unprocessable(format!("the body is not a stop request: {e}")))?;
    if request.note.len() > 4096 {
        return Err(ApiError::unprocessable("`note`: at most 4 KiB"));
    }
    if request.note.contains('\0') {
        return Err(ApiError::unprocessable(
            "`note` holds a NUL character (U+0000); remove it",
        ));
    }
    Ok(request.note)
}

/// `POST /api/deployments`: checks everything, then queues the deployment.
#[utoipa::path(post, path = "/api/deployments", tag = "deployments",
    request_body = CreateDeploymentRequest, responses(
    (status = 201, body = DeploymentResponse),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn create_deployment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<super::access::Caller>,
    ApiJson(request): ApiJson<CreateDeploymentRequest>,
) -> Result<Response, ApiError> {
    // A rollback names its project: one the caller may not view reads as one never
    // deployed, so the answer does not tell whether it exists.
    if request.rollback
        && let Some(project) = request.project_id
        && !caller.may(
            capstan_core::access::Permission::View,
            capstan_core::access::Scope::Project(project),
        )
    {
        return Err(deployments::DeploymentError::Conflict(format!(
            "nothing to roll back: project {project} was never deployed to {}",
            capstan_core::names::nfc(&request.environment)
        ))
        .into());
    }
    let resolved = deployments::resolve(&ctx, &request).await?;
    super::access::check_create_deployment(
        &ctx,
        &caller,
        resolved.release_id,
        &request.environment,
    )
    .await?;
    if request.override_freeze {
        super::freezes::check_override(&ctx, &caller, resolved.release_id, &request.environment)
            .await?;
    }
    let id = deployments::create(&ctx, &actor, &request, resolved).await?;
    let shown = deployments::show(&ctx, id).await?;
    let mut response = (StatusCode::CREATED, Json(shown)).into_response();
    if let Ok(location) = format!("/api/deployments/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/deployments`: newest first, in pages.
#[utoipa::path(get, path = "/api/deployments", tag = "deployments", params(DeploymentQuery),
    responses(
    (status = 200, body = DeploymentPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_deployments(
    State(ctx): State<Arc<NodeContext>>,
    Extension(caller): Extension<super::access::Caller>,
    ApiQuery(query): ApiQuery<DeploymentQuery>,
) -> Result<Json<DeploymentPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let environment_id = match query.environment.as_deref() {
        None => None,
        Some(name) => {
            let found = capstan_db::agents::find_environment(
                &ctx.pools.api,
                &capstan_core::names::nfc(name),
            )
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?;
            match found {
                Some(environment) => Some(environment.id),
                // No such environment has no deployments.
                None => {
                    return Ok(Json(DeploymentPage {
                        items: Vec::new(),
                        next: None,
                    }));
                }
            }
        }
    };
    let rows = db::list(
        &ctx.pools.api,
        &DeploymentFilter {
            project_id: query.project_id,
            environment_id,
            release_id: query.release_id,
            state: query.state,
            before: keyset.cursor,
            limit: keyset.fetch(),
            viewer: caller.viewer(),
        },
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    Ok(Json(DeploymentPage {
        items: rows.into_iter().map(deployments::summary).collect(),
        next,
    }))
}

/// `GET /api/deployments/{id}`: the deployment with its grid and questions.
#[utoipa::path(get, path = "/api/deployments/{id}", tag = "deployments",
    params(("id" = i64, Path)), responses(
    (status = 200, body = DeploymentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_deployment(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeploymentResponse>, ApiError> {
    Ok(Json(deployments::show(&ctx, id).await?))
}

/// `POST /api/deployments/{id}/cancel`: running scripts are cancelled on their agents.
#[utoipa::path(post, path = "/api/deployments/{id}/cancel", tag = "deployments",
    params(("id" = i64, Path)), request_body = StopRequest, responses(
    (status = 202, body = DeploymentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn cancel_deployment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(by): ChangedBy,
    principal: Option<Extension<Principal>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeploymentResponse>), ApiError> {
    let mut caller = caller(&ctx, by, principal, peer.map(|p| (p.0).0), &headers);
    caller.note = stop_note(&body)?;
    deployments::cancel(&ctx, id, &caller).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(deployments::show(&ctx, id).await?),
    ))
}

/// `POST /api/deployments/{id}/abandon`: closes a cancelled deployment whose agents
/// never confirmed they stopped, after the grace period.
#[utoipa::path(post, path = "/api/deployments/{id}/abandon", tag = "deployments",
    params(("id" = i64, Path)), request_body = StopRequest, responses(
    (status = 200, body = DeploymentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn abandon_deployment(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(by): ChangedBy,
    principal: Option<Extension<Principal>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> Result<Json<DeploymentResponse>, ApiError> {
    let mut caller = caller(&ctx, by, principal, peer.map(|p| (p.0).0), &headers);
    caller.note = stop_note(&body)?;
    deployments::abandon(&ctx, id, &caller).await?;
    Ok(Json(deployments::show(&ctx, id).await?))
}

/// `POST /api/deployments/{id}/interventions/{iid}`: answers a question once.
#[utoipa::path(post, path = "/api/deployments/{id}/interventions/{iid}", tag = "deployments",
    params(("id" = i64, Path), ("iid" = i64, Path)), request_body = AnswerRequest, responses(
    (status = 200, body = DeploymentResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn answer_intervention(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(by): ChangedBy,
    principal: Option<Extension<Principal>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiPath((id, question)): ApiPath<(i64, i64)>,
    ApiJson(request): ApiJson<AnswerRequest>,
) -> Result<Json<DeploymentResponse>, ApiError> {
    let caller = caller(&ctx, by, principal, peer.map(|p| (p.0).0), &headers);
    deployments::answer(&ctx, id, question, &request, &caller).await?;
    Ok(Json(deployments::show(&ctx, id).await?))
}
