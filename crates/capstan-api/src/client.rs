//! A thin typed client for the API, used by the `capstan` CLI and by tests.

use std::{collections::VecDeque, time::Duration};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{
    AttemptList, CreateTaskRequest, CreateTasksRequest, CreateTasksResponse, NodeResponse,
    PackagePage, PackageQuery, PackageResponse, PackageVersionPage, Problem, TaskPage, TaskQuery,
    TaskResponse, UpdateNodeRequest, UploadPackageQuery,
    deployments::{
        AnswerRequest, CreateDeploymentRequest, DeploymentPage, DeploymentQuery,
        DeploymentResponse, StopRequest,
    },
    task_logs::{LogEvent, SseParser},
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
    /// For answers that stream for as long as they need: no overall deadline, but a
    /// connection that stays silent past the server's keep-alives is given up.
    streaming: reqwest::Client,
}

/// Longer than the 15 s between a followed log's keep-alives.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(45);

impl ApiClient {
    /// A client for `base` (for example `http://capstan.internal:8080`).
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a client with only timeouts set always builds");
        let streaming = reqwest::Client::builder()
            .read_timeout(STREAM_READ_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a client with only timeouts set always builds");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            http,
            streaming,
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

    /// `GET /api/master-key`.
    pub async fn get_master_key(&self) -> Result<crate::MasterKeyStatus, ClientError> {
        self.call(Method::GET, "/api/master-key", None::<&()>).await
    }

    /// `POST /api/master-key/rotate`: queues the rotation to the newest key version.
    pub async fn rotate_master_key(&self) -> Result<crate::RotateMasterKeyResponse, ClientError> {
        self.call(Method::POST, "/api/master-key/rotate", None::<&()>)
            .await
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

    /// `POST /api/tasks/{id}/move-to-front`.
    pub async fn move_task_to_front(&self, id: i64) -> Result<TaskResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/tasks/{id}/move-to-front"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/agents/registration-tokens`.
    pub async fn create_registration_token(
        &self,
        request: &crate::CreateRegistrationTokenRequest,
    ) -> Result<crate::RegistrationTokenResponse, ClientError> {
        self.call(
            Method::POST,
            "/api/agents/registration-tokens",
            Some(request),
        )
        .await
    }

    /// `GET /api/agents` with filters and a cursor.
    pub async fn list_agents(
        &self,
        query: &crate::AgentQuery,
    ) -> Result<crate::AgentPage, ClientError> {
        let mut url = url_with_query("/api/agents", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// An agent by id, or by name (looked up through the list).
    pub async fn find_agent(&self, name_or_id: &str) -> Result<crate::AgentResponse, ClientError> {
        if let Ok(id) = name_or_id.parse::<i64>() {
            return self
                .call(Method::GET, &format!("/api/agents/{id}"), None::<&()>)
                .await;
        }
        let mut query = crate::AgentQuery {
            limit: Some(500),
            ..Default::default()
        };
        loop {
            let page = self.list_agents(&query).await?;
            if let Some(found) = page
                .items
                .into_iter()
                .find(|a| a.name.eq_ignore_ascii_case(name_or_id))
            {
                return Ok(found);
            }
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => {
                    return Err(ClientError::Api(Problem::new(
                        404,
                        "Not Found",
                        format!("no agent is named `{name_or_id}`"),
                    )));
                }
            }
        }
    }

    /// `PATCH /api/agents/{id}`.
    pub async fn update_agent(
        &self,
        id: i64,
        change: &crate::UpdateAgentRequest,
    ) -> Result<crate::AgentResponse, ClientError> {
        self.call(Method::PATCH, &format!("/api/agents/{id}"), Some(change))
            .await
    }

    /// `DELETE /api/agents/{id}`.
    pub async fn delete_agent(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/agents/{id}"), None::<&()>)
            .await
    }

    /// `GET /api/environments`.
    pub async fn list_environments(&self) -> Result<crate::EnvironmentList, ClientError> {
        self.call(Method::GET, "/api/environments", None::<&()>)
            .await
    }

    /// `POST /api/environments`.
    pub async fn create_environment(
        &self,
        request: &crate::EnvironmentRequest,
    ) -> Result<crate::EnvironmentResponse, ClientError> {
        self.call(Method::POST, "/api/environments", Some(request))
            .await
    }

    /// `POST /api/scripts`.
    pub async fn run_script(
        &self,
        request: &crate::RunScriptRequest,
    ) -> Result<TaskResponse, ClientError> {
        self.call(Method::POST, "/api/scripts", Some(request)).await
    }

    /// `GET /api/tasks/{id}/commands`.
    pub async fn task_commands(&self, id: i64) -> Result<crate::CommandList, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/tasks/{id}/commands"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/projects`.
    pub async fn create_project(
        &self,
        request: &crate::ProjectRequest,
    ) -> Result<crate::ProjectResponse, ClientError> {
        self.call(Method::POST, "/api/projects", Some(request))
            .await
    }

    /// `GET /api/projects` with filters and a cursor.
    pub async fn list_projects(
        &self,
        query: &crate::ProjectQuery,
    ) -> Result<crate::ProjectPage, ClientError> {
        let mut url = url_with_query("/api/projects", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// A project by id, or by name.
    pub async fn find_project(
        &self,
        name_or_id: &str,
    ) -> Result<crate::ProjectResponse, ClientError> {
        if let Ok(id) = name_or_id.parse::<i64>() {
            return self
                .call(Method::GET, &format!("/api/projects/{id}"), None::<&()>)
                .await;
        }
        let query = crate::ProjectQuery {
            name: Some(name_or_id.to_owned()),
            ..Default::default()
        };
        let page = self.list_projects(&query).await?;
        page.items.into_iter().next().ok_or_else(|| {
            ClientError::Api(Problem::new(
                404,
                "Not Found",
                format!("no project is named `{name_or_id}`"),
            ))
        })
    }

    /// `DELETE /api/projects/{id}`.
    pub async fn delete_project(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/projects/{id}"), None::<&()>)
            .await
    }

    /// `POST /api/users`.
    pub async fn create_user(
        &self,
        request: &crate::CreateUserRequest,
    ) -> Result<crate::UserResponse, ClientError> {
        self.call(Method::POST, "/api/users", Some(request)).await
    }

    /// `GET /api/users` with filters and a cursor.
    pub async fn list_users(
        &self,
        query: &crate::UserQuery,
    ) -> Result<crate::UserPage, ClientError> {
        let mut url = url_with_query("/api/users", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `GET /api/audit` with filters and a cursor, newest first.
    pub async fn list_audit(
        &self,
        query: &crate::AuditQuery,
    ) -> Result<crate::AuditPage, ClientError> {
        let mut url = url_with_query("/api/audit", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    pub async fn dashboard(
        &self,
        query: &crate::dashboard::DashboardQuery,
    ) -> Result<crate::dashboard::Dashboard, ClientError> {
        let mut url = url_with_query("/api/dashboard", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// A user by id, or by name (in any case).
    pub async fn find_user(&self, name_or_id: &str) -> Result<crate::UserResponse, ClientError> {
        if let Ok(id) = name_or_id.parse::<i64>() {
            return self
                .call(Method::GET, &format!("/api/users/{id}"), None::<&()>)
                .await;
        }
        let query = crate::UserQuery {
            name: Some(name_or_id.to_owned()),
            ..Default::default()
        };
        let page = self.list_users(&query).await?;
        page.items.into_iter().next().ok_or_else(|| {
            ClientError::Api(Problem::new(
                404,
                "Not Found",
                format!("no user is named `{name_or_id}`"),
            ))
        })
    }

    /// `PATCH /api/users/{id}`.
    pub async fn update_user(
        &self,
        id: i64,
        request: &crate::UpdateUserRequest,
    ) -> Result<crate::UserResponse, ClientError> {
        self.call(Method::PATCH, &format!("/api/users/{id}"), Some(request))
            .await
    }

    /// `PUT /api/users/{id}/password`.
    pub async fn set_password(
        &self,
        id: i64,
        request: &crate::SetPasswordRequest,
    ) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/users/{id}/password"),
            Some(request),
        )
        .await
    }

    /// `DELETE /api/users/{id}`.
    pub async fn delete_user(&self, id: i64) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/users/{id}"), None::<&()>)
            .await
    }

    /// `POST /api/users/{id}/api-keys`: the answer holds the key, shown only now.
    pub async fn create_api_key(
        &self,
        user: i64,
        request: &crate::CreateApiKeyRequest,
    ) -> Result<crate::CreatedApiKey, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/users/{user}/api-keys"),
            Some(request),
        )
        .await
    }

    /// `GET /api/users/{id}/api-keys`.
    pub async fn list_api_keys(&self, user: i64) -> Result<crate::ApiKeyList, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/users/{user}/api-keys"),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /api/users/{id}/api-keys/{key_id}`.
    pub async fn revoke_api_key(&self, user: i64, key_id: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/users/{user}/api-keys/{key_id}"),
            None::<&()>,
        )
        .await
    }

    /// `GET /api/projects/{id}/process`.
    pub async fn get_process(&self, project: i64) -> Result<crate::ProcessResponse, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/projects/{project}/process"),
            None::<&()>,
        )
        .await
    }

    /// `PUT /api/projects/{id}/process`.
    pub async fn put_process(
        &self,
        project: i64,
        request: &crate::ProcessRequest,
    ) -> Result<crate::ProcessResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/projects/{project}/process"),
            Some(request),
        )
        .await
    }

    /// `GET /api/projects/{id}/variables`.
    pub async fn get_variables(
        &self,
        project: i64,
    ) -> Result<crate::VariablesResponse, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/projects/{project}/variables"),
            None::<&()>,
        )
        .await
    }

    /// `PUT /api/projects/{id}/variables`.
    pub async fn put_variables(
        &self,
        project: i64,
        request: &crate::VariablesRequest,
    ) -> Result<crate::VariablesResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/projects/{project}/variables"),
            Some(request),
        )
        .await
    }

    /// `POST /api/projects/{id}/variables/preview`.
    pub async fn preview_variables(
        &self,
        project: i64,
        request: &crate::PreviewRequest,
    ) -> Result<crate::PreviewResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/projects/{project}/variables/preview"),
            Some(request),
        )
        .await
    }

    /// `POST /api/releases`.
    pub async fn create_release(
        &self,
        request: &crate::CreateReleaseRequest,
    ) -> Result<crate::ReleaseResponse, ClientError> {
        self.call(Method::POST, "/api/releases", Some(request))
            .await
    }

    /// `GET /api/releases` with filters and a cursor.
    pub async fn list_releases(
        &self,
        query: &crate::ReleaseQuery,
    ) -> Result<crate::ReleasePage, ClientError> {
        let mut url = url_with_query("/api/releases", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `GET /api/releases/{id}`.
    pub async fn get_release(&self, id: i64) -> Result<crate::ReleaseResponse, ClientError> {
        self.call(Method::GET, &format!("/api/releases/{id}"), None::<&()>)
            .await
    }

    /// A project's release by its version, looked up through the list.
    pub async fn find_release(
        &self,
        project_id: i64,
        version: &str,
    ) -> Result<crate::ReleaseSummary, ClientError> {
        let mut query = crate::ReleaseQuery {
            project_id: Some(project_id),
            limit: Some(500),
            ..Default::default()
        };
        loop {
            let page = self.list_releases(&query).await?;
            if let Some(found) = page.items.into_iter().find(|r| r.version == version) {
                return Ok(found);
            }
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => {
                    return Err(ClientError::Api(Problem::new(
                        404,
                        "Not Found",
                        format!("project {project_id} has no release `{version}`"),
                    )));
                }
            }
        }
    }

    /// `POST /api/deployments`: queues a release's deployment to an environment.
    pub async fn create_deployment(
        &self,
        request: &CreateDeploymentRequest,
    ) -> Result<DeploymentResponse, ClientError> {
        self.call(Method::POST, "/api/deployments", Some(request))
            .await
    }

    /// `GET /api/deployments` with filters and a cursor.
    pub async fn list_deployments(
        &self,
        query: &DeploymentQuery,
    ) -> Result<DeploymentPage, ClientError> {
        let mut url = url_with_query("/api/deployments", query);
        if url.ends_with('?') {
            url.pop();
        }
        self.call(Method::GET, &url, None::<&()>).await
    }

    /// `GET /api/deployments/{id}`: the deployment with its grid and interventions.
    pub async fn deployment(&self, id: i64) -> Result<DeploymentResponse, ClientError> {
        self.call(Method::GET, &format!("/api/deployments/{id}"), None::<&()>)
            .await
    }

    /// `POST /api/deployments/{id}/cancel`: stops a queued deployment at once, or asks
    /// the running one to stop.
    pub async fn cancel_deployment(
        &self,
        id: i64,
        request: &StopRequest,
    ) -> Result<DeploymentResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/deployments/{id}/cancel"),
            Some(request),
        )
        .await
    }

    /// `POST /api/deployments/{id}/abandon`: closes a cancel that could not complete.
    pub async fn abandon_deployment(
        &self,
        id: i64,
        request: &StopRequest,
    ) -> Result<DeploymentResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/deployments/{id}/abandon"),
            Some(request),
        )
        .await
    }

    /// `POST /api/deployments/{id}/interventions/{iid}`: answers a deployment's
    /// question; a second answer is a 409.
    pub async fn answer_intervention(
        &self,
        id: i64,
        intervention_id: i64,
        request: &AnswerRequest,
    ) -> Result<DeploymentResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/deployments/{id}/interventions/{intervention_id}"),
            Some(request),
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
            .timeout(Duration::from_secs(7 * 24 * 3600))
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

    /// `GET /api/tasks/{id}/log`: the log as it is now, read in chunks as they arrive.
    pub async fn task_log(&self, id: i64) -> Result<LogChunks, ClientError> {
        let url = format!("{}/api/tasks/{id}/log", self.base);
        let response = self.open_stream(&url, None).await?;
        Ok(LogChunks { url, response })
    }

    /// `GET /api/tasks/{id}/log?follow=true`: the log's lines as they are written,
    /// until the task has finished. A dropped connection is resumed after the last
    /// line received (`Last-Event-ID`), on whichever node answers.
    pub fn follow_task_log(&self, id: i64) -> LogFollower {
        LogFollower {
            client: self.clone(),
            url: format!("{}/api/tasks/{id}/log?follow=true", self.base),
            last_offset: None,
            response: None,
            parser: SseParser::default(),
            ready: VecDeque::new(),
            failures: 0,
            ended: false,
        }
    }

    /// Sends a GET whose answer streams; an error status becomes its problem.
    async fn open_stream(
        &self,
        url: &str,
        last_event_id: Option<u64>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.streaming.get(url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(offset) = last_event_id {
            request = request.header("Last-Event-ID", offset.to_string());
        }
        let transport = |source| ClientError::Transport {
            url: url.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.map_err(transport)?;
        Err(ClientError::Api(problem_from(status, &bytes)))
    }

    pub(crate) async fn call<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
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
            return Err(ClientError::Api(problem_from(status, &bytes)));
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

/// The problem an error answer carries, or one made from its status and text.
fn problem_from(status: StatusCode, bytes: &[u8]) -> Problem {
    serde_json::from_slice::<Problem>(bytes).unwrap_or_else(|_| {
        Problem::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            String::from_utf8_lossy(bytes)
                .chars()
                .take(500)
                .collect::<String>(),
        )
    })
}

/// A task's log as it is now, in chunks of bytes.
#[derive(Debug)]
pub struct LogChunks {
    url: String,
    response: reqwest::Response,
}

impl LogChunks {
    /// The next chunk; `None` at the end. An error means the log was cut short.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.response
            .chunk()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.url.clone(),
                source,
            })
    }
}

/// Connection attempts in a row that may fail, without a line received in between,
/// before following a log gives up (about a minute with the pauses between them).
const FOLLOW_RETRIES: u32 = 15;

/// A followed task log: its events, across reconnections.
#[derive(Debug)]
pub struct LogFollower {
    client: ApiClient,
    url: String,
    last_offset: Option<u64>,
    response: Option<reqwest::Response>,
    parser: SseParser,
    ready: VecDeque<LogEvent>,
    failures: u32,
    ended: bool,
}

impl LogFollower {
    /// The next line, or the end; `None` after the end.
    pub async fn next(&mut self) -> Result<Option<LogEvent>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                match &event {
                    LogEvent::Line { offset, .. } => self.last_offset = Some(*offset),
                    LogEvent::End(_) => self.ended = true,
                }
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let chunk = match &mut self.response {
                Some(response) => response.chunk().await,
                None => match self.client.open_stream(&self.url, self.last_offset).await {
                    Ok(response) => {
                        self.response = Some(response);
                        self.parser = SseParser::default();
                        continue;
                    }
                    Err(ClientError::Api(problem)) if problem.status < 500 => {
                        return Err(ClientError::Api(problem));
                    }
                    Err(e) => {
                        self.retry_after(e).await?;
                        continue;
                    }
                },
            };
            match chunk {
                Ok(Some(bytes)) => {
                    for event in self.parser.feed(&bytes) {
                        let event = event.into_log_event().map_err(|detail| {
                            ClientError::Api(Problem::new(502, "Bad Response", detail))
                        })?;
                        self.failures = 0;
                        self.ready.push_back(event);
                    }
                }
                // The connection closed before the end: a node stopped, or a proxy
                // timed out. Carry on after the last line.
                Ok(None) => {
                    self.response = None;
                    self.failures += 1;
                    if self.failures > FOLLOW_RETRIES {
                        return Err(ClientError::Api(Problem::new(
                            502,
                            "Bad Gateway",
                            format!("{} keeps closing the log before its end", self.url),
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(source) => {
                    self.response = None;
                    let url = self.url.clone();
                    self.retry_after(ClientError::Transport { url, source })
                        .await?;
                }
            }
        }
    }

    /// Waits before reconnecting, longer after each failure in a row; gives up with
    /// `error` after too many.
    async fn retry_after(&mut self, error: ClientError) -> Result<(), ClientError> {
        self.failures += 1;
        if self.failures > FOLLOW_RETRIES {
            return Err(error);
        }
        let pause = Duration::from_millis(250 * 2u64.pow(self.failures.min(5) - 1));
        tokio::time::sleep(pause.min(Duration::from_secs(5))).await;
        Ok(())
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
