//! Who may do what: registration tokens (wrong, expired, used up), what an agent
//! credential reaches (its own mailbox only), revocation at once, bad input refused
//! with a clear 4xx, environments, and secrets kept out of the API.

use std::time::{Duration, Instant};

use capstan_api::{
    AgentHealth, AgentQuery, CommandOutcome, CommandResult, CommandVariable,
    CreateRegistrationTokenRequest, EnvironmentRequest, OutputLine, OutputStream, RunScriptRequest,
    UpdateAgentRequest,
};
use capstan_testkit::{
    ADMIN_KEY, TestCluster,
    agents::{SimAgent, ensure_environment, registration_token},
    eventually,
};
use reqwest::StatusCode;

use super::{run_script, sim_agents};

fn problem_detail((status, problem): (StatusCode, capstan_api::Problem)) -> (u16, String) {
    (status.as_u16(), problem.detail)
}

#[tokio::test]
async fn registration_needs_a_live_token_with_uses_left_and_says_what_is_wrong() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    ensure_environment(&client, "Production").await;
    let base = node.url();
    let register = |token: String, name: &'static str, env: &'static str| {
        let base = base.clone();
        async move {
            SimAgent::register(&base, &token, name, env, &["web"])
                .await
                .map(|_| ())
        }
    };

    let (status, detail) = problem_detail(
        register("capreg_wrong".into(), "a1", "Production")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, detail.as_str()),
        (401, "the registration token is not valid")
    );
    let (status, detail) = problem_detail(
        register(ADMIN_KEY.into(), "a1", "Production")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    assert!(detail.contains("not a registration token"), "{detail}");

    let once = registration_token(&client, 1).await;
    assert!(
        once.starts_with("capreg_") && once.len() >= 7 + 27,
        "{once}"
    );
    let (status, detail) =
        problem_detail(register(once.clone(), "a1", "Staging").await.unwrap_err());
    assert_eq!(status, 422);
    assert!(
        detail.contains("there is no environment `Staging`"),
        "{detail}"
    );
    let (status, detail) = problem_detail(
        register(once.clone(), "bad name", "Production")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(detail.contains("use letters, digits"), "{detail}");
    // Refused registrations spent nothing: the one use is still there.
    register(once.clone(), "a1", "production").await.unwrap();
    let (status, detail) = problem_detail(
        register(once.clone(), "a2", "Production")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    assert!(
        detail.contains("used as many times as it allows"),
        "{detail}"
    );

    let two = registration_token(&client, 2).await;
    let (status, detail) = problem_detail(register(two, "A1", "Production").await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        detail.contains("an agent named `A1` is already registered"),
        "{detail}"
    );

    let short = client
        .create_registration_token(&CreateRegistrationTokenRequest {
            expires_in: Some("1s".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, detail) = problem_detail(
        register(short.token.unwrap(), "a3", "Production")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    assert!(detail.contains("expired at"), "{detail}");

    for (body, expected) in [
        (serde_json::json!({"expires_in": "forever"}), "expires_in: "),
        (
            serde_json::json!({"uses": 0}),
            "uses: must be between 1 and 10000",
        ),
        (serde_json::json!({"expires_in": "400d"}), "at most 365d"),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/agents/registration-tokens"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let detail = response
            .json::<capstan_api::Problem>()
            .await
            .unwrap()
            .detail;
        assert!(detail.contains(expected), "{detail}");
    }
    // Tokens are listed by prefix only.
    let listed = reqwest::Client::new()
        .get(format!("{base}/api/agents/registration-tokens"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&once[8..]), "{listed}");
    assert!(listed.contains("capreg_"), "{listed}");
}

#[tokio::test]
async fn an_agent_credential_reaches_its_own_mailbox_and_nothing_else() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agents = sim_agents(&client, &node.url(), &["own01", "other01"], &[]).await;
    let (own, other) = (&agents[0], &agents[1]);
    assert!(own.credential.starts_with("capagt_"));

    // Not the rest of the API.
    for path in ["/api/tasks", "/api/agents", "/api/nodes"] {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", node.url()))
            .bearer_auth(&own.credential)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let detail = response
            .json::<capstan_api::Problem>()
            .await
            .unwrap()
            .detail;
        assert!(detail.contains("reach only the agent protocol"), "{detail}");
    }
    // Nor another agent's commands.
    run_script(&client, "true", &["other01"]).await;
    let id = other.poll(5_000).await.unwrap().commands[0].id;
    assert!(own.poll(100).await.unwrap().commands.is_empty());
    let line = [(1, "injected")];
    let result = CommandResult {
        outcome: CommandOutcome::Succeeded,
        exit_code: Some(0),
        error: None,
        outputs: Default::default(),
        facts: None,
    };
    for refusal in [
        own.ack(id).await.unwrap_err(),
        own.output(id, &line).await.unwrap_err(),
        own.result(id, &result).await.unwrap_err(),
    ] {
        let (status, detail) = problem_detail(refusal);
        assert_eq!(
            (status, detail),
            (404, format!("this agent has no command {id}"))
        );
    }
    // The admin key is no agent credential, and a made-up one is refused.
    let mut fake = own.clone();
    fake.credential = ADMIN_KEY.into();
    assert_eq!(fake.poll(100).await.unwrap_err().0, 401);
    fake.credential = "capagt_made_up_000000000000000000000".into();
    let (status, detail) = problem_detail(fake.poll(100).await.unwrap_err());
    assert_eq!(status, 401);
    assert!(detail.contains("deleted or never registered"), "{detail}");
}

#[tokio::test]
async fn a_disabled_or_deleted_agent_is_refused_at_once_even_mid_poll() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let client = a.client();
    let agent = sim_agents(&client, &a.url(), &["rev01"], &[])
        .await
        .remove(0);
    let on_b = agent.through(&b.url());
    on_b.poll(50).await.unwrap(); // node b now knows the credential

    let waiting = tokio::spawn({
        let on_b = on_b.clone();
        async move { on_b.poll(20_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disabled_at = Instant::now();
    client
        .update_agent(
            agent.id,
            &UpdateAgentRequest {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, detail) = problem_detail(waiting.await.unwrap().unwrap_err());
    assert!(disabled_at.elapsed() < Duration::from_secs(2));
    assert_eq!(status, 401);
    assert!(detail.contains("agent `rev01` is disabled"), "{detail}");
    assert_eq!(on_b.poll(50).await.unwrap_err().0, 401);

    client
        .update_agent(
            agent.id,
            &UpdateAgentRequest {
                disabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Changed through node a: node b hears of it by NOTIFY, within moments.
    eventually(
        Duration::from_secs(2),
        "node b to accept the enabled agent",
        || async { on_b.poll(50).await.ok() },
    )
    .await;
    client.delete_agent(agent.id).await.unwrap();
    let status = eventually(
        Duration::from_secs(2),
        "node b to refuse the deleted agent",
        || async { on_b.poll(50).await.err().map(|(status, _)| status) },
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(agent.poll(50).await.unwrap_err().0, 401);
}

#[tokio::test]
async fn bad_agent_input_gets_a_clear_4xx_and_changes_nothing() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agent = sim_agents(&client, &node.url(), &["bad01"], &[])
        .await
        .remove(0);
    let task = run_script(&client, "true", &["bad01"]).await;
    let id = agent.poll(5_000).await.unwrap().commands[0].id;
    agent.ack(id).await.unwrap();

    let line = |seq: u64, text: String| OutputLine {
        seq,
        stream: OutputStream::Stdout,
        text,
    };
    let too_many: Vec<OutputLine> = (1..=1001).map(|i| line(i, "x".into())).collect();
    let (status, detail) = problem_detail(
        agent
            .post(
                &format!("commands/{id}/output"),
                &serde_json::json!({"lines": too_many}),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 413);
    assert!(
        detail.contains("at most 1000 lines, this one has 1001"),
        "{detail}"
    );
    let too_big = vec![
        line(1, "y".repeat(600 * 1024)),
        line(2, "y".repeat(600 * 1024)),
    ];
    let (status, detail) = problem_detail(
        agent
            .post(
                &format!("commands/{id}/output"),
                &serde_json::json!({"lines": too_big}),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 413);
    assert!(detail.contains("bytes of text"), "{detail}");
    let too_many_outputs: serde_json::Map<String, serde_json::Value> = (0..101)
        .map(|i| (format!("Out{i}"), serde_json::Value::from("v")))
        .collect();
    for (path, body, expected_status, expected) in [
        (
            "output",
            serde_json::json!({"lines": [{"seq": 0, "stream": "stdout", "text": "a"}]}),
            422,
            "line numbers start at 1",
        ),
        (
            "output",
            serde_json::json!({"lines": [{"seq": 1, "stream": "video", "text": "a"}]}),
            422,
            "unknown variant `video`",
        ),
        (
            "result",
            serde_json::json!({"outcome": "exploded"}),
            422,
            "unknown variant `exploded`",
        ),
        (
            "result",
            serde_json::json!({"outcome": "succeeded", "outputs": {"bad\nname": "v"}}),
            422,
            "control characters",
        ),
        (
            "result",
            serde_json::json!({"outcome": "succeeded", "outputs": too_many_outputs}),
            413,
            "at most 100 output variables, this one sets 101",
        ),
        (
            "result",
            serde_json::json!({"outcome": "succeeded", "outputs": {"Big": "v".repeat(64 * 1024 + 1)}}),
            413,
            "output variable `Big` is 65537 bytes; at most 65536",
        ),
    ] {
        let (status, detail) = problem_detail(
            agent
                .post(&format!("commands/{id}/{path}"), &body)
                .await
                .unwrap_err(),
        );
        assert_eq!(status, expected_status, "{body}: {detail}");
        assert!(detail.contains(expected), "{body}: {detail}");
    }
    let response = reqwest::Client::new()
        .post(format!("{}/api/agent/commands/{id}/result", node.url()))
        .bearer_auth(&agent.credential)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // None of that was stored: the command still runs and takes a good result.
    let commands = client.task_commands(task.id).await.unwrap().items;
    assert_eq!(commands[0].state.as_str(), "running");
    agent.output(id, &[(1, "the only line")]).await.unwrap();
    agent
        .result(
            id,
            &CommandResult {
                outcome: CommandOutcome::Succeeded,
                exit_code: Some(0),
                error: None,
                outputs: Default::default(),
                facts: None,
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn environments_and_agent_lists_filter_page_and_refuse_conflicts() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    let agents = sim_agents(&client, &node.url(), &["p1", "p2", "p3"], &["web"]).await;
    let test_env = client
        .create_environment(&EnvironmentRequest {
            name: "Test".into(),
            description: "for testers".into(),
        })
        .await
        .unwrap();
    let dup = client
        .create_environment(&EnvironmentRequest {
            name: "production".into(),
            description: String::new(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        dup.contains("an environment named `production` already exists"),
        "{dup}"
    );
    client
        .update_agent(
            agents[2].id,
            &UpdateAgentRequest {
                environment: Some("Test".into()),
                tags: Some(vec!["db".into(), "db".into()]),
                disabled: None,
            },
        )
        .await
        .unwrap();

    let names = |page: capstan_api::AgentPage| -> Vec<String> {
        page.items.into_iter().map(|a| a.name).collect()
    };
    let query = |environment: Option<&str>, tag: Option<&str>| AgentQuery {
        environment: environment.map(Into::into),
        tag: tag.map(Into::into),
        ..Default::default()
    };
    assert_eq!(
        names(
            client
                .list_agents(&query(Some("Test"), None))
                .await
                .unwrap()
        ),
        ["p3"]
    );
    assert_eq!(
        names(client.list_agents(&query(None, Some("web"))).await.unwrap()),
        ["p1", "p2"]
    );
    let first = client
        .list_agents(&AgentQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = client
        .list_agents(&AgentQuery {
            cursor: first.next,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(rest), ["p3"]);
    let unknown = client
        .list_agents(&AgentQuery {
            health: Some("sick".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("`sick` is not a health"), "{unknown}");
    assert!(
        client
            .list_agents(&AgentQuery {
                health: Some(AgentHealth::Unknown.as_str().into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .len()
            == 3
    );

    // An environment with agents cannot go; an empty one can.
    let response = reqwest::Client::new()
        .delete(format!("{}/api/environments/{}", node.url(), test_env.id))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    client.delete_agent(agents[2].id).await.unwrap();
    let response = reqwest::Client::new()
        .delete(format!("{}/api/environments/{}", node.url(), test_env.id))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn sensitive_values_never_show_in_the_api_and_scripts_refuse_bad_variables() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let client = node.client();
    sim_agents(&client, &node.url(), &["s1"], &["web"]).await;
    let secret = "hunter2-secret-value";
    let request = RunScriptRequest {
        script: "echo $PASSWORD".into(),
        agents: vec!["s1".into()],
        variables: vec![
            CommandVariable {
                name: "PASSWORD".into(),
                value: secret.into(),
                sensitive: true,
            },
            CommandVariable {
                name: "COLOUR".into(),
                value: "blue".into(),
                sensitive: false,
            },
        ],
        ..Default::default()
    };
    let task = client.run_script(&request).await.unwrap();
    let shown = serde_json::to_string(&client.get_task(task.id).await.unwrap()).unwrap();
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("blue"), "{shown}");

    for (change, expected) in [
        (
            RunScriptRequest {
                variables: vec![CommandVariable {
                    name: "1BAD".into(),
                    value: String::new(),
                    sensitive: false,
                }],
                ..request.clone()
            },
            "cannot be an environment variable",
        ),
        (
            RunScriptRequest {
                agents: vec!["nobody".into()],
                ..request.clone()
            },
            "these agents do not exist, are disabled or do not match the tags and environment: nobody",
        ),
        (
            RunScriptRequest {
                agents: Vec::new(),
                tags: vec!["nope".into()],
                ..request.clone()
            },
            "no enabled agent matches",
        ),
        (
            RunScriptRequest {
                script: " ".into(),
                ..request.clone()
            },
            "script: the script is empty",
        ),
        (
            RunScriptRequest {
                timeout: Some("soon".into()),
                ..request.clone()
            },
            "timeout: ",
        ),
    ] {
        let error = client.run_script(&change).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}
