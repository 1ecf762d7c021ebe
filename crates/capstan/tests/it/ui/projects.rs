//! `/projects`: a project created, its process edited (a problem shown beside the field
//! it names, the text kept), a release created and deployed, all through the pages; and
//! a sensitive variable's value never reaching the browser.

use std::time::Duration;

use capstan_testkit::TestCluster;
use serde_json::{Value, json};

use super::signed_in;
use crate::deployments::Fleet;
use crate::projects::Api;

const WAIT: Duration = Duration::from_secs(15);

/// The HTTP status of the page the browser shows now.
async fn status(browser: &capstan_testkit::browser::Browser) -> u64 {
    browser
        .client()
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn value_of(browser: &capstan_testkit::browser::Browser, css: &str) -> String {
    browser
        .find(css)
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Clicks the submit button `css` and waits for the page the form's answer is.
async fn submit(browser: &capstan_testkit::browser::Browser, css: &str) {
    browser
        .client()
        .execute("document.documentElement.dataset.left = 'no';", vec![])
        .await
        .unwrap();
    browser.click(css).await;
    browser
        .until(
            WAIT,
            "the form's answer to load",
            "document.documentElement.dataset.left !== 'no' && document.readyState === 'complete'",
        )
        .await;
}

/// The number at the end of the page's path after `prefix`.
async fn id_in_path(browser: &capstan_testkit::browser::Browser, prefix: &str) -> i64 {
    browser
        .until(
            WAIT,
            &format!("the page {prefix}<id>"),
            &format!(
                "/^{}\\d+$/.test(location.pathname)",
                prefix.replace('/', "\\/")
            ),
        )
        .await;
    let url = browser.client().current_url().await.unwrap();
    url.path().trim_start_matches(prefix).parse().unwrap()
}

fn steps(window_size: u32) -> Value {
    json!([{
        "name": "Deploy web",
        "target_tags": ["web"],
        "window_size": window_size,
        "actions": [{ "kind": "script", "syntax": "bash", "name": "Say hello", "body": "echo hello from the page" }]
    }])
}

#[tokio::test]
async fn a_project_is_created_its_process_fixed_then_released_and_deployed_from_its_pages() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (status_code, body) = fleet
        .api
        .post("/api/environments", json!({ "name": "Staging" }))
        .await;
    assert_eq!(status_code, 201, "{body}");
    let browser = signed_in(&node, "releaser").await;

    // A new project through the list's form.
    browser.open(&format!("{node}/projects")).await;
    browser.fill("#project-name", "Web shop").await;
    browser
        .fill("#project-description", "The shop's web front")
        .await;
    submit(&browser, "#new-project button[type=submit]").await;
    let project = id_in_path(&browser, "/projects/").await;
    assert!(browser.text(".notice").await.contains("Web shop"));
    let (_, found) = fleet.api.get("/api/projects?name=Web%20shop").await;
    assert_eq!(found["items"][0]["id"], project, "{found}");

    // A name taken is refused beside the field, with the API's 409.
    browser.open(&format!("{node}/projects")).await;
    browser.fill("#project-name", "Web shop").await;
    submit(&browser, "#new-project button[type=submit]").await;
    browser.find(".problem").await;
    assert_eq!(status(&browser).await, 409);
    assert_eq!(value_of(&browser, "#project-name").await, "Web shop");
    browser.open(&format!("{node}/projects")).await;
    browser.find(&format!("#project-{project}")).await;
    browser.screenshot("projects").await;
    browser.assert_accessible("the projects page").await;

    // The process with one field wrong: the API's 422 names it, and the page shows it
    // beside that field, keeping the text.
    browser.open(&format!("{node}/projects/{project}")).await;
    browser.click("#edit-process").await;
    let wrong = serde_json::to_string_pretty(&steps(0)).unwrap();
    browser.fill("#process-steps", &wrong).await;
    submit(&browser, "#process-save").await;
    browser.find(".problem").await;
    assert_eq!(status(&browser).await, 422);
    let beside = browser.text("#step-0-window_size .field-error").await;
    assert!(beside.contains("must be 1 to"), "{beside}");
    let all_beside = browser
        .client()
        .execute(
            "return [...document.querySelectorAll('section.step .field-error')].map(e => e.closest('[data-field]').dataset.field);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(all_beside, json!(["steps[0].window_size"]));
    assert_eq!(value_of(&browser, "#process-steps").await, wrong);
    browser.screenshot("project-process-error").await;
    browser
        .assert_accessible("the process editor with a problem")
        .await;
    let (_, saved) = fleet
        .api
        .get(&format!("/api/projects/{project}/process"))
        .await;
    assert_eq!(saved["version"], 0, "nothing was saved: {saved}");

    // Text that is not JSON: where it breaks, and the text kept.
    browser.fill("#process-steps", "[{\"name\": }]").await;
    submit(&browser, "#process-save").await;
    let malformed = browser.text(".problem").await;
    assert!(malformed.contains("line 1, column"), "{malformed}");
    assert_eq!(value_of(&browser, "#process-steps").await, "[{\"name\": }]");

    // Fixed, it saves.
    browser.fill("#process-steps", &steps(1).to_string()).await;
    submit(&browser, "#process-save").await;
    let saved_notice = browser.text(".notice").await;
    assert!(saved_notice.contains("Process saved"), "{saved_notice}");
    let (_, saved) = fleet
        .api
        .get(&format!("/api/projects/{project}/process"))
        .await;
    assert_eq!(saved["version"], 1, "{saved}");
    assert_eq!(saved["steps"][0]["window_size"], 1, "{saved}");

    // Somebody else saves in between: the page's save is refused, nothing overwritten.
    let (status_code, body) = fleet.api.save_process(project, 1, steps(2)).await;
    assert_eq!(status_code, 200, "{body}");
    browser.fill("#process-steps", &steps(3).to_string()).await;
    submit(&browser, "#process-save").await;
    assert_eq!(status(&browser).await, 409);
    browser.find("#process-outdated a").await;
    assert_eq!(
        value_of(&browser, "#process-steps").await,
        steps(3).to_string()
    );
    let (_, saved) = fleet
        .api
        .get(&format!("/api/projects/{project}/process"))
        .await;
    assert_eq!(saved["steps"][0]["window_size"], 2, "{saved}");
    let (status_code, body) = fleet.api.save_process(project, 2, steps(1)).await;
    assert_eq!(status_code, 200, "{body}");

    // A release through its form.
    browser.open(&format!("{node}/projects/{project}")).await;
    browser.click("#new-release").await;
    browser.fill("#release-version", "1.0.0").await;
    browser.fill("#release-notes", "First from the page").await;
    browser.screenshot("release-create").await;
    browser.assert_accessible("the new release form").await;
    submit(&browser, "#release-create").await;
    let release = id_in_path(&browser, &format!("/projects/{project}/releases/")).await;
    assert!(
        browser
            .text(".notice")
            .await
            .contains("Release 1.0.0 created")
    );
    let (_, releases) = fleet
        .api
        .get(&format!("/api/releases?project_id={project}"))
        .await;
    assert_eq!(releases["items"][0]["id"], release, "{releases}");
    assert_eq!(releases["items"][0]["version"], "1.0.0", "{releases}");

    // Deployed to Production from the release's page.
    browser.find("#deploy-form").await;
    browser.screenshot("deploy").await;
    browser.assert_accessible("the release page").await;
    // Staging has no agent: the API's refusal is shown above the form, the choice kept.
    browser
        .click("#deploy-environment option[value='Staging']")
        .await;
    submit(&browser, "#deploy-submit").await;
    let refusal = browser.text("#deploy-form-problem").await;
    assert!(refusal.contains("Staging"), "{refusal}");
    let refused_with = status(&browser).await;
    assert!((400..500).contains(&refused_with), "{refused_with}");
    assert_eq!(value_of(&browser, "#deploy-environment").await, "Staging");
    let (_, queued) = fleet
        .api
        .get(&format!("/api/deployments?project_id={project}"))
        .await;
    assert_eq!(queued["items"], json!([]), "{queued}");

    browser
        .click("#deploy-environment option[value='Production']")
        .await;
    browser.click("#deploy-guided").await;
    submit(&browser, "#deploy-submit").await;
    let deployment = id_in_path(&browser, "/deployments/").await;
    let (status_code, shown) = fleet
        .api
        .get(&format!("/api/deployments/{deployment}"))
        .await;
    assert_eq!(status_code, 200, "{shown}");
    assert_eq!(shown["release_id"], release, "{shown}");
    assert_eq!(shown["environment"], "Production", "{shown}");
    assert_eq!(shown["options"]["guided_failure"], true, "{shown}");
    let done = fleet
        .wait_state(deployment, &["succeeded"], Duration::from_secs(60))
        .await;
    assert!(fleet.log(&done).await.contains("hello from the page"));

    // The project's page: the release listed with who made it, the process in words.
    browser.open(&format!("{node}/projects/{project}")).await;
    let row = browser.text(&format!("#release-{release}")).await;
    assert!(row.contains("1.0.0") && row.contains("releaser"), "{row}");
    let window = browser.text("#step-0-window_size").await;
    assert!(window.contains('1'), "{window}");
    browser.screenshot("project").await;
    browser.assert_accessible("the project page").await;
}

#[tokio::test]
async fn a_sensitive_value_never_reaches_the_page() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let api = Api::new(&node);
    let (status_code, body) = api
        .post("/api/environments", json!({ "name": "Production" }))
        .await;
    assert_eq!(status_code, 201, "{body}");
    let project = api.project("Vault").await;
    let secret = "first-line-s3cr3t\nsecond-line-t0ps3cr3t\nthird line with spaces 9f8e7d";
    let (status_code, body) = api
        .save_variables(
            project,
            0,
            json!([
                { "name": "DbPassword", "value": secret, "sensitive": true,
                  "scope": { "environments": ["Production"] } },
                { "name": "Greeting", "value": "plain-visible-value" },
            ]),
        )
        .await;
    assert_eq!(status_code, 200, "{body}");

    let browser = signed_in(&node, "viewer").await;
    browser.open(&format!("{node}/projects/{project}")).await;
    let table = browser.text("#variables").await;
    assert!(table.contains("sensitive — set"), "{table}");
    assert!(table.contains("plain-visible-value"), "{table}");
    assert!(table.contains("Environments: Production"), "{table}");
    let source = browser.client().source().await.unwrap();
    for line in secret.lines() {
        assert!(!source.contains(line), "the page holds `{line}`");
    }
    browser
        .assert_accessible("the project page with variables")
        .await;
    // Nor does the page of a release, which froze the variables.
    let (status_code, body) = api
        .save_process(
            project,
            0,
            json!([crate::projects::script_step("Use", "web", "echo using")]),
        )
        .await;
    assert_eq!(status_code, 200, "{body}");
    let (status_code, release) = api
        .post("/api/releases", json!({ "project_id": project }))
        .await;
    assert_eq!(status_code, 201, "{release}");
    browser
        .open(&format!(
            "{node}/projects/{project}/releases/{}",
            release["id"]
        ))
        .await;
    let source = browser.client().source().await.unwrap();
    for line in secret.lines() {
        assert!(!source.contains(line), "the release page holds `{line}`");
    }
    let frozen = browser.text("#variables").await;
    assert!(frozen.contains("sensitive — set"), "{frozen}");
}

#[tokio::test]
async fn the_projects_list_pages_with_the_apis_cursor_and_finds_by_name() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let api = Api::new(&node);
    for n in 1..=55 {
        api.project(&format!("Service {n:02}")).await;
    }
    let browser = signed_in(&node, "lister").await;
    let rows = "return document.querySelectorAll('#projects tbody tr').length;";

    browser.open(&format!("{node}/projects")).await;
    let shown = browser.client().execute(rows, vec![]).await.unwrap();
    assert_eq!(shown, json!(50));
    submit(&browser, "nav.pager a[rel=next]").await;
    let shown = browser.client().execute(rows, vec![]).await.unwrap();
    assert_eq!(shown, json!(5));
    assert!(browser.text("#projects").await.contains("Service 55"));
    browser.find("nav.pager a[href='/projects']").await;

    browser.fill("#project-search", "service 0").await;
    submit(&browser, "form.search button[type=submit]").await;
    let shown = browser.client().execute(rows, vec![]).await.unwrap();
    assert_eq!(shown, json!(9));
}
