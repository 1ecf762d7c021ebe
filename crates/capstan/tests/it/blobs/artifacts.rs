//! Task artifacts on every kind of store, and the feed's answers to bad input.

use std::time::Duration;

use bytes::Bytes;
use capstan_testkit::eventually;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use super::{
    Backend, StoreCluster, on_every_store,
    packages::{auth, http, noise, push_form, push_raw, sha256_hex},
};

on_every_store!(artifacts_attach_list_download_and_go_with_their_task);

async fn artifacts_attach_list_download_and_go_with_their_task(backend: Backend) {
    let env = StoreCluster::start(backend, 2, |_| {}).await;
    let (a, b) = (env.cluster.node(0).url(), env.cluster.node(1).url());
    let task = env
        .cluster
        .node(0)
        .client()
        .create_task(&capstan_api::CreateTaskRequest::new(
            "sleep",
            json!({"ms": 1}),
        ))
        .await
        .unwrap();
    let report = noise(9 * 1024 * 1024 + 1, 7);
    let url = format!("{a}/api/tasks/{}/artifacts/report.tar.gz", task.id);
    let response = auth(http().post(&url))
        .body(report.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["size"], report.len());
    assert_eq!(created["sha256"], sha256_hex(&report));
    let response = auth(http().post(&url)).body("again").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);

    let list: Value = auth(http().get(format!("{b}/api/tasks/{}/artifacts", task.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["name"], "report.tar.gz");
    let download = format!("{b}/api/tasks/{}/artifacts/report.tar.gz", task.id);
    let body = auth(http().get(&download))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, Bytes::from(report.clone()));
    let part = auth(http().get(&download))
        .header(header::RANGE, "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap(), report[100..200]);

    // Deleting the task (as history retention does) hands its artifacts' blobs over.
    let db = sqlx::PgPool::connect(&env.cluster.db.url).await.unwrap();
    capstan_testkit::tasks::wait_finished(
        &env.cluster.node(0).client(),
        &[task.id],
        Duration::from_secs(10),
    )
    .await;
    sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(task.id)
        .execute(&db)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the artifact's blob to be deleted",
        || async { env.leftovers("artifacts").await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn bad_uploads_and_downloads_get_a_4xx_that_says_what_is_wrong() {
    let env = StoreCluster::start(Backend::Directory, 1, |_| {}).await;
    let base = env.cluster.node(0).url();
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            push_raw(&base, "", noise(10, 1)).await,
            400,
            "a raw upload needs `?id=` and `?version=`",
        ),
        (
            push_raw(&base, "?id=../etc&version=1.0", noise(10, 1)).await,
            422,
            "`../etc` is not a package id: use only letters, digits, `.`, `_` and `-`",
        ),
        (
            push_raw(&base, "?id=App&version=latest", noise(10, 1)).await,
            422,
            "`latest` is not a version: it must start with numbers separated by dots",
        ),
        (
            push_raw(&base, "?id=App&version=1.0&extension=exe", noise(10, 1)).await,
            422,
            "`exe` is not a package extension",
        ),
        (
            push_raw(&base, "?id=App&version=1.0&colour=red", noise(10, 1)).await,
            400,
            "unknown field `colour`",
        ),
        (
            push_form(&base, "App.zip", noise(10, 1), "").await,
            422,
            "cannot read an id and a version from `App.zip`",
        ),
        (
            push_form(&base, "App.1.0.0.zip", noise(10, 1), "?version=2.0.0").await,
            422,
            "the file name `App.1.0.0.zip` says App 1.0.0, but the query says otherwise",
        ),
        (
            auth(http().post(format!("{base}/api/packages/raw")))
                .multipart(reqwest::multipart::Form::new().text("other", "x"))
                .send()
                .await
                .unwrap(),
            400,
            "the multipart body has no `file` field",
        ),
        (
            auth(http().get(format!("{base}/api/packages/App/1.0.0/raw")))
                .send()
                .await
                .unwrap(),
            404,
            "there is no package App 1.0.0 in the feed",
        ),
        (
            auth(http().get(format!("{base}/api/packages/App/versions")))
                .send()
                .await
                .unwrap(),
            404,
            "there is no package `App` in the feed",
        ),
        (
            auth(http().get(format!("{base}/api/packages/App/1.0.0.0.0")))
                .send()
                .await
                .unwrap(),
            400,
            "is not a version: it has more than four numbers",
        ),
        (
            auth(http().get(format!("{base}/api/packages?limit=0")))
                .send()
                .await
                .unwrap(),
            422,
            "`limit` must be 1 to 500, got 0",
        ),
        (
            auth(http().get(format!("{base}/api/packages/App/versions?cursor=zzz")))
                .send()
                .await
                .unwrap(),
            400,
            "`cursor` must be the `next` of a previous page, got `zzz`",
        ),
        (
            auth(http().post(format!("{base}/api/tasks/999999/artifacts/a.txt")))
                .body("x")
                .send()
                .await
                .unwrap(),
            404,
            "there is no task 999999",
        ),
        (
            auth(http().post(format!("{base}/api/tasks/1/artifacts/.env")))
                .body("x")
                .send()
                .await
                .unwrap(),
            400,
            "`.env` is not an artifact name",
        ),
        (
            auth(http().get(format!("{base}/api/tasks/999999/artifacts")))
                .send()
                .await
                .unwrap(),
            404,
            "there is no task 999999",
        ),
        (
            http()
                .post(format!("{base}/api/packages/raw?id=App&version=1.0"))
                .body("x")
                .send()
                .await
                .unwrap(),
            401,
            "",
        ),
    ];
    for (response, status, detail) in cases {
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), status, "{url}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json",
            "{url}"
        );
        let problem: Value = response.json().await.unwrap();
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{url}: {text}");
    }

    // Ranges that cannot be served.
    assert_eq!(
        push_raw(&base, "?id=App&version=1.0.0", noise(1000, 1))
            .await
            .status(),
        StatusCode::CREATED
    );
    let raw = format!("{base}/api/packages/App/1.0.0/raw");
    for (range, says) in [
        (
            "bytes=1000-",
            "the range starts at byte 1000, past the end; the content is 1000 bytes",
        ),
        ("bytes=9-2", "ends before it starts"),
        ("bytes=x-2", "is not a number"),
    ] {
        let response = auth(http().get(&raw))
            .header(header::RANGE, range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{range}: {problem}"
        );
    }
    // Nothing above stored a package.
    let list: Value = auth(http().get(format!("{base}/api/packages")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn blob_retention_keeps_the_newest_versions_and_drops_old_tasks_artifacts() {
    let env = StoreCluster::start(Backend::Directory, 2, |settings| {
        settings.package_retention_versions = 2;
        settings.task_blob_retention = Duration::from_millis(500);
        settings.blob_retention_every = Duration::from_secs(1);
    })
    .await;
    let base = env.cluster.node(0).url();
    for version in ["1.0.0", "1.10.0", "1.2.0", "0.9.0"] {
        let response = push_raw(
            &base,
            &format!("?id=Kept&version={version}"),
            noise(1000, 1),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let client = env.cluster.node(0).client();
    let task = client
        .create_task(&capstan_api::CreateTaskRequest::new(
            "sleep",
            json!({"ms": 100, "log_every_ms": 20}),
        ))
        .await
        .unwrap();
    let url = format!("{base}/api/tasks/{}/artifacts/old.log", task.id);
    assert_eq!(
        auth(http().post(&url))
            .body("old")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );

    eventually(
        Duration::from_secs(15),
        "retention to trim versions and artifacts",
        || async {
            let page: Value = auth(http().get(format!("{base}/api/packages/Kept/versions")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let versions: Vec<String> = page["items"]
                .as_array()?
                .iter()
                .map(|v| v["version"].as_str().unwrap_or_default().to_owned())
                .collect();
            let artifacts = env.leftovers("artifacts").await;
            let logs = env.leftovers(&format!("logs/{}/", task.id)).await;
            (versions == ["1.10.0", "1.2.0"] && artifacts.is_empty() && logs.is_empty())
                .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the trimmed versions' blobs to go",
        || async { (env.leftovers("packages/Kept").await.len() == 2).then_some(()) },
    )
    .await;
    // The task itself stays: only its blobs were old enough to go.
    assert!(client.get_task(task.id).await.is_ok());
    // A run's own log says what it deleted. (Runs delete each other's logs here,
    // since they are older than the 500 ms retention: catch a fresh one.)
    eventually(Duration::from_secs(10), "a retention run's log", || async {
        let runs = client
            .list_tasks(&capstan_api::TaskQuery {
                kind: Some("blob-retention".into()),
                state: Some(capstan_core::TaskState::Succeeded),
                limit: Some(3),
                ..Default::default()
            })
            .await
            .ok()?;
        for run in runs.items {
            let log = auth(http().get(format!("{base}/api/tasks/{}/log", run.id)))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            if log.contains("deleted the logs of") {
                return Some(());
            }
        }
        None
    })
    .await;
    let old_log = auth(http().get(format!("{base}/api/tasks/{}/log", task.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(old_log.status(), StatusCode::OK);
    assert_eq!(old_log.text().await.unwrap(), "");
}
