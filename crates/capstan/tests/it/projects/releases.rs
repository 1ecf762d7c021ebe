use capstan_testkit::TestCluster;
use serde_json::json;
use sqlx::Connection as _;

use super::{Api, detail, package_step, script_step};
use crate::cli::capstan;

#[tokio::test]
async fn a_release_keeps_what_it_froze_while_the_project_moves_on() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let project = api.project("Shop").await;
    let other = api.project("Blog").await;

    let (status, body) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("no steps"), "{body}");
    let (status, body) = api
        .post("/api/releases", json!({ "project_id": 9999 }))
        .await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("no project 9999"), "{body}");

    api.save_process(project, 0, json!([script_step("Deploy", "web", "echo v1")]))
        .await;
    api.save_variables(project, 0, json!([{ "name": "Colour", "value": "blue" }]))
        .await;
    let (status, first) = api
        .post(
            "/api/releases",
            json!({ "project_id": project, "version": "1.0.0", "notes": "first" }),
        )
        .await;
    assert_eq!(status, 201, "{first}");

    api.save_process(project, 1, json!([script_step("Deploy", "web", "echo v2")]))
        .await;
    api.save_variables(project, 1, json!([{ "name": "Colour", "value": "green" }]))
        .await;
    let (_, frozen) = api.get(&format!("/api/releases/{}", first["id"])).await;
    assert_eq!(frozen["steps"][0]["actions"][0]["body"], "echo v1");
    assert_eq!(frozen["variables"][0]["value"], "blue");
    assert_eq!(frozen["process_version"], 1);
    assert_eq!(frozen["notes"], "first");

    // Without a version, the next one after the newest.
    let (status, second) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["version"], "1.0.1");
    assert_eq!(second["steps"][0]["actions"][0]["body"], "echo v2");
    assert_eq!(second["variables"][0]["value"], "green");

    let (status, body) = api
        .post(
            "/api/releases",
            json!({ "project_id": project, "version": "1.0.0" }),
        )
        .await;
    assert_eq!(status, 409);
    assert!(
        detail(&body).contains("already has release 1.0.0"),
        "{body}"
    );
    // Versions are unique per project only.
    api.save_process(other, 0, json!([script_step("Post", "web", "echo")]))
        .await;
    let (status, _) = api
        .post(
            "/api/releases",
            json!({ "project_id": other, "version": "1.0.0" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api
        .post(
            "/api/releases",
            json!({ "project_id": other, "version": "one" }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("not a version"), "{body}");

    let (_, listed) = api
        .get(&format!("/api/releases?project_id={project}"))
        .await;
    let versions: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.1", "1.0.0"]);
}

async fn push(client: &capstan_api::ApiClient, id: &str, version: &str) {
    let bytes = format!("{id} {version}").into_bytes();
    client
        .push_package(id, version, "zip", false, bytes.len() as u64, bytes.into())
        .await
        .unwrap();
}

#[tokio::test]
async fn releases_resolve_package_versions_from_the_feed() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let client = cluster.node(0).client();
    for version in ["1.0.0", "1.2.0", "2.0.0-beta.1"] {
        push(&client, "Web", version).await;
    }
    push(&client, "Worker", "3.1.0").await;
    let project = api.project("Shop").await;
    let mut ruled = package_step("Web by rule", "Web", None);
    ruled["actions"][0]["version_rule"] = json!(">=1.0, <1.2");
    let (status, saved) = api
        .save_process(
            project,
            0,
            json!([
                package_step("Web newest", "Web", None),
                ruled,
                package_step("Worker pinned", "Worker", Some("3.1.0")),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");

    let (status, release) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{release}");
    let chosen: Vec<(&str, &str)> = release["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["step"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        chosen,
        [
            ("Web newest", "1.2.0"),
            ("Web by rule", "1.0.0"),
            ("Worker pinned", "3.1.0")
        ]
    );

    // A selection overrides every action deploying that package.
    let (status, release) = api
        .post(
            "/api/releases",
            json!({ "project_id": project,
                    "packages": [{ "package_id": "Web", "version": "2.0.0-beta.1" }] }),
        )
        .await;
    assert_eq!(status, 201, "{release}");
    assert_eq!(release["packages"][0]["version"], "2.0.0-beta.1");
    assert_eq!(release["packages"][1]["version"], "2.0.0-beta.1");

    for (packages, why) in [
        (
            json!([{ "package_id": "Web", "version": "9.9.9" }]),
            "Web` 9.9.9 is not in the feed",
        ),
        (
            json!([{ "package_id": "Nope", "version": "1.0.0" }]),
            "deploys no package `Nope`",
        ),
    ] {
        let (status, body) = api
            .post(
                "/api/releases",
                json!({ "project_id": project, "packages": packages }),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(detail(&body).contains(why), "{body}");
    }

    // Every problem of one body is reported in one answer.
    let (status, body) = api
        .post(
            "/api/releases",
            json!({ "project_id": project, "version": "not a version!",
                    "notes": "x".repeat(64 * 1024 + 1),
                    "packages": [{ "package_id": "Nope", "version": "1.0.0" },
                                 { "package_id": "Web", "version": "9.9.9" }] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no `errors` list: {body}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["notes", "version", "packages[0]", "steps[0].actions[0]"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_create_and_list_releases_with_the_cli() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    shop_created_with_the_cli(&server, "echo").await;
    let create = [
        "releases",
        "create",
        "--project",
        "Shop",
        "--version",
        "2.4.0",
    ];
    let (ok, out) = capstan(&server, &create);
    assert!(ok, "{out}");
    assert!(out.contains("created release 2.4.0 of Shop"), "{out}");
    let (ok, out) = capstan(&server, &create);
    assert!(!ok);
    assert!(out.contains("already has release 2.4.0"), "{out}");
    let (ok, out) = capstan(&server, &["releases", "list", "--project", "shop"]);
    assert!(ok, "{out}");
    assert!(out.contains("2.4.0"), "{out}");
    let (ok, out) = capstan(&server, &["releases", "create", "--project", "Nope"]);
    assert!(!ok);
    assert!(out.contains("no project is named `Nope`"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_edit_a_process_and_variables_as_files_with_the_cli() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let dir = capstan_testkit::TempDir::new("capstan-cli-process");
    let (api, project) = shop_created_with_the_cli(&server, "echo v1").await;
    api.save_variables(
        project,
        0,
        json!([{ "name": "Password", "value": "pa55-w0rd-x", "sensitive": true }]),
    )
    .await;

    // The process as printed, edited, saved back; the warning goes to stderr.
    let (printed, warnings) = stdout_of(&server, &["projects", "process", "Shop"]);
    assert!(
        warnings.contains("no agent carries the tag `web`"),
        "{warnings}"
    );
    let edited = printed.replace("echo v1", "echo v2");
    let process_file = dir.0.join("process.json");
    std::fs::write(&process_file, &edited).unwrap();
    let path = process_file.to_str().unwrap();
    let (ok, out) = capstan(&server, &["projects", "process-put", "Shop", path]);
    assert!(ok && out.contains("version 2"), "{out}");
    // The same file again is based on version 1: refused, nothing overwritten.
    let (ok, out) = capstan(&server, &["projects", "process-put", "Shop", path]);
    assert!(!ok && out.contains("you sent version 1"), "{out}");

    // Variables as printed keep the sensitive value they do not show.
    let (printed, _) = stdout_of(&server, &["projects", "variables", "Shop"]);
    assert!(!printed.contains("pa55-w0rd-x"), "{printed}");
    let variables_file = dir.0.join("variables.json");
    std::fs::write(&variables_file, &printed).unwrap();
    let (ok, out) = capstan(
        &server,
        &[
            "projects",
            "variables-put",
            "Shop",
            variables_file.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("version 2"), "{out}");
    // The preview refuses to compare a sensitive value, so open it as a node would.
    let mut conn = sqlx::PgConnection::connect(&cluster.db.url).await.unwrap();
    let secret_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT secret_id FROM project_variables WHERE project_id = $1 AND name = 'Password'",
    )
    .bind(project)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let opened = cluster
        .node(0)
        .secrets
        .open_many(&mut conn, &[secret_id])
        .await
        .unwrap();
    assert_eq!(opened[&secret_id], "pa55-w0rd-x");
}

/// A successful CLI command's stdout and stderr, apart.
fn stdout_of(server: &str, args: &[&str]) -> (String, String) {
    let output = std::process::Command::new(crate::capstan_bin())
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env("CAPSTAN_API_KEY", capstan_testkit::ADMIN_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// Creates project "Shop" with the CLI and gives it one script step through the API.
async fn shop_created_with_the_cli(server: &str, script: &str) -> (Api, i64) {
    let (ok, out) = capstan(server, &["projects", "create", "Shop"]);
    assert!(ok, "{out}");
    let api = Api::new(server);
    let project = api.get("/api/projects?name=Shop").await.1["items"][0]["id"]
        .as_i64()
        .unwrap();
    let (status, body) = api
        .save_process(project, 0, json!([script_step("Deploy", "web", script)]))
        .await;
    assert_eq!(status, 200, "{body}");
    (api, project)
}
