//! `/deployments/{id}`: the grid turning green live, a guided failure answered through
//! the page, cancel after a confirmation, and the live stream surviving the SIGKILL of
//! the node serving it behind HAProxy.

use std::time::Duration;

use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    browser::Browser,
    eventually,
    haproxy::HaProxy,
    process::{ProcessOptions, ServerProcess},
};
use serde_json::{Value, json};

use super::signed_in;
use crate::deployments::{Fleet, step};

const WITHIN: Duration = Duration::from_secs(60);

/// Every grid cell of the page is in `state` (and there are `count` of them).
fn all_cells(count: usize, state: &str) -> String {
    format!(
        "document.querySelectorAll('#grid td.cell').length === {count} && \
         [...document.querySelectorAll('#grid td.cell')].every(c => c.dataset.state === '{state}')"
    )
}

/// Marks the window so a reload (which would start a fresh one) is seen.
async fn mark_no_reload(browser: &Browser) {
    browser
        .client()
        .execute("window.__noReload = true; return true;", vec![])
        .await
        .unwrap();
}

async fn assert_not_reloaded(browser: &Browser) {
    let marked = browser
        .client()
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap();
    assert_eq!(marked, Value::Bool(true), "the page was reloaded");
}

/// A script that waits for the file `go` before it ends.
fn waiting_for(go: &std::path::Path) -> String {
    format!(
        "until [ -f {} ]; do sleep 0.1; done; echo done on #{{Capstan.Machine.Name}}",
        go.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grid_turns_green_live_without_a_reload() {
    let fleet = Fleet::start(1, 2).await;
    let go = fleet.dir().join("go");
    let (project, release) = fleet
        .release(
            "Live",
            json!([step("Wait", &waiting_for(&go)), step("After", "echo after")]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let base = fleet.cluster.node(0).url();
    let browser = signed_in(&base, "watcher").await;
    browser.open(&format!("{base}/deployments/{id}")).await;
    mark_no_reload(&browser).await;
    browser
        .until(
            WITHIN,
            "the page to be live",
            "document.getElementById('live').dataset.state === 'live'",
        )
        .await;
    browser
        .until(
            WITHIN,
            "both targets running the first step",
            "document.querySelectorAll('#grid td.cell[data-step=\"0\"][data-state=\"running\"]').length === 2",
        )
        .await;
    let header = browser.text("#deployment-header").await;
    assert!(
        header.contains("Live") && header.contains("Production"),
        "{header}"
    );
    assert!(
        header.contains("watcher") || header.contains("admin key"),
        "{header}"
    );
    browser.find("#task-log").await;

    std::fs::write(&go, "").unwrap();
    browser
        .until(WITHIN, "every cell succeeded", &all_cells(4, "succeeded"))
        .await;
    browser
        .until(
            WITHIN,
            "the stream to end",
            "document.getElementById('live').dataset.state === 'finished'",
        )
        .await;
    assert_not_reloaded(&browser).await;
    let state = browser.text("#deployment-state").await;
    assert_eq!(state, "succeeded");
    let done = fleet.wait_state(id, &["succeeded"], WITHIN).await;
    assert_eq!(done["grid"].as_array().unwrap().len(), 4, "{done:#}");
    // Nothing left to cancel.
    let cancel = browser
        .client()
        .execute(
            "return document.getElementById('cancel-deployment') === null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(cancel, Value::Bool(true));
    browser.screenshot("deployment").await;
    browser.assert_accessible("the deployment page").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guided_failure_is_answered_with_exclude_and_a_note_through_the_page() {
    let fleet = Fleet::start(1, 2).await;
    let flaky =
        "if [ \"#{Capstan.Machine.Name}\" = web02 ]; then echo broken; exit 3; fi; echo fine";
    let (project, release) = fleet
        .release(
            "Guided",
            json!([step("Install", flaky), step("Verify", "echo verified")]),
            json!([]),
        )
        .await;
    let id = fleet
        .deploy(json!({
            "release_id": release, "environment": "Production", "project_id": project,
            "guided_failure": true,
        }))
        .await;
    let base = fleet.cluster.node(0).url();
    let browser = signed_in(&base, "guide").await;
    browser.open(&format!("{base}/deployments/{id}")).await;
    mark_no_reload(&browser).await;
    let (_, question) = fleet.wait_question(id, WITHIN).await;
    let iid = question["id"].as_i64().unwrap();
    let intervention = format!("#intervention-{iid}");
    browser
        .until(
            WITHIN,
            "the intervention to show",
            &format!("document.querySelector('{intervention} button[value=exclude]') !== null"),
        )
        .await;
    assert_not_reloaded(&browser).await;
    let failed = browser
        .text("#grid td.cell[data-target='web02'][data-step='0'][data-action='0']")
        .await;
    assert!(
        failed.contains("failed") && failed.contains("exit 3"),
        "{failed}"
    );
    let text = browser.text(&intervention).await;
    assert!(text.contains("web02"), "{text}");
    for answer in ["retry", "ignore", "exclude", "fail"] {
        browser
            .find(&format!("{intervention} button[value={answer}]"))
            .await;
    }
    browser.screenshot("deployment-intervention").await;
    browser
        .assert_accessible("the deployment page with an intervention")
        .await;

    browser
        .fill(&format!("#note-{iid}"), "web02 is being rebuilt")
        .await;
    browser
        .click(&format!("{intervention} button[value=exclude]"))
        .await;
    let notice = browser.text(".notice").await;
    assert!(notice.contains("exclude"), "{notice}");

    let done = fleet.wait_state(id, &["succeeded", "failed"], WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let answered = &done["interventions"][0]["answer"];
    assert_eq!(answered["answer"], "exclude", "{done:#}");
    assert_eq!(answered["note"], "web02 is being rebuilt", "{done:#}");
    assert!(
        answered["by"]["who"].as_str().unwrap().contains("guide"),
        "{done:#}"
    );
    let (status, audit) = fleet
        .api
        .get(&format!(
            "/api/audit?action=deployment.answer&object_kind=deployment&object_id={id}"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let row = &audit["items"][0];
    assert_eq!(row["actor"]["name"], "guide", "{audit:#}");
    assert_eq!(row["after"]["answer"], "exclude", "{audit:#}");
    assert_eq!(row["after"]["note"], "web02 is being rebuilt", "{audit:#}");

    browser
        .until(
            WITHIN,
            "the page to show the end",
            "document.getElementById('live').dataset.state === 'finished'",
        )
        .await;
    let answered = browser.text(&intervention).await;
    assert!(
        answered.contains("exclude") && answered.contains("web02 is being rebuilt"),
        "{answered}"
    );
    let excluded = browser
        .text("#grid td.cell[data-target='web02'][data-step='1'][data-action='0']")
        .await;
    assert!(excluded.contains("excluded"), "{excluded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_asks_first_then_stops_the_deployment() {
    let fleet = Fleet::start(1, 2).await;
    let (project, release) = fleet
        .release("Slow", json!([step("Sleep", "exec sleep 30")]), json!([]))
        .await;
    let id = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    let base = fleet.cluster.node(0).url();
    let browser = signed_in(&base, "stopper").await;
    browser.open(&format!("{base}/deployments/{id}")).await;
    browser
        .until(
            WITHIN,
            "both targets running",
            "document.querySelectorAll('#grid td.cell[data-state=\"running\"]').length === 2",
        )
        .await;
    browser.click("#cancel-deployment").await;
    let question = browser.text("#question").await;
    assert!(
        question.starts_with(&format!("Cancel deployment {id}")),
        "{question}"
    );
    browser.assert_accessible("the cancel confirmation").await;
    // Nothing is cancelled before the confirmation.
    let (_, now) = fleet.api.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(now["state"], "running", "{now:#}");

    browser.fill("#cancel-note", "wrong day").await;
    browser.click("#confirm-cancel").await;
    let notice = browser.text(".notice").await;
    assert!(notice.contains("cancelled"), "{notice}");
    let done = fleet
        .wait_state(id, &["cancelled"], Duration::from_secs(20))
        .await;
    assert!(
        done["stopped_by"]["who"]
            .as_str()
            .unwrap()
            .contains("stopper"),
        "{done:#}"
    );
    browser
        .until(
            WITHIN,
            "the cells to show cancelled",
            &all_cells(2, "cancelled"),
        )
        .await;
    // The run marks the cells before the deployment: the page follows both.
    browser
        .until(
            WITHIN,
            "the page to show the deployment cancelled",
            "document.getElementById('deployment-state').textContent.trim() === 'cancelled'",
        )
        .await;
}

/// A node process that runs tasks, with no periodic agent health checks.
async fn node(name: &str, db: &TestDatabase, dir: &TempDir) -> ServerProcess {
    let env = vec![(
        "CAPSTAN_AGENT_HEALTH_CHECK_EVERY".to_owned(),
        "off".to_owned(),
    )];
    ServerProcess::start(
        &crate::capstan_bin(),
        name,
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions { env },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grid_keeps_updating_through_haproxy_when_the_node_serving_it_is_sigkilled() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-ui-grid-kill");
    let mut nodes = [
        node("grid-1", &db, &dir).await,
        node("grid-2", &db, &dir).await,
    ];
    let lb = HaProxy::start(
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.port))
            .collect::<Vec<_>>(),
    );
    lb.wait_all_up(Duration::from_secs(10)).await;
    let client = capstan_api::ApiClient::new(&lb.url(), Some(ADMIN_KEY.to_owned()));
    let specs: Vec<(&str, &[&str])> = vec![("web01", &["web"][..]), ("web02", &["web"][..])];
    let _agents = crate::agents::fleet::start_agents(&client, &lb.url(), &specs, &dir.0).await;
    let api = crate::projects::Api::new(&lb.url());
    let project = api.project("Survivor").await;
    let go = dir.0.join("go");
    let steps = json!([
        step("Wait", &waiting_for(&go)),
        step("Two", "sleep 1; echo two"),
        step("Three", "sleep 1; echo three"),
    ]);
    let (status, body) = api.save_process(project, 0, steps).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status, 201, "{body}");
    let release = body["id"].as_i64().unwrap();
    let (status, body) = api
        .post(
            "/api/deployments",
            json!({ "release_id": release, "environment": "Production", "project_id": project }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();

    let browser = signed_in(&lb.url(), "survivor").await;
    browser
        .open(&format!("{}/deployments/{id}", lb.url()))
        .await;
    mark_no_reload(&browser).await;
    browser
        .until(
            WITHIN,
            "the first step running on both targets",
            "document.querySelectorAll('#grid td.cell[data-step=\"0\"][data-state=\"running\"]').length === 2 \
             && document.getElementById('live').dataset.node",
        )
        .await;
    let serving = browser
        .client()
        .execute(
            "return document.getElementById('live').dataset.node;",
            vec![],
        )
        .await
        .unwrap();
    let serving = serving.as_str().unwrap().to_owned();
    let victim = nodes
        .iter()
        .position(|n| n.name == serving)
        .unwrap_or_else(|| panic!("no node named {serving}"));
    nodes[victim].kill_9();
    std::fs::write(&go, "").unwrap();

    browser
        .until(
            WITHIN,
            "the page to reconnect to the other node",
            &format!(
                "document.getElementById('live').dataset.reconnects >= 1 && \
                 document.getElementById('live').dataset.node !== '{serving}'"
            ),
        )
        .await;
    browser
        .until(WITHIN, "every cell succeeded", &all_cells(6, "succeeded"))
        .await;
    browser
        .until(
            WITHIN,
            "the stream to end",
            "document.getElementById('live').dataset.state === 'finished'",
        )
        .await;
    assert_not_reloaded(&browser).await;
    let reconnected = browser
        .client()
        .execute(
            "return [document.getElementById('live').textContent, document.getElementById('live').dataset.reconnects];",
            vec![],
        )
        .await
        .unwrap();
    println!("indicator after the kill of {serving}: {reconnected}");
    let done = eventually(WITHIN, "the deployment to succeed", || async {
        let (_, body) = api.get(&format!("/api/deployments/{id}")).await;
        (body["state"] == "succeeded").then_some(body)
    })
    .await;
    assert_eq!(done["grid"].as_array().unwrap().len(), 6, "{done:#}");
}
