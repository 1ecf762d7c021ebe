//! The dashboard's `newer_release` under a lifecycle: a newer release waits in a cell
//! only once it may be promoted into that environment.

use capstan_testkit::agents::ensure_environment;
use serde_json::{Value, json};

use super::{deploy_and_finish, move_agent};
use crate::deployments::{Fleet, step};

async fn newer_in(fleet: &Fleet, project: i64, environment: &str) -> Value {
    let (status, page) = fleet
        .api
        .get(&format!("/api/dashboard?project_id={project}"))
        .await;
    assert_eq!(status, 200, "{page}");
    let id = page["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == environment)
        .unwrap()["id"]
        .clone();
    page["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["environment_id"] == id)
        .unwrap_or_else(|| panic!("no cell for {environment}: {page}"))["newer_release"]
        .clone()
}

#[tokio::test]
async fn a_newer_release_waits_only_where_the_lifecycle_lets_it_go_next() {
    let fleet = Fleet::start(1, 2).await;
    let client = fleet.cluster.node(0).client();
    ensure_environment(&client, "Dev").await;
    move_agent(&fleet, "web01", "Dev").await;
    let (project, first) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (status, lifecycle) = fleet
        .api
        .post(
            "/api/lifecycles",
            json!({
                "name": "Two",
                "phases": [
                    { "name": "Dev", "environments": ["Dev"], "rule": "all" },
                    { "name": "Prod", "environments": ["Production"], "rule": "all" },
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{lifecycle}");
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": lifecycle["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    deploy_and_finish(&fleet, first, "Dev").await;
    deploy_and_finish(&fleet, first, "Production").await;
    assert_eq!(newer_in(&fleet, project, "Dev").await, false);

    let (status, second) = fleet
        .api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{second}");
    // The new release may go to Dev, not yet to Production.
    assert_eq!(newer_in(&fleet, project, "Dev").await, true);
    assert_eq!(newer_in(&fleet, project, "Production").await, false);

    deploy_and_finish(&fleet, second["id"].as_i64().unwrap(), "Dev").await;
    assert_eq!(newer_in(&fleet, project, "Dev").await, false);
    assert_eq!(newer_in(&fleet, project, "Production").await, true);

    // Without a lifecycle, any newer release waits everywhere.
    let (status, _) = fleet
        .api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201);
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": null }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(newer_in(&fleet, project, "Dev").await, true);
    assert_eq!(newer_in(&fleet, project, "Production").await, true);
}
