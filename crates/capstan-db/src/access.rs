//! Roles, teams, their members and grants; each user's effective grants; where an
//! object lives (its project and environment) for the permission check; and the SQL
//! filter that keeps lists to what a caller may view.
//!
//! Every change of who may do what announces [`UserNotice::AccessChanged`] in its own
//! transaction, so every node drops its cached grants at once. The changes take any
//! [`Acquire`]: a pool (they run in a transaction of their own) or the caller's
//! transaction (they run in a savepoint of it, and the notice is sent when the caller
//! commits, with its audit row).

use sqlx::{Acquire, PgConnection, PgExecutor, Postgres};
use time::OffsetDateTime;

use crate::{
    DbError,
    notify::{USERS_CHANNEL, UserNotice},
};

/// Whose view a list is filtered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Viewer {
    /// No filter: the admin key, and the node's own work.
    #[default]
    All,
    /// What the user's grants of `view` reach.
    User(i64),
}

impl Viewer {
    /// The bind value of [`visible`]'s parameter: NULL for everyone.
    pub fn user_id(self) -> Option<i64> {
        match self {
            Self::All => None,
            Self::User(id) => Some(id),
        }
    }
}

/// A SQL condition: the viewer bound at `$param` (a [`Viewer::user_id`]) may `view`
/// the row whose project and environment are the given column expressions. With
/// neither, the row is system-wide and needs a grant scoped to everything.
pub fn visible(param: usize, project: Option<&str>, environment: Option<&str>) -> String {
    let scope = match (project, environment) {
        (None, None) => "g.project_ids IS NULL AND g.environment_ids IS NULL".to_owned(),
        _ => {
            let mut parts = Vec::new();
            if let Some(p) = project {
                parts.push(format!(
                    "(g.project_ids IS NULL OR {p} = ANY (g.project_ids))"
                ));
            }
            if let Some(e) = environment {
                parts.push(format!(
                    "(g.environment_ids IS NULL OR {e} = ANY (g.environment_ids))"
                ));
            }
            parts.join(" AND ")
        }
    };
    format!(
        "(${param}::bigint IS NULL OR EXISTS (
            SELECT 1 FROM team_members m
            JOIN grants g ON g.team_id = m.team_id
            JOIN roles r ON r.id = g.role_id
            WHERE m.user_id = ${param} AND 'view' = ANY (r.permissions) AND {scope}))"
    )
}

/// A role as stored; `permissions` are checked against the known ones by a constraint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub built_in: bool,
    pub permissions: Vec<String>,
    pub created_at: OffsetDateTime,
}

const ROLE: &str = "SELECT id, name, description, built_in, permissions, created_at FROM roles";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

const TEAM: &str = "SELECT id, name, description, created_at FROM teams";

/// A grant with its role's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: i64,
    pub team_id: i64,
    pub role_id: i64,
    pub role_name: String,
    pub project_ids: Option<Vec<i64>>,
    pub environment_ids: Option<Vec<i64>>,
    pub created_at: OffsetDateTime,
}

const GRANT: &str = "SELECT g.id, g.team_id, g.role_id, r.name AS role_name, g.project_ids,
    g.environment_ids, g.created_at FROM grants g JOIN roles r ON r.id = g.role_id";

/// One grant as a user holds it: the role's permissions and the grant's scope.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EffectiveGrantRow {
    pub permissions: Vec<String>,
    pub project_ids: Option<Vec<i64>>,
    pub environment_ids: Option<Vec<i64>>,
}

/// A team member.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: i64,
    pub name: String,
    pub kind: String,
}

async fn announce(db: impl PgExecutor<'_>) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(USERS_CHANNEL)
        .bind(UserNotice::AccessChanged.encode())
        .execute(db)
        .await?;
    Ok(())
}

// Roles.

pub async fn list_roles(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<RoleRow>, DbError> {
    Ok(
        sqlx::query_as(&format!("{ROLE} ORDER BY NOT built_in, id LIMIT $1"))
            .bind(limit)
            .fetch_all(db)
            .await?,
    )
}

pub async fn get_role(db: impl PgExecutor<'_>, id: i64) -> Result<RoleRow, DbError> {
    Ok(sqlx::query_as(&format!("{ROLE} WHERE id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// A role, locked until the caller's transaction ends.
pub async fn get_role_for_update(conn: &mut PgConnection, id: i64) -> Result<RoleRow, DbError> {
    Ok(sqlx::query_as(&format!("{ROLE} WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_one(conn)
        .await?)
}

pub async fn create_role(
    db: impl PgExecutor<'_>,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<RoleRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3)
         RETURNING id, name, description, built_in, permissions, created_at",
    )
    .bind(name)
    .bind(description)
    .bind(permissions)
    .fetch_one(db)
    .await?)
}

/// Changes a custom role; `NotFound` for a missing or built-in one (the caller tells
/// them apart first).
pub async fn update_role<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    permissions: Option<&[String]>,
) -> Result<RoleRow, DbError> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as(
        "UPDATE roles SET name = coalesce($2, name), description = coalesce($3, description),
             permissions = coalesce($4, permissions)
         WHERE id = $1 AND NOT built_in
         RETURNING id, name, description, built_in, permissions, created_at",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(permissions)
    .fetch_one(&mut *tx)
    .await?;
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a custom role; `Conflict { grants_role_id_fkey }` while a grant uses it.
pub async fn delete_role(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let done = sqlx::query("DELETE FROM roles WHERE id = $1 AND NOT built_in")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

// Teams.

pub async fn list_teams(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<TeamRow>, DbError> {
    Ok(sqlx::query_as(&format!("{TEAM} ORDER BY id LIMIT $1"))
        .bind(limit)
        .fetch_all(db)
        .await?)
}

pub async fn get_team(db: impl PgExecutor<'_>, id: i64) -> Result<TeamRow, DbError> {
    Ok(sqlx::query_as(&format!("{TEAM} WHERE id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?)
}

/// A team, locked until the caller's transaction ends: its members and grants cannot
/// change meanwhile.
pub async fn get_team_for_update(conn: &mut PgConnection, id: i64) -> Result<TeamRow, DbError> {
    Ok(sqlx::query_as(&format!("{TEAM} WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_one(conn)
        .await?)
}

pub async fn create_team(
    db: impl PgExecutor<'_>,
    name: &str,
    description: &str,
) -> Result<TeamRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO teams (name, description) VALUES ($1, $2)
         RETURNING id, name, description, created_at",
    )
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await?)
}

pub async fn update_team(
    db: impl PgExecutor<'_>,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<TeamRow, DbError> {
    Ok(sqlx::query_as(
        "UPDATE teams SET name = coalesce($2, name), description = coalesce($3, description)
         WHERE id = $1 RETURNING id, name, description, created_at",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .fetch_one(db)
    .await?)
}

pub async fn delete_team<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM teams WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

// Members.

pub async fn list_members(
    db: impl PgExecutor<'_>,
    team_id: i64,
    limit: i64,
) -> Result<Vec<MemberRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.name, u.kind FROM team_members m JOIN users u ON u.id = m.user_id
         WHERE m.team_id = $1 ORDER BY u.id LIMIT $2",
    )
    .bind(team_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// One member of a team, if the user is one, locked until the caller's transaction
/// ends.
pub async fn get_member_for_update(
    conn: &mut PgConnection,
    team_id: i64,
    user_id: i64,
) -> Result<Option<MemberRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.name, u.kind FROM team_members m JOIN users u ON u.id = m.user_id
         WHERE m.team_id = $1 AND m.user_id = $2 FOR UPDATE OF m",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn count_members(db: impl PgExecutor<'_>, team_id: i64) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM team_members WHERE team_id = $1")
            .bind(team_id)
            .fetch_one(db)
            .await?,
    )
}

/// Adds a user to a team; adding a member twice is not an error.
pub async fn add_member<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    team_id: i64,
    user_id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(team_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn remove_member<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    team_id: i64,
    user_id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

// Grants.

pub async fn list_grants(
    db: impl PgExecutor<'_>,
    team_id: i64,
    limit: i64,
) -> Result<Vec<GrantRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{GRANT} WHERE g.team_id = $1 ORDER BY g.id LIMIT $2"
    ))
    .bind(team_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// One grant of a team, locked until the caller's transaction ends.
pub async fn get_grant_for_update(
    conn: &mut PgConnection,
    team_id: i64,
    id: i64,
) -> Result<GrantRow, DbError> {
    Ok(sqlx::query_as(&format!(
        "{GRANT} WHERE g.id = $1 AND g.team_id = $2 FOR UPDATE OF g"
    ))
    .bind(id)
    .bind(team_id)
    .fetch_one(conn)
    .await?)
}

pub async fn count_grants(db: impl PgExecutor<'_>, team_id: i64) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE team_id = $1")
            .bind(team_id)
            .fetch_one(db)
            .await?,
    )
}

/// Gives `team_id` the role in the projects and environments given (`None`: all).
pub async fn create_grant<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    team_id: i64,
    role_id: i64,
    project_ids: Option<&[i64]>,
    environment_ids: Option<&[i64]>,
) -> Result<GrantRow, DbError> {
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO grants (team_id, role_id, project_ids, environment_ids)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(team_id)
    .bind(role_id)
    .bind(project_ids)
    .bind(environment_ids)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query_as(&format!("{GRANT} WHERE g.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn delete_grant<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    team_id: i64,
    id: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM grants WHERE id = $1 AND team_id = $2")
        .bind(id)
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    announce(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Which of `ids` name no project (or, with `environments`, no environment).
pub async fn missing_ids(
    db: impl PgExecutor<'_>,
    table: ScopeTable,
    ids: &[i64],
) -> Result<Vec<i64>, DbError> {
    let table = match table {
        ScopeTable::Projects => "projects",
        ScopeTable::Environments => "environments",
    };
    Ok(sqlx::query_scalar(&format!(
        "SELECT id FROM unnest($1::bigint[]) AS x(id)
         WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = x.id) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// The names of `ids` in their order; an id whose object is gone reads `#<id>`.
pub async fn names(
    db: impl PgExecutor<'_>,
    table: ScopeTable,
    ids: &[i64],
) -> Result<Vec<String>, DbError> {
    let table = match table {
        ScopeTable::Projects => "projects",
        ScopeTable::Environments => "environments",
    };
    Ok(sqlx::query_scalar(&format!(
        "SELECT coalesce(t.name, '#' || x.id) FROM unnest($1::bigint[]) WITH ORDINALITY AS x(id, n)
         LEFT JOIN {table} t ON t.id = x.id ORDER BY x.n"
    ))
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// What a grant's scope lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeTable {
    Projects,
    Environments,
}

/// Every grant a user holds through its teams.
pub async fn effective_grants(
    db: impl PgExecutor<'_>,
    user_id: i64,
) -> Result<Vec<EffectiveGrantRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT r.permissions, g.project_ids, g.environment_ids
         FROM team_members m JOIN grants g ON g.team_id = m.team_id
         JOIN roles r ON r.id = g.role_id
         WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

// Where objects live.

/// A project's name, for a refusal's wording.
pub async fn project_name(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// An environment's name, for a refusal's wording.
pub async fn environment_name(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM environments WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// The project of a release.
pub async fn release_project(db: impl PgExecutor<'_>, id: i64) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT project_id FROM releases WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// The project and environment of a deployment.
pub async fn deployment_scope(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<(i64, i64)>, DbError> {
    Ok(
        sqlx::query_as("SELECT project_id, environment_id FROM deployments WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Where a task lives: `None` when there is no such task, `Some(None)` for a task of
/// no deployment (system-wide), else its deployment's project and environment.
pub async fn task_scope(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<Option<(i64, i64)>>, DbError> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT d.project_id, d.environment_id FROM tasks t
         LEFT JOIN deployments d ON d.task_id = t.id WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(project, environment)| project.zip(environment)))
}

/// The environment of an agent.
pub async fn agent_environment(db: impl PgExecutor<'_>, id: i64) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT environment_id FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}
