//! The package feed on every kind of store: streamed uploads, downloads from any node,
//! ranges, duplicates, replacement, deletion, and uploads that never complete.

use std::time::Duration;

use bytes::Bytes;
use capstan_testkit::{ADMIN_KEY, eventually};
use reqwest::{StatusCode, header};
use serde_json::Value;
use sha2::Digest;

use super::{Backend, StoreCluster, on_every_store};

on_every_store!(
    uploads_read_back_whole_and_in_ranges_from_every_node,
    duplicates_conflict_replacements_and_deletes_free_their_blobs,
    oversize_and_interrupted_uploads_leave_nothing_behind,
);

/// Bytes that do not compress, the same for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(bytes);
    sha256_hex_of(hasher)
}

pub fn sha256_hex_of(hasher: sha2::Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn auth(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.bearer_auth(ADMIN_KEY)
}

/// Uploads `content` as multipart/form-data under `file_name`.
pub async fn push_form(
    base: &str,
    file_name: &str,
    content: Vec<u8>,
    query: &str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("note", "fields other than `file` are ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(content).file_name(file_name.to_owned()),
        );
    auth(http().post(format!("{base}/api/packages/raw{query}")))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Uploads `content` as a raw body.
pub async fn push_raw(base: &str, query: &str, content: Vec<u8>) -> reqwest::Response {
    auth(http().post(format!("{base}/api/packages/raw{query}")))
        .body(content)
        .send()
        .await
        .unwrap()
}

/// The response, if it is 201; else a failure that shows what the node said.
async fn expect_created(response: reqwest::Response) -> reqwest::Response {
    let status = response.status();
    if status != StatusCode::CREATED {
        panic!(
            "expected 201, got {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    response
}

async fn get(url: &str, headers: &[(header::HeaderName, &str)]) -> reqwest::Response {
    let mut request = auth(http().get(url));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    request.send().await.unwrap()
}

async fn uploads_read_back_whole_and_in_ranges_from_every_node(backend: Backend) {
    let env = StoreCluster::start(backend, 2, |_| {}).await;
    let (a, b) = (env.cluster.node(0).url(), env.cluster.node(1).url());
    // Several 8 MiB parts and a short last one.
    let content = noise(20 * 1024 * 1024 + 12_345, 1);
    let response =
        expect_created(push_form(&a, "Acme.Web.1.2.3.zip", content.clone(), "").await).await;
    assert_eq!(
        response.headers()[header::LOCATION],
        "/api/packages/Acme.Web/1.2.3"
    );
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["id"], "Acme.Web");
    assert_eq!(created["version"], "1.2.3");
    assert_eq!(created["extension"], "zip");
    assert_eq!(created["size"], content.len());
    assert_eq!(created["sha256"], sha256_hex(&content));

    let small = noise(1000, 2);
    expect_created(
        push_raw(
            &b,
            "?id=Acme.Web&version=1.10.0-beta.1&extension=tar.gz",
            small.clone(),
        )
        .await,
    )
    .await;
    expect_created(push_raw(&b, "?id=Acme.Web&version=1.10.0", small.clone()).await).await;
    let response = push_raw(&a, "?id=Other&version=1", Vec::new()).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "an empty package is a package"
    );

    // Whole, from the node that did not receive it.
    let raw = format!("{b}/api/packages/Acme.Web/1.2.3/raw");
    let response = get(&raw, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag = format!("\"{}\"", sha256_hex(&content));
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
    assert_eq!(response.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/zip");
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"Acme.Web.1.2.3.zip\""
    );
    assert_eq!(
        response.bytes().await.unwrap(),
        Bytes::from(content.clone())
    );

    // Ranges: a span across a part boundary, an open end, a suffix.
    let boundary = 8 * 1024 * 1024;
    for (range, expected) in [
        (
            format!("bytes={}-{}", boundary - 10, boundary + 9),
            &content[boundary - 10..boundary + 10],
        ),
        (
            format!("bytes={}-", content.len() - 5),
            &content[content.len() - 5..],
        ),
        ("bytes=-7".to_owned(), &content[content.len() - 7..]),
    ] {
        let response = get(&raw, &[(header::RANGE, &range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let total = content.len();
        let start = total - expected.len().min(total);
        let content_range = response.headers()[header::CONTENT_RANGE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_range.ends_with(&format!("/{total}")),
            "{content_range}"
        );
        if range.starts_with("bytes=-") {
            assert_eq!(
                content_range,
                format!("bytes {start}-{}/{total}", total - 1)
            );
        }
        assert_eq!(response.bytes().await.unwrap(), expected, "{range}");
    }
    let response = get(&raw, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // Metadata, lists and versions newest first, paged.
    let meta: Value = get(&format!("{b}/api/packages/Acme.Web/1.2.3"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["sha256"], sha256_hex(&content));
    let list: Value = get(&format!("{a}/api/packages?limit=1"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], "Acme.Web");
    assert_eq!(list["items"][0]["latest_version"], "1.10.0");
    assert_eq!(list["items"][0]["versions"], 3);
    let next = list["next"].as_str().unwrap().to_owned();
    let list: Value = get(&format!("{a}/api/packages?limit=1&cursor={next}"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], "Other");
    assert!(list["next"].is_null());
    let search: Value = get(&format!("{a}/api/packages?q=acme"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(search["items"].as_array().unwrap().len(), 1);
    let page: Value = get(&format!("{a}/api/packages/Acme.Web/versions?limit=2"), &[])
        .await
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.10.0", "1.10.0-beta.1"]);
    let next = page["next"].as_str().unwrap();
    let page: Value = get(
        &format!("{a}/api/packages/Acme.Web/versions?limit=2&cursor={next}"),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["items"][0]["version"], "1.2.3");
    assert!(page["next"].is_null());
    let beta: Value = get(&format!("{a}/api/packages/Acme.Web/1.10.0-beta.1"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(beta["extension"], "tar.gz");
}

async fn duplicates_conflict_replacements_and_deletes_free_their_blobs(backend: Backend) {
    let env = StoreCluster::start(backend, 2, |_| {}).await;
    let (a, b) = (env.cluster.node(0).url(), env.cluster.node(1).url());
    let first = noise(300_000, 3);
    assert_eq!(
        push_raw(&a, "?id=App&version=2.0.0", first.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let before = env.leftovers("packages/App").await;
    assert_eq!(before.len(), 1, "{before:?}");

    for response in [
        push_raw(&b, "?id=App&version=2.0.0", noise(10, 4)).await,
        push_form(&b, "App.2.0.0.zip", noise(10, 4), "").await,
    ] {
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["detail"],
            "package App 2.0.0 already exists; upload with `?replace=true` to replace it"
        );
    }
    // The original is untouched.
    let body = get(&format!("{b}/api/packages/App/2.0.0/raw"), &[])
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, Bytes::from(first));

    let second = noise(200_000, 5);
    expect_created(push_raw(&b, "?id=App&version=2.0.0&replace=true", second.clone()).await).await;
    let body = get(&format!("{a}/api/packages/App/2.0.0/raw"), &[])
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, Bytes::from(second));
    // The replaced blob is deleted, the new one kept.
    let kept = eventually(
        Duration::from_secs(10),
        "the replaced blob to be deleted",
        || async {
            let now = env.leftovers("packages/App").await;
            (now.len() == 1 && now != before).then_some(now)
        },
    )
    .await;
    assert_eq!(kept.len(), 1);

    let response = auth(http().delete(format!("{a}/api/packages/App/2.0.0")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = get(&format!("{b}/api/packages/App/2.0.0/raw"), &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = auth(http().delete(format!("{a}/api/packages/App/2.0.0")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    eventually(
        Duration::from_secs(10),
        "the deleted package's blob to go",
        || async { env.leftovers("packages/App").await.is_empty().then_some(()) },
    )
    .await;
}

async fn oversize_and_interrupted_uploads_leave_nothing_behind(backend: Backend) {
    let env = StoreCluster::start(backend, 1, |settings| {
        settings.max_upload_size = 12 * 1024 * 1024;
    })
    .await;
    let base = env.cluster.node(0).url();

    // Declared too large: refused before a byte is read. (The body never comes, so the
    // client cannot be cut off while still writing it.)
    let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
    let response = auth(http().post(format!("{base}/api/packages/raw?id=Big&version=1.0.0")))
        .header(header::CONTENT_LENGTH, 13 * 1024 * 1024)
        .body(reqwest::Body::wrap_stream(never))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "the upload is larger than this node accepts (12 MiB, CAPSTAN_MAX_UPLOAD_SIZE)"
    );
    // Too large without a declared length (chunked): refused once it passes the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..13)
        .map(|i| Ok(Bytes::from(noise(1024 * 1024, 100 + i))))
        .collect();
    let response = auth(http().post(format!("{base}/api/packages/raw?id=Big&version=1.0.0")))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    // Cut off half way: the client's body fails after 9 MiB (more than one part).
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = (0..9)
        .map(|i| Ok(Bytes::from(noise(1024 * 1024, 200 + i))))
        .collect();
    chunks.push(Err(std::io::Error::other("the client went away")));
    let response = auth(http().post(format!("{base}/api/packages/raw?id=Cut&version=1.0.0")))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(
        response.is_err(),
        "a body that fails cannot be answered with success"
    );

    for id in ["Big", "Cut"] {
        let response = get(&format!("{base}/api/packages/{id}/1.0.0"), &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{id}");
    }
    let db = sqlx::PgPool::connect(&env.cluster.db.url).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let uploads: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT blob_key, upload_id FROM blob_uploads")
                .fetch_all(&db)
                .await
                .unwrap();
        let left = env.leftovers("packages").await;
        if uploads.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "abandoned uploads were not cleaned up: records {uploads:?}, blobs {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
