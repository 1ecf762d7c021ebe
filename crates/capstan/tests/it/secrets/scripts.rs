//! A script's sensitive variables: sealed at rest like project variables, opened only
//! as the command is handed to its agent, never in a log; and the script rendered for
//! each agent with the system variables.

use std::{path::Path, time::Duration};

use capstan_api::{ApiClient, CommandVariable, RunScriptRequest};
use capstan_core::TaskState;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestCluster, TestDatabase,
    agents::AgentProcess,
    process::{ProcessOptions, ServerProcess},
    tasks::{wait_finished, whole_log},
};

use crate::{agents::fleet::start_agents, capstan_bin, projects::variables::tables_holding};

/// A private key, as a sensitive value of several lines would be.
const KEY: &str = "-----BEGIN TEST PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7q8Zr2x9Lw0Jc
4T1pN6yVb3mKdA5sHfE7gU0iRtXoW2lYzQnPjMvXc8Hd0aS1fKq3Lr9BnTeWu6Y
-----END TEST PRIVATE KEY-----";

/// Registers and starts a real agent `name` (tag `web`, environment Production)
/// polling `server`.
async fn start_agent(client: &ApiClient, server: &str, name: &str, dir: &Path) -> AgentProcess {
    start_agents(client, server, &[(name, &["web"])], dir)
        .await
        .remove(0)
}

fn variable(name: &str, value: &str, sensitive: bool) -> CommandVariable {
    CommandVariable {
        name: name.into(),
        value: value.into(),
        sensitive,
    }
}

#[tokio::test]
async fn a_scripts_multi_line_secret_is_sealed_at_rest_kept_out_of_logs_and_reaches_the_agent_whole()
 {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-script-secret");
    let node = ServerProcess::start(
        &capstan_bin(),
        "sealing",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![("RUST_LOG".into(), "debug".into())],
        },
    )
    .await;
    let client = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let _agent = start_agent(&client, &node.url(), "web01", &dir.0).await;
    let received = dir.0.join("received.key");
    let script = r#"printf '%s' "$TLS_KEY" > "$OUT"
echo "the key is:"
echo "$TLS_KEY""#;
    let task = client
        .run_script(&RunScriptRequest {
            script: script.into(),
            agents: vec!["web01".into()],
            variables: vec![
                variable("TLS_KEY", KEY, true),
                variable("OUT", &received.display().to_string(), false),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(30))
        .await
        .remove(0);
    let log = whole_log(&client, task.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    // The agent had the real value.
    assert_eq!(std::fs::read_to_string(&received).unwrap(), KEY);

    let node_log = node.log();
    assert!(
        node_log.contains("DEBUG"),
        "the node logs at debug level:\n{node_log}"
    );
    for line in KEY.lines() {
        assert_eq!(
            tables_holding(&db.url, line).await,
            Vec::<String>::new(),
            "{line:?} is stored in clear"
        );
        assert!(!node_log.contains(line), "the node logged {line:?}");
        assert!(!log.contains(line), "the task log shows {line:?}:\n{log}");
    }
    assert!(log.contains("web01: ********"), "{log}");
    // Sealed under the master key, so a rotation re-encrypts it with the rest, and it
    // goes with its task.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets WHERE task_id = $1")
        .bind(task.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sealed, 1);
    sqlx::query("DELETE FROM agent_commands WHERE task_id = $1")
        .bind(task.id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(task.id)
        .execute(&pool)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_script_is_rendered_for_each_agent_with_the_system_variables() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let dir = TempDir::new("capstan-script-render");
    let _agent = start_agent(&client, &cluster.node(0).url(), "web01", &dir.0).await;
    let script = "echo \"machine=#{Capstan.Machine.Name} env=#{Capstan.Environment.Name} \
                  tags=#{Capstan.Machine.Tags} task=#{Capstan.Task.Id} greeting=$GREETING\"\n\
                  echo \"token #{Token}\" | tr a-z A-Z";
    let task = client
        .run_script(&RunScriptRequest {
            script: script.into(),
            agents: vec!["web01".into()],
            variables: vec![
                variable("GREETING", "hello from #{Capstan.Machine.Name}", false),
                variable("Token", "tok-#{Capstan.Environment.Name}", true),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_finished(&client, &[task.id], Duration::from_secs(30))
        .await
        .remove(0);
    let log = whole_log(&client, task.id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}\n{log}");
    let expected = format!(
        "web01: machine=web01 env=Production tags=web task={} greeting=hello from web01",
        task.id
    );
    assert!(log.contains(&expected), "{log}");
    // The sensitive value was rendered before it reached the agent: the script saw it.
    assert!(log.contains("web01: TOKEN TOK-PRODUCTION"), "{log}");

    // What cannot render is refused before anything runs, sensitive values masked.
    for (script, why) in [
        ("echo #{Nope}", "the variable \"Nope\" is not defined"),
        (
            "echo #{Nope[#{Token}]}",
            "\"Nope[********]\" is not defined",
        ),
        ("echo #{if}", "needs a condition"),
    ] {
        let refused = client
            .run_script(&RunScriptRequest {
                script: script.into(),
                agents: vec!["web01".into()],
                variables: vec![variable("Token", "s3cr3t-token", true)],
                ..Default::default()
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains(why), "{script}: {refused}");
        assert!(!refused.contains("s3cr3t-token"), "{refused}");
    }
}

/// The task API takes a script task's stored arguments as they are: a sensitive value
/// in clear there would be stored unsealed, so it is refused and nothing is queued.
#[tokio::test]
async fn a_script_task_with_a_sensitive_value_in_clear_is_refused_by_the_task_api() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.node(0).client();
    let args = serde_json::json!({
        "targets": [{ "id": 1, "name": "web01" }],
        "command": {
            "syntax": "bash",
            "script": "echo \"$TOKEN\"",
            "variables": [{ "name": "TOKEN", "value": "s3cr3t-token", "sensitive": true }],
        },
        "max_parallel": 1,
        "timeout_ms": 1000,
    });
    let refused = client
        .create_task(&capstan_api::CreateTaskRequest::new("script", args))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused
            .contains("variable `TOKEN` is sensitive: its value is sealed, never stored in clear"),
        "{refused}"
    );
    assert!(!refused.contains("s3cr3t-token"), "{refused}");
    let page = client.list_tasks(&Default::default()).await.unwrap();
    let queued: Vec<_> = page.items.iter().filter(|t| t.kind == "script").collect();
    assert!(queued.is_empty(), "{queued:?}");
}

/// Whatever `RUST_LOG` asks for, no statement's bind parameters reach the node's log:
/// tokio-postgres would print them at debug level, and a queued task's arguments
/// (sent on the tokio-postgres enqueue pool) are such parameters.
#[tokio::test]
async fn bind_parameters_stay_out_of_the_log_at_every_level() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-bind-parameters");
    let node = ServerProcess::start(
        &capstan_bin(),
        "verbose",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![(
                "RUST_LOG".into(),
                "trace,tokio_postgres=trace,sqlx=trace".into(),
            )],
        },
    )
    .await;
    let client = ApiClient::new(&node.url(), Some(ADMIN_KEY.to_owned()));
    let marker = "bind-parameter-marker-7f3a9c";
    let mut request = capstan_api::CreateTaskRequest::new("sleep", serde_json::json!({ "ms": 1 }));
    request.concurrency_key = Some(capstan_core::ConcurrencyKey::parse(marker).unwrap());
    let task = client.create_task(&request).await.unwrap();
    wait_finished(&client, &[task.id], Duration::from_secs(20)).await;
    let node_log = node.log();
    assert!(
        node_log.contains("TRACE"),
        "the node logs at trace level:\n{node_log}"
    );
    assert!(
        !node_log.contains(marker),
        "a bind parameter reached the log:\n{node_log}"
    );
}
