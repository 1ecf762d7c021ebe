use capstan_testkit::{ADMIN_KEY, TestCluster};

pub(crate) async fn send(
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN_KEY);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "status {status}"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_updates_get_a_4xx_that_says_what_is_wrong() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let url = format!("{}/api/nodes/{}", node.url(), node.state.id);
    let patch = reqwest::Method::PATCH;
    let cases = [
        (r#"{"task_cap": "#, 400, "not valid JSON"),
        (
            r#"{"task_cap": 3, "colour": "red"}"#,
            422,
            "unknown field `colour`",
        ),
        (r#"{"task_cap": "five"}"#, 422, "invalid type"),
        (r#"{"task_cap": -1}"#, 422, "between 0 and 1000, got -1"),
        (r#"{"task_cap": 1001}"#, 422, "between 0 and 1000, got 1001"),
        (r#"{"task_cap": 99999999999999999999}"#, 422, "task_cap"),
        (r#"{"draining": "yes"}"#, 422, "invalid type"),
        (r#"{}"#, 422, "nothing to change"),
        (r#"[]"#, 422, "nothing to change"),
    ];
    for (body, status, detail) in cases {
        let (got, problem) = send(patch.clone(), &url, Some(body)).await;
        assert_eq!(got, status, "{body} -> {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{body} -> {problem}"
        );
    }
    // Nothing above changed the node.
    assert_eq!(
        node.client()
            .get_node(node.state.id)
            .await
            .unwrap()
            .task_cap,
        5
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids_and_routes_are_4xx() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let unknown = uuid::Uuid::new_v4();
    let (status, problem) = send(
        reqwest::Method::GET,
        &format!("{base}/api/nodes/{unknown}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string())
    );
    let (status, _) = send(
        reqwest::Method::PATCH,
        &format!("{base}/api/nodes/{unknown}"),
        Some(r#"{"draining":true}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{base}/api/nodes/{unknown}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem) = send(
        reqwest::Method::GET,
        &format!("{base}/api/nodes/not-a-uuid"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("bad path"),
        "{problem}"
    );
    let (status, _) = send(reqwest::Method::GET, &format!("{base}/api/nowhere"), None).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        reqwest::Method::POST,
        &format!("{base}/api/nodes"),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_body_without_json_content_type_or_too_large_is_refused() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let url = format!("{}/api/nodes/{}", node.url(), node.state.id);
    let response = reqwest::Client::new()
        .patch(&url)
        .bearer_auth(ADMIN_KEY)
        .body(r#"{"draining":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let big = format!(
        r#"{{"draining":true,"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, problem) = send(reqwest::Method::PATCH, &url, Some(&big)).await;
    assert_eq!(status, 413, "{problem}");
}
