//! Scheduled deployments: one with `deploy_at` waits parked in the queue until then;
//! one with `no_deploy_after` that has not started by then never starts. The gate
//! answers when a deployment is queued or claimed; the expiry sweep, run by every
//! node's housekeeping, cancels the expired deployments no claim looks at (held by
//! another gate with no time, waiting behind a long deployment of the same pair, or
//! for a free slot).

use capstan_api::{BlockedBy, deployments::CreateDeploymentRequest};
use capstan_db::{DbError, deployments::DeploymentRow, schedule as db};
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use super::gates::Gate;
use crate::{invalid::FieldProblems, node::NodeContext};

/// How far ahead a deployment may be scheduled.
pub const MAX_AHEAD: Duration = Duration::days(366);

/// Why a deployment that passed its `no_deploy_after` is cancelled.
pub fn expired_because(no_deploy_after: OffsetDateTime) -> String {
    format!(
        "not started before its no_deploy_after ({})",
        capstan_api::timestamp::format(no_deploy_after)
    )
}

/// Adds the problems of a request's `deploy_at` and `no_deploy_after`.
pub fn check_request(
    request: &CreateDeploymentRequest,
    now: OffsetDateTime,
    problems: &mut FieldProblems,
) {
    let at = capstan_api::timestamp::format;
    if let Some(deploy_at) = request.deploy_at
        && deploy_at > now + MAX_AHEAD
    {
        problems.add(
            "deploy_at",
            format!(
                "{} is more than a year ahead; schedule it at most {} days from now",
                at(deploy_at),
                MAX_AHEAD.whole_days()
            ),
        );
    }
    if let Some(no_deploy_after) = request.no_deploy_after {
        if no_deploy_after <= now {
            problems.add(
                "no_deploy_after",
                format!(
                    "{} has passed already: the deployment could never start",
                    at(no_deploy_after)
                ),
            );
        } else if let Some(deploy_at) = request.deploy_at
            && no_deploy_after <= deploy_at
        {
            problems.add(
                "no_deploy_after",
                format!(
                    "{} is not after deploy_at ({}): the deployment could never start",
                    at(no_deploy_after),
                    at(deploy_at)
                ),
            );
        }
    }
}

/// The schedule's gate: shut (cancelling) once `no_deploy_after` has passed, shut
/// (holding until then) before `deploy_at`, open otherwise.
pub async fn gate(
    _ctx: &NodeContext,
    _conn: &mut PgConnection,
    row: &DeploymentRow,
) -> Result<Option<Gate>, DbError> {
    Ok(decide(
        row.deploy_at,
        row.no_deploy_after,
        OffsetDateTime::now_utc(),
    ))
}

fn decide(
    deploy_at: Option<OffsetDateTime>,
    no_deploy_after: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<Gate> {
    if let Some(last) = no_deploy_after
        && now > last
    {
        return Some(Gate::Cancel {
            why: expired_because(last),
        });
    }
    match deploy_at {
        Some(at) if now < at => Some(Gate::Hold {
            reason: BlockedBy::Scheduled { at },
            until: Some(at),
        }),
        _ => None,
    }
}

/// Records the `deployment.expire` row of a deployment a claim found expired (the
/// run has cancelled it). Deployments another gate cancelled get none from here.
pub async fn audit_cancelled_at_claim(ctx: &NodeContext, id: i64) -> Result<(), DbError> {
    let mut tx = ctx.pools.api.begin().await?;
    let row = capstan_db::deployments::get(&mut *tx, id).await?;
    let Some(last) = row
        .no_deploy_after
        .filter(|last| *last < OffsetDateTime::now_utc())
    else {
        return Ok(());
    };
    let stopped = db::Stopped {
        id,
        task_id: row.task_id,
        project_id: row.project_id,
        environment_id: row.environment_id,
        name: format!("{} {} to {}", row.project, row.release, row.environment),
        error: row.error.unwrap_or_else(|| expired_because(last)),
    };
    let actor = capstan_db::audit::Actor::system(db::SYSTEM_ACTOR);
    capstan_db::audit::append(&mut *tx, &db::expired_event(&actor, &stopped)).await?;
    tx.commit().await?;
    Ok(())
}

/// Cancels the queued deployments that passed their `no_deploy_after` without
/// starting, with their audit rows, in batches until none is left. Nodes share the
/// work: each skips the rows another has locked.
pub async fn expire_overdue(ctx: &NodeContext) -> Result<u64, DbError> {
    let actor = capstan_db::audit::Actor::system(db::SYSTEM_ACTOR);
    let mut total = 0;
    loop {
        let mut tx = ctx.pools.api.begin().await?;
        let stopped = db::expire(&mut tx, &expired_because).await?;
        for deployment in &stopped {
            capstan_db::audit::append(&mut *tx, &db::expired_event(&actor, deployment)).await?;
        }
        tx.commit().await?;
        for deployment in &stopped {
            tracing::info!(
                deployment.id = deployment.id,
                "deployment {} ({}) cancelled: {}",
                deployment.id,
                deployment.name,
                deployment.error
            );
        }
        total += stopped.len() as u64;
        if (stopped.len() as i64) < db::EXPIRE_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-06 12:00 UTC);

    #[test]
    fn before_deploy_at_it_is_held_until_then() {
        let at = datetime!(2026-12-06 13:00 UTC);
        assert_eq!(
            decide(Some(at), None, NOW),
            Some(Gate::Hold {
                reason: BlockedBy::Scheduled { at },
                until: Some(at)
            })
        );
        assert_eq!(decide(Some(NOW), None, NOW), None);
        assert_eq!(decide(None, None, NOW), None);
    }

    #[test]
    fn past_no_deploy_after_it_is_cancelled_whatever_deploy_at_says() {
        let last = datetime!(2026-12-06 11:59 UTC);
        assert_eq!(
            decide(Some(datetime!(2026-12-06 11:00 UTC)), Some(last), NOW),
            Some(Gate::Cancel {
                why: "not started before its no_deploy_after (2026-12-06T11:59:00.000000Z)"
                    .to_owned()
            })
        );
        assert_eq!(decide(None, Some(NOW), NOW), None);
    }

    #[test]
    fn every_bad_time_names_its_field() {
        let request = |deploy_at, no_deploy_after| CreateDeploymentRequest {
            deploy_at,
            no_deploy_after,
            ..Default::default()
        };
        let fields = |request: &CreateDeploymentRequest| {
            let mut problems = FieldProblems::new();
            check_request(request, NOW, &mut problems);
            problems
                .listed()
                .0
                .iter()
                .map(|p| p.field.clone())
                .collect::<Vec<_>>()
        };
        let hour = Duration::hours(1);
        assert!(fields(&request(Some(NOW + hour), Some(NOW + 2 * hour))).is_empty());
        assert_eq!(
            fields(&request(Some(NOW + 2 * hour), Some(NOW + hour))),
            ["no_deploy_after"]
        );
        assert_eq!(
            fields(&request(None, Some(NOW - hour))),
            ["no_deploy_after"]
        );
        assert_eq!(
            fields(&request(Some(NOW + Duration::days(400)), None)),
            ["deploy_at"]
        );
    }
}
