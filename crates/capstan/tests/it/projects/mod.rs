//! Projects, their process and variables, and releases, through the HTTP API as an
//! editor's browser or script would call it.

mod crud;
mod process;
mod releases;
pub(crate) mod variables;

use serde_json::{Value, json};

/// JSON over HTTP to one node, returning status and body as they came.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(capstan_testkit::ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status >= 400 {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).await
    }

    /// Creates a project and returns its id.
    pub async fn project(&self, name: &str) -> i64 {
        let (status, body) = self.post("/api/projects", json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Saves steps over version `version` and returns the answer.
    pub async fn save_process(&self, project: i64, version: i64, steps: Value) -> (u16, Value) {
        self.put(
            &format!("/api/projects/{project}/process"),
            json!({ "version": version, "steps": steps }),
        )
        .await
    }

    pub async fn save_variables(
        &self,
        project: i64,
        version: i64,
        variables: Value,
    ) -> (u16, Value) {
        self.put(
            &format!("/api/projects/{project}/variables"),
            json!({ "version": version, "variables": variables }),
        )
        .await
    }
}

/// A one-action script step on targets tagged `tag`.
pub fn script_step(name: &str, tag: &str, body: &str) -> Value {
    json!({
        "name": name,
        "target_tags": [tag],
        "actions": [{ "kind": "script", "syntax": "bash", "body": body }],
    })
}

/// A step deploying `package` (any version unless `version` is given).
pub fn package_step(name: &str, package: &str, version: Option<&str>) -> Value {
    let mut action = json!({
        "kind": "package",
        "package_id": package,
        "deploy_script": "echo deploying",
    });
    if let Some(version) = version {
        action["version"] = json!(version);
    }
    json!({ "name": name, "target_tags": ["web"], "actions": [action] })
}

/// The `detail` of a problem body.
pub fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}
