use capstan_testkit::TestCluster;
use serde_json::{Value, json};

use super::{Api, detail, package_step, script_step};

#[tokio::test]
async fn two_editors_cannot_overwrite_each_other_silently() {
    let cluster = TestCluster::start(2).await;
    let alice = Api::new(&cluster.node(0).url());
    let bob = Api::new(&cluster.node(1).url());
    let project = alice.project("Shop").await;
    let path = format!("/api/projects/{project}/process");

    let (status, empty) = alice.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(empty["version"], 0);
    assert_eq!(empty["steps"], json!([]));

    let (status, saved) = alice
        .save_process(
            project,
            0,
            json!([script_step("Migrate", "db", "echo migrate")]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], 1);

    // Both read version 1; Alice saves first, through another node than Bob.
    let (_, read) = bob.get(&path).await;
    assert_eq!(read["version"], 1);
    let (status, _) = alice
        .save_process(
            project,
            1,
            json!([script_step("Migrate", "db", "echo alice")]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, refused) = bob
        .save_process(
            project,
            1,
            json!([script_step("Migrate", "db", "echo bob")]),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        detail(&refused).contains("you sent version 1, it is at version 2"),
        "{refused}"
    );
    let (_, now) = bob.get(&path).await;
    assert_eq!(now["version"], 2);
    assert_eq!(now["steps"][0]["actions"][0]["body"], "echo alice");

    // A save based on the current version goes through, and defaults are spelled out.
    let (status, saved) = bob
        .save_process(
            project,
            2,
            json!([script_step("Migrate", "db", "echo bob")]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let step = &saved["steps"][0];
    assert_eq!(step["start_trigger"], "after_previous");
    assert_eq!(step["run_condition"], json!({ "when": "success" }));
    assert_eq!(step["failure_policy"], json!({ "mode": "fail" }));
    assert_eq!(step["actions"][0]["syntax"], "bash");
}

#[tokio::test]
async fn every_field_of_a_step_round_trips() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let project = api.project("Shop").await;
    let steps = json!([
        script_step("Check", "web", "echo ready"),
        {
            "name": "Deploy web",
            "target_tags": ["api", "web"],
            "start_trigger": "after_previous",
            "run_condition": {
                "when": "variable",
                "expression": "#{if Capstan.Action[Check].Output.Ready}true#{/if}"
            },
            "window_size": 2,
            "max_parallelism": 5,
            "failure_policy": { "mode": "continue", "max_failed_targets": 1 },
            "bypass_machine_mutex": true,
            "lock": { "name": "load-balancer", "scope": "environment" },
            "actions": [
                { "kind": "script", "name": "Drain", "syntax": "sh", "body": "echo drain" },
                { "kind": "script", "name": "Warm", "syntax": "powershell", "body": "Write-Host warm" }
            ]
        },
        {
            "name": "Notify",
            "target_tags": ["web"],
            "start_trigger": "with_previous",
            "run_condition": { "when": "always" },
            "failure_policy": { "mode": "guided" },
            "actions": [{ "kind": "script", "syntax": "bash", "body": "echo done" }]
        }
    ]);
    let (status, saved) = api.save_process(project, 0, steps.clone()).await;
    assert_eq!(status, 200, "{saved}");
    let (_, read) = api.get(&format!("/api/projects/{project}/process")).await;
    for (i, sent) in steps.as_array().unwrap().iter().enumerate() {
        for (key, value) in sent.as_object().unwrap() {
            assert_eq!(&read["steps"][i][key], value, "steps[{i}].{key}");
        }
    }
}

/// The first error, the list of errors, and their fields.
fn errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn invalid_processes_are_refused_naming_the_step_and_field() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let project = api.project("Shop").await;

    let (status, body) = api
        .save_process(
            project,
            0,
            json!([
                script_step("Deploy", "web", "echo 1"),
                script_step("deploy", "web", "echo 2"),
            ]),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(errors(&body), ["steps[1].name"]);
    assert!(
        detail(&body).contains("step 2 (\"deploy\")") && detail(&body).contains("step 1"),
        "{body}"
    );

    // A condition on an output of its own step, or of a later one, waits on itself.
    let mut first = script_step("Gate", "web", "echo gate");
    first["run_condition"] = json!({
        "when": "variable",
        "expression": "#{if Capstan.Action[Smoke test].Output[web01].Ok}go#{/if}"
    });
    let (status, body) = api
        .save_process(
            project,
            0,
            json!([first, script_step("Smoke test", "web", "curl localhost")]),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(errors(&body), ["steps[0].run_condition.expression"]);
    assert!(detail(&body).contains("a cycle"), "{body}");

    let mut parallel = script_step("Beside", "web", "echo");
    parallel["start_trigger"] = json!("with_previous");
    parallel["run_condition"] = json!({
        "when": "variable",
        "expression": "#{Capstan.Action[Gate].Output.Ok}"
    });
    let (status, body) = api
        .save_process(
            project,
            0,
            json!([script_step("Gate", "web", "echo gate"), parallel]),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("a cycle"), "{body}");

    let (status, body) = api
        .save_process(
            project,
            0,
            json!([script_step("Deploy", "web", "echo #{Unclosed")]),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(errors(&body), ["steps[0].actions[0].body"]);
    assert!(detail(&body).contains("line 1, column 6"), "{body}");

    let (status, body) = api
        .save_process(
            project,
            0,
            json!([package_step("Deploy", "NoSuchApp", None)]),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        detail(&body).contains("steps[0].actions[0].package_id")
            && detail(&body).contains("no package `NoSuchApp`"),
        "{body}"
    );

    let (status, body) = api
        .save_process(
            project,
            0,
            json!([{ "name": "x", "target_tags": ["web"], "actions": [], "colour": 1 }]),
        )
        .await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("colour"), "{body}");

    // Nothing was saved by any of these.
    let (_, read) = api.get(&format!("/api/projects/{project}/process")).await;
    assert_eq!(read["version"], 0);
    let (status, body) = api
        .save_process(424_242, 0, json!([script_step("A", "web", "echo")]))
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn tags_that_match_no_agent_are_warned_about_not_refused() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let api = Api::new(&base);
    let project = api.project("Shop").await;
    let client = cluster.node(0).client();
    let _agents = crate::agents::sim_agents(&client, &base, &["web01"], &["web"]).await;

    let (status, saved) = api
        .save_process(
            project,
            0,
            json!([
                script_step("Deploy", "web", "echo web"),
                script_step("Migrate", "dbase", "echo db"),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let warnings = saved["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{saved}");
    assert_eq!(warnings[0]["field"], "steps[1].target_tags");
    assert!(
        warnings[0]["detail"].as_str().unwrap().contains("`dbase`"),
        "{saved}"
    );
    let (_, read) = api.get(&format!("/api/projects/{project}/process")).await;
    assert_eq!(read["warnings"], saved["warnings"]);
}
