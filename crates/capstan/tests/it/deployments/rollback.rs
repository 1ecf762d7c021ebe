//! Rollback: `rollback: true` redeploys the release of the newest successful
//! deployment older than the pair's latest one and of another release, records which
//! deployment it rolls back, and says so in the API, the list and the CLI.

use std::time::Duration;

use serde_json::{Value, json};

use capstan_testkit::eventually;

use super::{Fleet, step};
use crate::cli::capstan;

/// A project whose single step fails when the release's `Outcome` is not `ok`, and
/// one release per outcome, in order: (project, releases).
async fn project_with_releases(fleet: &Fleet, name: &str, outcomes: &[&str]) -> (i64, Vec<i64>) {
    project_running(fleet, name, "test \"#{Outcome}\" = ok", outcomes).await
}

/// As [`project_with_releases`], the step running `script`.
async fn project_running(
    fleet: &Fleet,
    name: &str,
    script: &str,
    outcomes: &[&str],
) -> (i64, Vec<i64>) {
    let steps = json!([step("Check", script)]);
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

/// The automatic rollback of the deployment `failed` of `project`, once there is one.
async fn automatic_rollback_of(fleet: &Fleet, project: i64, failed: i64) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("an automatic rollback of deployment {failed}"),
        || async {
            let (_, page) = fleet
                .api
                .get(&format!("/api/deployments?project_id={project}"))
                .await;
            page["items"]
                .as_array()?
                .iter()
                .find(|d| d["rollback_of"] == failed)
                .cloned()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deployment_is_rolled_back_automatically_once_and_a_rollback_never_is() {
    let fleet = Fleet::start(2, 1).await;
    let broken = fleet.dir().join("broken");
    let script = format!(
        "test \"#{{Outcome}}\" = ok && test ! -e '{}'",
        broken.display()
    );
    let (project, releases) = project_running(&fleet, "AutoBack", &script, &["ok", "broken"]).await;

    // Asked for per project × environment; an unknown environment is named.
    let path = format!("/api/projects/{project}/auto-rollback");
    let (status, body) = fleet
        .api
        .put(&path, json!({ "environments": ["Nowhere"] }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("environments[0]"), "{body}");
    let many: Vec<String> = (0..201).map(|i| format!("env{i}")).collect();
    let (status, body) = fleet.api.put(&path, json!({ "environments": many })).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("at most 200"), "{body}");
    let (status, body) = fleet
        .api
        .put(&path, json!({ "environments": ["Production"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["environments"], json!(["Production"]));

    // R1 succeeds, R2 fails: R1 comes back by itself, labelled.
    let done = deploy_in_turn(&fleet, project, &releases).await;
    let states: Vec<&str> = done.iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "failed"]);
    let failed = done[1]["id"].as_i64().unwrap();
    let back = automatic_rollback_of(&fleet, project, failed).await;
    assert_eq!(back["automatic_rollback"], true, "{back:#}");
    assert_eq!(back["release_id"], releases[0], "{back:#}");
    let back_id = back["id"].as_i64().unwrap();
    let back = fleet
        .wait_state(back_id, &["succeeded", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(back["state"], "succeeded", "{back:#}");
    let log = fleet.log(&done[1]).await;
    assert!(
        log.contains(&format!("automatic rollback: deployment {back_id}")),
        "{log}"
    );

    // The node queued it, and the audit log says so.
    let (status, audit) = fleet
        .api
        .get(&format!(
            "/api/audit?action=deployment.create&object_id={back_id}"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let row = &audit["items"][0];
    assert_eq!(row["actor"]["kind"], "system", "{audit:#}");
    assert!(
        row["object"]["name"]
            .as_str()
            .unwrap()
            .starts_with("automatic rollback: "),
        "{audit:#}"
    );

    // Now every deployment fails: R2 again, then its automatic rollback to R1, which is
    // not rolled back in turn.
    std::fs::write(&broken, "").unwrap();
    let again = deploy_in_turn(&fleet, project, &releases[1..]).await;
    assert_eq!(again[0]["state"], "failed");
    let again_id = again[0]["id"].as_i64().unwrap();
    let second = automatic_rollback_of(&fleet, project, again_id).await;
    let second = fleet
        .wait_state(
            second["id"].as_i64().unwrap(),
            &["succeeded", "failed"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(second["state"], "failed", "{second:#}");
    let second_id = second["id"].as_i64().unwrap();
    let log = eventually(
        Duration::from_secs(30),
        "the failed rollback's log to say it is not rolled back",
        || async {
            let log = fleet.log(&second).await;
            log.contains("no automatic rollback").then_some(log)
        },
    )
    .await;
    assert!(log.contains("is itself a rollback"), "{log}");
    let (_, page) = fleet
        .api
        .get(&format!("/api/deployments?project_id={project}"))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{page:#}");
    assert!(
        items.iter().all(|d| d["rollback_of"] != second_id),
        "{page:#}"
    );
    let rollbacks_of_again = items
        .iter()
        .filter(|d| d["rollback_of"] == again_id)
        .count();
    assert_eq!(rollbacks_of_again, 1, "{page:#}");

    // The CLI shows the setting and labels the rollbacks.
    let server = fleet.cluster.node(0).url();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let shown = capstan(&server, &["projects", "auto-rollback", "AutoBack"]);
        let listed = capstan(&server, &["deployments", "list", "--project", "AutoBack"]);
        (shown.0 && listed.0, format!("{}\n{}", shown.1, listed.1))
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "AutoBack: a failed deployment to Production is rolled back once, automatically"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!("automatic rollback of {failed}")),
        "{out}"
    );
}
