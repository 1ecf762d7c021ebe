//! Each change through the API appends exactly one row naming its actor.

use std::collections::BTreeSet;

use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::{Value, json};

use super::{Trail, call};

/// Sends a change as `key` and asserts its status: its answer.
async fn change(node: &str, key: &str, method: &str, path: &str, body: Value, want: u16) -> Value {
    let body = (!body.is_null()).then_some(body);
    let (status, answer) = call(node, key, method, path, body).await;
    assert_eq!(status, want, "{method} {path}: {answer}");
    answer
}

async fn upload(url: &str, key: &str, bytes: &'static [u8]) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn assert_admin(row: &Value) {
    assert_eq!(row["actor"]["kind"], "admin_key", "{row:#}");
    assert_eq!(row["actor"]["method"], "admin_key", "{row:#}");
    assert_eq!(row["actor"]["name"], "admin key", "{row:#}");
    assert_eq!(row["actor"]["address"], "127.0.0.1", "{row:#}");
}

#[tokio::test]
async fn every_change_appends_exactly_one_row_with_its_actor_before_and_after() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let n = node.as_str();
    let mut trail = Trail::new(n);
    let admin = ADMIN_KEY;

    // Environments.
    let env = change(
        n,
        admin,
        "POST",
        "/api/environments",
        json!({"name": "Production"}),
        201,
    )
    .await;
    let env_id = env["id"].as_i64().unwrap();
    let row = trail.one("environment.create").await;
    assert_admin(&row);
    assert_eq!(row["object"]["kind"], "environment");
    assert_eq!(row["object"]["id"], env_id.to_string());
    assert_eq!(row["environment_id"], env_id);
    assert_eq!(row["before"], Value::Null, "a create has no before");
    assert_eq!(row["after"]["name"], "Production");
    let path = format!("/api/environments/{env_id}");
    change(
        n,
        admin,
        "PUT",
        &path,
        json!({"name": "Production", "description": "live"}),
        200,
    )
    .await;
    let row = trail.one("environment.update").await;
    assert_eq!(row["before"]["description"], "");
    assert_eq!(row["after"]["description"], "live");
    let other = change(
        n,
        admin,
        "POST",
        "/api/environments",
        json!({"name": "Old"}),
        201,
    )
    .await;
    trail.one("environment.create").await;
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/environments/{}", other["id"]),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("environment.delete").await;
    assert_eq!(
        row["before"]["name"], "Old",
        "a delete keeps what was deleted"
    );
    assert_eq!(row["after"], Value::Null);

    // Users and keys; the service account then acts in its own name.
    let user = change(
        n,
        admin,
        "POST",
        "/api/users",
        json!({"name": "ci-bot", "kind": "service"}),
        201,
    )
    .await;
    let user_id = user["id"].as_i64().unwrap();
    trail.one("user.create").await;
    let created = change(
        n,
        admin,
        "POST",
        &format!("/api/users/{user_id}/api-keys"),
        json!({"purpose": "CI"}),
        201,
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let row = trail.one("api_key.create").await;
    assert_eq!(row["object"]["id"], key_id.as_str());
    assert!(
        !row.to_string().contains(&key),
        "the key's text is never recorded"
    );
    assert!(
        !row.to_string().contains(key.rsplit('_').next().unwrap()),
        "nor its secret part"
    );
    change(
        n,
        admin,
        "PATCH",
        &format!("/api/users/{user_id}"),
        json!({"display_name": "CI"}),
        200,
    )
    .await;
    let row = trail.one("user.update").await;
    assert_eq!(row["before"]["display_name"], "");
    assert_eq!(row["after"]["display_name"], "CI");
    // Allowed everything through a team; those changes have a test of their own.
    crate::access::make_administrator(n, "ci-bot").await;
    trail.take_all().await;

    // Projects, as the service account.
    let project = change(
        n,
        &key,
        "POST",
        "/api/projects",
        json!({"name": "Shop"}),
        201,
    )
    .await;
    let project_id = project["id"].as_i64().unwrap();
    let row = trail.one("project.create").await;
    assert_eq!(row["actor"]["kind"], "service", "{row:#}");
    assert_eq!(row["actor"]["id"], user_id);
    assert_eq!(row["actor"]["name"], "ci-bot");
    assert_eq!(row["actor"]["method"], "api_key");
    assert_eq!(row["actor"]["credential"], key_id.as_str());
    assert_eq!(row["project_id"], project_id);
    change(
        n,
        &key,
        "PATCH",
        &format!("/api/projects/{project_id}"),
        json!({"description": "web shop"}),
        200,
    )
    .await;
    let row = trail.one("project.update").await;
    assert_eq!(row["before"]["description"], "");
    assert_eq!(row["after"]["description"], "web shop");
    let steps = json!([crate::projects::script_step("Deploy", "web", "echo hi")]);
    change(
        n,
        admin,
        "PUT",
        &format!("/api/projects/{project_id}/process"),
        json!({"version": 0, "steps": steps}),
        200,
    )
    .await;
    let row = trail.one("process.update").await;
    assert_eq!(row["before"]["version"], 0);
    assert_eq!(row["after"]["version"], 1);
    assert_eq!(row["after"]["steps"][0]["name"], "Deploy");
    change(
        n,
        admin,
        "PUT",
        &format!("/api/projects/{project_id}/variables"),
        json!({"version": 0, "variables": [{"name": "Greeting", "value": "hello"}]}),
        200,
    )
    .await;
    let row = trail.one("variables.update").await;
    assert_eq!(row["after"]["variables"][0]["value"], "hello");
    // A preview changes nothing.
    change(
        n,
        admin,
        "POST",
        &format!("/api/projects/{project_id}/variables/preview"),
        json!({"template": "#{Greeting}"}),
        200,
    )
    .await;
    trail.none("a preview").await;

    // Releases.
    let release = change(
        n,
        admin,
        "POST",
        "/api/releases",
        json!({"project_id": project_id, "version": "1.0.0"}),
        201,
    )
    .await;
    let row = trail.one("release.create").await;
    assert_eq!(row["project_id"], project_id);
    assert_eq!(row["object"]["name"], "1.0.0");
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/releases/{}", release["id"]),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("release.delete").await;
    assert_eq!(row["before"]["version"], "1.0.0");

    // Registration tokens and agents: the agent registers itself.
    let token = change(
        n,
        admin,
        "POST",
        "/api/agents/registration-tokens",
        json!({"uses": 2}),
        201,
    )
    .await;
    let secret = token["token"].as_str().unwrap().to_owned();
    let row = trail.one("registration_token.create").await;
    assert!(
        !row.to_string().contains(&secret),
        "the token is never recorded"
    );
    let token_id = token["id"].as_i64().unwrap();
    let registered = change(
        n,
        &secret,
        "POST",
        "/api/agents/register",
        json!({"name": "web01", "environment": "Production", "tags": ["web"], "version": "1"}),
        201,
    )
    .await;
    let agent_id = registered["agent"]["id"].as_i64().unwrap();
    let credential = registered["credential"].as_str().unwrap().to_owned();
    let row = trail.one("agent.register").await;
    assert_eq!(row["actor"]["kind"], "agent", "{row:#}");
    assert_eq!(row["actor"]["id"], agent_id);
    assert_eq!(row["actor"]["name"], "web01");
    assert_eq!(row["actor"]["method"], "registration_token");
    assert_eq!(row["actor"]["credential"], token_id.to_string());
    assert_eq!(row["actor"]["address"], "127.0.0.1");
    assert!(!row.to_string().contains(&credential));
    change(
        n,
        admin,
        "PATCH",
        &format!("/api/agents/{agent_id}"),
        json!({"tags": ["web", "eu"]}),
        200,
    )
    .await;
    let row = trail.one("agent.update").await;
    assert_eq!(row["before"]["tags"], json!(["web"]));
    assert_eq!(row["after"]["tags"], json!(["eu", "web"]));
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/agents/{agent_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("agent.delete").await;
    assert_eq!(row["before"]["name"], "web01");
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/agents/registration-tokens/{token_id}"),
        Value::Null,
        204,
    )
    .await;
    trail.one("registration_token.delete").await;

    // Tasks.
    let task = change(
        n,
        admin,
        "POST",
        "/api/tasks",
        json!({"kind": "sleep", "args": {"ms": 60000}}),
        201,
    )
    .await;
    let task_id = task["id"].as_i64().unwrap();
    let row = trail.one("task.create").await;
    assert_eq!(row["object"]["id"], task_id.to_string());
    assert_eq!(row["after"]["kind"], "sleep");
    change(
        n,
        admin,
        "POST",
        "/api/tasks/batch",
        json!({"tasks": [
            {"kind": "sleep", "args": {"ms": 0}},
            {"kind": "sleep", "args": {"ms": 0}},
        ]}),
        201,
    )
    .await;
    let row = trail.one("task.batch").await;
    assert_eq!(row["after"]["count"], 2);
    let status = call(
        n,
        admin,
        "POST",
        &format!("/api/tasks/{task_id}/cancel"),
        None,
    )
    .await
    .0;
    assert!(status == 200 || status == 202, "{status}");
    let row = trail.one("task.cancel").await;
    assert_eq!(row["before"]["cancel_requested"], false);

    // Packages and artifacts.
    let status = upload(
        &format!("{n}/api/packages/raw?id=web&version=1.0.0"),
        admin,
        b"zip",
    )
    .await;
    assert_eq!(status, 201);
    let row = trail.one("package.upload").await;
    assert_eq!(row["object"]["id"], "web/1.0.0");
    assert_eq!(row["before"], Value::Null);
    let status = upload(
        &format!("{n}/api/packages/raw?id=web&version=1.0.0&replace=true"),
        admin,
        b"zip2",
    )
    .await;
    assert_eq!(status, 201);
    let row = trail.one("package.upload").await;
    assert_eq!(
        row["before"]["size"], 3,
        "a replaced package keeps what it replaced"
    );
    assert_eq!(row["after"]["size"], 4);
    change(
        n,
        admin,
        "DELETE",
        "/api/packages/web/1.0.0",
        Value::Null,
        204,
    )
    .await;
    trail.one("package.delete").await;
    let status = upload(
        &format!("{n}/api/tasks/{task_id}/artifacts/report.txt"),
        admin,
        b"done",
    )
    .await;
    assert_eq!(status, 201);
    let row = trail.one("artifact.upload").await;
    assert_eq!(row["object"]["id"], format!("{task_id}/report.txt"));

    // Users and keys go last: revoking the key, deleting the user.
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/users/{user_id}/api-keys/{key_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("api_key.revoke").await;
    assert_eq!(row["before"]["revoked_at"], Value::Null);
    assert_ne!(row["after"]["revoked_at"], Value::Null);
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/projects/{project_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("project.delete").await;
    assert_eq!(row["before"]["name"], "Shop");
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/users/{user_id}"),
        Value::Null,
        204,
    )
    .await;
    trail.one("user.delete").await;

    // Nodes: a change of cap, then draining, then forgetting it.
    let node_id = cluster.node(0).state.id;
    change(
        n,
        admin,
        "PATCH",
        &format!("/api/nodes/{node_id}"),
        json!({"task_cap": 3}),
        200,
    )
    .await;
    let row = trail.one("node.update").await;
    assert_eq!(row["after"]["task_cap"], 3);
    change(
        n,
        admin,
        "PATCH",
        &format!("/api/nodes/{node_id}"),
        json!({"draining": true}),
        200,
    )
    .await;
    let row = trail.one("node.drain").await;
    assert_eq!(row["before"]["draining"], false);
    assert_eq!(row["after"]["draining"], true);
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/nodes/{node_id}"),
        Value::Null,
        204,
    )
    .await;
    trail.one("node.delete").await;
}

#[tokio::test]
async fn a_refused_change_leaves_no_row() {
    let cluster = TestCluster::start(1).await;
    let n = cluster.node(0).url();
    let mut trail = Trail::new(&n);
    let project = change(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        json!({"name": "Shop"}),
        201,
    )
    .await;
    trail.one("project.create").await;
    // Invalid (422), taken (409), missing (404), outdated (409).
    change(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        json!({"name": " "}),
        422,
    )
    .await;
    change(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        json!({"name": "Shop"}),
        409,
    )
    .await;
    change(
        &n,
        ADMIN_KEY,
        "DELETE",
        "/api/projects/424242",
        Value::Null,
        404,
    )
    .await;
    let path = format!("/api/projects/{}/variables", project["id"]);
    change(
        &n,
        ADMIN_KEY,
        "PUT",
        &path,
        json!({"version": 7, "variables": []}),
        409,
    )
    .await;
    // Nothing to rotate: every value is under the active key.
    change(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/master-key/rotate",
        Value::Null,
        409,
    )
    .await;
    trail.none("refused changes").await;
}

#[tokio::test]
async fn every_mutating_route_of_the_openapi_document_records_an_action() {
    let cluster = TestCluster::start(1).await;
    let (status, doc) = call(
        &cluster.node(0).url(),
        ADMIN_KEY,
        "GET",
        "/api/openapi.json",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let mut mutating = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                mutating.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let decided: BTreeSet<(String, String)> = capstan_server::audit::AUDITED_ROUTES
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .chain(
            capstan_server::audit::UNAUDITED_ROUTES
                .iter()
                .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned())),
        )
        .collect();
    let undecided: Vec<_> = mutating.difference(&decided).collect();
    assert!(
        undecided.is_empty(),
        "mutating routes with no audit action (add them to AUDITED_ROUTES with the row they write, or to UNAUDITED_ROUTES with why): {undecided:?}"
    );
    let stale: Vec<_> = decided.difference(&mutating).collect();
    assert!(
        stale.is_empty(),
        "listed routes that do not exist: {stale:?}"
    );
    // And no route changes or deletes a row.
    for method in ["put", "patch", "delete", "post"] {
        assert!(
            doc["paths"]["/api/audit"].get(method).is_none(),
            "{method} /api/audit"
        );
    }
}

#[tokio::test]
async fn a_master_key_rotation_is_recorded_with_the_version_it_rotates_to() {
    use crate::secrets::{KEY_1, KEY_2, start_with_keys};
    let mut cluster = TestCluster::start(1).await;
    let (db_url, blob_dir) = (cluster.db.url.clone(), cluster.blob_dir.0.clone());
    // The node rolls onto a new key, keeping the old one to read with.
    cluster.nodes[0].stop().await.unwrap();
    cluster.nodes[0] = start_with_keys(&db_url, &blob_dir, "node-1", Some(KEY_2), &[KEY_1]).await;
    let n = cluster.node(0).url();
    let mut trail = Trail::new(&n);
    let rotated = change(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/master-key/rotate",
        Value::Null,
        202,
    )
    .await;
    let row = trail.one("master_key.rotate").await;
    assert_admin(&row);
    assert_eq!(row["object"]["id"], "2", "{row:#} {rotated}");
    assert_eq!(row["after"]["version"], 2);
    assert!(!row.to_string().contains(KEY_2) && !row.to_string().contains(KEY_1));
}
