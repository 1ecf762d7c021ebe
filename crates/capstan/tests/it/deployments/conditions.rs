//! Child steps and run conditions after a failure: the failed target's later actions
//! are skipped there only, `always` and `failure` steps run, `success` steps do not.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, states_in, step};

#[tokio::test]
async fn a_child_failure_skips_the_rest_on_its_machine_and_picks_the_conditional_steps() {
    let fleet = Fleet::start(1, 3).await;
    let mut multi = step("Multi", "echo one on #{Capstan.Machine.Name}");
    multi["actions"].as_array_mut().unwrap().extend([
        json!({
            "kind": "script",
            "name": "two",
            "body": "[ \"#{Capstan.Machine.Name}\" = web02 ] && exit 4; sleep 0.5",
        }),
        json!({ "kind": "script", "name": "three", "body": "echo three on #{Capstan.Machine.Name}" }),
    ]);
    let mut cleanup = step("Cleanup", "echo cleanup on #{Capstan.Machine.Name}");
    cleanup["run_condition"] = json!({ "when": "always" });
    let mut rollback = step("Rollback", "echo rollback on #{Capstan.Machine.Name}");
    rollback["run_condition"] = json!({ "when": "failure" });
    let mut notify = step("Notify", "echo notify on #{Capstan.Machine.Name}");
    notify["run_condition"] = json!({ "when": "success" });
    let (project, release) = fleet
        .release(
            "Children",
            json!([multi, cleanup, rollback, notify]),
            json!([]),
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
    assert_eq!(done["state"], "failed", "{done:#}\n{log}");
    let multi = states_in(&done, 0);
    assert_eq!(
        multi["web02"],
        ["succeeded", "failed", "skipped"],
        "{done:#}"
    );
    assert_eq!(
        multi["web01"],
        ["succeeded", "succeeded", "succeeded"],
        "{done:#}\n{log}"
    );
    assert_eq!(
        multi["web03"],
        ["succeeded", "succeeded", "succeeded"],
        "{done:#}\n{log}"
    );
    assert!(log.contains("web01: three on web01"), "{log}");
    assert!(!log.contains("three on web02"), "{log}");
    for (index, expected) in [(1, "succeeded"), (2, "succeeded"), (3, "skipped")] {
        let cells = states_in(&done, index);
        assert!(
            !cells.is_empty() && cells.values().all(|s| s == &[expected]),
            "step {index}: {cells:?}\n{done:#}"
        );
    }
    assert!(log.contains("cleanup on web02"), "{log}");
    assert!(log.contains("rollback on web01"), "{log}");
    assert!(!log.contains("notify on"), "{log}");
}
