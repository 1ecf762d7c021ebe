//! `/api/approval-rules`, `GET /api/approvals` and `POST /api/deployments/{id}/approve`
//! and `/deny`: the rules that make deployments wait for a team's approvals, the
//! deployments waiting, and the decisions. The waiting itself is the approvals gate
//! (`deployments::approvals`).

use std::sync::Arc;

use axum::{Extension, Json, extract::State, http::StatusCode};
use capstan_api::{
    Problem,
    approvals::{
        ApprovalRuleList, ApprovalRuleRequest, ApprovalRuleResponse, AwaitingApprovalList,
        DecisionRequest,
    },
    deployments::DeploymentResponse,
};
use capstan_core::{
    access::{Permission, Scope},
    approval::{self, Decision},
    names,
};
use capstan_db::{DbError, agents, approvals as db, approvals::RuleTerms};

use super::{
    ApiError,
    access::{Caller, Refusal, forbidden, refusal},
    extract::{ApiJson, ApiPath},
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

/// `PUT /api/approval-rules`: sets the rule of an environment, or of a project in it,
/// replacing the one there was. Needs `manage_environments` on the environment.
#[utoipa::path(put, path = "/api/approval-rules", tag = "approvals",
    request_body = ApprovalRuleRequest, responses(
    (status = 200, body = ApprovalRuleResponse),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_rule(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<ApprovalRuleRequest>,
) -> Result<Json<ApprovalRuleResponse>, ApiError> {
    let db = &ctx.pools.api;
    let mut problems = Problems::new();
    problems.check("needed", approval::check_needed(request.needed));
    let environment_name = names::nfc(&request.environment);
    let environment = agents::find_environment(db, &environment_name)
        .await
        .map_err(db_error)?
        .filter(|e| caller.may(Permission::View, Scope::Environment(e.id)));
    if environment.is_none() {
        problems.add(
            "environment",
            format!("there is no environment `{}`", request.environment),
        );
    }
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
    let (Some(environment), Some(team_id)) = (environment, team) else {
        return Err(ApiError::unprocessable("the request names nothing"));
    };
    check_manage(&ctx, &caller, environment.id).await?;
    let shown = service::put_rule(
        &ctx,
        &actor,
        &RuleTerms {
            environment_id: environment.id,
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
        e => db_error(e),
    })?;
    Ok(Json(shown))
}

async fn check_manage(
    ctx: &NodeContext,
    caller: &Caller,
    environment: i64,
) -> Result<(), ApiError> {
    match refusal(
        caller,
        Permission::ManageEnvironments,
        Scope::Environment(environment),
    ) {
        Ok(()) => Ok(()),
        Err(Refusal::Hidden) => Err(ApiError::not_found(format!(
            "there is no environment {environment}"
        ))),
        Err(Refusal::Forbidden { permission, scope }) => {
            Err(forbidden(ctx, permission, scope).await)
        }
    }
}

/// `DELETE /api/approval-rules/{id}`: deployments it held are looked at again at once.
#[utoipa::path(delete, path = "/api/approval-rules/{id}", tag = "approvals",
    params(("id" = i64, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_rule(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let missing = || format!("there is no approval rule {id}");
    let rule = db::get_rule(&ctx.pools.api, id)
        .await
        .map_err(|e| ApiError::from_db(e, missing))?;
    if !may_view(&caller, &rule) {
        return Err(ApiError::not_found(missing()));
    }
    check_manage(&ctx, &caller, rule.environment_id).await?;
    service::delete_rule(&ctx, &actor, id)
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
