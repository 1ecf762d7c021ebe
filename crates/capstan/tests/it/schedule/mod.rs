//! When queued work runs: deployments scheduled for later or expiring, older queued
//! deployments superseded by a newer one of the same pair, and tasks moved to the
//! front of the queue.

mod move_to_front;
mod scheduled;
mod supersede;

use std::path::Path;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::deployments::{Fleet, step};

/// An RFC 3339 time `secs` seconds from now.
pub fn from_now(secs: i64) -> String {
    capstan_api::timestamp::format(OffsetDateTime::now_utc() + time::Duration::seconds(secs))
}

/// A project whose only step waits until the file `gate` exists in the fleet's
/// directory, and a release of it: (project, release).
pub async fn gated_release(fleet: &Fleet, name: &str, gate: &str) -> (i64, i64) {
    let path = fleet.dir().join(gate);
    fleet
        .release(name, json!([step("Wait", &wait_for(&path))]), json!([]))
        .await
}

fn wait_for(path: &Path) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; echo through",
        path.display()
    )
}

/// Lets every deployment waiting on `gate` through.
pub fn open_gate(fleet: &Fleet, gate: &str) {
    std::fs::write(fleet.dir().join(gate), b"open").unwrap();
}

/// Queues a deployment of `release` to Production with `extra` fields.
pub async fn deploy(fleet: &Fleet, project: i64, release: i64, extra: Value) -> i64 {
    let mut request = json!({
        "release_id": release, "project_id": project, "environment": "Production",
    });
    if let (Some(fields), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    fleet.deploy(request).await
}

/// The audit rows of `action` on deployment or task `object_id`.
pub async fn audit_rows(fleet: &Fleet, action: &str, object_id: i64) -> Vec<Value> {
    let (status, body) = fleet
        .api
        .get(&format!("/api/audit?action={action}&object_id={object_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}
