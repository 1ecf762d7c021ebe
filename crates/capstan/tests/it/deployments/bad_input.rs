//! Bad input is refused in words before anything is queued; what can only go wrong at
//! run time (an undefined variable, a package gone from the feed) fails the deployment
//! plainly instead of hanging it.

use std::time::Duration;

use capstan_testkit::agents::ensure_environment;
use serde_json::{Value, json};

use super::{Fleet, cell, step};
use crate::projects::{detail, package_step};

async fn deploy_tasks(fleet: &Fleet) -> usize {
    let (status, page) = fleet.api.get("/api/tasks?kind=deploy&limit=500").await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_deployment_requests_are_refused_in_words_and_queue_nothing() {
    let fleet = Fleet::start(1, 2).await;
    let (project, release) = fleet
        .release("Shop", json!([step("Deploy", "echo hi")]), json!([]))
        .await;
    let (other, other_release) = fleet
        .release("Other", json!([step("Deploy", "echo hi")]), json!([]))
        .await;
    ensure_environment(&fleet.cluster.node(0).client(), "Staging").await;
    let good = json!({ "release_id": release, "environment": "Production", "project_id": project });
    let with = |field: &str, value: Value| {
        let mut request = good.clone();
        request[field] = value;
        request
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unknown release",
            with("release_id", json!(999_999)),
            &["999999"],
        ),
        (
            "unknown environment",
            with("environment", json!("Nowhere")),
            &["Nowhere"],
        ),
        (
            "release of another project",
            json!({ "release_id": other_release, "environment": "Production", "project_id": project }),
            &["project"],
        ),
        (
            "no machine",
            with("environment", json!("Staging")),
            &["Staging"],
        ),
        (
            "skip no step",
            with("skip_steps", json!(["Nope"])),
            &["Nope"],
        ),
        (
            "unknown target",
            with("targets", json!(["web99"])),
            &["web99"],
        ),
    ];
    let _ = other;
    let before = deploy_tasks(&fleet).await;
    for (case, request, words) in cases {
        let (status, body) = fleet.api.post("/api/deployments", request).await;
        assert_eq!(status, 422, "{case}: {body}");
        let said = detail(&body);
        for word in words {
            assert!(said.contains(word), "{case}: `{said}` should name {word}");
        }
    }
    assert_eq!(deploy_tasks(&fleet).await, before, "nothing is queued");
    let (_, page) = fleet.api.get("/api/deployments").await;
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
}

#[tokio::test]
async fn an_undefined_variable_fails_the_deployment_plainly() {
    let fleet = Fleet::start(1, 2).await;
    let (project, release) = fleet
        .release(
            "Undefined",
            json!([
                step("Echo", "echo #{Secret} #{Nope}"),
                step("Later", "echo later")
            ]),
            json!([{ "name": "Secret", "value": "hunter2-secret", "sensitive": true }]),
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
    let error = cell(&done, 0, "web01", 0)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cell(&done, 0, "web01", 0)["state"], "failed", "{done:#}");
    assert!(error.contains("Nope"), "{error}");
    assert!(log.contains("Nope"), "{log}");
    assert!(!log.contains("hunter2-secret"), "{log}");
    assert!(!error.contains("hunter2-secret"), "{error}");
    assert!(
        !log.contains("echo later") && !log.contains(": later"),
        "{log}"
    );
}

#[tokio::test]
async fn a_package_deleted_after_the_release_fails_its_cells_by_name() {
    let fleet = Fleet::start(1, 2).await;
    let client = fleet.cluster.node(0).client();
    let bytes = b"Web 1.0.0".to_vec();
    client
        .push_package(
            "Web",
            "1.0.0",
            "zip",
            false,
            bytes.len() as u64,
            bytes.into(),
        )
        .await
        .unwrap();
    let (project, release) = fleet
        .release(
            "Packaged",
            json!([package_step("Web", "Web", Some("1.0.0"))]),
            json!([]),
        )
        .await;
    let (status, body) = fleet
        .api
        .call("DELETE", "/api/packages/Web/1.0.0", None)
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
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
    for target in ["web01", "web02"] {
        let failed = cell(&done, 0, target, 0);
        assert_eq!(failed["state"], "failed", "{done:#}");
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(error.contains("Web") && error.contains("1.0.0"), "{error}");
    }
}
