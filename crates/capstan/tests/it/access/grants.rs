use std::time::Duration;

use capstan_testkit::{ADMIN_KEY, TestCluster, eventually};
use serde_json::json;

use super::{call, create_role, create_user, detail, grant, ids, member, role_id};

async fn project(node: &str, name: &str) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_grant_given_or_taken_on_one_node_applies_on_every_node_at_once() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    let shop = project(&a, "Shop").await;
    let (_, key, team) = member(&a, "viewer").await;
    let path = format!("/api/projects/{shop}");
    // Node b caches that the user has no grant.
    let (status, body) = call(&b, &key, "GET", &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(detail(&body), format!("there is no project {shop}"));

    let viewer = role_id(&a, "project viewer").await;
    let given = grant(&a, team, viewer, Some(&[shop]), None).await;
    eventually(
        Duration::from_secs(2),
        "node b to apply the grant",
        || async { (call(&b, &key, "GET", &path, None).await.0 == 200).then_some(()) },
    )
    .await;

    let (status, _) = call(
        &a,
        ADMIN_KEY,
        "DELETE",
        &format!("/api/teams/{team}/grants/{given}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    eventually(
        Duration::from_secs(2),
        "node b to drop the grant",
        || async { (call(&b, &key, "GET", &path, None).await.0 == 404).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn deleting_a_granted_project_narrows_the_grant_and_never_widens_it() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let shop = project(&node, "Shop").await;
    let blog = project(&node, "Blog").await;
    let (_, key, team) = member(&node, "viewer").await;
    let viewer = role_id(&node, "project viewer").await;
    let given = grant(&node, team, viewer, Some(&[shop]), None).await;
    assert_eq!(
        ids(&call(&node, &key, "GET", "/api/projects", None).await.1),
        [shop]
    );

    let (status, _) = call(
        &node,
        ADMIN_KEY,
        "DELETE",
        &format!("/api/projects/{shop}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, grants) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/teams/{team}/grants"),
        None,
    )
    .await;
    assert_eq!(grants["items"][0]["id"], given, "{grants}");
    assert_eq!(grants["items"][0]["project_ids"], json!([]), "{grants}");
    let (_, projects) = call(&node, &key, "GET", "/api/projects", None).await;
    assert!(ids(&projects).is_empty(), "{projects}");
    let (status, _) = call(&node, &key, "GET", &format!("/api/projects/{blog}"), None).await;
    assert_eq!(status, 404);

    // An empty list is refused when granting: it would allow nothing.
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "POST",
        &format!("/api/teams/{team}/grants"),
        Some(json!({ "role_id": viewer, "project_ids": [] })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "project_ids", "{body}");
}

#[tokio::test]
async fn built_in_roles_are_fixed_and_a_role_in_use_cannot_be_deleted() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let (status, roles) = call(&node, ADMIN_KEY, "GET", "/api/roles", None).await;
    assert_eq!(status, 200);
    let names: Vec<_> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "project viewer",
            "project contributor",
            "project lead",
            "deployer",
            "environment manager",
            "system administrator"
        ]
    );
    let deployer = role_id(&node, "deployer").await;
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "PATCH",
        &format!("/api/roles/{deployer}"),
        Some(json!({ "permissions": ["view"] })),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("built-in"), "{body}");

    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "POST",
        "/api/roles",
        Some(json!({ "name": "releaser", "permissions": ["view", "deploy_all"] })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "permissions[1]", "{body}");

    let releaser = create_role(&node, "releaser", &["view", "create_release"]).await;
    let (_, _, team) = member(&node, "ci").await;
    grant(&node, team, releaser, None, None).await;
    let path = format!("/api/roles/{releaser}");
    let (status, body) = call(&node, ADMIN_KEY, "DELETE", &path, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("granted"), "{body}");
}

#[tokio::test]
async fn a_user_sees_itself_and_keeps_its_own_keys_but_no_one_else() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let (me, key, _) = member(&node, "someone").await;
    let other = create_user(&node, "someone-else", "person").await;
    let (status, body) = call(&node, &key, "GET", &format!("/api/users/{me}"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &node,
        &key,
        "POST",
        &format!("/api/users/{me}/api-keys"),
        Some(json!({ "purpose": "laptop" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&node, &key, "GET", &format!("/api/users/{other}"), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["missing_permission"], "manage_users", "{body}");
    let (status, body) = call(&node, &key, "GET", "/api/users", None).await;
    assert_eq!(status, 403, "{body}");
}
