//! `GET` and `PUT /api/projects/{id}/auto-rollback`: where a failed deployment of the
//! project is rolled back once, automatically (see `deployments::auto_rollback`).

use std::sync::Arc;

use axum::{Extension, Json, extract::State};
use capstan_api::{Problem, auto_rollbacks::AutoRollback};
use capstan_core::{
    access::{Permission, Scope},
    names,
};
use capstan_db::{agents, auto_rollbacks as db};

use super::{
    ApiError,
    access::Caller,
    extract::{ApiJson, ApiPath},
    problems::Problems,
};
use crate::{
    audit::{self, Change, ChangedBy},
    node::NodeContext,
};

/// At most this many environments in one request: more than any cluster has.
const MAX_ENVIRONMENTS: usize = 200;

fn shown(environments: Vec<(i64, String)>) -> AutoRollback {
    AutoRollback {
        environments: environments.into_iter().map(|(_, name)| name).collect(),
    }
}

/// `GET /api/projects/{id}/auto-rollback`.
#[utoipa::path(get, path = "/api/projects/{id}/auto-rollback", tag = "deployments",
    params(("id" = i64, Path)), responses(
    (status = 200, body = AutoRollback),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_auto_rollback(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AutoRollback>, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no project {id}"));
    capstan_db::projects::get(&ctx.pools.api, id)
        .await
        .map_err(failed)?;
    let environments = db::of_project(&ctx.pools.api, id).await.map_err(failed)?;
    Ok(Json(shown(environments)))
}

/// `PUT /api/projects/{id}/auto-rollback`: replaces the environments where a failed
/// deployment is rolled back automatically. Turning it on for an environment needs
/// `deploy` there, as the rollback deploys on the caller's word.
#[utoipa::path(put, path = "/api/projects/{id}/auto-rollback", tag = "deployments",
    params(("id" = i64, Path)), request_body = AutoRollback, responses(
    (status = 200, body = AutoRollback),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn put_auto_rollback(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<AutoRollback>,
) -> Result<Json<AutoRollback>, ApiError> {
    let failed = |e| ApiError::from_db(e, || format!("there is no project {id}"));
    let mut problems = Problems::new();
    if request.environments.len() > MAX_ENVIRONMENTS {
        problems.add(
            "environments",
            format!("at most {MAX_ENVIRONMENTS} environments"),
        );
        return Err(problems.into());
    }
    let mut ids = Vec::with_capacity(request.environments.len());
    for (i, name) in request.environments.iter().enumerate() {
        let name = names::nfc(name);
        match agents::find_environment(&ctx.pools.api, &name)
            .await
            .map_err(failed)?
        {
            Some(environment) if ids.contains(&environment.id) => {
                problems.add(
                    format!("environments[{i}]"),
                    format!("environment `{name}` is listed twice"),
                );
            }
            Some(environment) => ids.push(environment.id),
            None => problems.add(
                format!("environments[{i}]"),
                format!("there is no environment `{name}`"),
            ),
        }
    }
    if !problems.is_empty() {
        return Err(problems.into());
    }
    for environment in &ids {
        let scope = Scope::Deployment {
            project: id,
            environment: *environment,
        };
        if !caller.may(Permission::Deploy, scope) {
            return Err(super::access::forbidden(&ctx, Permission::Deploy, scope).await);
        }
    }
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let before = shown(db::of_project(&mut *tx, id).await.map_err(failed)?);
    db::set(&mut *tx, id, &ids).await.map_err(failed)?;
    let after = shown(db::of_project(&mut *tx, id).await.map_err(failed)?);
    Change::new("project.auto_rollback")
        .object(id, format!("project {id}"))
        .project(id)
        .before(&before)
        .after(&after)
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    Ok(Json(after))
}
