//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers.

use axum::Json;
use capstan_api::{
    ArtifactList, ArtifactResponse, AttemptList, AttemptResponse, CreateTaskRequest,
    CreateTasksRequest, CreateTasksResponse, NodeResponse, PackagePage, PackageResponse,
    PackageSummary, PackageVersionPage, Problem, TaskLogEnd, TaskPage, TaskResponse,
    UpdateNodeRequest,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{artifacts, nodes, packages, task_logs, tasks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Capstan API"),
    paths(
        nodes::ping, nodes::list_nodes, nodes::get_node, nodes::update_node, nodes::delete_node,
        tasks::create_task, tasks::create_tasks, tasks::list_tasks, tasks::get_task,
        tasks::task_attempts, tasks::cancel_task, task_logs::get_task_log,
        artifacts::upload_artifact, artifacts::list_artifacts, artifacts::download_artifact,
        packages::upload_package, packages::list_packages, packages::list_versions,
        packages::get_package, packages::download_package, packages::delete_package,
    ),
    components(schemas(
        NodeResponse, UpdateNodeRequest, Problem, CreateTaskRequest, CreateTasksRequest,
        CreateTasksResponse, TaskResponse, TaskPage, AttemptResponse, AttemptList, TaskLogEnd,
        PackageResponse, PackageSummary, PackagePage, PackageVersionPage, ArtifactResponse,
        ArtifactList,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    Json(doc)
}
