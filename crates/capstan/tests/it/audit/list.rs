//! `GET /api/audit`: filters, keyset pages, refusals in words; rows never change.

use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::{Value, json};

use super::call;
use crate::identity::detail;

fn actions(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn rows_are_listed_newest_first_with_filters_and_keyset_pages() {
    let cluster = TestCluster::start(1).await;
    let n = cluster.node(0).url();
    let get = |path: String| {
        let n = n.clone();
        async move {
            let (status, page) = call(&n, ADMIN_KEY, "GET", &path, None).await;
            assert_eq!(status, 200, "{path}: {page}");
            page
        }
    };
    let mut projects = Vec::new();
    for name in ["A", "B", "C"] {
        let (_, project) = call(
            &n,
            ADMIN_KEY,
            "POST",
            "/api/projects",
            Some(json!({"name": name})),
        )
        .await;
        projects.push(project["id"].as_i64().unwrap());
    }
    call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/environments",
        Some(json!({"name": "Production"})),
    )
    .await;
    let b = projects[1];
    call(
        &n,
        ADMIN_KEY,
        "PATCH",
        &format!("/api/projects/{b}"),
        Some(json!({"description": "x"})),
    )
    .await;

    let all = get("/api/audit".into()).await;
    assert_eq!(
        actions(&all),
        [
            "project.update",
            "environment.create",
            "project.create",
            "project.create",
            "project.create"
        ]
    );
    assert_eq!(all["next"], Value::Null);

    // Two at a time: the cursor goes on where the page ended, without gaps or repeats.
    let first = get("/api/audit?limit=2".into()).await;
    assert_eq!(actions(&first), ["project.update", "environment.create"]);
    let next = first["next"].as_str().unwrap();
    let second = get(format!("/api/audit?limit=2&cursor={next}")).await;
    assert_eq!(actions(&second), ["project.create", "project.create"]);
    let next = second["next"].as_str().unwrap();
    let third = get(format!("/api/audit?limit=2&cursor={next}")).await;
    assert_eq!(actions(&third), ["project.create"]);
    assert_eq!(third["next"], Value::Null);

    // Filters, alone and together.
    assert_eq!(
        get(format!("/api/audit?project_id={b}")).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        actions(&get("/api/audit?action=environment".into()).await),
        ["environment.create"]
    );
    assert_eq!(
        actions(&get("/api/audit?action=project.update".into()).await),
        ["project.update"]
    );
    assert_eq!(
        actions(&get(format!("/api/audit?object_kind=project&object_id={b}")).await),
        ["project.update", "project.create"]
    );
    assert_eq!(
        get("/api/audit?actor_kind=admin_key&actor=ADMIN%20KEY".into()).await["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        get("/api/audit?actor_kind=service".into()).await["items"],
        json!([])
    );
    let newest = all["items"][0]["at"].as_str().unwrap().to_owned();
    let since = get(format!("/api/audit?since={newest}")).await;
    assert_eq!(actions(&since), ["project.update"]);
    let until = get(format!("/api/audit?until={newest}")).await;
    assert_eq!(until["items"].as_array().unwrap().len(), 4);

    // Bad filters are refused in words.
    for (query, field) in [
        ("actor_kind=robot", "actor_kind"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
    ] {
        let (status, problem) =
            call(&n, ADMIN_KEY, "GET", &format!("/api/audit?{query}"), None).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert!(detail(&problem).starts_with(field), "{problem}");
    }
    let (status, problem) = call(&n, ADMIN_KEY, "GET", "/api/audit?limit=501", None).await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = call(
        &n,
        ADMIN_KEY,
        "GET",
        &format!("/api/audit?action={}", "a".repeat(201)),
        None,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
}

#[tokio::test]
async fn rows_cannot_be_changed_or_deleted_through_the_api_nor_updated_in_the_database() {
    let cluster = TestCluster::start(1).await;
    let n = cluster.node(0).url();
    call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({"name": "Shop"})),
    )
    .await;
    for method in ["PUT", "PATCH", "DELETE", "POST"] {
        let (status, _) = call(&n, ADMIN_KEY, method, "/api/audit", Some(json!({}))).await;
        assert_eq!(status, 405, "{method} /api/audit");
    }
    let pool = sqlx::PgPool::connect(&cluster.db.url).await.unwrap();
    let refused = sqlx::query("UPDATE audit_events SET actor_name = 'someone else'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("audit events are never changed"),
        "{refused}"
    );
    let names: Vec<String> = sqlx::query_scalar("SELECT actor_name FROM audit_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, ["admin key"]);
}

// The node runs on this test's runtime while the CLI is waited for.
#[tokio::test(flavor = "multi_thread")]
async fn capstan_audit_list_prints_a_table_and_json_lines() {
    let cluster = TestCluster::start(1).await;
    let n = cluster.node(0).url();
    call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({"name": "Shop"})),
    )
    .await;
    call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/environments",
        Some(json!({"name": "Production"})),
    )
    .await;
    let run = |args: &[&str]| {
        let output = std::process::Command::new(crate::capstan_bin())
            .args(["audit", "list", "--server", &n, "--api-key", ADMIN_KEY])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let table = run(&[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("AT"), "{table}");
    assert!(
        lines[1].contains("environment.create") && lines[1].contains("admin key"),
        "{table}"
    );
    assert!(
        lines[2].contains("project.create") && lines[2].contains("(Shop)"),
        "{table}"
    );
    assert!(lines[2].contains("127.0.0.1"), "{table}");
    let json = run(&["--json", "--project", "Shop"]);
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["action"], "project.create");
    assert_eq!(rows[0]["after"]["name"], "Shop");
}
