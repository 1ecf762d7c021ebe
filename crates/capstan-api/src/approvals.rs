//! Approvals: the rules that make deployments to an environment (or of one project to
//! it) wait for N approvals from a team (`GET /api/approval-rules`,
//! `PUT|DELETE /api/environments/{id}/approval-rule`), the deployments waiting
//! (`GET /api/approvals`), and approving or denying one
//! (`POST /api/deployments/{id}/approve|deny`).

use capstan_core::approval::Decision;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ApiClient, ClientError, deployments::DeploymentSummary};

/// `PUT /api/environments/{id}/approval-rule`: sets the rule of the environment, or
/// of one project in it (which overrides the environment's), replacing the one there
/// was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRuleRequest {
    /// Only this project's deployments to the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// The team whose members approve, by name.
    pub team: String,
    /// How many members must approve: 1 to 10.
    #[schema(minimum = 1, maximum = 10)]
    pub needed: u32,
    /// Whether the person who queued a deployment may approve it. Off unless asked:
    /// by default someone else must look at it.
    #[serde(default)]
    pub deployer_may_approve: bool,
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRuleResponse {
    pub id: i64,
    pub environment_id: i64,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub team_id: i64,
    pub team: String,
    pub needed: u32,
    pub deployer_may_approve: bool,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `DELETE /api/environments/{id}/approval-rule`: which rule; without `project_id`,
/// the environment's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRuleQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
}

/// `GET /api/approval-rules`: the rules of the environments the caller may view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRuleList {
    pub items: Vec<ApprovalRuleResponse>,
}

/// `POST /api/deployments/{id}/approve` and `/deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why, at most 4 KiB; a denial must give one.
    #[serde(default)]
    pub note: String,
}

/// An approval or denial given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub decision: Decision,
    /// The user's name.
    pub by: String,
    /// Absent once the user is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    pub note: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// A deployment waiting for approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AwaitingApproval {
    pub deployment: DeploymentSummary,
    /// Who queued it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_by: Option<String>,
    pub given: u32,
    pub needed: u32,
    pub team: String,
    pub deployer_may_approve: bool,
    pub approvals: Vec<Approval>,
}

/// `GET /api/approvals`: the deployments waiting for approval that the caller may
/// view, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AwaitingApprovalList {
    pub items: Vec<AwaitingApproval>,
}

impl ApiClient {
    /// `GET /api/approval-rules`.
    pub async fn list_approval_rules(&self) -> Result<ApprovalRuleList, ClientError> {
        self.call(Method::GET, "/api/approval-rules", None::<&()>)
            .await
    }

    /// `PUT /api/environments/{id}/approval-rule`.
    pub async fn set_approval_rule(
        &self,
        environment_id: i64,
        request: &ApprovalRuleRequest,
    ) -> Result<ApprovalRuleResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/environments/{environment_id}/approval-rule"),
            Some(request),
        )
        .await
    }

    /// `DELETE /api/environments/{id}/approval-rule`: the project's rule there, or the
    /// environment's own.
    pub async fn delete_approval_rule(
        &self,
        environment_id: i64,
        project_id: Option<i64>,
    ) -> Result<(), ClientError> {
        let query = project_id.map_or_else(String::new, |p| format!("?project_id={p}"));
        self.call(
            Method::DELETE,
            &format!("/api/environments/{environment_id}/approval-rule{query}"),
            None::<&()>,
        )
        .await
    }

    /// `GET /api/approvals`.
    pub async fn list_awaiting_approval(&self) -> Result<AwaitingApprovalList, ClientError> {
        self.call(Method::GET, "/api/approvals", None::<&()>).await
    }

    /// `POST /api/deployments/{id}/approve` or `/deny`: the deployment afterwards.
    pub async fn decide_deployment(
        &self,
        id: i64,
        decision: Decision,
        note: &str,
    ) -> Result<crate::deployments::DeploymentResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/deployments/{id}/{}", decision.as_str()),
            Some(&DecisionRequest {
                note: note.to_owned(),
            }),
        )
        .await
    }
}
