//! Approvals as a service: the gate that holds a deployment queued under an approval
//! rule until enough members of the rule's team approve it, approving and denying
//! (one decision per person, made one at a time on every node by locking the
//! deployment's row), and setting and deleting rules. Whoever may do what is decided
//! by `capstan_core::approval`; permissions to manage rules are the HTTP layer's.

use capstan_api::{
    BlockedBy,
    approvals::{Approval, ApprovalRuleResponse, AwaitingApproval},
};
use capstan_core::{
    approval::{self as rule, Decider, Decision, NotAllowed, Standing},
    deployment::DeploymentState,
};
use capstan_db::{
    DbError,
    approvals::{self as db, DecisionRow, RuleRow, RuleTerms},
    audit::Actor as AuditActor,
    deployments::{self as deployments_db, DeploymentRow},
    held,
};
use sqlx::PgConnection;

use super::{Caller, deployment_change, gates::Gate, not_found, summary};
use crate::{audit::Change, invalid::FieldProblems, node::NodeContext};

/// The most deployments `GET /api/approvals` lists.
pub const MAX_LISTED: i64 = 200;

/// Why an approval, a denial or a change of rules was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{} problem(s) with the request", .0.listed().0.len() + .0.listed().1)]
    Invalid(FieldProblems),
    #[error("{0}")]
    NotFound(String),
    /// The caller may not decide on this deployment.
    #[error("{0}")]
    Forbidden(String),
    /// Not possible in the state the deployment is in, or decided before.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldProblems> for ApprovalError {
    fn from(problems: FieldProblems) -> Self {
        Self::Invalid(problems)
    }
}

/// The rule in force for a deployment of `project_id` to `environment_id`.
pub async fn in_force(
    conn: &mut PgConnection,
    project_id: i64,
    environment_id: i64,
) -> Result<Option<RuleRow>, DbError> {
    let (own, environment) = db::rules_for(&mut *conn, project_id, environment_id).await?;
    Ok(rule::in_force(own, environment))
}

fn needed(rule: &RuleRow) -> u32 {
    u32::try_from(rule.needed).unwrap_or(1)
}

fn standing(rule: &RuleRow, decisions: &[DecisionRow]) -> Standing {
    let approvals = decisions
        .iter()
        .filter(|d| d.decision == Decision::Approve)
        .count();
    let denied = decisions.iter().any(|d| d.decision == Decision::Deny);
    rule::standing(
        needed(rule),
        u32::try_from(approvals).unwrap_or(u32::MAX),
        denied,
    )
}

fn awaiting(rule: &RuleRow, given: u32) -> BlockedBy {
    BlockedBy::AwaitingApproval {
        given,
        needed: needed(rule),
        team: rule.team.clone(),
        deployer_may_approve: rule.deployer_may_approve,
    }
}

fn denied_why(decisions: &[DecisionRow]) -> String {
    decisions
        .iter()
        .find(|d| d.decision == Decision::Deny)
        .map_or_else(
            || "denied".to_owned(),
            |d| format!("denied by {}: {}", d.user_name, d.note),
        )
}

/// The approvals gate: shut while the rule in force has fewer approvals than it
/// needs, and for good once a member denied the deployment.
pub async fn gate(
    _ctx: &NodeContext,
    conn: &mut PgConnection,
    row: &DeploymentRow,
) -> Result<Option<Gate>, DbError> {
    let Some(rule) = in_force(&mut *conn, row.project_id, row.environment_id).await? else {
        return Ok(None);
    };
    let decisions = db::decisions(&mut *conn, &[row.id]).await?;
    Ok(match standing(&rule, &decisions) {
        Standing::Approved => None,
        Standing::Denied => Some(Gate::Cancel {
            why: denied_why(&decisions),
        }),
        Standing::Waiting { given, .. } => Some(Gate::Hold {
            reason: awaiting(&rule, given),
            until: None,
        }),
    })
}

fn approval(row: DecisionRow) -> Approval {
    Approval {
        decision: row.decision,
        by: row.user_name,
        user_id: row.user_id,
        note: row.note,
        at: row.given_at,
    }
}

/// The approvals and denials given to deployment `id`, oldest first.
pub async fn given(db: &sqlx::PgPool, id: i64) -> Result<Vec<Approval>, DbError> {
    Ok(db::decisions(db, &[id])
        .await?
        .into_iter()
        .map(approval)
        .collect())
}

/// Who decides: a user (person or service account); the admin key is nobody's member.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: i64,
    pub name: String,
}

/// Approves or denies deployment `id` as `member`. Reaching the rule's count releases
/// the deployment's task at once; a denial cancels the deployment.
pub async fn decide(
    ctx: &NodeContext,
    id: i64,
    decision: Decision,
    member: Option<&Member>,
    caller: &Caller,
) -> Result<(), ApprovalError> {
    if let Err(problem) = rule::check_note(&caller.note, decision) {
        return Err(FieldProblems::one("note", problem).into());
    }
    let mut tx = ctx.pools.api.begin().await.map_err(DbError::from)?;
    let waiting = db::lock_deployment(&mut tx, id)
        .await
        .map_err(|e| from_deployment(e, id))?;
    let row = deployments_db::get(&mut *tx, id)
        .await
        .map_err(|e| from_deployment(e, id))?;
    let held_for_approval = waiting
        .held
        .as_ref()
        .is_some_and(|h| h["reason"] == "awaiting_approval");
    if row.state != DeploymentState::Queued || waiting.started || !held_for_approval {
        return Err(ApprovalError::Conflict(format!(
            "deployment {id} is not waiting for approval (it is {})",
            row.state
        )));
    }
    let Some(rule) = in_force(&mut tx, row.project_id, row.environment_id).await? else {
        return Err(ApprovalError::Conflict(format!(
            "deployment {id} is not waiting for approval: no approval rule applies to {} in {} any more",
            row.project, row.environment
        )));
    };
    let place = match &rule.project {
        Some(project) => format!("{project} in {}", rule.environment),
        None => rule.environment.clone(),
    };
    let Some(member) = member else {
        return Err(ApprovalError::Forbidden(format!(
            "the admin key is no member of team {}: only its members may approve or deny deployments under approval rule {} ({place})",
            rule.team, rule.id
        )));
    };
    let decisions = db::decisions(&mut *tx, &[id]).await?;
    if standing(&rule, &decisions) == Standing::Approved {
        return Err(ApprovalError::Conflict(format!(
            "deployment {id} is not waiting for approval: it has the {} approvals it needs and is about to start",
            rule.needed
        )));
    }
    let decider = Decider {
        member: db::is_member(&mut *tx, rule.team_id, member.user_id).await?,
        deployer: waiting.queued_by == Some(member.user_id),
        decided: decisions
            .iter()
            .find(|d| d.user_id == Some(member.user_id))
            .map(|d| d.decision),
    };
    match rule::may_decide(decider, rule.deployer_may_approve) {
        Ok(()) => {}
        Err(NotAllowed::NotMember) => {
            return Err(ApprovalError::Forbidden(format!(
                "{} is not a member of team {}: only its members may approve or deny deployments under approval rule {} ({place})",
                member.name, rule.team, rule.id
            )));
        }
        Err(NotAllowed::Deployer) => {
            return Err(ApprovalError::Forbidden(format!(
                "{} queued deployment {id}: approval rule {} ({place}) needs its approvals from other members of team {}",
                member.name, rule.id, rule.team
            )));
        }
        Err(NotAllowed::AlreadyDecided(before)) => {
            return Err(already(id, before));
        }
    }
    match db::record_decision(
        &mut *tx,
        id,
        member.user_id,
        &member.name,
        decision,
        &caller.note,
    )
    .await
    {
        Ok(()) => {}
        Err(DbError::Conflict { constraint }) if constraint == "deployment_approvals_once" => {
            return Err(already(id, decision));
        }
        Err(e) => return Err(e.into()),
    }
    let decisions = db::decisions(&mut *tx, &[id]).await?;
    let now = standing(&rule, &decisions);
    let given = decisions
        .iter()
        .filter(|d| d.decision == Decision::Approve)
        .count();
    let recorded = serde_json::json!({
        "decision": decision.as_str(),
        "note": caller.note,
        "rule": rule.id,
        "team": rule.team,
        "given": given,
        "needed": rule.needed,
    });
    let mut released = false;
    match now {
        Standing::Approved => {
            released = held::release(&mut *tx, id).await?;
        }
        Standing::Waiting { given, .. } => {
            let reason = serde_json::to_value(awaiting(&rule, given))
                .map_err(|e| DbError::Other(Box::new(e)))?;
            held::record(&mut *tx, id, Some(&reason)).await?;
        }
        Standing::Denied => {
            let why = denied_why(&decisions);
            deployments_db::set_stopped_by(&mut *tx, id, &caller.actor()).await?;
            if let Some(task) = row.task_id
                && let capstan_db::tasks::Cancelled::Now(_) =
                    capstan_db::tasks::cancel(&mut *tx, task).await?
            {
                deployments_db::cancel_open_cells(&mut *tx, id).await?;
                deployments_db::finish_stopped(&mut *tx, id, DeploymentState::Cancelled, &why)
                    .await?;
                deployments_db::release_all(&mut *tx, id).await?;
            }
        }
    }
    let action = match decision {
        Decision::Approve => "deployment.approve",
        Decision::Deny => "deployment.deny",
    };
    deployment_change(action, &row)
        .after(&recorded)
        .record(&mut *tx, &caller.by)
        .await?;
    tx.commit().await.map_err(DbError::from)?;
    if released {
        ctx.runner.wake();
    }
    Ok(())
}

fn already(id: i64, before: Decision) -> ApprovalError {
    let done = match before {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
    };
    ApprovalError::Conflict(format!(
        "you have {done} deployment {id} already: one decision per person"
    ))
}

fn from_deployment(e: DbError, id: i64) -> ApprovalError {
    match not_found(e, id) {
        super::DeploymentError::NotFound(detail) => ApprovalError::NotFound(detail),
        super::DeploymentError::Db(e) => ApprovalError::Db(e),
        other => ApprovalError::Conflict(other.to_string()),
    }
}

/// The deployments waiting for approval that `may_view` lets through, oldest first.
pub async fn waiting(
    ctx: &NodeContext,
    may_view: impl Fn(&DeploymentRow) -> bool,
) -> Result<Vec<AwaitingApproval>, DbError> {
    let db = &ctx.pools.api;
    let mut conn = db.acquire().await?;
    let ids = db::awaiting(&mut *conn, None, None, MAX_LISTED).await?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        match deployments_db::get(&mut *conn, id).await {
            Ok(row) if may_view(&row) => rows.push(row),
            Ok(_) | Err(DbError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let decisions = db::decisions(&mut *conn, &ids).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(rule) = in_force(&mut conn, row.project_id, row.environment_id).await? else {
            continue;
        };
        let own: Vec<DecisionRow> = decisions
            .iter()
            .filter(|d| d.deployment_id == row.id)
            .cloned()
            .collect();
        let given = match standing(&rule, &own) {
            Standing::Waiting { given, .. } => given,
            Standing::Approved | Standing::Denied => continue,
        };
        let queued_by = db::queued_by_name(&mut *conn, row.id).await?;
        items.push(AwaitingApproval {
            queued_by,
            given,
            needed: needed(&rule),
            team: rule.team.clone(),
            deployer_may_approve: rule.deployer_may_approve,
            approvals: own.into_iter().map(approval).collect(),
            deployment: summary(row),
        });
    }
    Ok(items)
}

pub fn rule_response(row: RuleRow) -> ApprovalRuleResponse {
    ApprovalRuleResponse {
        needed: needed(&row),
        id: row.id,
        environment_id: row.environment_id,
        environment: row.environment,
        project_id: row.project_id,
        project: row.project,
        team_id: row.team_id,
        team: row.team,
        deployer_may_approve: row.deployer_may_approve,
        updated_at: row.updated_at,
    }
}

fn rule_change(action: &'static str, rule: &RuleRow) -> Change {
    let name = match &rule.project {
        Some(project) => format!("{project} in {}", rule.environment),
        None => rule.environment.clone(),
    };
    Change::new(action)
        .object(rule.id, name)
        .project(rule.project_id)
        .environment(rule.environment_id)
}

/// Lets the deployments waiting under a rule that changed be claimed, so the gate
/// asks again: a rule lowered or deleted may let them start now.
async fn recheck(
    conn: &mut PgConnection,
    environment_id: i64,
    project_id: Option<i64>,
) -> Result<bool, DbError> {
    let mut any = false;
    for id in db::awaiting(&mut *conn, Some(environment_id), project_id, i64::MAX).await? {
        any |= held::release(&mut *conn, id).await?;
    }
    Ok(any)
}

/// Sets the rule of an environment × project: the rule as stored. The terms are
/// checked by the caller.
pub async fn put_rule(
    ctx: &NodeContext,
    actor: &AuditActor,
    terms: &RuleTerms,
) -> Result<ApprovalRuleResponse, DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let before = db::rule_at_for_update(&mut tx, terms.environment_id, terms.project_id).await?;
    let after = db::put_rule(&mut tx, terms).await?;
    let mut change = rule_change("approval_rule.set", &after);
    if let Some(before) = before {
        change = change.before(&rule_response(before));
    }
    let shown = rule_response(after);
    change.after(&shown).record(&mut *tx, actor).await?;
    let woken = recheck(&mut tx, terms.environment_id, terms.project_id).await?;
    tx.commit().await?;
    if woken {
        ctx.runner.wake();
    }
    Ok(shown)
}

/// Deletes a rule: the deployments it held are looked at again at once.
pub async fn delete_rule(ctx: &NodeContext, actor: &AuditActor, id: i64) -> Result<(), DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let before = db::get_rule(&mut *tx, id).await?;
    db::delete_rule(&mut *tx, id).await?;
    rule_change("approval_rule.delete", &before)
        .before(&rule_response(before.clone()))
        .record(&mut *tx, actor)
        .await?;
    let woken = recheck(&mut tx, before.environment_id, before.project_id).await?;
    tx.commit().await?;
    if woken {
        ctx.runner.wake();
    }
    Ok(())
}
