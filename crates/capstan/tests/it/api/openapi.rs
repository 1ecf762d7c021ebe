use capstan_testkit::{ADMIN_KEY, TestCluster};

#[tokio::test]
async fn the_openapi_document_describes_every_node_and_task_endpoint() {
    let cluster = TestCluster::start(1).await;
    let url = format!("{}/api/openapi.json", cluster.node(0).url());
    let unauthenticated = reqwest::get(&url).await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let doc: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = &doc["paths"];
    for (path, method, operation) in [
        ("/api/nodes/ping", "get", "ping"),
        ("/api/nodes", "get", "list_nodes"),
        ("/api/nodes/{id}", "get", "get_node"),
        ("/api/nodes/{id}", "patch", "update_node"),
        ("/api/nodes/{id}", "delete", "delete_node"),
        ("/api/tasks", "post", "create_task"),
        ("/api/tasks", "get", "list_tasks"),
        ("/api/tasks/batch", "post", "create_tasks"),
        ("/api/tasks/{id}", "get", "get_task"),
        ("/api/tasks/{id}/attempts", "get", "task_attempts"),
        ("/api/tasks/{id}/cancel", "post", "cancel_task"),
        ("/api/tasks/{id}/log", "get", "get_task_log"),
        ("/api/master-key", "get", "get_master_key"),
        ("/api/master-key/rotate", "post", "rotate_master_key"),
        ("/api/projects", "post", "create_project"),
        ("/api/projects/{id}/process", "put", "put_process"),
        ("/api/projects/{id}/variables", "put", "put_variables"),
        (
            "/api/projects/{id}/variables/preview",
            "post",
            "preview_variables",
        ),
        ("/api/releases", "post", "create_release"),
        ("/api/releases/{id}", "get", "get_release"),
        ("/api/users", "post", "create_user"),
        ("/api/users", "get", "list_users"),
        ("/api/users/{id}", "patch", "update_user"),
        ("/api/users/{id}", "delete", "delete_user"),
        ("/api/users/{id}/api-keys", "post", "create_api_key"),
        ("/api/users/{id}/api-keys", "get", "list_api_keys"),
        (
            "/api/users/{id}/api-keys/{key_id}",
            "delete",
            "revoke_api_key",
        ),
    ] {
        assert_eq!(
            paths[path][method]["operationId"], operation,
            "{path} {method}"
        );
    }
    for schema in [
        "MasterKeyStatus",
        "MasterKeyVersion",
        "NodeKeyVersions",
        "RotateMasterKeyResponse",
        "Step",
        "RunCondition",
        "Action",
        "VariableScope",
        "ReleaseResponse",
        "CreatedApiKey",
        "ApiKeyResponse",
        "UserResponse",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let update = &doc["components"]["schemas"]["UpdateNodeRequest"]["properties"]["task_cap"];
    assert_eq!(update["maximum"], 1000, "{update}");
    let create_project = &paths["/api/projects"]["post"]["responses"];
    // The route's own 422 stays; the generic answers are added beside it.
    assert!(
        create_project["422"]["content"].is_object(),
        "{create_project}"
    );
    for status in ["400", "401", "413", "415", "503"] {
        assert!(
            create_project[status]["$ref"].is_string(),
            "{status}: {create_project}"
        );
    }
    // 408 only where a body is read within its own limit (uploads and agents' bodies);
    // the other JSON bodies are under the request time limit, a 503.
    assert!(
        create_project["408"].is_null(),
        "JSON bodies under the request time limit: {create_project}"
    );
    for (path, method) in [
        ("/api/packages/raw", "post"),
        ("/api/agents/register", "post"),
        ("/api/agent/commands/{id}/output", "post"),
    ] {
        let responses = &paths[path][method]["responses"];
        assert_eq!(
            responses["408"]["$ref"], "#/components/responses/RequestTimeout",
            "{method} {path}: {responses}"
        );
    }
    let poll = &paths["/api/agent/commands"]["get"]["responses"];
    assert!(poll["408"].is_null(), "a poll has no body: {poll}");
    let ping = &paths["/api/nodes/ping"]["get"]["responses"];
    assert!(ping["401"].is_null(), "ping is public: {ping}");
    let limit = &paths["/api/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"];
    assert_eq!(limit["maximum"], 500, "{limit}");
}
