use capstan_testkit::TestCluster;

async fn get_with(url: &str, auth: Option<&str>) -> (u16, String, serde_json::Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn the_api_refuses_missing_and_wrong_keys_with_problem_json() {
    let cluster = TestCluster::start(1).await;
    let url = format!("{}/api/nodes", cluster.node(0).url());
    for (auth, expected) in [
        (None, "Authorization: Bearer"),
        (Some("Bearer wrong-key-wrong-key"), "not valid"),
        (Some("Basic dXNlcjpwYXNz"), "must be `Bearer <key>`"),
    ] {
        let (status, content_type, body) = get_with(&url, auth).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(content_type, "application/problem+json");
        assert!(
            body["detail"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
    let (status, _, _) = get_with(
        &url,
        Some(&format!("Bearer {}", capstan_testkit::ADMIN_KEY)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn ping_healthz_and_metrics_need_no_key() {
    let cluster = TestCluster::start(1).await;
    for path in ["/api/nodes/ping", "/healthz", "/metrics"] {
        let (status, _, _) = get_with(&format!("{}{path}", cluster.node(0).url()), None).await;
        assert_eq!(status, 200, "{path}");
    }
}
