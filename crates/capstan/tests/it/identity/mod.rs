//! Users, service accounts and their API keys: keys work as bearer keys, stop working
//! on every node at once, and never leave their secret behind.

mod api_keys;
mod cli;
pub(crate) mod login;
mod oidc;
mod sessions;
mod users;

use capstan_testkit::ADMIN_KEY;
use serde_json::{Value, json};

/// Sends `method path` with `body` to `node` as `key`: status and JSON body.
pub(crate) async fn call(
    node: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{node}{path}");
    let mut request = client
        .request(method.parse().unwrap(), &url)
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a user `name` of `kind` as the admin: its id.
pub(crate) async fn create_user(node: &str, name: &str, kind: &str) -> i64 {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        "/api/users",
        Some(json!({"name": name, "kind": kind})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// Creates a key of user `user` as the admin: the whole answer (with `key`).
pub(crate) async fn create_key(node: &str, user: i64, body: Value) -> Value {
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "POST",
        &format!("/api/users/{user}/api-keys"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// `detail` of a problem answer.
pub(crate) fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}
