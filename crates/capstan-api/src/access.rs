//! Roles, teams, their members and grants.
//!
//! A grant gives a team a role in some projects and environments: `project_ids` and
//! `environment_ids` absent (or null) mean all of them, a list means those only.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most entries in a grant's project or environment list, and most permissions named.
pub const MAX_SCOPE_IDS: usize = 500;

/// A role: built in (fixed) or custom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub built_in: bool,
    /// `view`, `edit_process`, `create_release`, `deploy`, `answer_interventions`,
    /// `manage_projects`, `manage_environments`, `manage_agents`, `manage_nodes`,
    /// `manage_users`, `view_audit`, `override_freeze`.
    pub permissions: Vec<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleList {
    pub items: Vec<RoleResponse>,
}

/// `POST /api/roles`: a custom role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
    pub permissions: Vec<String>,
}

/// `PATCH /api/roles/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamList {
    pub items: Vec<TeamResponse>,
}

/// `POST /api/teams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
}

/// `PATCH /api/teams/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A team member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberResponse {
    pub user_id: i64,
    pub name: String,
    /// `person` or `service`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberList {
    pub items: Vec<MemberResponse>,
}

/// `POST /api/teams/{id}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantResponse {
    pub id: i64,
    pub team_id: i64,
    pub role_id: i64,
    pub role_name: String,
    /// `null`: every project.
    pub project_ids: Option<Vec<i64>>,
    /// `null`: every environment.
    pub environment_ids: Option<Vec<i64>>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantList {
    pub items: Vec<GrantResponse>,
}

/// `POST /api/teams/{id}/grants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantRequest {
    pub role_id: i64,
    /// Absent or `null`: every project. A list must not be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_ids: Option<Vec<i64>>,
    /// Absent or `null`: every environment. A list must not be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_ids: Option<Vec<i64>>,
}

use reqwest::Method;

use crate::{ApiClient, ClientError, Problem};

impl ApiClient {
    /// `GET /api/roles`.
    pub async fn list_roles(&self) -> Result<RoleList, ClientError> {
        self.call(Method::GET, "/api/roles", None::<&()>).await
    }

    /// A role by id, or by name (in any case).
    pub async fn find_role(&self, name_or_id: &str) -> Result<RoleResponse, ClientError> {
        let roles = self.list_roles().await?;
        roles
            .items
            .into_iter()
            .find(|r| r.id.to_string() == name_or_id || r.name.eq_ignore_ascii_case(name_or_id))
            .ok_or_else(|| not_found(format!("no role is named `{name_or_id}`")))
    }

    /// `POST /api/roles`.
    pub async fn create_role(
        &self,
        request: &CreateRoleRequest,
    ) -> Result<RoleResponse, ClientError> {
        self.call(Method::POST, "/api/roles", Some(request)).await
    }

    /// `PATCH /api/roles/{id}`.
    pub async fn update_role(
        &self,
        id: i64,
        request: &UpdateRoleRequest,
    ) -> Result<RoleResponse, ClientError> {
        self.call(Method::PATCH, &format!("/api/roles/{id}"), Some(request))
            .await
    }

    /// `DELETE /api/roles/{id}`.
    pub async fn delete_role(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/roles/{id}"), None::<&()>)
            .await
    }

    /// `GET /api/teams`.
    pub async fn list_teams(&self) -> Result<TeamList, ClientError> {
        self.call(Method::GET, "/api/teams", None::<&()>).await
    }

    /// A team by id, or by name (in any case).
    pub async fn find_team(&self, name_or_id: &str) -> Result<TeamResponse, ClientError> {
        let teams = self.list_teams().await?;
        teams
            .items
            .into_iter()
            .find(|t| t.id.to_string() == name_or_id || t.name.eq_ignore_ascii_case(name_or_id))
            .ok_or_else(|| not_found(format!("no team is named `{name_or_id}`")))
    }

    /// `POST /api/teams`.
    pub async fn create_team(
        &self,
        request: &CreateTeamRequest,
    ) -> Result<TeamResponse, ClientError> {
        self.call(Method::POST, "/api/teams", Some(request)).await
    }

    /// `DELETE /api/teams/{id}`.
    pub async fn delete_team(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/teams/{id}"), None::<&()>)
            .await
    }

    /// `GET /api/teams/{id}/members`.
    pub async fn list_members(&self, team: i64) -> Result<MemberList, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/teams/{team}/members"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/teams/{id}/members`.
    pub async fn add_member(&self, team: i64, user_id: i64) -> Result<(), ClientError> {
        self.call(
            Method::POST,
            &format!("/api/teams/{team}/members"),
            Some(&AddMemberRequest { user_id }),
        )
        .await
    }

    /// `DELETE /api/teams/{id}/members/{user_id}`.
    pub async fn remove_member(&self, team: i64, user_id: i64) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/teams/{team}/members/{user_id}"),
            None::<&()>,
        )
        .await
    }

    /// `GET /api/teams/{id}/grants`.
    pub async fn list_grants(&self, team: i64) -> Result<GrantList, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/teams/{team}/grants"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/teams/{id}/grants`.
    pub async fn create_grant(
        &self,
        team: i64,
        request: &CreateGrantRequest,
    ) -> Result<GrantResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/teams/{team}/grants"),
            Some(request),
        )
        .await
    }

    /// `DELETE /api/teams/{id}/grants/{grant_id}`.
    pub async fn delete_grant(&self, team: i64, grant: i64) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/teams/{team}/grants/{grant}"),
            None::<&()>,
        )
        .await
    }
}

pub(crate) fn not_found(detail: String) -> ClientError {
    ClientError::Api(Problem::new(404, "Not Found", detail))
}
