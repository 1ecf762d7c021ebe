//! A deployment end to end: steps in order, child steps, output variables driving a
//! machine-level condition, `always` steps, the grid and the log.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, states_in, step};

#[tokio::test]
async fn a_release_runs_its_steps_in_order_on_every_target_and_fills_the_grid() {
    let fleet = Fleet::start(1, 3).await;
    let marker = fleet.dir().join("ran");
    let mut check = step(
        "Check",
        "if [ \"#{Capstan.Machine.Name}\" = web02 ]; then echo \"##capstan[set-output name='Ready' value='no']\"; else echo \"##capstan[set-output name='Ready' value='yes']\"; fi",
    );
    check["actions"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "kind": "script", "name": "second", "body": "echo second child on #{Capstan.Machine.Name}" }));
    let mut deploy = step(
        "Deploy",
        &format!(
            "echo \"#{{Capstan.Machine.Name}} #{{Greeting}}\" >> {}",
            marker.display()
        ),
    );
    deploy["run_condition"] = json!({
        "when": "variable",
        "expression": "#{if Capstan.Action[Check].Output.Ready == \"yes\"}true#{/if}",
    });
    let (project, release) = fleet
        .release(
            "Shop",
            json!([check, deploy]),
            json!([{ "name": "Greeting", "value": "hello" }]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let done = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(60))
        .await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    let check = states_in(&done, 0);
    assert_eq!(check.len(), 3, "{done:#}");
    assert!(
        check.values().all(|s| s == &["succeeded", "succeeded"]),
        "{check:?}"
    );
    let deploy = states_in(&done, 1);
    assert_eq!(deploy["web01"], ["succeeded"], "{done:#}\n{log}");
    assert_eq!(deploy["web02"], ["skipped"]);
    assert_eq!(deploy["web03"], ["succeeded"]);
    let ran = std::fs::read_to_string(&marker).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["web01 hello", "web03 hello"]);
    let output = done["grid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == 0 && c["target"] == "web02" && c["action"] == 0)
        .unwrap();
    assert_eq!(output["outputs"]["Ready"], "no");
    assert!(output["command_id"].is_i64());
    assert_eq!(output["exit_code"], 0);
    assert!(log.contains("web01: second child on web01"), "{log}");

    // Listed, and filtered.
    let (status, page) = fleet
        .api
        .get(&format!(
            "/api/deployments?project_id={project}&state=succeeded"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["id"], id);
    let (_, page) = fleet.api.get("/api/deployments?state=failed").await;
    assert!(page["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_action_past_its_steps_timeout_fails_and_a_timeout_out_of_range_is_refused() {
    let fleet = Fleet::start(1, 1).await;
    let mut slow = step("Slow", "sleep 20");
    slow["timeout"] = json!("1s");
    let (_, release) = fleet.release("Shop", json!([slow]), json!([])).await;
    let started = std::time::Instant::now();
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let done = fleet
        .wait_state(id, &["succeeded", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(done["state"], "failed", "{done:#}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let cell = &done["grid"][0];
    assert_eq!(cell["state"], "failed", "{done:#}");
    assert!(
        cell["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{cell}"
    );

    let project = fleet.api.project("Blog").await;
    let mut long = step("Long", "true");
    long["timeout"] = json!("2d");
    let (status, body) = fleet.api.save_process(project, 0, json!([long])).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("not between 1s and 24h"),
        "{body}"
    );
}
