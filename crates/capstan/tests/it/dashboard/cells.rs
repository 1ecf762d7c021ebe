use std::time::Duration;

use capstan_testkit::ADMIN_KEY;
use serde_json::{Value, json};

use crate::access::{call, grant, ids, member, role_id};
use crate::deployments::{Fleet, step};

const WITHIN: Duration = Duration::from_secs(60);

/// The cell of `project` × `environment` in a dashboard answer.
fn cell(dashboard: &Value, project: i64, environment: i64) -> Option<&Value> {
    dashboard["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["project_id"] == project && c["environment_id"] == environment)
}

fn project_ids(dashboard: &Value) -> Vec<i64> {
    dashboard["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn cells_show_the_newest_deployment_who_queued_it_and_whether_a_newer_release_waits() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (shop, first) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (blog, blog_release) = fleet
        .release("Blog", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let production = crate::access::environment_id(&node, "Production").await;
    let (_, key, team) = member(&node, "shop-deployer").await;
    let deployer = role_id(&node, "deployer").await;
    grant(&node, team, deployer, Some(&[shop]), None).await;

    let blog_deployment = fleet
        .deploy(json!({ "release_id": blog_release, "environment": "Production" }))
        .await;
    fleet
        .wait_state(blog_deployment, &["succeeded"], WITHIN)
        .await;
    let first_deployment = fleet
        .deploy(json!({ "release_id": first, "environment": "Production" }))
        .await;
    fleet
        .wait_state(first_deployment, &["succeeded"], WITHIN)
        .await;
    let (status, body) = fleet
        .api
        .post("/api/releases", json!({ "project_id": shop }))
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_i64().unwrap();

    let (status, dashboard) = call(&node, ADMIN_KEY, "GET", "/api/dashboard", None).await;
    assert_eq!(status, 200, "{dashboard}");
    // Projects come by name.
    assert_eq!(project_ids(&dashboard), vec![blog, shop], "{dashboard}");
    let shop_cell = cell(&dashboard, shop, production).expect("a Shop cell");
    assert_eq!(shop_cell["deployment_id"], first_deployment, "{dashboard}");
    assert_eq!(shop_cell["release_id"], first);
    assert_eq!(shop_cell["state"], "succeeded");
    assert_eq!(shop_cell["queued_by"], "admin key");
    assert!(shop_cell["finished_at"].is_string(), "{shop_cell}");
    assert_eq!(shop_cell["newer_release"], true, "{shop_cell}");
    assert_eq!(
        cell(&dashboard, blog, production).unwrap()["newer_release"],
        false
    );

    // The deployer promotes the newer release: the cell names it and who queued it.
    let (status, body) = call(
        &node,
        &key,
        "POST",
        "/api/deployments",
        Some(json!({ "release_id": second, "environment": "Production" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let second_deployment = body["id"].as_i64().unwrap();
    fleet
        .wait_state(second_deployment, &["succeeded"], WITHIN)
        .await;

    // The deployer may view Shop only: Blog is neither a row nor a cell.
    let (status, mine) = call(&node, &key, "GET", "/api/dashboard", None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(project_ids(&mine), vec![shop], "{mine}");
    assert_eq!(mine["cells"].as_array().unwrap().len(), 1, "{mine}");
    let shop_cell = cell(&mine, shop, production).unwrap();
    assert_eq!(shop_cell["deployment_id"], second_deployment);
    assert_eq!(shop_cell["queued_by"], "shop-deployer");
    assert_eq!(shop_cell["newer_release"], false);

    // Filters and pages.
    let (_, filtered) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/dashboard?project_id={blog}&environment_id={production}"),
        None,
    )
    .await;
    assert_eq!(project_ids(&filtered), vec![blog], "{filtered}");
    let (_, page) = call(&node, ADMIN_KEY, "GET", "/api/dashboard?limit=1", None).await;
    assert_eq!(project_ids(&page), vec![blog], "{page}");
    let cursor = page["next"].as_str().expect("a next page").to_owned();
    let (_, page) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/dashboard?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(project_ids(&page), vec![shop], "{page}");
    assert!(page["next"].is_null(), "{page}");

    // What the machine runs: the last release that succeeded there, per pair.
    let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
    let agent = ids(&agents)[0];
    let (status, machine) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/dashboard?machine={agent}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{machine}");
    assert_eq!(machine["cells"].as_array().unwrap().len(), 2, "{machine}");
    assert_eq!(
        cell(&machine, shop, production).unwrap()["release_id"],
        second
    );
    assert_eq!(
        cell(&machine, blog, production).unwrap()["release_id"],
        blog_release
    );

    // The CLI: a row per project, the release and state under each environment.
    let (ok, out) = crate::secrets::capstan(&node, &["dashboard"]).await;
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("PROJECT") && lines[0].contains("Production"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("Blog") && lines[1].contains("succeeded"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("Shop") && lines[2].contains("succeeded"),
        "{out}"
    );
    let (ok, out) = crate::secrets::capstan(&node, &["dashboard", "--json"]).await;
    assert!(ok, "{out}");
    let json: Value = serde_json::from_str(out.trim()).expect("one JSON page");
    assert_eq!(json["cells"].as_array().unwrap().len(), 2, "{out}");

    // Bad input is a 400 naming it.
    let (status, body) = call(&node, ADMIN_KEY, "GET", "/api/dashboard?limit=0", None).await;
    assert_eq!(status, 400, "{body}");
}
