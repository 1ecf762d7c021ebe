//! Roles, teams and grants: every endpoint checks its permission against the object's
//! project and environment, lists show only what the caller may view, and a change of
//! grants applies on every node at once.

mod cli;
mod deploy_scope;
mod grants;
mod matrix;

use capstan_testkit::ADMIN_KEY;
use serde_json::{Value, json};

pub(crate) use crate::identity::{call, create_key, create_user, detail};

/// A team as the admin: its id.
pub(crate) async fn create_team(node: &str, name: &str) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        "/api/teams",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// A custom role holding `permissions`, as the admin: its id.
pub(crate) async fn create_role(node: &str, name: &str, permissions: &[&str]) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        "/api/roles",
        Some(json!({ "name": name, "permissions": permissions })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// A built-in role's id by name.
pub(crate) async fn role_id(node: &str, name: &str) -> i64 {
    let (status, body) = call(node, ADMIN_KEY, "GET", "/api/roles", None).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no role {name}: {body}"))["id"]
        .as_i64()
        .unwrap()
}

/// Adds `user` to `team` as the admin.
pub(crate) async fn add_member(node: &str, team: i64, user: i64) {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        &format!("/api/teams/{team}/members"),
        Some(json!({ "user_id": user })),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

/// Grants `role` to `team` in `projects` and `environments` (`None`: all): its id.
pub(crate) async fn grant(
    node: &str,
    team: i64,
    role: i64,
    projects: Option<&[i64]>,
    environments: Option<&[i64]>,
) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        &format!("/api/teams/{team}/grants"),
        Some(json!({
            "role_id": role,
            "project_ids": projects,
            "environment_ids": environments,
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// A user in a new team of its own: (user id, key text, team id).
pub(crate) async fn member(node: &str, name: &str) -> (i64, String, i64) {
    let user = create_user(node, name, "service").await;
    let key = create_key(node, user, json!({ "purpose": "access tests" })).await;
    let team = create_team(node, &format!("{name} team")).await;
    add_member(node, team, user).await;
    (user, key["key"].as_str().unwrap().to_owned(), team)
}

/// An environment as the admin: its id.
pub(crate) async fn create_environment(node: &str, name: &str) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        "/api/environments",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// The id of environment `name`.
pub(crate) async fn environment_id(node: &str, name: &str) -> i64 {
    let (status, body) = call(node, ADMIN_KEY, "GET", "/api/environments", None).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no environment {name}: {body}"))["id"]
        .as_i64()
        .unwrap()
}

/// The ids in a list answer's `items`.
pub(crate) fn ids(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// Makes user `name` a system administrator through a team of its own, as the admin.
pub(crate) async fn make_administrator(node: &str, name: &str) {
    let (status, users) = call(
        node,
        ADMIN_KEY,
        "GET",
        &format!("/api/users?name={name}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{users}");
    let user = users["items"][0]["id"].as_i64().unwrap();
    let team = create_team(node, &format!("{name} administrators")).await;
    add_member(node, team, user).await;
    let administrator = role_id(node, "system administrator").await;
    grant(node, team, administrator, None, None).await;
}
