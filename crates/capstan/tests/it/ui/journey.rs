//! One operator's way through the pages, end to end, against two real nodes and two
//! real agents: sign in, create a project, save its process with one invalid field
//! (the error shows beside it) and then fixed, create a release, deploy it and watch the
//! grid go green live, answer a guided failure with "exclude", see why a deployment
//! waits in the queue, and drain a node until its ping answers 418.

use std::time::Duration;

use capstan_testkit::{browser::Browser, eventually};
use serde_json::{Value, json};

use super::signed_in;
use crate::deployments::Fleet;

const WITHIN: Duration = Duration::from_secs(60);

/// Marks the window, so that a reload (a fresh window object) would be seen.
async fn mark_no_reload(browser: &Browser) {
    browser
        .client()
        .execute("window.__noReload = true; return true;", vec![])
        .await
        .unwrap();
}

async fn still_the_same_page(browser: &Browser) -> bool {
    browser
        .client()
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap()
        == Value::Bool(true)
}

/// The id at the end of the page's path after `prefix`.
async fn id_after(browser: &Browser, prefix: &str) -> i64 {
    browser
        .until(
            WITHIN,
            &format!("the page {prefix}<id>"),
            &format!(
                "/^{}\\d+$/.test(location.pathname)",
                prefix.replace('/', "\\/")
            ),
        )
        .await;
    browser.path().await[prefix.len()..].parse().unwrap()
}

/// Deploys the release shown on its page to Production, optionally with guided
/// failure; the deployment's id, from the page it lands on.
async fn deploy_from_release_page(browser: &Browser, guided: bool) -> i64 {
    browser
        .click("#deploy-environment option[value='Production']")
        .await;
    if guided {
        browser.click("#deploy-guided").await;
    }
    browser.submit("#deploy-submit").await;
    id_after(browser, "/deployments/").await
}

fn cells_in(state: &str, count: usize) -> String {
    format!(
        "document.querySelectorAll('#grid td.cell').length === {count} && \
         [...document.querySelectorAll('#grid td.cell')].every(c => c.dataset.state === '{state}')"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_ships_a_release_through_the_pages_from_sign_in_to_drain() {
    let fleet = Fleet::start(2, 2).await;
    let node = fleet.cluster.node(0).url();
    let go = fleet.dir().join("go");
    let browser = signed_in(&node, "operator").await;

    // A project, through its form.
    browser.open(&format!("{node}/projects")).await;
    browser.fill("#project-name", "Journey").await;
    browser.submit("#new-project button[type=submit]").await;
    let project = id_after(&browser, "/projects/").await;

    // Its process with one invalid field: the error shows beside that field.
    browser.click("#edit-process").await;
    let script = format!(
        "until [ -f {go} ]; do sleep 0.1; done; \
         if [ -f {dir}/fail-#{{Capstan.Machine.Name}} ]; then echo broken >&2; exit 3; fi; \
         echo deployed on #{{Capstan.Machine.Name}}",
        go = go.display(),
        dir = fleet.dir().display()
    );
    let steps = |window: Value| {
        json!([{
            "name": "Install",
            "target_tags": ["web"],
            "window_size": window,
            "actions": [{"kind": "script", "syntax": "bash", "body": script}],
        }])
        .to_string()
    };
    browser.fill("#process-steps", &steps(json!(0))).await;
    browser.submit("#process-save").await;
    let beside = browser.text("#step-0-window_size .field-error").await;
    assert!(!beside.is_empty(), "no error beside window_size");
    browser.screenshot("journey-process-error").await;
    let kept = browser
        .client()
        .execute(
            "return document.getElementById('process-steps').value;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        kept.as_str().unwrap().contains("\"window_size\":0"),
        "{kept}"
    );
    browser.fill("#process-steps", &steps(json!(2))).await;
    browser.submit("#process-save").await;
    browser.find(".notice").await;
    let (status, process) = fleet
        .api
        .get(&format!("/api/projects/{project}/process"))
        .await;
    assert_eq!(status, 200, "{process}");
    assert_eq!(process["steps"][0]["window_size"], 2, "{process}");

    // A release, through its form.
    browser
        .open(&format!("{node}/projects/{project}/releases/new"))
        .await;
    browser.fill("#release-version", "1.0.0").await;
    browser.submit("#release-create").await;
    browser
        .until(
            WITHIN,
            "the release's page",
            &format!("/^\\/projects\\/{project}\\/releases\\/\\d+$/.test(location.pathname)"),
        )
        .await;
    let release_page = browser.client().current_url().await.unwrap().to_string();

    // Deployed: the grid goes green live, without a reload.
    let first = deploy_from_release_page(&browser, false).await;
    mark_no_reload(&browser).await;
    browser
        .until(
            WITHIN,
            "both targets running",
            "document.querySelectorAll('#grid td.cell[data-state=\"running\"]').length === 2",
        )
        .await;
    browser.screenshot("journey-deployment-running").await;
    std::fs::write(&go, "").unwrap();
    browser
        .until(WITHIN, "the grid green", &cells_in("succeeded", 2))
        .await;
    assert!(still_the_same_page(&browser).await, "the page was reloaded");
    browser.screenshot("journey-deployment-green").await;
    fleet.wait_state(first, &["succeeded"], WITHIN).await;

    // A guided failure on web02, answered with "exclude" through the page.
    std::fs::write(fleet.dir().join("fail-web02"), "").unwrap();
    browser.open(&release_page).await;
    let second = deploy_from_release_page(&browser, true).await;
    let (_, question) = fleet.wait_question(second, WITHIN).await;
    let iid = question["id"].as_i64().unwrap();
    let exclude = format!("#intervention-{iid} button[value=exclude]");
    browser
        .until(
            WITHIN,
            "the question on the page",
            &format!("document.querySelector('{exclude}') !== null"),
        )
        .await;
    browser
        .fill(&format!("#note-{iid}"), "web02 is rebuilt tonight")
        .await;
    browser.screenshot("journey-guided-failure").await;
    browser.click(&exclude).await;
    let done = fleet
        .wait_state(second, &["succeeded", "failed"], WITHIN)
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["interventions"][0]["answer"]["answer"], "exclude",
        "{done:#}"
    );

    // A deployment that must wait: every node at its task cap of 0. The queue says so.
    for node in &fleet.cluster.nodes {
        let (status, body) = fleet
            .api
            .call(
                "PATCH",
                &format!("/api/nodes/{}", node.state.id),
                Some(json!({"task_cap": 0})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    std::fs::remove_file(fleet.dir().join("fail-web02")).unwrap();
    browser.open(&release_page).await;
    let third = deploy_from_release_page(&browser, false).await;
    let (_, body) = fleet.api.get(&format!("/api/deployments/{third}")).await;
    let task = body["task_id"].as_i64().unwrap();
    browser.open(&format!("{node}/tasks")).await;
    let why = browser.text(&format!("#task-{task} td.why")).await;
    assert!(
        why.to_lowercase().contains("every node is at its task cap"),
        "{why}"
    );
    browser.screenshot("journey-queue-reason").await;
    for node in &fleet.cluster.nodes {
        let (status, body) = fleet
            .api
            .call(
                "PATCH",
                &format!("/api/nodes/{}", node.state.id),
                Some(json!({"task_cap": 5})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    fleet.wait_state(third, &["succeeded"], WITHIN).await;

    // Draining the second node from its page: its ping answers 418.
    let other = fleet.cluster.node(1);
    browser.open(&format!("{node}/nodes")).await;
    browser
        .click(&format!(
            "#node-{} form[action$='/drain'] button",
            other.state.name
        ))
        .await;
    browser.submit(".confirm button[type=submit]").await;
    browser.screenshot("journey-drained").await;
    eventually(WITHIN, "the drained node's ping is 418", || async {
        let ping = reqwest::get(format!("{}/api/nodes/ping", other.url()))
            .await
            .ok()?;
        (ping.status() == 418).then_some(())
    })
    .await;
}
