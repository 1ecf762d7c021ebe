use capstan_testkit::{
    TempDir, TestCluster,
    process::{ProcessOptions, ServerProcess},
};
use serde_json::{Value, json};

use super::{Api, detail, script_step};

const SECRET: &str = "hunter2-s3cr3t-value";

/// Renders `template` for a context and returns the answer.
async fn preview(api: &Api, project: i64, template: &str, context: Value) -> (u16, Value) {
    let mut body = context;
    body["template"] = json!(template);
    api.post(&format!("/api/projects/{project}/variables/preview"), body)
        .await
}

async fn environments(api: &Api, names: &[&str]) {
    for name in names {
        let (status, body) = api.post("/api/environments", json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test]
async fn the_most_specific_scope_wins() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let api = Api::new(&base);
    environments(&api, &["Staging", "Production"]).await;
    let client = cluster.node(0).client();
    let _agents = crate::agents::sim_agents(&client, &base, &["web01", "web02"], &["web"]).await;
    let project = api.project("Shop").await;
    let (status, body) = api
        .save_variables(
            project,
            0,
            json!([
                { "name": "Url", "value": "default" },
                { "name": "Url", "value": "env", "scope": { "environments": ["Production"] } },
                { "name": "Url", "value": "tag", "scope": { "tags": ["web"] } },
                { "name": "Url", "value": "env+tag",
                  "scope": { "environments": ["Production"], "tags": ["web"] } },
                { "name": "Url", "value": "machine", "scope": { "machines": ["web02"] } },
                { "name": "Url", "value": "step", "scope": { "steps": ["Deploy"] } },
                { "name": "Greeting", "value": "#{Url} from #{Capstan.Machine.Name}" },
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);

    for (context, expected) in [
        (json!({}), "default"),
        (json!({ "environment": "Staging" }), "default"),
        (json!({ "environment": "Production" }), "env"),
        (json!({ "environment": "Staging", "tags": ["web"] }), "tag"),
        // web01's own environment (Production) and tags (web) apply.
        (json!({ "machine": "web01" }), "env+tag"),
        (json!({ "machine": "web02" }), "machine"),
        (json!({ "machine": "web02", "step": "Deploy" }), "step"),
    ] {
        let (status, body) = preview(&api, project, "#{Url}", context.clone()).await;
        assert_eq!(status, 200, "{context}: {body}");
        assert_eq!(body["result"], expected, "{context}");
        assert_eq!(body["used"][0]["value"], expected, "{context}");
    }
    // Values are templates too, evaluated in the same scope.
    let (_, body) = preview(&api, project, "#{Greeting}", json!({ "machine": "web02" })).await;
    assert_eq!(body["result"], "machine from web02");

    let (status, body) = preview(&api, project, "a\n  #{Nope}", json!({})).await;
    assert_eq!(status, 422);
    assert!(
        detail(&body).contains("line 2, column 3") && detail(&body).contains("Nope"),
        "{body}"
    );
}

#[tokio::test]
async fn variables_are_checked_and_saved_only_over_the_version_read() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    environments(&api, &["Production"]).await;
    let project = api.project("Shop").await;
    for (variables, why) in [
        (
            json!([{ "name": "Capstan.Mine", "value": "x" }]),
            "reserved",
        ),
        (json!([{ "name": "", "value": "x" }]), "variables[0].name"),
        (
            json!([{ "name": "A", "value": "x", "scope": { "environments": ["Prod"] } }]),
            "no environment `Prod`",
        ),
        (
            json!([
                { "name": "A", "value": "1", "scope": { "tags": ["web"] } },
                { "name": "a", "value": "2", "scope": { "tags": ["web"] } },
            ]),
            "same scope",
        ),
        (
            json!([{ "name": "A", "sensitive": true }]),
            "needs a `value`",
        ),
        (
            json!([{ "name": "A", "value": "x".repeat(300 * 1024) }]),
            "at most 256 KiB",
        ),
    ] {
        let (status, body) = api.save_variables(project, 0, variables).await;
        assert_eq!(status, 422, "{why}: {body}");
        assert!(detail(&body).contains(why), "{why}: {body}");
    }

    let too_many: Vec<_> = (0..10_001)
        .map(|i| json!({ "name": format!("V{i}"), "value": "x" }))
        .collect();
    let (status, body) = api.save_variables(project, 0, json!(too_many)).await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("at most 10000 variables"), "{body}");
    let (status, body) = preview(&api, project, &"x".repeat(300 * 1024), json!({})).await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("at most 256 KiB"), "{body}");

    let (status, saved) = api
        .save_variables(project, 0, json!([{ "name": "A", "value": "1" }]))
        .await;
    assert_eq!(status, 200, "{saved}");
    let (status, refused) = api
        .save_variables(project, 0, json!([{ "name": "A", "value": "2" }]))
        .await;
    assert_eq!(status, 409);
    assert!(detail(&refused).contains("at version 1"), "{refused}");
    let (_, read) = api.get(&format!("/api/projects/{project}/variables")).await;
    assert_eq!(read["variables"][0]["value"], "1");
    assert_eq!(read["version"], 1);
}

/// Every text column of every table, searched for `needle`.
pub(crate) async fn tables_holding(database_url: &str, needle: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut holding = Vec::new();
    for table in tables {
        let found: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM \"{table}\" t WHERE t::text LIKE '%' || $1 || '%' LIMIT 1"
        ))
        .bind(needle)
        .fetch_optional(&pool)
        .await
        .unwrap();
        if found.is_some() {
            holding.push(table);
        }
    }
    pool.close().await;
    holding
}

#[tokio::test]
async fn a_sensitive_value_never_leaves_in_clear_text() {
    let db = capstan_testkit::TestDatabase::new().await;
    let dir = TempDir::new("capstan-sensitive");
    let key = "q1fzhq1WqzuUqv7zN0N3QqgYgXNQ3sAv2XQvb8bQe9U=";
    let node = ServerProcess::start(
        &crate::capstan_bin(),
        "sensitive",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![
                ("CAPSTAN_MASTER_KEY".into(), key.into()),
                ("RUST_LOG".into(), "debug".into()),
            ],
        },
    )
    .await;
    let api = Api::new(&node.url());
    let project = api.project("Shop").await;
    let (status, saved) = api
        .save_variables(
            project,
            0,
            json!([
                { "name": "Db.Password", "value": SECRET, "sensitive": true },
                { "name": "Db.User", "value": "shop" },
            ]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    assert!(!saved.to_string().contains(SECRET));
    assert_eq!(saved["variables"][0]["value"], Value::Null);
    assert_eq!(saved["variables"][0]["sensitive"], true);

    // Saved again without its value (as an editor who never saw it would), it keeps it.
    let id = saved["variables"][0]["id"].clone();
    let (status, saved) = api
        .save_variables(
            project,
            1,
            json!([
                { "id": id, "name": "Db.Password", "sensitive": true },
                { "name": "Db.User", "value": "shop" },
            ]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let (status, shown) = preview(&api, project, "#{Db.Password}", json!({})).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["result"], "********");
    assert_eq!(shown["used"][0]["value"], Value::Null);
    // Its value was kept: the release below runs with it.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_variables WHERE secret_id IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);

    // A release copies it under a secret of its own.
    let (status, _) = api
        .save_process(
            project,
            0,
            json!([script_step("Deploy", "web", "echo #{Db.User}")]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, release) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{release}");
    assert!(!release.to_string().contains(SECRET));
    let (_, variables) = api.get(&format!("/api/projects/{project}/variables")).await;
    let (_, listed) = api.get("/api/releases").await;
    let (_, openapi) = api.get("/api/openapi.json").await;
    for answer in [&variables, &listed, &openapi] {
        assert!(!answer.to_string().contains(SECRET));
    }

    assert_eq!(tables_holding(&db.url, SECRET).await, Vec::<String>::new());
    assert_eq!(
        tables_holding(&db.url, "shop").await.len(),
        3,
        "the clear one is found (the audit log records clear values)"
    );
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(secrets, 2, "one for the project, one for the release");
    let log = node.log();
    assert!(log.contains("/variables"), "the debug log records requests");
    assert!(!log.contains(SECRET), "the node's log holds the secret");

    // Deleting what held them deletes the secrets too.
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM secrets")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let (status, _) = api
        .call("DELETE", &format!("/api/releases/{}", release["id"]), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(count().await, 1);
    let (status, _) = api
        .call("DELETE", &format!("/api/projects/{project}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(count().await, 0);
}

#[tokio::test]
async fn the_preview_neither_echoes_nor_lets_a_caller_test_guesses_of_a_sensitive_value() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let project = api.project("Shop").await;
    let (status, saved) = api
        .save_variables(
            project,
            0,
            json!([
                { "name": "Secret", "value": SECRET, "sensitive": true },
                { "name": "Wrapper", "value": "[#{Secret}]" },
                { "name": "Plain", "value": "x" },
            ]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let guess = format!("#{{if Secret == \"{SECRET}\"}}yes#{{/if}}");
    let wrapped_guess = format!("#{{unless Wrapper != \"[{SECRET}]\"}}yes#{{/unless}}");
    for template in [
        "#{Nope[#{Secret}]}",
        "#{Nope[#{Wrapper}]}",
        &guess,
        &wrapped_guess,
        "#{if Secret}set#{/if}",
    ] {
        let (status, body) = preview(&api, project, template, json!({})).await;
        assert_eq!(status, 422, "{template}: {body}");
        assert!(!body.to_string().contains(SECRET), "{template}: {body}");
        assert!(
            detail(&body).contains("\"Secret\" is sensitive"),
            "{template}: {body}"
        );
    }
    // Substitutions are shown masked, and conditions on other values still work.
    let (status, body) = preview(
        &api,
        project,
        "#{Wrapper} #{if Plain == \"x\"}ok#{/if}",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "[********] ok");
}

#[tokio::test]
async fn an_environment_in_a_scope_cannot_be_deleted_from_under_it() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    environments(&api, &["Production"]).await;
    let (_, listed) = api.get("/api/environments").await;
    let environment = listed["items"][0]["id"].as_i64().unwrap();
    let project = api.project("Shop").await;
    let scoped =
        json!([{ "name": "Url", "value": "x", "scope": { "environments": ["production"] } }]);
    let (status, _) = api.save_variables(project, 0, scoped).await;
    assert_eq!(status, 200);
    let path = format!("/api/environments/{environment}");
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_eq!(status, 409);
    assert!(
        detail(&body).contains("variable scopes of project(s) Shop"),
        "{body}"
    );
    api.save_variables(project, 1, json!([{ "name": "Url", "value": "x" }]))
        .await;
    let (status, _) = api.call("DELETE", &path, None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn documents_over_16_mib_are_refused_with_413() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let project = api.project("Shop").await;
    let huge = "x".repeat(17 * 1024 * 1024);
    let (status, body) = api
        .save_variables(project, 0, json!([{ "name": "A", "value": huge }]))
        .await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = api
        .save_process(project, 0, json!([script_step("A", "web", &huge)]))
        .await;
    assert_eq!(status, 413);
    let (_, read) = api.get(&format!("/api/projects/{project}/variables")).await;
    assert_eq!(read["version"], 0);
}
