//! `/api/approval-rules`, `GET /api/approvals` and `POST /api/deployments/{id}/approve`
//! and `/deny`: the rules that make deployments wait for a team's approvals, the
//! deployments waiting, and the decisions. The waiting itself is the approvals gate
//! (`deployments::approvals`).

use std::sync::Arc;

use axum::{Extension, Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    approvals::{
        ApprovalRuleList, ApprovalRuleQuery, ApprovalRuleRequest, ApprovalRuleResponse,
        AwaitingApprovalList, DecisionRequest,
    },
    deployments::DeploymentResponse,
};
use capstan_core::{
    access::{Permission, Scope},
    approval::{self, Decision},
    names,
};
use capstan_db::{DbError, approvals as db, approvals::RuleTerms};

use super::{
    ApiError,
    access::Caller,
    extract::{ApiJson, ApiPath, ApiQuery},
    problems::Problems,
};
use crate::{
    audit::ChangedBy,
    deployments::{
        self,
        approvals::{self as service, ApprovalError, Member},
    },
    node::NodeContext,
};

/// The most rules `GET /api/approval-rules` lists.
const MAX_RULES: i64 = 1000;

impl From<ApprovalError> for ApiError {
    fn from(error: ApprovalError) -> Self {
        match error {
            ApprovalError::Invalid(problems) => problems.into(),
            ApprovalError::NotFound(detail) => Self::not_found(detail),
            ApprovalError::Forbidden(detail) => Self::new(StatusCode::FORBIDDEN, detail),
            ApprovalError::Conflict(detail) => Self::conflict(detail),
            ApprovalError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

fn db_error(e: DbError) -> ApiError {
    ApiError::from_db(e, String::new)
}

/// Whether the caller may see a rule: its environment, and its project if it names one.
fn may_view(caller: &Caller, rule: &db::RuleRow) -> bool {
    let scope = match rule.project_id {
        Some(project) => Scope::Deployment {
            project,
            environment: rule.environment_id,
        },
        None => Scope::Environment(rule.environment_id),
    };
    caller.may(Permission::View, scope)
}

/// `GET /api/approval-rules`: the rules of what the caller may view.
#[utoipa::path(get, path = "/api/approval-rules", tag = "approvals", responses(
    (status = 200, body = ApprovalRuleList),
))]
pub(crate) async fn list_rules(
    State(ctx): State<Arc<NodeContext>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ApprovalRuleList>, ApiError> {
    let rows = db::list_rules(&ctx.pools.api, MAX_RULES)
        .await
        .map_err(db_error)?;
    Ok(Json(ApprovalRuleList {
        items: rows
            .into_iter()
            .filter(|r| may_view(&caller, r))
            .map(service::rule_response)
            .collect(),
    }))
}

/// Environment `id`, which the access layer let the caller manage; a missing one is
/// answered as the layer answers one the caller may not see.
async fn environment(ctx: &NodeContext, id: i64) -> Result<String, ApiError> {
    capstan_db::access::environment_name(&ctx.pools.api, id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("there is no environment {id}")))
}

/// `PUT /api/environments/{id}/approval-rule`: sets the rule of the environment, or
/// of a project in it, replacing the one there was.
#[utoipa::path(put, path = "/api/environments/{id}/approval-rule", tag = "approvals",
    params(("id" = i64, Path)), request_body = ApprovalRuleRequest, responses(
    (status = 200, body = ApprovalRuleResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_rule(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ApprovalRuleRequest>,
) -> Result<Json<ApprovalRuleResponse>, ApiError> {
    let db = &ctx.pools.api;
    environment(&ctx, id).await?;
    let mut problems = Problems::new();
    problems.check("needed", approval::check_needed(request.needed));
    let team = db::team_named(db, &names::nfc(&request.team))
        .await
        .map_err(db_error)?;
    if team.is_none() {
        problems.add("team", format!("there is no team `{}`", request.team));
    }
    if let Some(project) = request.project_id {
        let exists = capstan_db::access::project_name(db, project)
            .await
            .map_err(db_error)?
            .is_some();
        if !exists || !caller.may(Permission::View, Scope::Project(project)) {
            problems.add("project_id", format!("there is no project {project}"));
        }
    }
    problems.finish()?;
    let Some(team_id) = team else {
        return Err(Problems::one("team", "required").into());
    };
    let shown = service::put_rule(
        &ctx,
        &actor,
        &RuleTerms {
            environment_id: id,
            project_id: request.project_id,
            team_id,
            needed: i32::try_from(request.needed).unwrap_or(1),
            deployer_may_approve: request.deployer_may_approve,
        },
    )
    .await
    .map_err(|e| match e {
        DbError::Conflict { constraint } if constraint == "approval_rules_scope" => {
            ApiError::conflict(
                "another change set this rule at the same time; read the rules and try again",
            )
        }
        DbError::Conflict { constraint } if constraint == "approval_rules_team" => {
            ApiError::conflict(format!(
                "team `{}` was deleted meanwhile; name another",
                request.team
            ))
        }
        e => db_error(e),
    })?;
    Ok(Json(shown))
}

/// `DELETE /api/environments/{id}/approval-rule`: the environment's own rule, or with
/// `project_id` that project's there. Deployments it held are looked at again at
/// once.
#[utoipa::path(delete, path = "/api/environments/{id}/approval-rule", tag = "approvals",
    params(("id" = i64, Path), ApprovalRuleQuery), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_rule(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ApprovalRuleQuery>,
) -> Result<StatusCode, ApiError> {
    let name = environment(&ctx, id).await?;
    let missing = || match query.project_id {
        Some(project) => {
            format!("there is no approval rule for project {project} in environment {name}")
        }
        None => format!("environment {name} has no approval rule of its own"),
    };
    let mut conn = ctx
        .pools
        .api
        .acquire()
        .await
        .map_err(|e| db_error(e.into()))?;
    let rule = db::rule_at_for_update(&mut conn, id, query.project_id)
        .await
        .map_err(db_error)?
        .filter(|rule| may_view(&caller, rule))
        .ok_or_else(|| ApiError::not_found(missing()))?;
    drop(conn);
    service::delete_rule(&ctx, &actor, rule.id)
        .await
        .map_err(|e| ApiError::from_db(e, missing))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/approvals`: the deployments waiting for approval that the caller may
/// view, oldest first, with what they have so far.
#[utoipa::path(get, path = "/api/approvals", tag = "approvals", responses(
    (status = 200, body = AwaitingApprovalList),
))]
pub(crate) async fn list_awaiting(
    State(ctx): State<Arc<NodeContext>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<AwaitingApprovalList>, ApiError> {
    let items = service::waiting(&ctx, |row| {
        caller.may(
            Permission::View,
            Scope::Deployment {
                project: row.project_id,
                environment: row.environment_id,
            },
        )
    })
    .await
    .map_err(db_error)?;
    Ok(Json(AwaitingApprovalList { items }))
}

async fn decide(
    ctx: &NodeContext,
    actor: capstan_db::audit::Actor,
    caller: &Caller,
    id: i64,
    decision: Decision,
    request: DecisionRequest,
) -> Result<Json<DeploymentResponse>, ApiError> {
    let member = caller.principal.user_id().map(|user_id| Member {
        user_id,
        name: actor.name.clone(),
    });
    let by = deployments::Caller {
        who: member
            .as_ref()
            .map_or_else(|| "admin key".to_owned(), |m| m.name.clone()),
        address: actor.address.clone(),
        by: actor,
        note: request.note,
    };
    service::decide(ctx, id, decision, member.as_ref(), &by).await?;
    Ok(Json(deployments::show(ctx, id).await?))
}

/// `POST /api/deployments/{id}/approve`: one approval per member of the rule's team;
/// the last one needed starts the deployment.
#[utoipa::path(post, path = "/api/deployments/{id}/approve", tag = "approvals",
    params(("id" = i64, Path)), request_body = DecisionRequest, responses(
    (status = 200, body = DeploymentResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn approve(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<Json<DeploymentResponse>, ApiError> {
    decide(&ctx, actor, &caller, id, Decision::Approve, request).await
}

/// `POST /api/deployments/{id}/deny`: cancels the deployment, saying who denied it
/// and why.
#[utoipa::path(post, path = "/api/deployments/{id}/deny", tag = "approvals",
    params(("id" = i64, Path)), request_body = DecisionRequest, responses(
    (status = 200, body = DeploymentResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn deny(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<Json<DeploymentResponse>, ApiError> {
    decide(&ctx, actor, &caller, id, Decision::Deny, request).await
}
