//! Text an operator sends: NUL refused everywhere naming the field, every problem of a
//! body reported at once, and names that look alike are refused or made one.

use capstan_testkit::{ADMIN_KEY, TestCluster, agents::registration_token};
use reqwest::Method;
use serde_json::Value;

use super::bad_input::send;

/// Sends a request that must succeed and returns its body.
async fn ok(method: Method, url: &str, body: &str) -> Value {
    let response = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// The `field`s of a problem's `errors` member.
fn fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no `errors` in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn nul_in_any_operator_text_is_a_422_naming_the_field() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let project = ok(
        Method::POST,
        &format!("{base}/api/projects"),
        r#"{"name": "Shop", "description": ""}"#,
    )
    .await;
    let p = project["id"].as_i64().unwrap();
    let environment = ok(
        Method::POST,
        &format!("{base}/api/environments"),
        r#"{"name": "Production", "description": ""}"#,
    )
    .await;
    let e = environment["id"].as_i64().unwrap();

    // (method, path, body, the field the detail must name)
    let bodies: Vec<(Method, String, &str, &str)> = vec![
        (
            Method::POST,
            "/api/projects".into(),
            r#"{"name": "Sh\u0000op", "description": ""}"#,
            "name",
        ),
        (
            Method::POST,
            "/api/projects".into(),
            r#"{"name": "Shop2", "description": "a\u0000b"}"#,
            "description",
        ),
        (
            Method::PATCH,
            format!("/api/projects/{p}"),
            r#"{"description": "\u0000"}"#,
            "description",
        ),
        (
            Method::PUT,
            format!("/api/projects/{p}/process"),
            r#"{"version": 0, "steps": [{"name": "Deploy\u0000", "actions": []}]}"#,
            "steps[0].name",
        ),
        (
            Method::PUT,
            format!("/api/projects/{p}/variables"),
            r#"{"version": 0, "variables": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                {"name": "C", "value": "x\u0000y"}]}"#,
            "variables[2].value",
        ),
        (
            Method::POST,
            format!("/api/projects/{p}/variables/preview"),
            r##"{"template": "#{A}\u0000"}"##,
            "template",
        ),
        (
            Method::POST,
            "/api/releases".into(),
            r#"{"project_id": 1, "notes": "first\u0000"}"#,
            "notes",
        ),
        (
            Method::POST,
            "/api/releases".into(),
            r#"{"project_id": 1, "version": "1.0\u0000"}"#,
            "version",
        ),
        (
            Method::POST,
            "/api/environments".into(),
            r#"{"name": "Staging", "description": "\u0000"}"#,
            "description",
        ),
        (
            Method::PUT,
            format!("/api/environments/{e}"),
            r#"{"name": "Prod\u0000", "description": ""}"#,
            "name",
        ),
        (
            Method::POST,
            "/api/agents/registration-tokens".into(),
            r#"{"note": "for web\u0000"}"#,
            "note",
        ),
        (
            Method::PATCH,
            "/api/agents/1".into(),
            r#"{"tags": ["web", "a\u0000"]}"#,
            "tags[1]",
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            r#"{"kind": "sleep", "args": {"ms": 1}, "concurrency_key": "k\u0000"}"#,
            "concurrency_key",
        ),
        (
            Method::POST,
            "/api/tasks/batch".into(),
            r#"{"tasks": [{"kind": "sleep", "args": {"ms": 1}},
                          {"kind": "sl\u0000eep", "args": {"ms": 1}}]}"#,
            "tasks[1].kind",
        ),
        (
            Method::POST,
            "/api/scripts".into(),
            r#"{"script": "echo \u0000", "tags": ["web"]}"#,
            "script",
        ),
        (
            Method::POST,
            "/api/scripts".into(),
            r#"{"script": "echo", "variables": [{"name": "X", "value": "\u0000"}]}"#,
            "variables[0].value",
        ),
        (
            Method::POST,
            "/api/projects".into(),
            r#"{"na\u0000me": "x", "description": ""}"#,
            r"na\0me",
        ),
    ];
    for (method, path, body, field) in bodies {
        let (status, problem) = send(method.clone(), &format!("{base}{path}"), Some(body)).await;
        assert_eq!(status, 422, "{method} {path} {body} -> {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(field) && detail.contains("NUL"),
            "{method} {path} {body} -> {problem}"
        );
        assert_eq!(fields(&problem), [field], "{method} {path} {body}");
    }

    // Query parameters and path segments.
    let queries = [
        ("/api/projects?search=a%00b", "search"),
        ("/api/projects?name=%00", "name"),
        ("/api/tasks?kind=sl%00eep", "kind"),
        ("/api/tasks?node=n%00", "node"),
        ("/api/agents?tag=web%00", "tag"),
        ("/api/agents?environment=%00", "environment"),
        ("/api/packages?q=%00", "q"),
        ("/api/packages/web%00app/versions", "id"),
        ("/api/packages/webapp/1.0%00", "version"),
        ("/api/tasks/1/artifacts/a%00b", "name"),
    ];
    for (path, field) in queries {
        let (status, problem) = send(Method::GET, &format!("{base}{path}"), None).await;
        assert_eq!(status, 422, "{path} -> {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(field) && detail.contains("NUL"),
            "{path} -> {problem}"
        );
        assert_eq!(fields(&problem), [field], "{path}");
    }
    let (status, problem) = send(
        Method::POST,
        &format!("{base}/api/packages/raw?id=web%00&version=1.0.0"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["id"], "{problem}");

    // Registering an agent is checked the same way, before its token is looked at.
    let token = registration_token(&cluster.node(0).client(), 1).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/agents/register"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"name": "web01", "environment": "Production", "tags": [], "version": "1\u0000"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(fields(&problem), ["version"], "{problem}");

    // Nothing above was stored.
    let projects = ok(Method::GET, &format!("{base}/api/projects"), "").await;
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_with_several_problems_gets_one_422_listing_them_all() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "/api/scripts",
            r#"{"script": "", "max_parallel": 0, "timeout": "soon", "tags": ["web"]}"#,
            &["timeout", "max_parallel", "script"],
        ),
        (
            "/api/tasks/batch",
            r#"{"tasks": [{"kind": "nope"}, {"kind": "sleep", "args": {"ms": 1}},
                          {"kind": "sleep", "args": {"ms": "long"}}]}"#,
            &["tasks[0]", "tasks[2]"],
        ),
        (
            "/api/projects",
            &format!(r#"{{"name": "", "description": "{}"}}"#, "d".repeat(4001)),
            &["name", "description"],
        ),
        (
            "/api/environments",
            &format!(
                r#"{{"name": " Prod", "description": "{}"}}"#,
                "d".repeat(4001)
            ),
            &["name", "description"],
        ),
        (
            "/api/agents/registration-tokens",
            r#"{"expires_in": "0s", "uses": 0}"#,
            &["expires_in", "uses"],
        ),
    ];
    for (path, body, want) in cases {
        let (status, problem) = send(Method::POST, &format!("{base}{path}"), Some(body)).await;
        assert_eq!(status, 422, "{path} -> {problem}");
        assert_eq!(fields(&problem), want, "{path} -> {problem}");
        for field in want {
            assert!(
                problem["detail"].as_str().unwrap().contains(field),
                "{path}: the detail names every problem too: {problem}"
            );
        }
    }
    // Nothing above was stored.
    let projects = ok(Method::GET, &format!("{base}/api/projects"), "").await;
    assert!(projects["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn names_that_look_alike_are_refused_or_made_one() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let create = |name: &str| format!(r#"{{"name": "{name}", "description": ""}}"#);
    ok(
        Method::POST,
        &format!("{base}/api/projects"),
        &create("Shop"),
    )
    .await;

    // Invisible and bidirectional characters are refused, naming the character.
    let refused = [
        (
            "/api/projects",
            create(r"Sh\u200bop"),
            "U+200B ZERO WIDTH SPACE",
        ),
        ("/api/projects", create(r"Sh\u00adop"), "U+00AD SOFT HYPHEN"),
        ("/api/projects", create(r"\ufeffShop"), "U+FEFF"),
        (
            "/api/environments",
            create(r"Prod\u202everp"),
            "U+202E RIGHT-TO-LEFT OVERRIDE",
        ),
        ("/api/environments", create(r"Prod\u2066"), "U+2066"),
    ];
    for (path, body, named) in &refused {
        let (status, problem) = send(Method::POST, &format!("{base}{path}"), Some(body)).await;
        assert_eq!(status, 422, "{path} {body} -> {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{path} {body} -> {problem}"
        );
    }

    // Notes are free text, not names.
    ok(
        Method::POST,
        &format!("{base}/api/agents/registration-tokens"),
        r#"{"note": "fine\u200b"}"#,
    )
    .await;

    // Composed and decomposed accents are one name.
    let composed = ok(
        Method::POST,
        &format!("{base}/api/projects"),
        &create("Caf\u{e9}"),
    )
    .await;
    assert_eq!(composed["name"], "Caf\u{e9}");
    let (status, problem) = send(
        Method::POST,
        &format!("{base}/api/projects"),
        Some(&create(r"Cafe\u0301")),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    // Renaming another project to the decomposed form collides too.
    let shop_id = 1;
    let (status, problem) = send(
        Method::PATCH,
        &format!("{base}/api/projects/{shop_id}"),
        Some(r#"{"name": "Cafe\u0301"}"#),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let decomposed_env = ok(
        Method::POST,
        &format!("{base}/api/environments"),
        &create(r"Re\u0301sume\u0301"),
    )
    .await;
    assert_eq!(decomposed_env["name"], "R\u{e9}sum\u{e9}");

    // Tags, variable names and step names follow the same rule.
    let project = ok(
        Method::POST,
        &format!("{base}/api/projects"),
        &create("Web"),
    )
    .await;
    let p = project["id"].as_i64().unwrap();
    let named = [
        (
            Method::PUT,
            format!("/api/projects/{p}/variables"),
            r#"{"version": 0, "variables": [{"name": "Db\u200bName", "value": "x"}]}"#,
            "U+200B",
        ),
        (
            Method::PUT,
            format!("/api/projects/{p}/variables"),
            r#"{"version": 0, "variables": [{"name": "DbName", "value": "x",
                "scope": {"tags": ["web\u200d"]}}]}"#,
            "U+200D",
        ),
        (
            Method::PATCH,
            "/api/agents/1".into(),
            r#"{"tags": ["web\u202e"]}"#,
            "U+202E",
        ),
        (
            Method::PUT,
            format!("/api/projects/{p}/process"),
            r#"{"version": 0, "steps": [{"name": "Deploy\u200f", "target_tags": ["web"], "actions": []}]}"#,
            "U+200F",
        ),
        (
            Method::POST,
            "/api/scripts".into(),
            r#"{"script": "echo", "tags": ["web\u200b"]}"#,
            "U+200B",
        ),
    ];
    for (method, path, body, named) in named {
        let (status, problem) = send(method.clone(), &format!("{base}{path}"), Some(body)).await;
        assert_eq!(status, 422, "{method} {path} {body} -> {problem}");
        assert!(
            problem.to_string().contains(named),
            "{method} {path} {body} -> {problem}"
        );
    }
}
