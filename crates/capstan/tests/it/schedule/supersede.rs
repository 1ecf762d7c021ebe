//! Queue hygiene: a deployment queued for a project × environment supersedes the
//! older ones of that pair still queued and never started, unless asked to keep them.

use std::time::Duration;

use serde_json::json;

use super::{audit_rows, deploy, gated_release, open_gate};
use crate::{cli::capstan, deployments::Fleet};

#[tokio::test(flavor = "multi_thread")]
async fn ten_deployments_queued_behind_a_running_one_collapse_to_the_newest() {
    let fleet = Fleet::start(1, 1).await;
    let (project, release) = gated_release(&fleet, "Web", "go").await;
    let running = deploy(&fleet, project, release, json!({})).await;
    fleet
        .wait_state(running, &["running"], Duration::from_secs(30))
        .await;
    let mut queued = Vec::new();
    for _ in 0..10 {
        queued.push(deploy(&fleet, project, release, json!({})).await);
    }
    let newest = *queued.last().unwrap();
    let (_, shown) = fleet.api.get(&format!("/api/releases/{release}")).await;
    let version = shown["version"].as_str().unwrap();

    // Each was superseded by the next one queued, as it came.
    for (old, by) in queued.iter().zip(&queued[1..]) {
        let (status, body) = fleet.api.get(&format!("/api/deployments/{old}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "cancelled", "{body:#}");
        assert_eq!(body["superseded_by"], *by, "{body:#}");
        assert_eq!(
            body["error"],
            format!("superseded by deployment {by} (release {version})"),
            "{body:#}"
        );
        let (_, task) = fleet
            .api
            .get(&format!("/api/tasks/{}", body["task_id"]))
            .await;
        assert_eq!(task["state"], "cancelled", "{task:#}");
        let rows = audit_rows(&fleet, "deployment.supersede", *old).await;
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0]["after"]["superseded_by"], *by, "{:#}", rows[0]);
        assert_eq!(rows[0]["actor"]["kind"], "system", "{:#}", rows[0]);
    }
    let (_, still) = fleet.api.get(&format!("/api/deployments/{newest}")).await;
    assert_eq!(still["state"], "queued", "{still:#}");
    assert!(still["superseded_by"].is_null(), "{still:#}");
    let (_, first) = fleet.api.get(&format!("/api/deployments/{running}")).await;
    assert_eq!(
        first["state"], "running",
        "a started deployment is never superseded"
    );

    let server = fleet.cluster.node(0).url();
    let (ok, out) = capstan(&server, &["deployments", "list", "--project", "Web"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("superseded by ").count(), 9, "{out}");
    for by in &queued[1..] {
        assert!(out.contains(&format!("superseded by {by}")), "{out}");
    }

    open_gate(&fleet, "go");
    let mut done = Vec::new();
    for id in [running, newest] {
        let finished = fleet
            .wait_state(
                id,
                &["succeeded", "failed", "cancelled"],
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(finished["state"], "succeeded", "{finished:#}");
        done.push(finished);
    }
    let at = |d: &serde_json::Value, field: &str| {
        time::OffsetDateTime::parse(
            d[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(
        at(&done[1], "started_at") >= at(&done[0], "finished_at"),
        "the newest started before the running one ended: {done:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_keep_queued_every_queued_deployment_stays_and_runs_in_turn() {
    let fleet = Fleet::start(1, 1).await;
    let (project, release) = gated_release(&fleet, "Web", "go").await;
    let running = deploy(&fleet, project, release, json!({})).await;
    fleet
        .wait_state(running, &["running"], Duration::from_secs(30))
        .await;
    let mut queued = Vec::new();
    for _ in 0..10 {
        queued.push(deploy(&fleet, project, release, json!({ "keep_queued": true })).await);
    }
    for id in &queued {
        let (_, body) = fleet.api.get(&format!("/api/deployments/{id}")).await;
        assert_eq!(body["state"], "queued", "{body:#}");
        assert!(body["superseded_by"].is_null(), "{body:#}");
    }
    assert!(
        audit_rows(&fleet, "deployment.supersede", queued[0])
            .await
            .is_empty()
    );

    open_gate(&fleet, "go");
    for id in std::iter::once(running).chain(queued) {
        let done = fleet
            .wait_state(
                id,
                &["succeeded", "failed", "cancelled"],
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(done["state"], "succeeded", "{done:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_rollback_is_superseded_only_by_another_rollback() {
    let fleet = Fleet::start(1, 1).await;
    let (project, first) = gated_release(&fleet, "Web", "go").await;
    open_gate(&fleet, "go");
    let done = deploy(&fleet, project, first, json!({})).await;
    fleet
        .wait_state(done, &["succeeded"], Duration::from_secs(60))
        .await;
    let (status, body) = fleet
        .api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_i64().unwrap();
    std::fs::remove_file(fleet.dir().join("go")).unwrap();
    let running = deploy(&fleet, project, second, json!({})).await;
    fleet
        .wait_state(running, &["running"], Duration::from_secs(30))
        .await;

    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "rollback": true, "project_id": project, "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let rollback = body["id"].as_i64().unwrap();
    let forward = deploy(&fleet, project, second, json!({})).await;
    let (_, kept) = fleet.api.get(&format!("/api/deployments/{rollback}")).await;
    assert_eq!(kept["state"], "queued", "{kept:#}");

    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "rollback": true, "project_id": project, "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let newer = body["id"].as_i64().unwrap();
    for old in [rollback, forward] {
        let (_, body) = fleet.api.get(&format!("/api/deployments/{old}")).await;
        assert_eq!(body["superseded_by"], newer, "{body:#}");
        assert_eq!(body["state"], "cancelled", "{body:#}");
    }
    open_gate(&fleet, "go");
    fleet
        .wait_state(newer, &["succeeded"], Duration::from_secs(60))
        .await;
}
