//! Rollback: `rollback: true` redeploys the release of the newest successful
//! deployment older than the pair's latest one and of another release, records which
//! deployment it rolls back, and says so in the API, the list and the CLI.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Fleet, step};
use crate::cli::capstan;

/// A project whose single step fails when the release's `Outcome` is not `ok`, and
/// one release per outcome, in order: (project, releases).
async fn project_with_releases(fleet: &Fleet, name: &str, outcomes: &[&str]) -> (i64, Vec<i64>) {
    let steps = json!([step("Check", "test \"#{Outcome}\" = ok")]);
    let (project, first) = fleet
        .release(
            name,
            steps,
            json!([{ "name": "Outcome", "value": outcomes[0] }]),
        )
        .await;
    let mut releases = vec![first];
    let (_, saved) = fleet
        .api
        .get(&format!("/api/projects/{project}/variables"))
        .await;
    let mut version = saved["version"].as_i64().unwrap();
    for outcome in &outcomes[1..] {
        let (status, body) = fleet
            .api
            .save_variables(
                project,
                version,
                json!([{ "name": "Outcome", "value": outcome }]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        version = body["version"].as_i64().unwrap();
        let (status, body) = fleet
            .api
            .post("/api/releases", json!({ "project_id": project }))
            .await;
        assert_eq!(status, 201, "{body}");
        releases.push(body["id"].as_i64().unwrap());
    }
    (project, releases)
}

/// Deploys each release in turn, waiting for each to finish: the deployments' ids.
async fn deploy_in_turn(fleet: &Fleet, project: i64, releases: &[i64]) -> Vec<Value> {
    let mut done = Vec::new();
    for release in releases {
        let id = fleet
            .deploy(json!({ "release_id": release, "project_id": project, "environment": "Production" }))
            .await;
        done.push(
            fleet
                .wait_state(id, &["succeeded", "failed"], Duration::from_secs(60))
                .await,
        );
    }
    done
}

async fn rollback(fleet: &Fleet, project: i64) -> (u16, Value) {
    fleet
        .api
        .post(
            "/api/deployments",
            json!({ "rollback": true, "project_id": project, "environment": "Production" }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_picks_the_last_good_release_before_the_current_one_and_is_labelled() {
    let fleet = Fleet::start(1, 1).await;

    // R1 ok, R2 ok, R3 fails → R2.
    let (failing, releases) =
        project_with_releases(&fleet, "Failing", &["ok", "ok", "broken"]).await;
    let done = deploy_in_turn(&fleet, failing, &releases).await;
    let states: Vec<&str> = done.iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "succeeded", "failed"]);
    let (status, body) = rollback(&fleet, failing).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["release_id"], releases[1], "{body:#}");
    assert_eq!(body["rollback_of"], done[2]["id"], "{body:#}");
    let id = body["id"].as_i64().unwrap();
    let back = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(back["state"], "succeeded", "{back:#}");

    // R1 ok, R2 ok → R1.
    let (good, releases) = project_with_releases(&fleet, "Good", &["ok", "ok"]).await;
    let done = deploy_in_turn(&fleet, good, &releases).await;
    let (status, body) = rollback(&fleet, good).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["release_id"], releases[0], "{body:#}");
    assert_eq!(body["rollback_of"], done[1]["id"], "{body:#}");
    let good_rollback = body["id"].as_i64().unwrap();
    fleet
        .wait_state(good_rollback, &["succeeded"], Duration::from_secs(60))
        .await;

    // Audited like any deployment, as a rollback.
    let (status, audit) = fleet
        .api
        .get(&format!(
            "/api/audit?action=deployment.create&object_id={good_rollback}"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let row = &audit["items"][0];
    assert!(
        row["object"]["name"]
            .as_str()
            .unwrap()
            .starts_with("rollback: "),
        "{audit:#}"
    );
    assert_eq!(row["after"]["rollback_of"], done[1]["id"], "{audit:#}");

    // Labelled in lists, and plain deployments are not.
    let (status, page) = fleet
        .api
        .get(&format!("/api/deployments?project_id={good}"))
        .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    let labelled: Vec<i64> = items
        .iter()
        .filter(|d| d.get("rollback_of").is_some_and(|v| !v.is_null()))
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(labelled, [good_rollback], "{page:#}");

    // And in the CLI's list.
    let server = fleet.cluster.node(0).url();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        capstan(&server, &["deployments", "list", "--project", "Good"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{good_rollback} ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("rollback of {}", done[1]["id"])),
        "{out}"
    );

    // `capstan deploy --rollback`: the rollback just made is now current, and
    // deployments of its release (R1) are passed over: back to R2.
    let server = fleet.cluster.node(0).url();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        capstan(
            &server,
            &[
                "deploy",
                "--rollback",
                "--project",
                "Good",
                "--environment",
                "Production",
                "--follow",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "rollback of {good_rollback}: Good 0.0.2 to Production"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn a_rollback_with_nothing_to_go_back_to_or_badly_asked_is_refused() {
    let fleet = Fleet::start(1, 1).await;
    let (project, releases) = project_with_releases(&fleet, "Once", &["ok"]).await;

    let (status, body) = rollback(&fleet, project).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("never deployed"),
        "{body}"
    );

    deploy_in_turn(&fleet, project, &releases).await;
    let (status, body) = rollback(&fleet, project).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing to roll back to"),
        "{body}"
    );

    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "rollback": true, "release_id": releases[0], "project_id": project, "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("release_id"), "{body}");

    let (status, body) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "rollback": true, "environment": "Production" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("project_id"), "{body}");

    let (status, body) = fleet
        .api
        .post("/api/deployments", json!({ "environment": "Production" }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("release_id"), "{body}");

    // Someone who may not view the project learns nothing: its answer is that of a
    // project that does not exist.
    let node = fleet.cluster.node(0).url();
    let outsider = crate::identity::create_user(&node, "outsider", "service").await;
    let key = crate::identity::create_key(&node, outsider, json!({"purpose": "test"})).await;
    let ask = |project: i64| {
        crate::identity::call(
            &node,
            key["key"].as_str().unwrap(),
            "POST",
            "/api/deployments",
            Some(json!({ "rollback": true, "project_id": project, "environment": "Production" })),
        )
    };
    let (hidden_status, hidden) = ask(project).await;
    let (missing_status, missing) = ask(project + 1000).await;
    assert_eq!(hidden_status, 409, "{hidden}");
    assert_eq!(missing_status, 409, "{missing}");
    assert_eq!(
        hidden.to_string(),
        missing
            .to_string()
            .replace(&(project + 1000).to_string(), &project.to_string())
    );
}
