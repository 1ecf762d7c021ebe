//! Release retention per phase: old releases go, never one deployed now or the newest.

use std::time::Duration;

use capstan_testkit::{agents::ensure_environment, tasks::wait_task};
use serde_json::json;

use super::{deploy_and_finish, move_agent};
use crate::deployments::{Fleet, step};

#[tokio::test]
async fn retention_deletes_old_releases_but_never_one_deployed_now() {
    let fleet = Fleet::start(1, 2).await;
    let client = fleet.cluster.node(0).client();
    ensure_environment(&client, "Dev").await;
    move_agent(&fleet, "web01", "Dev").await;
    // web02 stays in Production.
    let (project, r1) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (status, lifecycle) = fleet
        .api
        .post(
            "/api/lifecycles",
            json!({
                "name": "Kept",
                "phases": [
                    { "name": "Dev", "environments": ["Dev"], "rule": "all", "retention": { "keep_releases": 1 } },
                    { "name": "Prod", "environments": ["Production"], "rule": "all", "retention": { "keep_releases": 1 } },
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{lifecycle}");
    assert_eq!(
        lifecycle["phases"][0]["retention"],
        json!({ "keep_releases": 1 })
    );
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": lifecycle["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let release = || async {
        let (status, body) = fleet
            .api
            .post("/api/releases", json!({ "project_id": project }))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    };
    let r2 = release().await;
    let r3 = release().await;
    let r4 = release().await;
    let r5 = release().await;
    // r1 and r2 reach Prod, r2 last; r3 and r4 reach Dev, r4 last; r5 goes nowhere.
    for (release, environments) in [
        (r1, &["Dev", "Production"][..]),
        (r2, &["Dev", "Production"][..]),
        (r3, &["Dev"][..]),
        (r4, &["Dev"][..]),
    ] {
        for environment in environments {
            deploy_and_finish(&fleet, release, environment).await;
        }
    }

    let (status, task) = fleet
        .api
        .post(
            "/api/tasks",
            json!({ "kind": "release-retention", "args": {} }),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let done = wait_task(&client, id, Duration::from_secs(30), "retention", |t| {
        t.state.is_finished()
    })
    .await;
    assert_eq!(done.state.as_str(), "succeeded", "{done:?}");

    // Prod keeps 1: r2, deployed there now; r1 goes. Dev keeps 1 (r5, the newest,
    // which reached no phase and is judged by the first); r4 is beyond it but runs in
    // Dev now; r3 goes.
    for (release, kept) in [(r1, false), (r2, true), (r3, false), (r4, true), (r5, true)] {
        let (status, body) = fleet.api.get(&format!("/api/releases/{release}")).await;
        assert_eq!(status == 200, kept, "release {release}: {status} {body}");
    }
    let (_, audit) = fleet.api.get("/api/audit?action=release.delete").await;
    let rows = audit["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{audit}");
    for row in rows {
        assert_eq!(row["actor"]["kind"], "system", "{row}");
        assert_eq!(row["actor"]["name"], "release-retention", "{row}");
    }
    let log = capstan_testkit::tasks::whole_log(&client, id).await;
    assert!(log.contains("deleted 2 release(s)"), "{log}");

    // The dashboard still shows every environment's deployment.
    let (status, dashboard) = fleet
        .api
        .get(&format!("/api/dashboard?project_id={project}"))
        .await;
    assert_eq!(status, 200, "{dashboard}");
    let cells = dashboard["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{dashboard}");

    // A second run finds nothing more to delete.
    let (_, task) = fleet
        .api
        .post(
            "/api/tasks",
            json!({ "kind": "release-retention", "args": {} }),
        )
        .await;
    let id = task["id"].as_i64().unwrap();
    wait_task(&client, id, Duration::from_secs(30), "retention", |t| {
        t.state.is_finished()
    })
    .await;
    let log = capstan_testkit::tasks::whole_log(&client, id).await;
    assert!(log.contains("deleted 0 release(s)"), "{log}");
}
