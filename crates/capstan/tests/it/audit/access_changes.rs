//! Changes to who may do what (roles, teams, members, grants) each append exactly one
//! row naming the actor, with the object before and after.

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

fn assert_admin(row: &Value) {
    assert_eq!(row["actor"]["kind"], "admin_key", "{row:#}");
    assert_eq!(row["actor"]["name"], "admin key", "{row:#}");
}

#[tokio::test]
async fn every_change_of_roles_teams_members_and_grants_appends_one_row() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let n = node.as_str();
    let admin = ADMIN_KEY;
    let shop = change(
        n,
        admin,
        "POST",
        "/api/projects",
        json!({"name": "Shop"}),
        201,
    )
    .await;
    let shop_id = shop["id"].as_i64().unwrap();
    let prod = change(
        n,
        admin,
        "POST",
        "/api/environments",
        json!({"name": "Production"}),
        201,
    )
    .await;
    let prod_id = prod["id"].as_i64().unwrap();
    let alice = change(
        n,
        admin,
        "POST",
        "/api/users",
        json!({"name": "alice", "kind": "person"}),
        201,
    )
    .await;
    let alice_id = alice["id"].as_i64().unwrap();
    let mut trail = Trail::new(n);
    trail.take_all().await;

    // Roles.
    let role = change(
        n,
        admin,
        "POST",
        "/api/roles",
        json!({"name": "releaser", "description": "", "permissions": ["view", "deploy"]}),
        201,
    )
    .await;
    let role_id = role["id"].as_i64().unwrap();
    let row = trail.one("role.create").await;
    assert_admin(&row);
    assert_eq!(row["object"]["kind"], "role");
    assert_eq!(row["object"]["id"], role_id.to_string());
    assert_eq!(row["object"]["name"], "releaser");
    assert_eq!(row["before"], Value::Null, "a create has no before");
    assert_eq!(row["after"], role, "the role as the API shows it");
    let updated = change(
        n,
        admin,
        "PATCH",
        &format!("/api/roles/{role_id}"),
        json!({"permissions": ["view", "deploy", "create_release"]}),
        200,
    )
    .await;
    let row = trail.one("role.update").await;
    assert_admin(&row);
    assert_eq!(row["before"], role);
    assert_eq!(row["after"], updated);
    assert_eq!(
        row["after"]["permissions"],
        json!(["view", "create_release", "deploy"])
    );

    // Teams.
    let team = change(
        n,
        admin,
        "POST",
        "/api/teams",
        json!({"name": "Ops", "description": ""}),
        201,
    )
    .await;
    let team_id = team["id"].as_i64().unwrap();
    let row = trail.one("team.create").await;
    assert_admin(&row);
    assert_eq!(row["object"]["kind"], "team");
    assert_eq!(row["object"]["id"], team_id.to_string());
    assert_eq!(row["after"], team);
    let renamed = change(
        n,
        admin,
        "PATCH",
        &format!("/api/teams/{team_id}"),
        json!({"description": "runs production"}),
        200,
    )
    .await;
    let row = trail.one("team.update").await;
    assert_eq!(row["before"]["description"], "");
    assert_eq!(row["after"], renamed);

    // Members.
    let members = format!("/api/teams/{team_id}/members");
    change(
        n,
        admin,
        "POST",
        &members,
        json!({"user_id": alice_id}),
        204,
    )
    .await;
    let row = trail.one("team.member_add").await;
    assert_admin(&row);
    assert_eq!(row["object"]["kind"], "team");
    assert_eq!(row["object"]["id"], team_id.to_string());
    assert_eq!(row["object"]["name"], "Ops");
    assert_eq!(row["before"], Value::Null);
    assert_eq!(
        row["after"],
        json!({"user_id": alice_id, "name": "alice", "kind": "person"})
    );

    // Grants, named so the row alone says who was given what where.
    let grants = format!("/api/teams/{team_id}/grants");
    let grant = change(
        n,
        admin,
        "POST",
        &grants,
        json!({"role_id": role_id, "project_ids": [shop_id], "environment_ids": [prod_id]}),
        201,
    )
    .await;
    let grant_id = grant["id"].as_i64().unwrap();
    let row = trail.one("grant.create").await;
    assert_admin(&row);
    assert_eq!(row["object"]["kind"], "grant");
    assert_eq!(row["object"]["id"], grant_id.to_string());
    assert_eq!(row["object"]["name"], "releaser for team Ops");
    assert_eq!(row["before"], Value::Null);
    let after = &row["after"];
    assert_eq!(after["team_id"], team_id);
    assert_eq!(after["team_name"], "Ops");
    assert_eq!(after["role_id"], role_id);
    assert_eq!(after["role_name"], "releaser");
    assert_eq!(after["project_ids"], json!([shop_id]));
    assert_eq!(after["project_names"], json!(["Shop"]));
    assert_eq!(after["environment_ids"], json!([prod_id]));
    assert_eq!(after["environment_names"], json!(["Production"]));
    let everywhere = change(n, admin, "POST", &grants, json!({"role_id": role_id}), 201).await;
    let row = trail.one("grant.create").await;
    assert_eq!(row["after"]["project_names"], Value::Null, "every project");
    assert_eq!(row["after"]["environment_names"], Value::Null);

    // Refused changes leave no row.
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/roles/{role_id}"),
        Value::Null,
        409,
    )
    .await;
    let built_in = change(n, admin, "GET", "/api/roles", Value::Null, 200).await["items"][0]["id"]
        .as_i64()
        .unwrap();
    change(
        n,
        admin,
        "PATCH",
        &format!("/api/roles/{built_in}"),
        json!({"description": "mine"}),
        409,
    )
    .await;
    change(n, admin, "POST", &members, json!({"user_id": 999_999}), 422).await;
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/teams/{team_id}/grants/999999"),
        Value::Null,
        404,
    )
    .await;
    trail.none("refused access changes").await;

    change(
        n,
        admin,
        "DELETE",
        &format!("{grants}/{grant_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("grant.delete").await;
    assert_admin(&row);
    assert_eq!(row["object"]["id"], grant_id.to_string());
    assert_eq!(row["after"], Value::Null, "a delete has no after");
    let before = &row["before"];
    assert_eq!(before["team_name"], "Ops");
    assert_eq!(before["role_name"], "releaser");
    assert_eq!(before["project_names"], json!(["Shop"]));
    assert_eq!(before["environment_names"], json!(["Production"]));
    change(
        n,
        admin,
        "DELETE",
        &format!("{grants}/{}", everywhere["id"]),
        Value::Null,
        204,
    )
    .await;
    trail.one("grant.delete").await;

    change(
        n,
        admin,
        "DELETE",
        &format!("{members}/{alice_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("team.member_remove").await;
    assert_admin(&row);
    assert_eq!(row["object"]["id"], team_id.to_string());
    assert_eq!(
        row["before"],
        json!({"user_id": alice_id, "name": "alice", "kind": "person"})
    );
    assert_eq!(row["after"], Value::Null);

    change(
        n,
        admin,
        "DELETE",
        &format!("/api/roles/{role_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("role.delete").await;
    assert_admin(&row);
    assert_eq!(row["before"], updated);
    assert_eq!(row["after"], Value::Null);
    change(
        n,
        admin,
        "DELETE",
        &format!("/api/teams/{team_id}"),
        Value::Null,
        204,
    )
    .await;
    let row = trail.one("team.delete").await;
    assert_admin(&row);
    assert_eq!(row["before"], renamed);
    assert_eq!(row["after"], Value::Null);
}

#[tokio::test]
async fn a_user_who_manages_access_is_named_as_the_actor() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let n = node.as_str();
    let admin = ADMIN_KEY;
    let bot = change(
        n,
        admin,
        "POST",
        "/api/users",
        json!({"name": "access-bot", "kind": "service"}),
        201,
    )
    .await;
    let bot_id = bot["id"].as_i64().unwrap();
    let key = change(
        n,
        admin,
        "POST",
        &format!("/api/users/{bot_id}/api-keys"),
        json!({"purpose": "access"}),
        201,
    )
    .await;
    let key_text = key["key"].as_str().unwrap().to_owned();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let role = change(
        n,
        admin,
        "POST",
        "/api/roles",
        json!({"name": "access-admin", "description": "", "permissions": ["manage_users"]}),
        201,
    )
    .await;
    let team = change(
        n,
        admin,
        "POST",
        "/api/teams",
        json!({"name": "Admins", "description": ""}),
        201,
    )
    .await;
    let team_id = team["id"].as_i64().unwrap();
    change(
        n,
        admin,
        "POST",
        &format!("/api/teams/{team_id}/members"),
        json!({"user_id": bot_id}),
        204,
    )
    .await;
    change(
        n,
        admin,
        "POST",
        &format!("/api/teams/{team_id}/grants"),
        json!({"role_id": role["id"]}),
        201,
    )
    .await;
    let mut trail = Trail::new(n);
    trail.take_all().await;

    change(
        n,
        &key_text,
        "POST",
        "/api/teams",
        json!({"name": "Developers", "description": ""}),
        201,
    )
    .await;
    let row = trail.one("team.create").await;
    assert_eq!(row["actor"]["kind"], "service", "{row:#}");
    assert_eq!(row["actor"]["id"], bot_id);
    assert_eq!(row["actor"]["name"], "access-bot");
    assert_eq!(row["actor"]["method"], "api_key");
    assert_eq!(row["actor"]["credential"], key_id.as_str());
    assert_eq!(row["after"]["name"], "Developers");
}
