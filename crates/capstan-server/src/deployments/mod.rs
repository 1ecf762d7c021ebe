//! Deployments as a service: queueing one (checked before anything is stored),
//! reading it with its grid, cancelling, abandoning, answering its questions, and
//! running it (`run`, the body of the `deploy` task kind). The HTTP layer maps
//! [`DeploymentError`]; nothing here knows HTTP.

mod actions;
pub mod approvals;
mod auto_rollback;
mod dispatch;
mod engine;
pub mod freezes;
pub mod gates;
pub mod promotion;
pub mod schedule;

use std::{collections::HashSet, sync::Arc, time::Duration};

use capstan_api::deployments::{
    Actor, AnswerRequest, Answered, Cell, CreateDeploymentRequest, DeploymentOptions,
    DeploymentResponse, DeploymentSummary, GridStep, GridTarget, Intervention,
};
use capstan_core::{
    NodeLostPolicy,
    deployment::{CellState, DeploymentState},
    process::Step,
};
use capstan_db::{
    DbError, agents,
    audit::Actor as AuditActor,
    deployments as db,
    deployments::{DeploymentRow, Fence, NewDeployment},
    lifecycles, releases,
};
use time::OffsetDateTime;

pub use actions::DeployTarget;

use crate::{
    audit::Change,
    invalid::FieldProblems,
    node::NodeContext,
    runner::kinds::{Ran, TaskRun},
};

/// How long a cancel's commands have to be confirmed stopped before the deployment can
/// be abandoned.
pub const ABANDON_AFTER: Duration = Duration::from_secs(30);

/// Why a deployment request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// Every problem found in the request.
    #[error("{} problem(s) with the deployment", .0.listed().0.len() + .0.listed().1)]
    Invalid(FieldProblems),
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the state the deployment or question is in.
    #[error("{0}")]
    Conflict(String),
    /// The project's lifecycle does not let the release into the environment yet.
    #[error("{0}")]
    NotPromoted(String),
    /// A freeze window holds the deployment and the caller asked to be refused then.
    #[error("{detail}")]
    Frozen {
        window: String,
        until: OffsetDateTime,
        detail: String,
    },
    /// Stored data this node cannot read.
    #[error("{0}")]
    Stored(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldProblems> for DeploymentError {
    fn from(problems: FieldProblems) -> Self {
        Self::Invalid(problems)
    }
}

/// Who asks, as recorded with what they did.
#[derive(Debug, Clone)]
pub struct Caller {
    pub who: String,
    /// The same, as the audit log records it.
    pub by: AuditActor,
    pub address: Option<String>,
    /// Why, in the caller's words (cancel and abandon).
    pub note: String,
}

impl Caller {
    fn actor(&self) -> serde_json::Value {
        serde_json::json!({
            "who": self.who,
            "address": self.address,
            "note": self.note,
            "at": capstan_api::timestamp::format(OffsetDateTime::now_utc()),
        })
    }
}

/// What a request deploys: the release it names, or, for a rollback, the one
/// [`db::rollback_target`] picks, with the deployment it rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub release_id: i64,
    pub rollback_of: Option<i64>,
}

/// Resolves the release a request deploys, before the access check (which is by
/// release) and before [`create`].
pub async fn resolve(
    ctx: &NodeContext,
    request: &CreateDeploymentRequest,
) -> Result<Resolved, DeploymentError> {
    let db = &ctx.pools.api;
    if !request.rollback {
        return match request.release_id {
            Some(release_id) => Ok(Resolved {
                release_id,
                rollback_of: None,
            }),
            None => {
                Err(FieldProblems::one("release_id", "required, unless `rollback` is true").into())
            }
        };
    }
    let mut problems = FieldProblems::new();
    if request.release_id.is_some() {
        problems.add(
            "release_id",
            "a rollback picks its release: leave `release_id` out",
        );
    }
    let Some(project_id) = request.project_id else {
        problems.add("project_id", "a rollback needs the project");
        return Err(problems.into());
    };
    let environment =
        agents::find_environment(db, &capstan_core::names::nfc(&request.environment)).await?;
    let Some(environment) = environment else {
        problems.add(
            "environment",
            format!("there is no environment `{}`", request.environment),
        );
        return Err(problems.into());
    };
    if !problems.is_empty() {
        return Err(problems.into());
    }
    match db::rollback_target(db, project_id, environment.id).await? {
        Some((current, Some(release_id))) => Ok(Resolved {
            release_id,
            rollback_of: Some(current),
        }),
        Some((current, None)) => Err(DeploymentError::Conflict(format!(
            "nothing to roll back to: no deployment of project {project_id} to {} older than deployment {current} succeeded with another release",
            environment.name
        ))),
        None => Err(DeploymentError::Conflict(format!(
            "nothing to roll back: project {project_id} was never deployed to {}",
            environment.name
        ))),
    }
}

/// Checks a request and queues the deployment of the release [`resolve`] found.
/// Nothing is stored unless every check passes.
pub async fn create(
    ctx: &NodeContext,
    actor: &AuditActor,
    request: &CreateDeploymentRequest,
    resolved: Resolved,
) -> Result<i64, DeploymentError> {
    let db = &ctx.pools.api;
    let mut problems = FieldProblems::new();
    schedule::check_request(request, OffsetDateTime::now_utc(), &mut problems);
    let release = match releases::get(db, resolved.release_id).await {
        Ok(release) => Some(release),
        Err(DbError::NotFound) => {
            problems.add(
                "release_id",
                format!("there is no release {}", resolved.release_id),
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let (Some(project), Some(release)) = (request.project_id, &release)
        && project != release.project_id
    {
        problems.add(
            "release_id",
            format!(
                "release {} belongs to project {}, not to project {project}",
                release.id, release.project_id
            ),
        );
    }
    let environment =
        agents::find_environment(db, &capstan_core::names::nfc(&request.environment)).await?;
    if environment.is_none() {
        problems.add(
            "environment",
            format!("there is no environment `{}`", request.environment),
        );
    }
    let (Some(release), Some(environment)) = (release, environment) else {
        return Err(problems.into());
    };
    let steps = steps_of(&release)?;
    for (i, name) in request.skip_steps.iter().enumerate() {
        if !steps.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
            problems.add(
                format!("skip_steps[{i}]"),
                format!("release {} has no step `{name}`", release.version),
            );
        }
    }
    let agents = db::environment_agents(db, environment.id).await?;
    for (field, names) in [
        ("targets", &request.targets),
        ("exclude_targets", &request.exclude_targets),
    ] {
        for (i, name) in names.iter().enumerate() {
            if !agents.iter().any(|a| a.name.eq_ignore_ascii_case(name)) {
                problems.add(
                    format!("{field}[{i}]"),
                    format!("environment {} has no agent `{name}`", environment.name),
                );
            }
        }
    }
    if problems.is_empty()
        && let Some(why) = no_targets(agents, &steps, &options_of(request), &environment.name)
    {
        problems.add("environment", why);
    }
    if !problems.is_empty() {
        return Err(problems.into());
    }
    check_lifecycle(ctx, &release, &environment).await?;
    let options = serde_json::to_value(options_of(request))
        .map_err(|e| DeploymentError::Stored(e.to_string()))?;
    let mut tx = db.begin().await.map_err(DbError::from)?;
    let (id, _task) = db::queue(
        &mut *tx,
        &NewDeployment {
            project_id: release.project_id,
            release_id: release.id,
            environment_id: environment.id,
            options,
            on_node_lost: NodeLostPolicy::Resume.as_str(),
            rollback_of: resolved.rollback_of,
            automatic_rollback: false,
            deploy_at: request.deploy_at,
            no_deploy_after: request.no_deploy_after,
            keep_queued: request.keep_queued,
        },
        ctx.state.id,
    )
    .await?;
    // Approvals: who queued it may be barred from approving it.
    capstan_db::approvals::set_queued_by(&mut *tx, id, queued_by(actor)).await?;
    let queued = db::get(&mut *tx, id).await?;
    let overrides_freeze = freezes::at_queue(&mut tx, &queued, request, actor).await?;
    if let gates::Gate::Cancel { why } = gates::at_queue(ctx, &mut tx, id).await? {
        return Err(DeploymentError::Conflict(why));
    }
    let created = db::get(&mut *tx, id).await?;
    let rollback = if resolved.rollback_of.is_some() {
        "rollback: "
    } else {
        ""
    };
    Change::new("deployment.create")
        .object(
            id,
            format!(
                "{rollback}{} {} to {}",
                created.project, release.version, environment.name
            ),
        )
        .project(release.project_id)
        .environment(environment.id)
        .after(&with_override(audited(&created), overrides_freeze))
        .record(&mut *tx, actor)
        .await?;
    tx.commit().await.map_err(DbError::from)?;
    ctx.runner.wake();
    Ok(id)
}

/// The user who queues a deployment: a person or a service account, not the admin key.
fn queued_by(actor: &AuditActor) -> Option<i64> {
    use capstan_core::audit::ActorKind;
    matches!(actor.kind, ActorKind::Person | ActorKind::Service)
        .then_some(actor.id)
        .flatten()
}

/// Why a deployment of `steps` to `environment` (whose agents are `agents`) would have
/// no target, if it would have none.
fn no_targets(
    agents: Vec<db::EnvironmentAgent>,
    steps: &[Step],
    options: &DeploymentOptions,
    environment: &str,
) -> Option<String> {
    if !engine::pick_targets(agents, steps, options, &|_| {}).is_empty() {
        return None;
    }
    let tags: std::collections::BTreeSet<&str> = steps
        .iter()
        .flat_map(|s| s.target_tags.iter().map(String::as_str))
        .collect();
    Some(format!(
        "no enabled, healthy agent of environment {environment} carries any of the tags the release's steps run on ({})",
        tags.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// The audit row of deployment `row`, which a node queued by itself (`label` before
/// its name says why, e.g. `automatic rollback: `).
fn queued_by_system(row: &DeploymentRow, label: &str) -> Change {
    Change::new("deployment.create")
        .object(
            row.id,
            format!(
                "{label}{} {} to {}",
                row.project, row.release, row.environment
            ),
        )
        .project(row.project_id)
        .environment(row.environment_id)
        .after(&audited(row))
}

/// Refuses a release its project's lifecycle does not let into `environment` yet. A
/// project without a lifecycle may deploy anything anywhere.
async fn check_lifecycle(
    ctx: &NodeContext,
    release: &releases::ReleaseRow,
    environment: &agents::EnvironmentRow,
) -> Result<(), DeploymentError> {
    let mut conn = ctx.pools.api.acquire().await.map_err(DbError::from)?;
    let Some(lifecycle) = lifecycles::of_project(&mut conn, release.project_id).await? else {
        return Ok(());
    };
    let succeeded = lifecycles::succeeded_environments(&mut *conn, release.id).await?;
    capstan_core::lifecycle::may_deploy(&lifecycle.phases, environment.id, &succeeded).map_err(
        |refusal| {
            DeploymentError::NotPromoted(refusal.describe(
                &release.version,
                &environment.name,
                &lifecycle.row.name,
            ))
        },
    )
}

/// A deployment as its audit rows show it: its summary, with the options it was asked
/// for and the machines it runs on (once it has started).
fn audited(row: &DeploymentRow) -> serde_json::Value {
    let mut shown = serde_json::to_value(summary(row.clone())).unwrap_or_default();
    if let Some(fields) = shown.as_object_mut() {
        fields.insert("options".to_owned(), row.options.clone());
        fields.insert("targets".to_owned(), row.targets.clone());
    }
    shown
}

/// A deployment's audit row says when it was queued past the freeze windows.
fn with_override(mut shown: serde_json::Value, overrides_freeze: bool) -> serde_json::Value {
    if overrides_freeze && let Some(fields) = shown.as_object_mut() {
        fields.insert("override_freeze".to_owned(), serde_json::Value::Bool(true));
    }
    shown
}

/// The row of a change to deployment `row`, which looked like `row` before it.
fn deployment_change(action: &'static str, row: &DeploymentRow) -> Change {
    Change::new(action)
        .object(
            row.id,
            format!("{} {} to {}", row.project, row.release, row.environment),
        )
        .project(row.project_id)
        .environment(row.environment_id)
        .before(&audited(row))
}

fn options_of(request: &CreateDeploymentRequest) -> DeploymentOptions {
    DeploymentOptions {
        targets: request.targets.clone(),
        exclude_targets: request.exclude_targets.clone(),
        skip_steps: request.skip_steps.clone(),
        guided_failure: request.guided_failure,
        offline_targets: request.offline_targets,
    }
}

fn steps_of(release: &releases::ReleaseRow) -> Result<Vec<Step>, DeploymentError> {
    serde_json::from_value(release.process.clone()).map_err(|e| {
        DeploymentError::Stored(format!("stored process of release {}: {e}", release.id))
    })
}

/// The deployment with its grid and questions.
pub async fn show(ctx: &NodeContext, id: i64) -> Result<DeploymentResponse, DeploymentError> {
    let db = &ctx.pools.api;
    let row = db::get(db, id).await.map_err(|e| not_found(e, id))?;
    let release = releases::get(db, row.release_id).await?;
    let steps = steps_of(&release)?;
    let cells = db::cells(db, id).await?;
    let interventions = db::interventions(db, id).await?;
    let targets: Vec<DeployTarget> = serde_json::from_value(row.targets.clone())
        .map_err(|e| DeploymentError::Stored(format!("targets of deployment {id}: {e}")))?;
    let options: DeploymentOptions = serde_json::from_value(row.options.clone())
        .map_err(|e| DeploymentError::Stored(format!("options of deployment {id}: {e}")))?;
    let blocked_by = match (row.state, row.task_id) {
        (DeploymentState::Queued | DeploymentState::AwaitingIntervention, Some(task)) => {
            crate::tasks::blocked::look_up(db, &[task])
                .await?
                .remove(&task)
        }
        _ => None,
    };
    let mut grid = Vec::with_capacity(cells.len());
    for c in cells {
        grid.push(Cell {
            step: u32::try_from(c.step).unwrap_or(0),
            target: c.target,
            action: u32::try_from(c.action).unwrap_or(0),
            state: c.state,
            waiting_for: c
                .waiting_for
                .filter(|_| c.state == CellState::Waiting)
                .and_then(|w| serde_json::from_value(w).ok()),
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            command_id: c.command_id,
            outputs: serde_json::to_value(actions::reported_outputs(&c.outputs))
                .unwrap_or_default(),
            error: c.error,
        });
    }
    let approvals = approvals::given(db, id).await?;
    let mut questions = Vec::with_capacity(interventions.len());
    for i in interventions {
        let answer = i.answer()?;
        questions.push(Intervention {
            id: i.id,
            kind: i.kind,
            step: u32::try_from(i.step).unwrap_or(0),
            target: i.target.clone(),
            action: i.action.and_then(|a| u32::try_from(a).ok()),
            question: i.question.clone(),
            answers: i.kind.answers().to_vec(),
            responsible_role: i.responsible_role.clone(),
            asked_at: i.asked_at,
            answer: match (answer, &i.answered_by) {
                (Some(answer), Some(by)) => Some(Answered {
                    answer,
                    by: actor_of(by),
                    note: i.note.clone(),
                }),
                _ => None,
            },
        });
    }
    Ok(DeploymentResponse {
        approvals,
        stopped_by: row.stopped_by.as_ref().map(actor_of),
        options,
        blocked_by,
        steps: steps
            .iter()
            .map(|s| GridStep {
                name: s.name.clone(),
                actions: s
                    .actions
                    .iter()
                    .enumerate()
                    .map(|(i, a)| a.display_name(i))
                    .collect(),
            })
            .collect(),
        targets: targets
            .into_iter()
            .map(|t| GridTarget {
                agent_id: t.agent_id,
                name: t.name,
            })
            .collect(),
        grid,
        interventions: questions,
        summary: summary(row),
    })
}

fn actor_of(value: &serde_json::Value) -> Actor {
    Actor {
        who: value["who"].as_str().unwrap_or("unknown").to_owned(),
        address: value["address"].as_str().map(str::to_owned),
        at: value["at"]
            .as_str()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

pub fn summary(row: DeploymentRow) -> DeploymentSummary {
    DeploymentSummary {
        id: row.id,
        task_id: row.task_id.unwrap_or(0),
        project_id: row.project_id,
        project: row.project,
        release_id: row.release_id,
        release: row.release,
        environment_id: row.environment_id,
        environment: row.environment,
        state: row.state,
        error: row.error,
        queued_at: row.queued_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        rollback_of: row.rollback_of,
        automatic_rollback: row.automatic_rollback,
        deploy_at: row.deploy_at,
        no_deploy_after: row.no_deploy_after,
        superseded_by: row.superseded_by,
        trigger: row
            .trigger
            .and_then(|trigger| serde_json::from_value(trigger).ok()),
    }
}

fn not_found(e: DbError, id: i64) -> DeploymentError {
    match e {
        DbError::NotFound => DeploymentError::NotFound(format!("there is no deployment {id}")),
        other => other.into(),
    }
}

/// Asks the node running the deployment to stop it; running scripts are cancelled on
/// their agents.
pub async fn cancel(ctx: &NodeContext, id: i64, caller: &Caller) -> Result<(), DeploymentError> {
    let mut tx = ctx.pools.api.begin().await.map_err(DbError::from)?;
    let db = &mut *tx;
    let row = db::get(&mut *db, id).await.map_err(|e| not_found(e, id))?;
    if row.state.is_finished() {
        return Err(DeploymentError::Conflict(format!(
            "deployment {id} has already finished ({}); there is nothing to cancel",
            row.state
        )));
    }
    db::set_stopped_by(&mut *db, id, &caller.actor()).await?;
    // A deployment not running (queued, or parked for an operator) has no run to
    // record its end: do it here.
    if let Some(task) = row.task_id
        && let capstan_db::tasks::Cancelled::Now(_) =
            capstan_db::tasks::cancel(&mut *db, task).await?
    {
        db::cancel_open_cells(&mut *db, id).await?;
        db::finish_stopped(
            &mut *db,
            id,
            DeploymentState::Cancelled,
            &format!("cancelled by {}", caller.who),
        )
        .await?;
        db::release_all(&mut *db, id).await?;
    }
    let after = audited(&db::get(&mut *db, id).await?);
    deployment_change("deployment.cancel", &row)
        .after(&serde_json::json!({ "deployment": after, "note": caller.note }))
        .record(&mut *db, &caller.by)
        .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Closes a cancelled deployment whose agents never confirmed they stopped.
pub async fn abandon(ctx: &NodeContext, id: i64, caller: &Caller) -> Result<(), DeploymentError> {
    let mut tx = ctx.pools.api.begin().await.map_err(DbError::from)?;
    let db = &mut *tx;
    let row = db::get(&mut *db, id).await.map_err(|e| not_found(e, id))?;
    let cancel_asked = row.stopped_by.is_some();
    match row.state {
        DeploymentState::Abandoned => {
            return Err(DeploymentError::Conflict(format!(
                "deployment {id} was abandoned already"
            )));
        }
        s if !s.is_finished() && !cancel_asked => {
            return Err(DeploymentError::Conflict(format!(
                "deployment {id} is {s}: cancel it first (POST /api/deployments/{id}/cancel), then abandon it if its agents do not confirm within {}",
                humantime::format_duration(ABANDON_AFTER)
            )));
        }
        s if s.is_finished() && s != DeploymentState::Cancelled => {
            return Err(DeploymentError::Conflict(format!(
                "deployment {id} finished ({s}); only a cancelled deployment can be abandoned"
            )));
        }
        _ => {}
    }
    let open = match row.task_id {
        Some(task) => db::open_commands(&mut *db, task).await?.0,
        None => 0,
    };
    if open == 0 && row.state == DeploymentState::Cancelled {
        return Err(DeploymentError::Conflict(format!(
            "deployment {id} is cancelled and every agent confirmed it stopped; there is nothing to abandon"
        )));
    }
    let asked_at = row
        .stopped_by
        .as_ref()
        .map(actor_of)
        .map_or(OffsetDateTime::now_utc(), |a| a.at);
    let waited = OffsetDateTime::now_utc() - asked_at;
    if waited < ABANDON_AFTER {
        let left = ABANDON_AFTER - waited;
        return Err(DeploymentError::Conflict(format!(
            "the cancel was asked {}s ago; its agents have {}s more to confirm before it can be abandoned",
            waited.whole_seconds(),
            left.whole_seconds() + 1
        )));
    }
    db::abandon(&mut *db, id, row.task_id, &caller.actor()).await?;
    let after = audited(&db::get(&mut *db, id).await?);
    deployment_change("deployment.abandon", &row)
        .after(&serde_json::json!({ "deployment": after, "note": caller.note }))
        .record(&mut *db, &caller.by)
        .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Records an operator's answer to a question.
pub async fn answer(
    ctx: &NodeContext,
    id: i64,
    question: i64,
    request: &AnswerRequest,
    caller: &Caller,
) -> Result<(), DeploymentError> {
    let mut tx = ctx.pools.api.begin().await.map_err(DbError::from)?;
    let db = &mut *tx;
    let row = db::get(&mut *db, id).await.map_err(|e| not_found(e, id))?;
    let Some(intervention) = db::intervention(&mut *db, question)
        .await?
        .filter(|i| i.deployment_id == id)
    else {
        return Err(DeploymentError::NotFound(format!(
            "deployment {id} has no intervention {question}"
        )));
    };
    if let Some(given) = intervention.answer()? {
        return Err(DeploymentError::Conflict(format!(
            "intervention {question} was answered already (`{given}`)"
        )));
    }
    if row.state.is_finished() {
        return Err(DeploymentError::Conflict(format!(
            "deployment {id} has finished ({}); its questions can no longer be answered",
            row.state
        )));
    }
    if !intervention.kind.answers().contains(&request.answer) {
        let allowed: Vec<&str> = intervention
            .kind
            .answers()
            .iter()
            .map(|a| a.as_str())
            .collect();
        return Err(FieldProblems::one(
            "answer",
            format!(
                "a {} takes {}, not `{}`",
                intervention.kind.as_str().replace('_', " "),
                allowed.join(", "),
                request.answer
            ),
        )
        .into());
    }
    if request.note.len() > 4096 {
        return Err(FieldProblems::one("note", "at most 4 KiB").into());
    }
    match db::answer(
        &mut *db,
        question,
        request.answer,
        &caller.actor(),
        &request.note,
    )
    .await?
    {
        db::Answering::Answered => {
            deployment_change("deployment.answer", &row)
                .after(&serde_json::json!({
                    "intervention": question,
                    "kind": intervention.kind.as_str(),
                    "answer": request.answer.as_str(),
                    "note": request.note,
                }))
                .record(&mut *db, &caller.by)
                .await?;
            tx.commit().await.map_err(DbError::from)?;
            Ok(())
        }
        db::Answering::AlreadyAnswered => Err(DeploymentError::Conflict(format!(
            "intervention {question} was answered already"
        ))),
    }
}

/// Runs deployment `id` as task attempt `run`: the `deploy` kind's body.
pub async fn run(run: TaskRun, id: i64) -> Result<Ran, String> {
    let ctx = run.ctx.clone();
    let fence = Fence {
        task_id: run.id,
        attempt: run.attempt,
    };
    let log = run.log.clone();
    let db = &ctx.pools.api;
    match gates::at_claim(&ctx, id)
        .await
        .map_err(|e| format!("cannot check whether deployment {id} may start: {e}"))?
    {
        gates::Gate::Open => {}
        gates::Gate::Hold { reason, until } => {
            let why = format!("deployment {id} may not start yet: {}", reason.in_words());
            log.info(format!("{why}; it waits in the queue, holding no slot"));
            return Ok(Ran::Parked { why, until });
        }
        gates::Gate::Cancel { why } => {
            db::set_state(db, fence, id, DeploymentState::Cancelled, Some(&why))
                .await
                .map_err(|e| format!("cannot record that deployment {id} is cancelled: {e}"))?;
            if let Err(e) = schedule::audit_cancelled_at_claim(&ctx, id).await {
                log.warn(format!(
                    "cannot record why deployment {id} is cancelled: {e}"
                ));
            }
            log.warn(format!("deployment {id} is cancelled: {why}"));
            return Ok(Ran::Cancelled { why });
        }
    }
    let loaded = load(&run, id)
        .await
        .map_err(|e| format!("cannot start deployment {id}: {e}"))?;
    let engine = engine::Engine::new(loaded);
    let ended = tokio::select! {
        ended = engine.run() => Some(ended),
        () = run.stop.cancelled() => None,
    };
    if matches!(ended, Some(Ok(_) | Err(engine::EngineError::Park))) {
        engine.flush_output().await;
    }
    match ended {
        // Fenced: the next attempt owns the grid, the commands and the locks.
        None if run.cause.fenced() => Err("the deployment's task moved to another node".to_owned()),
        None => {
            drop(engine);
            // Cancelled: stop the agents' work, close the grid, give everything back.
            let _ = capstan_db::mailbox::cancel_task_commands(
                db,
                fence.task_id,
                fence.attempt,
                "the deployment was cancelled",
            )
            .await;
            let row = db::get(db, id).await.ok();
            let who = row
                .as_ref()
                .and_then(|r| r.stopped_by.as_ref())
                .map_or("an operator".to_owned(), |b| actor_of(b).who);
            let why = format!("cancelled by {who}");
            let _ = db::cancel_open_cells(db, id).await;
            let _ = db::set_state(db, fence, id, DeploymentState::Cancelled, Some(&why)).await;
            let _ = db::release_all(db, id).await;
            log.warn(format!("deployment {id} {why}"));
            Err(why)
        }
        Some(Err(engine::EngineError::Fenced)) => {
            Err("the deployment's task moved to another node".to_owned())
        }
        Some(Err(engine::EngineError::Park)) => {
            // Nothing runs, so nothing is held; what waits is in the database.
            engine
                .release_everything()
                .await
                .map_err(|e| format!("cannot give back the deployment's locks: {e}"))?;
            let why = format!("deployment {id} awaits an operator's answer");
            log.info(format!(
                "{why}; it gives its slot back and waits in the queue until answered"
            ));
            Ok(Ran::Parked { why, until: None })
        }
        Some(Err(e)) => {
            let why = format!("the engine stopped: {e}");
            let _ = engine.release_everything().await;
            let _ = record_end(&ctx, fence, id, DeploymentState::Failed, Some(&why), &log).await;
            Err(why)
        }
        Some(Ok(finished)) => {
            engine
                .release_everything()
                .await
                .map_err(|e| format!("cannot give back the deployment's locks: {e}"))?;
            match finished.state {
                DeploymentState::Succeeded => {
                    promotion::record_success(&ctx, fence, id, &log).await
                }
                _ => {
                    record_end(
                        &ctx,
                        fence,
                        id,
                        finished.state,
                        finished.error.as_deref(),
                        &log,
                    )
                    .await
                }
            }
            .map_err(|e| format!("cannot record how deployment {id} ended: {e}"))?;
            match finished.state {
                DeploymentState::Succeeded => {
                    log.info(format!("deployment {id} succeeded"));
                    Ok(Ran::Done)
                }
                _ => Err(finished
                    .error
                    .unwrap_or_else(|| format!("deployment {id} {}", finished.state))),
            }
        }
    }
}

/// Records how deployment `id` ended and, in the same transaction, what its end sets
/// off (a failure's automatic rollback), so that happens exactly once: only the attempt
/// that holds the fence commits.
async fn record_end(
    ctx: &NodeContext,
    fence: Fence,
    id: i64,
    state: DeploymentState,
    error: Option<&str>,
    log: &crate::runner::TaskLog,
) -> Result<(), DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    db::set_state(&mut *tx, fence, id, state, error).await?;
    let rollback = if state == DeploymentState::Failed {
        auto_rollback::after_failure(ctx, &mut tx, id).await?
    } else {
        auto_rollback::AfterFailure::NotAsked
    };
    tx.commit().await?;
    match rollback {
        auto_rollback::AfterFailure::NotAsked => {}
        auto_rollback::AfterFailure::Skipped(why) => {
            log.warn(format!("no automatic rollback: {why}"));
        }
        auto_rollback::AfterFailure::Queued {
            deployment_id,
            release,
        } => {
            log.warn(format!(
                "automatic rollback: deployment {deployment_id} redeploys release {release}"
            ));
            ctx.runner.wake();
        }
    }
    Ok(())
}

async fn load(run: &TaskRun, id: i64) -> Result<engine::Loaded, String> {
    let ctx: &Arc<NodeContext> = &run.ctx;
    let db = &ctx.pools.api;
    let fence = Fence {
        task_id: run.id,
        attempt: run.attempt,
    };
    let row = db::get(db, id).await.map_err(|e| e.to_string())?;
    let release = releases::get(db, row.release_id)
        .await
        .map_err(|e| e.to_string())?;
    let steps = steps_of(&release).map_err(|e| e.to_string())?;
    let packages = serde_json::from_value(release.packages.clone())
        .map_err(|e| format!("stored packages of release {}: {e}", release.id))?;
    let rows = releases::variables(db, release.id)
        .await
        .map_err(|e| e.to_string())?;
    let opened = crate::projects::variables::open(ctx, &rows)
        .await
        .map_err(|e| e.to_string())?;
    let options: DeploymentOptions =
        serde_json::from_value(row.options.clone()).map_err(|e| e.to_string())?;
    let stored: Vec<DeployTarget> = serde_json::from_value(
        db::stored_targets(db, id)
            .await
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let resumed = !stored.is_empty();
    let targets = if resumed {
        stored
    } else {
        let agents = db::environment_agents(db, row.environment_id)
            .await
            .map_err(|e| e.to_string())?;
        engine::pick_targets(agents, &steps, &options, &|line| run.log.warn(line))
    };
    if targets.is_empty() {
        return Err(format!(
            "no enabled, healthy agent of environment {} carries the tags of the release's steps",
            row.environment
        ));
    }
    let stored_targets = serde_json::to_value(&targets).map_err(|e| e.to_string())?;
    db::start(db, fence, id, &stored_targets)
        .await
        .map_err(|e| e.to_string())?;
    let cells = db::cells(db, id).await.map_err(|e| e.to_string())?;
    if resumed {
        let done = cells
            .iter()
            .filter(|c| c.state == CellState::Succeeded)
            .count();
        run.log.info(format!(
            "resuming deployment {id} (attempt {}): {done} action(s) had succeeded and are not run again",
            run.attempt
        ));
    } else {
        let names: HashSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        run.log.info(format!(
            "deploying release {} of {} to {} on {} target(s)",
            row.release,
            row.project,
            row.environment,
            names.len()
        ));
    }
    Ok(engine::Loaded {
        ctx: ctx.clone(),
        fence,
        id,
        log: run.log.clone(),
        steps,
        targets,
        environment_id: row.environment_id,
        project: row.project,
        version: row.release,
        environment: row.environment,
        rows,
        opened,
        packages,
        options,
        cells,
    })
}
