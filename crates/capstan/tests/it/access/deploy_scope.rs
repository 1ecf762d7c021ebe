use capstan_testkit::ADMIN_KEY;
use serde_json::json;

use super::{call, create_environment, detail, environment_id, grant, ids, member, role_id};
use crate::deployments::{Fleet, step};

#[tokio::test]
async fn a_deployer_on_test_only_is_refused_production_before_anything_is_queued() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (shop, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let test = create_environment(&node, "Test").await;
    let production = environment_id(&node, "Production").await;
    let (_, key, team) = member(&node, "shop-deployer").await;
    let deployer = role_id(&node, "deployer").await;
    grant(&node, team, deployer, Some(&[shop]), Some(&[test])).await;

    let tasks_before = ids(&call(&node, ADMIN_KEY, "GET", "/api/tasks", None).await.1);
    let (status, body) = call(
        &node,
        &key,
        "POST",
        "/api/deployments",
        Some(json!({ "release_id": release, "environment": "Production" })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        detail(&body),
        "you may not `deploy` to environment Production (project Shop): no grant of yours allows it"
    );
    assert_eq!(body["missing_permission"], "deploy");
    let (_, deployments) = call(&node, ADMIN_KEY, "GET", "/api/deployments", None).await;
    assert!(ids(&deployments).is_empty(), "{deployments}");
    let tasks_after = ids(&call(&node, ADMIN_KEY, "GET", "/api/tasks", None).await.1);
    let new_tasks: Vec<_> = tasks_after
        .iter()
        .filter(|t| !tasks_before.contains(t))
        .collect();
    // Housekeeping may queue its own periodic tasks meanwhile; none is a deployment.
    for task in new_tasks {
        let (_, body) = call(&node, ADMIN_KEY, "GET", &format!("/api/tasks/{task}"), None).await;
        assert_ne!(body["kind"], "deploy", "{body}");
    }

    // The same deployer reaches Test: what stops it there is not its grant.
    let (status, body) = call(
        &node,
        &key,
        "POST",
        "/api/deployments",
        Some(json!({ "release_id": release, "environment": "Test" })),
    )
    .await;
    assert_ne!(status, 403, "{body}");
    assert_ne!(status, 404, "{body}");

    // It sees Shop and Test, and neither Production nor its agent.
    let (_, projects) = call(&node, &key, "GET", "/api/projects", None).await;
    assert_eq!(ids(&projects), [shop]);
    let (_, environments) = call(&node, &key, "GET", "/api/environments", None).await;
    assert_eq!(ids(&environments), [test]);
    let (_, agents) = call(&node, &key, "GET", "/api/agents", None).await;
    assert!(ids(&agents).is_empty(), "{agents}");
    let (hidden, hidden_body) = call(
        &node,
        &key,
        "GET",
        "/api/agents?environment=Production",
        None,
    )
    .await;
    let (missing, missing_body) =
        call(&node, &key, "GET", "/api/agents?environment=Nowhere", None).await;
    assert_eq!(
        (hidden, missing),
        (400, 400),
        "{hidden_body} {missing_body}"
    );
    assert_eq!(
        detail(&hidden_body).replace("Production", "Nowhere"),
        detail(&missing_body)
    );
    let (status, body) = call(
        &node,
        &key,
        "GET",
        &format!("/api/environments/{production}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        detail(&body),
        format!("there is no environment {production}")
    );
}
