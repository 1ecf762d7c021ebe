//! The freeze gate: a deployment that would start inside a freeze window of its project
//! and environment waits parked until the window (and any window overlapping it) has
//! closed, then is claimed again and asked again. A deployment queued with an override
//! is never held; one queued with `if_frozen: refuse` inside a window is refused.

use capstan_api::{
    BlockedBy,
    deployments::CreateDeploymentRequest,
    freezes::{FreezeKind, FreezeResponse, IfFrozen},
};
use capstan_core::freeze::{self, Schedule};
use capstan_db::{
    DbError,
    audit::Actor as AuditActor,
    deployments::DeploymentRow,
    freezes::{self as db, WindowRow},
    held,
};
use jiff::Timestamp;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{DeploymentError, gates::Gate};
use crate::{audit::Change, node::NodeContext};

pub fn to_timestamp(at: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos()).unwrap_or(Timestamp::MAX)
}

pub fn from_timestamp(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The schedule of a stored window.
pub fn schedule_of(row: &WindowRow) -> Result<Schedule, DbError> {
    let corrupt = |why: String| DbError::Corrupt {
        what: format!("freeze window {}: {why}", row.id),
    };
    match (
        row.starts_at,
        row.ends_at,
        &row.cron,
        &row.duration,
        &row.time_zone,
    ) {
        (Some(start), Some(end), None, None, None) => {
            Schedule::fixed(to_timestamp(start), to_timestamp(end))
                .map_err(|_| corrupt("it ends before it starts".to_owned()))
        }
        (None, None, Some(cron), Some(duration), Some(zone)) => {
            Schedule::recurring(cron, duration, zone, Timestamp::now()).map_err(|problems| {
                corrupt(
                    problems
                        .into_iter()
                        .map(|p| format!("{}: {}", p.field, p.detail))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })
        }
        _ => Err(corrupt("neither fixed nor recurring".to_owned())),
    }
}

/// A window as the API shows it, open or not at `now`.
pub fn response(row: WindowRow, now: OffsetDateTime) -> Result<FreezeResponse, DbError> {
    let schedule = schedule_of(&row)?;
    let now = to_timestamp(now);
    Ok(FreezeResponse {
        id: row.id,
        name: row.name,
        description: row.description,
        kind: match schedule {
            Schedule::Fixed { .. } => FreezeKind::Fixed,
            Schedule::Recurring(_) => FreezeKind::Recurring,
        },
        start: row.starts_at,
        end: row.ends_at,
        open_until: schedule
            .occurrence_at(now)
            .map(|(_, end)| from_timestamp(end)),
        next_start: schedule.next_start(now).map(from_timestamp),
        cron: row.cron,
        duration: row.duration,
        time_zone: row.time_zone,
        projects: row.project_names,
        environments: row.environment_names,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Which windows hold deploying `project` to `environment` at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    /// Every window open at `at`, by name.
    pub open: Vec<String>,
    /// The window that closes last of those open back to back from `at`, and when.
    pub window: String,
    pub until: OffsetDateTime,
}

/// The windows holding deploying `project` to `environment` at `at`, if any.
pub async fn holding(
    conn: &mut PgConnection,
    project: i64,
    environment: i64,
    at: OffsetDateTime,
) -> Result<Option<Holding>, DbError> {
    let rows = db::in_scope(&mut *conn, project, environment).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let schedules = rows
        .iter()
        .map(schedule_of)
        .collect::<Result<Vec<_>, _>>()?;
    let now = to_timestamp(at);
    let refs: Vec<&Schedule> = schedules.iter().collect();
    let Some(frozen) = freeze::frozen_at(&refs, now) else {
        return Ok(None);
    };
    let open = rows
        .iter()
        .zip(&schedules)
        .filter(|(_, s)| s.occurrence_at(now).is_some())
        .map(|(r, _)| r.name.clone())
        .collect();
    Ok(Some(Holding {
        open,
        window: rows[frozen.window].name.clone(),
        until: from_timestamp(frozen.until),
    }))
}

/// The freeze gate of a deployment that has not started.
pub async fn gate(
    _ctx: &NodeContext,
    conn: &mut PgConnection,
    row: &DeploymentRow,
) -> Result<Option<Gate>, DbError> {
    if db::has_override(&mut *conn, row.id).await? {
        return Ok(None);
    }
    let found = holding(
        conn,
        row.project_id,
        row.environment_id,
        OffsetDateTime::now_utc(),
    )
    .await?;
    Ok(found.map(|h| Gate::Hold {
        reason: BlockedBy::Freeze {
            window: h.window,
            until: h.until,
        },
        until: Some(h.until),
    }))
}

/// At queue time, in the queueing transaction, before the gates run: refuses a
/// deployment inside a window when the caller asked so, or records the caller's
/// override (its own audit row names the windows overridden). The caller checked the
/// `override_freeze` permission. Returns whether the deployment overrides.
pub async fn at_queue(
    conn: &mut PgConnection,
    deployment: &DeploymentRow,
    request: &CreateDeploymentRequest,
    actor: &AuditActor,
) -> Result<bool, DeploymentError> {
    let found = holding(
        &mut *conn,
        deployment.project_id,
        deployment.environment_id,
        OffsetDateTime::now_utc(),
    )
    .await?;
    if request.override_freeze {
        let windows = found.map(|h| h.open).unwrap_or_default();
        db::record_override(&mut *conn, deployment.id, &windows).await?;
        Change::new("deployment.override_freeze")
            .object(
                deployment.id,
                format!(
                    "{} {} to {}",
                    deployment.project, deployment.release, deployment.environment
                ),
            )
            .project(deployment.project_id)
            .environment(deployment.environment_id)
            .after(&serde_json::json!({ "windows": windows }))
            .record(&mut *conn, actor)
            .await?;
        return Ok(true);
    }
    if let (IfFrozen::Refuse, Some(h)) = (request.if_frozen, found) {
        return Err(DeploymentError::Frozen {
            window: h.window.clone(),
            until: h.until,
            detail: format!(
                "freeze window `{}` is open for {} in {} until {}: the deployment was not queued (send `if_frozen: wait` to queue it anyway, or `override_freeze: true` with the `override_freeze` permission)",
                h.window,
                deployment.project,
                deployment.environment,
                capstan_api::timestamp::format(h.until)
            ),
        });
    }
    Ok(false)
}

/// Lets every deployment a window holds be claimed again at once, to be asked again:
/// after a window was changed or deleted, one may no longer hold it.
pub async fn release_held(ctx: &NodeContext) -> Result<usize, DbError> {
    let ids = db::held_by_freeze(&ctx.pools.api).await?;
    let mut released = 0;
    for id in ids {
        if held::release(&ctx.pools.api, id).await? {
            released += 1;
        }
    }
    Ok(released)
}
