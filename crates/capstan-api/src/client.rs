//! A thin typed client for the API, used by the `capstan` CLI and by tests.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{
    AttemptList, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse, NodeResponse,
    PackagePage, PackageQuery, PackageResponse, PackageVersionPage, Problem, TaskPage, TaskQuery,
    TaskResponse, UpdateNodeRequest, UploadPackageQuery,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{0}")]
    Api(Problem),
    /// The server could not be reached, or its answer could not be read.
    #[error("cannot reach {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A client for one Capstan server (a node, or the load balancer in front of several).
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for `base` (for example `http://capstan.internal:8080`).
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("a client with only timeouts set always builds");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            http,
        }
    }

    /// The base URL this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/nodes/ping`: the status code and the answering node, if it sent one.
    pub async fn ping(&self) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let url = format!("{}/api/nodes/ping", self.base);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        let body = response
            .json()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        Ok((status, body))
    }

    /// `GET /api/nodes`.
    pub async fn list_nodes(&self) -> Result<Vec<NodeResponse>, ClientError> {
        self.call(Method::GET, "/api/nodes", None::<&()>).await
    }

    /// `GET /api/nodes/{id}`.
    pub async fn get_node(&self, id: Uuid) -> Result<NodeResponse, ClientError> {
        self.call(Method::GET, &format!("/api/nodes/{id}"), None::<&()>)
            .await
    }

    /// `PATCH /api/nodes/{id}`.
    pub async fn update_node(
        &self,
        id: Uuid,
        update: &UpdateNodeRequest,
    ) -> Result<NodeResponse, ClientError> {
        self.call(Method::PATCH, &format!("/api/nodes/{id}"), Some(update))
            .await
    }

    /// `DELETE /api/nodes/{id}`.
    pub async fn delete_node(&self, id: Uuid) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(Method::DELETE, &format!("/api/nodes/{id}"), None::<&()>)
            .await?;
        Ok(())
    }

    /// Finds a node by name, or says which names exist.
    pub async fn find_node(&self, name: &str) -> Result<NodeResponse, ClientError> {
        let nodes = self.list_nodes().await?;
        let names: Vec<_> = nodes.iter().map(|n| n.name.clone()).collect();
        nodes.into_iter().find(|n| n.name == name).ok_or_else(|| {
            ClientError::Api(Problem::new(
                404,
                "Not Found",
                format!(
                    "no node is named `{name}`; the nodes are: {}",
                    names.join(", ")
                ),
            ))
        })
    }

    /// `POST /api/tasks`.
    pub async fn create_task(&self, task: &CreateTaskRequest) -> Result<TaskResponse, ClientError> {
        self.call(Method::POST, "/api/tasks", Some(task)).await
    }

    /// `POST /api/tasks/batch`.
    pub async fn create_tasks(
        &self,
        tasks: &CreateTasksRequest,
    ) -> Result<CreateTasksResponse, ClientError> {
        self.call(Method::POST, "/api/tasks/batch", Some(tasks))
            .await
    }

    /// `GET /api/tasks` with filters and a cursor.
    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, ClientError> {
        let mut url = url_with_query("/api/tasks", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `GET /api/tasks/{id}`.
    pub async fn get_task(&self, id: i64) -> Result<TaskResponse, ClientError> {
        self.call(Method::GET, &format!("/api/tasks/{id}"), None::<&()>)
            .await
    }

    /// `GET /api/tasks/{id}/attempts`.
    pub async fn task_attempts(&self, id: i64) -> Result<AttemptList, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/tasks/{id}/attempts"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/tasks/{id}/cancel`.
    pub async fn cancel_task(&self, id: i64) -> Result<TaskResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/packages/raw`: streams `body` (`length` bytes) as a package version.
    /// No overall timeout: a large package takes as long as the link needs.
    pub async fn push_package(
        &self,
        id: &str,
        version: &str,
        extension: &str,
        replace: bool,
        length: u64,
        body: reqwest::Body,
    ) -> Result<PackageResponse, ClientError> {
        let query = UploadPackageQuery {
            id: Some(id.to_owned()),
            version: Some(version.to_owned()),
            extension: Some(extension.to_owned()),
            replace,
        };
        let url = format!(
            "{}{}",
            self.base,
            url_with_query("/api/packages/raw", &query)
        );
        let mut request = self
            .http
            .post(&url)
            .timeout(std::time::Duration::from_secs(7 * 24 * 3600))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        self.send(request, url).await
    }

    /// `GET /api/packages/{id}/{version}`.
    pub async fn get_package(
        &self,
        id: &str,
        version: &str,
    ) -> Result<PackageResponse, ClientError> {
        let path = format!(
            "/api/packages/{}/{}",
            percent_encode(id),
            percent_encode(version)
        );
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /api/packages`.
    pub async fn list_packages(&self, query: &PackageQuery) -> Result<PackagePage, ClientError> {
        let mut url = url_with_query("/api/packages", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `GET /api/packages/{id}/versions`.
    pub async fn package_versions(
        &self,
        id: &str,
        query: &PackageQuery,
    ) -> Result<PackageVersionPage, ClientError> {
        let mut url = url_with_query(
            &format!("/api/packages/{}/versions", percent_encode(id)),
            query,
        );
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `DELETE /api/packages/{id}/{version}`.
    pub async fn delete_package(&self, id: &str, version: &str) -> Result<(), ClientError> {
        let path = format!(
            "/api/packages/{}/{}",
            percent_encode(id),
            percent_encode(version)
        );
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    async fn call<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, url).await
    }

    /// Sends a prepared request and reads its JSON answer or its problem.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_value(serde_json::Value::Null)
                .map_err(|e| ClientError::Api(Problem::new(500, "Bad Response", e.to_string())));
        }
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
                Problem::new(
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("Error"),
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(500)
                        .collect::<String>(),
                )
            });
            return Err(ClientError::Api(problem));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Api(Problem::new(
                502,
                "Bad Response",
                format!("{url} answered with JSON this client cannot read: {e}"),
            ))
        })
    }
}

/// `path?a=1&b=2` from a query struct's non-empty fields, percent-encoded.
fn url_with_query(path: &str, query: &impl serde::Serialize) -> String {
    let value = serde_json::to_value(query).unwrap_or_default();
    let mut out = format!("{path}?");
    if let serde_json::Value::Object(fields) = value {
        let pairs: Vec<String> = fields
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                format!("{k}={}", percent_encode(&v))
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
