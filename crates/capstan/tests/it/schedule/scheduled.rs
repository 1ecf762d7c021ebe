//! `deploy_at` and `no_deploy_after`: a deployment scheduled for later waits parked,
//! saying so, and then runs; one that cannot start in time is cancelled, saying why;
//! times that could never work are refused naming the field.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::{audit_rows, deploy, from_now, gated_release, open_gate};
use crate::{cli::capstan, deployments::Fleet, projects::detail};

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_scheduled_five_seconds_ahead_waits_parked_and_then_runs() {
    let fleet = Fleet::start(1, 1).await;
    let (project, release) = gated_release(&fleet, "Web", "go").await;
    open_gate(&fleet, "go");
    let deploy_at = from_now(5);
    let id = deploy(&fleet, project, release, json!({ "deploy_at": deploy_at })).await;

    let (status, queued) = fleet.api.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["deploy_at"], deploy_at, "{queued:#}");
    assert_eq!(queued["state"], "queued", "{queued:#}");
    {
        let reasons = &queued["blocked_by"]["reasons"];
        assert_eq!(reasons[0]["reason"], "scheduled", "{queued:#}");
        assert_eq!(reasons[0]["at"], deploy_at, "{queued:#}");
        assert!(
            queued["blocked_by"]["summary"]
                .as_str()
                .unwrap()
                .contains("scheduled to start at"),
            "{queued:#}"
        );
        let (ok, why) = capstan(
            &fleet.cluster.node(0).url(),
            &["tasks", "why", &queued["task_id"].to_string()],
        );
        assert!(ok, "{why}");
        assert!(why.contains("scheduled to start at"), "{why}");
    }

    let done = fleet
        .wait_state(
            id,
            &["succeeded", "failed", "cancelled"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let started = OffsetDateTime::parse(
        done["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let scheduled =
        OffsetDateTime::parse(&deploy_at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(started >= scheduled, "started {started} before {scheduled}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_that_cannot_start_before_its_no_deploy_after_is_cancelled_saying_so() {
    let fleet = Fleet::start(1, 1).await;
    let (project, release) = gated_release(&fleet, "Web", "go").await;
    let running = deploy(&fleet, project, release, json!({})).await;
    fleet
        .wait_state(running, &["running"], Duration::from_secs(30))
        .await;
    let no_deploy_after = from_now(3);
    let late = deploy(
        &fleet,
        project,
        release,
        json!({ "no_deploy_after": no_deploy_after }),
    )
    .await;

    let cancelled = fleet
        .wait_state(
            late,
            &["cancelled", "succeeded", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled:#}");
    assert_eq!(
        cancelled["error"],
        format!("not started before its no_deploy_after ({no_deploy_after})"),
        "{cancelled:#}"
    );
    assert!(cancelled["started_at"].is_null(), "{cancelled:#}");
    let (_, task) = fleet
        .api
        .get(&format!("/api/tasks/{}", cancelled["task_id"]))
        .await;
    assert_eq!(task["state"], "cancelled", "{task:#}");

    let rows = audit_rows(&fleet, "deployment.expire", late).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["actor"]["kind"], "system", "{:#}", rows[0]);
    assert_eq!(rows[0]["after"]["state"], "cancelled", "{:#}", rows[0]);

    // The one it waited behind was never disturbed.
    open_gate(&fleet, "go");
    let done = fleet
        .wait_state(running, &["succeeded", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn times_that_could_never_work_are_refused_naming_the_field() {
    let fleet = Fleet::start(1, 1).await;
    let (project, release) = gated_release(&fleet, "Web", "go").await;
    let base = json!({ "release_id": release, "project_id": project, "environment": "Production" });
    let with = |extra: serde_json::Value| {
        let mut request = base.clone();
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    let cases = [
        (
            json!({ "deploy_at": from_now(3600), "no_deploy_after": from_now(1800) }),
            "no_deploy_after",
            "is not after deploy_at",
        ),
        (
            json!({ "no_deploy_after": from_now(-60) }),
            "no_deploy_after",
            "has passed already",
        ),
        (
            json!({ "deploy_at": from_now(400 * 24 * 3600) }),
            "deploy_at",
            "more than a year ahead",
        ),
    ];
    for (extra, field, words) in cases {
        let (status, body) = fleet
            .api
            .post("/api/deployments", with(extra.clone()))
            .await;
        assert_eq!(status, 422, "{extra}: {body:#}");
        let problems = body["errors"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p["field"] == field && p["detail"].as_str().unwrap().contains(words)),
            "{extra}: {body:#}"
        );
    }
    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            with(json!({ "deploy_at": "tomorrow at noon" })),
        )
        .await;
    assert!((400..500).contains(&status), "{body:#}");
    assert!(detail(&body).contains("deploy_at"), "{body:#}");

    // Nothing was queued by any of them.
    let (_, page) = fleet
        .api
        .get(&format!("/api/deployments?project_id={project}"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page:#}");

    // The CLI takes times from now, and shows the schedule in the list.
    let server = fleet.cluster.node(0).url();
    let (_, shown) = fleet.api.get(&format!("/api/releases/{release}")).await;
    let version = shown["version"].as_str().unwrap().to_owned();
    let (ok, out) = capstan(
        &server,
        &[
            "deploy",
            "--project",
            "Web",
            "--release",
            &version,
            "--environment",
            "Production",
            "--at",
            "+30m",
            "--no-deploy-after",
            "+2h",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = capstan(&server, &["deployments", "list", "--project", "Web"]);
    assert!(ok, "{out}");
    assert!(out.contains("scheduled for"), "{out}");
}
