//! Failure policies on twenty machines rolled five at a time, one of which fails:
//! `fail` stops the roll, `continue` carries on within its budget (a count, or a share
//! that failures must stay under), `guided` asks an operator to exclude or retry it.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Fleet, cell, states_in, step};

const WITHIN: Duration = Duration::from_secs(120);

/// A script step on every machine, five at a time, that leaves a marker `ran-<name>`
/// and fails (exit 3) on web07 while `fails_if` holds.
fn rolling(fleet: &Fleet, name: &str, fails_if: &str, policy: Value) -> Value {
    let body = format!(
        "touch {dir}/{name}-ran-#{{Capstan.Machine.Name}}\nif [ \"#{{Capstan.Machine.Name}}\" = web07 ] && {fails_if}; then echo web07 fails >&2; exit 3; fi\nsleep 0.3",
        dir = fleet.dir().display(),
    );
    let mut rolled = step(name, &body);
    rolled["window_size"] = json!(5);
    rolled["failure_policy"] = policy;
    rolled
}

/// The most cells of step `step` running at the same moment, by their started and
/// finished times.
fn most_at_once(deployment: &Value, step: u64) -> usize {
    let at = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let mut edges: Vec<(time::OffsetDateTime, i32)> = Vec::new();
    for cell in deployment["grid"].as_array().unwrap() {
        if cell["step"] == step && !cell["started_at"].is_null() {
            edges.push((at(&cell["started_at"]), 1));
            edges.push((at(&cell["finished_at"]), -1));
        }
    }
    // At the same instant, a finish comes before a start.
    edges.sort_unstable();
    let (mut now, mut most) = (0, 0);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

fn after() -> Value {
    step("After", "echo after on #{Capstan.Machine.Name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_policies_fail_continue_and_percentages_on_a_rolling_step() {
    let fleet = Fleet::start(1, 20).await;

    // fail: the roll stops with the batch in flight.
    let (project, release) = fleet
        .release(
            "Stop",
            json!([
                rolling(&fleet, "Stop", "true", json!({ "mode": "fail" })),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "failed", "{done:#}\n{log}");
    assert!(
        done["error"].as_str().unwrap_or_default().contains("web07"),
        "{done:#}"
    );
    let ran = fleet.marked("Stop-ran-");
    assert!(ran.len() < 20, "{ran:?}");
    assert!(ran.contains(&"web07".to_owned()), "{ran:?}");
    assert!(!ran.contains(&"web20".to_owned()), "{ran:?}");
    let cells = states_in(&done, 0);
    assert_eq!(cells["web07"], ["failed"], "{done:#}");
    for i in 1..=20 {
        let name = format!("web{i:02}");
        if !ran.contains(&name) {
            assert_eq!(
                cell(&done, 0, &name, 0)["state"],
                "skipped",
                "{name} never ran: {done:#}"
            );
        }
    }
    assert!(
        states_in(&done, 1)
            .values()
            .all(|s| s.iter().all(|s| s == "skipped")),
        "{done:#}"
    );

    // continue within one failure: the other nineteen go on, web07 is left out after.
    let (project, release) = fleet
        .release(
            "Carry",
            json!([
                rolling(
                    &fleet,
                    "Carry",
                    "true",
                    json!({ "mode": "continue", "max_failed_targets": 1 })
                ),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(fleet.marked("Carry-ran-").len(), 20);
    let first = states_in(&done, 0);
    assert_eq!(first["web07"], ["failed"]);
    assert_eq!(
        first.values().filter(|s| *s == &["succeeded"]).count(),
        19,
        "{first:?}"
    );
    let most = most_at_once(&done, 0);
    assert!((2..=5).contains(&most), "{most} at once: {done:#}");
    let second = states_in(&done, 1);
    assert_eq!(second["web07"], ["excluded"], "{done:#}");
    assert_eq!(
        second.values().filter(|s| *s == &["succeeded"]).count(),
        19,
        "{second:?}"
    );
    assert!(
        log.contains("web07: `script 1` in step `Carry` failed"),
        "{log}"
    );
    assert!(!log.contains("after on web07"), "{log}");

    // continue under 5%: one failure in twenty is not under it.
    let (project, release) = fleet
        .release(
            "Share",
            json!([
                rolling(
                    &fleet,
                    "Share",
                    "true",
                    json!({ "mode": "continue", "max_failed_targets": "5%" })
                ),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "failed", "{done:#}\n{log}");
    assert_eq!(states_in(&done, 0)["web07"], ["failed"]);
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.contains("5%") && error.contains("web07"), "{error}");

    // continue under 10%: one failure in twenty is.
    let (project, release) = fleet
        .release(
            "Tenth",
            json!([
                rolling(
                    &fleet,
                    "Tenth",
                    "true",
                    json!({ "mode": "continue", "max_failed_targets": "10%" })
                ),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(states_in(&done, 1)["web07"], ["excluded"], "{done:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guided_failure_asks_once_and_takes_exclude_or_retry() {
    let fleet = Fleet::start(1, 20).await;
    let guided = json!({ "mode": "guided" });

    // exclude: carries on without web07.
    let (project, release) = fleet
        .release(
            "Excluding",
            json!([
                rolling(&fleet, "Excluding", "true", guided.clone()),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let (asking, question) = fleet.wait_question(id, WITHIN).await;
    assert_eq!(question["kind"], "guided_failure", "{asking:#}");
    assert_eq!(question["target"], "web07", "{asking:#}");
    assert_eq!(question["step"], 0);
    let answers: Vec<&str> = question["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        answers.contains(&"exclude") && answers.contains(&"retry"),
        "{answers:?}"
    );
    let (status, body) = fleet.answer(id, &question, "proceed").await;
    assert_eq!(status / 100, 4, "a manual answer to a failure: {body}");
    assert_ne!(status, 500);
    let (status, body) = fleet.answer(id, &question, "exclude").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = fleet.answer(id, &question, "retry").await;
    assert_eq!(status, 409, "{body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(states_in(&done, 1)["web07"], ["excluded"], "{done:#}");
    let answered = &done["interventions"][0]["answer"];
    assert_eq!(answered["answer"], "exclude", "{done:#}");
    assert_eq!(answered["by"]["who"], "admin key");
    assert_eq!(answered["note"], "from the test");

    // retry: the flag is gone, so web07 succeeds the second time and only it re-runs.
    let flag = fleet.dir().join("flag");
    std::fs::write(&flag, "").unwrap();
    let (project, release) = fleet
        .release(
            "Retrying",
            json!([rolling(
                &fleet,
                "Retrying",
                &format!("[ -f {} ]", flag.display()),
                guided.clone()
            )]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let (asking, question) = fleet.wait_question(id, WITHIN).await;
    assert_eq!(question["target"], "web07", "{asking:#}");
    let before = fleet.commands(&asking).await;
    let of_web07 = |commands: &[Value]| {
        commands
            .iter()
            .filter(|c| c["agent_name"] == "web07")
            .count()
    };
    assert_eq!(of_web07(&before), 1, "{before:#?}");
    std::fs::remove_file(&flag).unwrap();
    let (status, body) = fleet.answer(id, &question, "retry").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    let rerun = fleet.commands(&done).await;
    assert_eq!(of_web07(&rerun), 2, "{rerun:#?}");
    assert_eq!(rerun.len(), 21, "only web07 ran twice: {rerun:#?}");
    assert_eq!(states_in(&done, 0)["web07"], ["succeeded"], "{done:#}");

    // `guided_failure` asks whatever the step's policy; ignore counts web07 as done.
    let (ignoring, ignored) = fleet
        .release(
            "Ignoring",
            json!([
                rolling(&fleet, "Ignoring", "true", json!({ "mode": "fail" })),
                after()
            ]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(json!({
            "release_id": ignored,
            "environment": "Production",
            "project_id": ignoring,
            "guided_failure": true,
        }))
        .await;
    let (asking, question) = fleet.wait_question(id, WITHIN).await;
    assert_eq!(question["target"], "web07", "{asking:#}");
    let (status, body) = fleet.answer(id, &question, "ignore").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    let log = fleet.log(&done).await;
    assert_eq!(done["state"], "succeeded", "{done:#}\n{log}");
    assert_eq!(states_in(&done, 1)["web07"], ["succeeded"], "{done:#}");
    assert!(log.contains("after on web07"), "{log}");

    // An answer once the deployment has ended is refused.
    std::fs::write(&flag, "").unwrap();
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let (_, first) = fleet.wait_question(id, WITHIN).await;
    // A retry that fails again asks again.
    let (status, body) = fleet.answer(id, &first, "retry").await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (asking, question) = fleet.wait_question(id, WITHIN).await;
    assert_ne!(question["id"], first["id"], "{asking:#}");
    assert_eq!(question["target"], "web07", "{asking:#}");
    let (status, body) = fleet
        .api
        .post(&format!("/api/deployments/{id}/cancel"), json!({}))
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let ended = fleet.wait_state(id, &["cancelled", "failed"], WITHIN).await;
    assert_eq!(ended["state"], "cancelled", "{ended:#}");
    let (status, body) = fleet.answer(id, &question, "retry").await;
    assert_eq!(status, 409, "{body}");
    assert!(!crate::projects::detail(&body).is_empty(), "{body}");
}
