use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::json;

use super::{call, create_user, detail};

#[tokio::test]
async fn users_are_created_listed_changed_and_deleted_by_name_in_any_case() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let id = create_user(&node, "Deploy-Bot", "service").await;
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "POST",
        "/api/users",
        Some(json!({"name": "deploy-bot", "kind": "person"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(detail(&body), "a user named `deploy-bot` already exists");

    let (status, body) = call(&node, ADMIN_KEY, "GET", "/api/users?name=DEPLOY-BOT", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["id"], id);
    assert_eq!(body["items"][0]["kind"], "service");

    let path = format!("/api/users/{id}");
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "PATCH",
        &path,
        Some(json!({"display_name": "Deploy bot", "email": "ops@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["display_name"], "Deploy bot");
    assert_eq!(call(&node, ADMIN_KEY, "DELETE", &path, None).await.0, 204);
    assert_eq!(call(&node, ADMIN_KEY, "GET", &path, None).await.0, 404);
}

#[tokio::test]
async fn bad_user_and_key_input_is_a_422_naming_the_field() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    for (body, field) in [
        (json!({"name": "", "kind": "service"}), "name"),
        (json!({"name": "bot\u{200b}", "kind": "service"}), "name"),
        (json!({"name": "x".repeat(101), "kind": "service"}), "name"),
        (
            json!({"name": "bot", "kind": "service", "email": "e".repeat(201)}),
            "email",
        ),
    ] {
        let (status, answer) = call(&node, ADMIN_KEY, "POST", "/api/users", Some(body)).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let id = create_user(&node, "bot", "service").await;
    let path = format!("/api/users/{id}/api-keys");
    for (body, field) in [
        (json!({"purpose": ""}), "purpose"),
        (json!({"purpose": "CI", "expires_in": "soon"}), "expires_in"),
        (json!({"purpose": "CI", "expires_in": "400d"}), "expires_in"),
    ] {
        let (status, answer) = call(&node, ADMIN_KEY, "POST", &path, Some(body)).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, answer) = call(
        &node,
        ADMIN_KEY,
        "POST",
        "/api/users/999999/api-keys",
        Some(json!({"purpose": "CI"})),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
}
