//! Downloads answer `Range` and conditional requests as RFC 9110 says: an unknown range
//! unit is ignored, entity tags compare weakly for `If-None-Match` and strongly for
//! `If-Match` and `If-Range`, and `If-None-Match` outranks `If-Modified-Since`.

use reqwest::{Method, StatusCode, header};

use super::{
    Backend, StoreCluster,
    packages::{auth, http, noise, push_raw, sha256_hex},
};

async fn fetch(
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, &str)],
) -> reqwest::Response {
    let mut request = auth(http().request(method, url));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn downloads_follow_rfc_9110_for_ranges_and_preconditions() {
    let env = StoreCluster::start(Backend::Directory, 1, |_| {}).await;
    let base = env.cluster.node(0).url();
    let content = noise(1000, 7);
    let created = push_raw(&base, "?id=App&version=1.0.0", content.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let raw = format!("{base}/api/packages/App/1.0.0/raw");
    let etag = format!("\"{}\"", sha256_hex(&content));
    let weak = format!("W/{etag}");
    let get = |headers: Vec<(header::HeaderName, String)>| {
        let raw = raw.clone();
        async move {
            let headers: Vec<(header::HeaderName, &str)> = headers
                .iter()
                .map(|(n, v)| (n.clone(), v.as_str()))
                .collect();
            fetch(Method::GET, &raw, &headers).await
        }
    };

    let whole = get(vec![]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let last_modified = whole.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_owned();
    let modified = httpdate::parse_http_date(&last_modified).unwrap();
    let later = httpdate::fmt_http_date(modified + std::time::Duration::from_secs(3600));
    let earlier = httpdate::fmt_http_date(modified - std::time::Duration::from_secs(3600));

    // A range unit the server does not know is ignored: the whole content, 200.
    let response = get(vec![(header::RANGE, "pages=1-2".to_owned())]).await;
    assert_eq!(response.status(), StatusCode::OK, "unknown range unit");
    assert_eq!(response.bytes().await.unwrap(), content);
    // Several ranges are not served as multipart: the whole content, never a 416.
    let response = get(vec![(header::RANGE, "bytes=0-1,5-9".to_owned())]).await;
    assert_eq!(response.status(), StatusCode::OK, "several ranges");
    assert_eq!(response.bytes().await.unwrap(), content);
    // A range past the end is unsatisfiable, and says how long the content is.
    let response = get(vec![(header::RANGE, "bytes=1000-".to_owned())]).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */1000");

    // If-None-Match: weak comparison, lists, `*`.
    for (value, expected) in [
        (etag.clone(), StatusCode::NOT_MODIFIED),
        (weak.clone(), StatusCode::NOT_MODIFIED),
        (format!("\"other\", {weak}"), StatusCode::NOT_MODIFIED),
        (format!("\"a,b\",{etag}"), StatusCode::NOT_MODIFIED),
        ("*".to_owned(), StatusCode::NOT_MODIFIED),
        ("\"other\"".to_owned(), StatusCode::OK),
        (format!("\"{}\"", &etag[2..]), StatusCode::OK),
    ] {
        let response = get(vec![(header::IF_NONE_MATCH, value.clone())]).await;
        assert_eq!(response.status(), expected, "If-None-Match: {value}");
        if expected == StatusCode::NOT_MODIFIED {
            assert_eq!(response.headers()[header::ETAG], etag.as_str());
        }
    }
    let response = fetch(
        Method::HEAD,
        &raw,
        &[(header::IF_NONE_MATCH, weak.as_str())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "HEAD");

    // If-Modified-Since counts only without If-None-Match.
    let response = get(vec![(header::IF_MODIFIED_SINCE, later.clone())]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = get(vec![(header::IF_MODIFIED_SINCE, earlier.clone())]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get(vec![
        (header::IF_NONE_MATCH, "\"other\"".to_owned()),
        (header::IF_MODIFIED_SINCE, later.clone()),
    ])
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "If-None-Match outranks If-Modified-Since"
    );

    // If-Match compares strongly; a failed one is 412, before anything else.
    for (value, expected) in [
        (etag.clone(), StatusCode::OK),
        ("*".to_owned(), StatusCode::OK),
        (format!("\"other\", {etag}"), StatusCode::OK),
        (weak.clone(), StatusCode::PRECONDITION_FAILED),
        ("\"other\"".to_owned(), StatusCode::PRECONDITION_FAILED),
    ] {
        let response = get(vec![(header::IF_MATCH, value.clone())]).await;
        assert_eq!(response.status(), expected, "If-Match: {value}");
    }
    let response = get(vec![(header::IF_UNMODIFIED_SINCE, earlier.clone())]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = get(vec![(header::IF_UNMODIFIED_SINCE, later.clone())]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // If-Range: the range only while the content is the one the client has.
    for (value, expected) in [
        (etag.clone(), StatusCode::PARTIAL_CONTENT),
        (last_modified.clone(), StatusCode::PARTIAL_CONTENT),
        (weak.clone(), StatusCode::OK),
        ("\"other\"".to_owned(), StatusCode::OK),
        (earlier.clone(), StatusCode::OK),
    ] {
        let response = get(vec![
            (header::RANGE, "bytes=0-9".to_owned()),
            (header::IF_RANGE, value.clone()),
        ])
        .await;
        assert_eq!(response.status(), expected, "If-Range: {value}");
        let body = response.bytes().await.unwrap();
        if expected == StatusCode::OK {
            assert_eq!(body, content);
        } else {
            assert_eq!(body, &content[..10]);
        }
    }
}
