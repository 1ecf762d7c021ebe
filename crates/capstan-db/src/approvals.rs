//! Approval rules (an environment's, or one project's in an environment) and the
//! approvals and denials given to deployments waiting under them.

use capstan_core::approval::Decision;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::{DbError, StateColumn};

/// A rule with the names of what it names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleRow {
    pub id: i64,
    pub environment_id: i64,
    pub environment: String,
    pub project_id: Option<i64>,
    pub project: Option<String>,
    pub team_id: i64,
    pub team: String,
    pub needed: i32,
    pub deployer_may_approve: bool,
    pub updated_at: OffsetDateTime,
}

const SELECT_RULE: &str = "SELECT r.id, r.environment_id, e.name AS environment, r.project_id,
        p.name AS project, r.team_id, t.name AS team, r.needed, r.deployer_may_approve,
        r.updated_at
    FROM approval_rules r
    JOIN environments e ON e.id = r.environment_id
    LEFT JOIN projects p ON p.id = r.project_id
    JOIN teams t ON t.id = r.team_id";

/// Every rule, by environment then project (the environment's own first).
pub async fn list_rules(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<RuleRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT_RULE} ORDER BY lower(e.name), r.project_id NULLS FIRST LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

pub async fn get_rule(db: impl PgExecutor<'_>, id: i64) -> Result<RuleRow, DbError> {
    sqlx::query_as(&format!("{SELECT_RULE} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(DbError::NotFound)
}

/// The rule of exactly this environment × project (`None`: the environment's own),
/// locked for the change about to be made.
pub async fn rule_at_for_update(
    conn: &mut PgConnection,
    environment_id: i64,
    project_id: Option<i64>,
) -> Result<Option<RuleRow>, DbError> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM approval_rules
         WHERE environment_id = $1 AND project_id IS NOT DISTINCT FROM $2 FOR UPDATE",
    )
    .bind(environment_id)
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    match id {
        Some(id) => Ok(Some(get_rule(&mut *conn, id).await?)),
        None => Ok(None),
    }
}

/// What a rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTerms {
    pub environment_id: i64,
    pub project_id: Option<i64>,
    pub team_id: i64,
    pub needed: i32,
    pub deployer_may_approve: bool,
}

/// Sets the rule of an environment × project, replacing the one there was: the rule
/// as stored.
pub async fn put_rule(conn: &mut PgConnection, terms: &RuleTerms) -> Result<RuleRow, DbError> {
    let id: i64 = sqlx::query_scalar(
        "WITH updated AS (
            UPDATE approval_rules SET team_id = $3, needed = $4, deployer_may_approve = $5,
                   updated_at = now()
            WHERE environment_id = $1 AND project_id IS NOT DISTINCT FROM $2
            RETURNING id
         ), inserted AS (
            INSERT INTO approval_rules (environment_id, project_id, team_id, needed,
                                        deployer_may_approve)
            SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM updated)
            RETURNING id
         )
         SELECT id FROM updated UNION ALL SELECT id FROM inserted",
    )
    .bind(terms.environment_id)
    .bind(terms.project_id)
    .bind(terms.team_id)
    .bind(terms.needed)
    .bind(terms.deployer_may_approve)
    .fetch_one(&mut *conn)
    .await?;
    get_rule(&mut *conn, id).await
}

pub async fn delete_rule(db: impl PgExecutor<'_>, id: i64) -> Result<(), DbError> {
    let deleted = sqlx::query("DELETE FROM approval_rules WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// The rules that could apply to a project in an environment: (the project's own,
/// the environment's).
pub async fn rules_for(
    db: impl PgExecutor<'_>,
    project_id: i64,
    environment_id: i64,
) -> Result<(Option<RuleRow>, Option<RuleRow>), DbError> {
    let rows: Vec<RuleRow> = sqlx::query_as(&format!(
        "{SELECT_RULE} WHERE r.environment_id = $2 AND (r.project_id = $1 OR r.project_id IS NULL)"
    ))
    .bind(project_id)
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    let (own, environment): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.project_id.is_some());
    Ok((own.into_iter().next(), environment.into_iter().next()))
}

/// Whether user `user_id` belongs to team `team_id`.
pub async fn is_member(
    db: impl PgExecutor<'_>,
    team_id: i64,
    user_id: i64,
) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM team_members WHERE team_id = $1 AND user_id = $2)",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_one(db)
    .await?)
}

/// A team's id by name (in any case).
pub async fn team_named(db: impl PgExecutor<'_>, name: &str) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM teams WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

/// A deployment as an approval sees it, its row locked so that decisions on it are
/// made one at a time on every node.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Waiting {
    pub queued_by: Option<i64>,
    /// Why it is held, as the API words it; `None` once it may start.
    pub held: Option<serde_json::Value>,
    /// Its task is parked in the queue.
    pub parked: bool,
    pub started: bool,
}

pub async fn lock_deployment(
    conn: &mut PgConnection,
    deployment_id: i64,
) -> Result<Waiting, DbError> {
    sqlx::query_as(
        "SELECT d.queued_by, d.held, coalesce(t.parked AND t.state = 'queued', false) AS parked,
                d.started_at IS NOT NULL AS started
         FROM deployments d LEFT JOIN tasks t ON t.id = d.task_id
         WHERE d.id = $1 FOR UPDATE OF d",
    )
    .bind(deployment_id)
    .fetch_optional(conn)
    .await?
    .ok_or(DbError::NotFound)
}

/// Who queued a deployment, for the record.
pub async fn set_queued_by(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
    user_id: Option<i64>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE deployments SET queued_by = $2 WHERE id = $1")
        .bind(deployment_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// An approval or denial given.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DecisionRow {
    pub deployment_id: i64,
    pub user_id: Option<i64>,
    pub user_name: String,
    #[sqlx(try_from = "StateColumn<Decision>")]
    pub decision: Decision,
    pub note: String,
    pub given_at: OffsetDateTime,
}

/// The decisions on the deployments `ids`, oldest first.
pub async fn decisions(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<DecisionRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT deployment_id, user_id, user_name, decision, note, given_at
         FROM deployment_approvals WHERE deployment_id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// Records a decision; a second one by the same user is refused by
/// `deployment_approvals_once`.
pub async fn record_decision(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
    user_id: i64,
    user_name: &str,
    decision: Decision,
    note: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO deployment_approvals (deployment_id, user_id, user_name, decision, note)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(deployment_id)
    .bind(user_id)
    .bind(user_name)
    .bind(decision.as_str())
    .bind(note)
    .execute(db)
    .await?;
    Ok(())
}

/// Deployments parked awaiting approval, oldest first: of environment × project when
/// given (`project_id` `None`: any project), else all.
pub async fn awaiting(
    db: impl PgExecutor<'_>,
    environment_id: Option<i64>,
    project_id: Option<i64>,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT d.id FROM deployments d JOIN tasks t ON t.id = d.task_id
         WHERE t.state = 'queued' AND t.parked AND d.held->>'reason' = 'awaiting_approval'
           AND ($1::bigint IS NULL OR d.environment_id = $1)
           AND ($2::bigint IS NULL OR d.project_id = $2)
         ORDER BY d.id LIMIT $3",
    )
    .bind(environment_id)
    .bind(project_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

impl From<StateColumn<Decision>> for Decision {
    fn from(column: StateColumn<Decision>) -> Self {
        column.0
    }
}

/// The name of the user who queued a deployment, while that user exists.
pub async fn queued_by_name(
    db: impl PgExecutor<'_>,
    deployment_id: i64,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT u.name FROM deployments d JOIN users u ON u.id = d.queued_by WHERE d.id = $1",
    )
    .bind(deployment_id)
    .fetch_optional(db)
    .await?)
}
