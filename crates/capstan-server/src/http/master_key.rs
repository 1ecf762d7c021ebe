//! `/api/master-key`: the master key's versions, and rotating to the newest one.

use std::{collections::HashMap, sync::Arc};

use axum::{Json, extract::State, http::StatusCode};
use capstan_api::{MasterKeyStatus, MasterKeyVersion, NodeKeyVersions, RotateMasterKeyResponse};
use capstan_db::{nodes, secrets as db, tasks::NewTask};

use super::ApiError;
use crate::audit::{Change, ChangedBy};
use crate::{
    node::NodeContext,
    runner::{
        self,
        kinds::master_key_rotation::{
            CONCURRENCY_KEY, MASTER_KEY_ROTATION, MasterKeyRotation, lacking_key, nodes_lacking,
        },
    },
};

/// `GET /api/master-key`: the versions, the active one, the values under each, and
/// which live node holds which.
#[utoipa::path(get, path = "/api/master-key", tag = "master-key", responses(
    (status = 200, body = MasterKeyStatus),
    (status = 401, body = capstan_api::Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_master_key(
    State(ctx): State<Arc<NodeContext>>,
) -> Result<Json<MasterKeyStatus>, ApiError> {
    Ok(Json(status(&ctx).await?))
}

/// `POST /api/master-key/rotate`: activates the newest key version and queues a
/// `master-key-rotation` task that re-encrypts every value under an older one.
#[utoipa::path(post, path = "/api/master-key/rotate", tag = "master-key", responses(
    (status = 202, description = "the rotation task is queued", body = RotateMasterKeyResponse),
    (status = 409, description = "a live node lacks the new key, or there is nothing to rotate",
        body = capstan_api::Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn rotate_master_key(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
) -> Result<(StatusCode, Json<RotateMasterKeyResponse>), ApiError> {
    let status = status(&ctx).await?;
    let Some(newest) = status.versions.last() else {
        return Err(ApiError::conflict(
            "no master key is registered yet: start the nodes with CAPSTAN_MASTER_KEY (see docs/security.md)",
        ));
    };
    let version = newest.version;
    let to_rotate = status.secrets_not_under(version);
    if newest.active && to_rotate == 0 {
        return Err(ApiError::conflict(format!(
            "master key version {version} is already active and every value is encrypted under \
             it: to rotate, roll out a new key first, with `capstan master-key generate` and \
             CAPSTAN_MASTER_KEY_PREVIOUS set to the current key (see docs/security.md)"
        )));
    }
    let lacking = nodes_lacking(&ctx.pools.api, version)
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    if !lacking.is_empty() {
        return Err(ApiError::conflict(lacking_key(version, &lacking)));
    }
    let change = Change::new("master_key.rotate")
        .object(version, format!("version {version}"))
        .after(&serde_json::json!({ "version": version, "values_to_rotate": to_rotate }));
    let task = runner::queue_one_audited(
        ctx.clone(),
        NewTask {
            kind: MASTER_KEY_ROTATION.to_owned(),
            args: MasterKeyRotation::args(version),
            on_node_lost: capstan_core::NodeLostPolicy::Requeue.as_str(),
            concurrency_key: Some(CONCURRENCY_KEY.to_owned()),
        },
        (actor, change),
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    tracing::info!(
        task.id = task.id,
        key_version = version,
        "master key rotation to version {version} queued as task {} ({to_rotate} value(s) to re-encrypt)",
        task.id
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(RotateMasterKeyResponse {
            task_id: task.id,
            version,
            secrets_to_rotate: to_rotate,
        }),
    ))
}

async fn status(ctx: &NodeContext) -> Result<MasterKeyStatus, ApiError> {
    let db_error = |e| ApiError::from_db(e, String::new);
    let versions = db::list_master_keys(&ctx.pools.api)
        .await
        .map_err(db_error)?;
    let counts: HashMap<i32, i64> = db::count_by_version(&ctx.pools.api)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|c| (c.key_version, c.secrets))
        .collect();
    let nodes = nodes::live_key_versions(&ctx.pools.api)
        .await
        .map_err(db_error)?;
    Ok(MasterKeyStatus {
        active_version: versions.iter().find(|v| v.active).map(|v| v.version),
        versions: versions
            .into_iter()
            .map(|v| MasterKeyVersion {
                version: v.version,
                active: v.active,
                created_at: v.created_at,
                activated_at: v.activated_at,
                secrets: counts.get(&v.version).copied().unwrap_or(0).max(0) as u64,
            })
            .collect(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeKeyVersions {
                id: n.id,
                name: n.name,
                key_versions: n.key_versions,
            })
            .collect(),
    })
}
