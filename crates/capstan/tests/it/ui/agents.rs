//! `/agents` with a real agent (health check, disable, enable, delete) and
//! `/environments` (create and delete one; a registration token shown once, then
//! deleted).

use std::time::Duration;

use capstan_testkit::{ADMIN_KEY, TestCluster, eventually};

use capstan_testkit::browser::Browser;

use super::signed_in;
use crate::{agents::fleet::start_agents, identity::call};

#[tokio::test]
async fn an_agent_is_checked_disabled_enabled_and_deleted_from_its_page() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let client = cluster.node(0).client();
    let dir = capstan_testkit::TempDir::new("capstan-ui-agents");
    let _agents = start_agents(&client, &node, &[("web01", &["web", "linux"])], &dir.0).await;
    let browser = signed_in(&node, "fleet-admin").await;

    browser.open(&format!("{node}/agents")).await;
    let row = browser.text("#agent-web01").await;
    assert!(row.contains("Production") && row.contains("linux"), "{row}");
    assert!(
        row.contains(&cluster.node(0).state.name),
        "the polled node: {row}"
    );

    browser
        .click("#agent-web01 form[action$='/check'] button")
        .await;
    notice_says(&browser, "health check of web01 is queued").await;
    eventually(Duration::from_secs(30), "web01 to be healthy", || async {
        let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
        (agents["items"][0]["health"] == "healthy").then_some(())
    })
    .await;
    browser.open(&format!("{node}/agents")).await;
    let row = browser.text("#agent-web01").await;
    assert!(
        row.contains("healthy") && row.contains("bash"),
        "the facts: {row}"
    );
    browser.screenshot("agents").await;
    browser.assert_accessible("the agents page").await;

    browser
        .click("#agent-web01 form[action$='/disable'] button")
        .await;
    let question = browser.text("#question").await;
    assert!(question.starts_with("Disable web01?"), "{question}");
    browser.assert_accessible("the disable confirmation").await;
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "web01 is disabled").await;
    let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
    assert_eq!(agents["items"][0]["disabled"], true, "{agents}");

    browser
        .click("#agent-web01 form[action$='/enable'] button")
        .await;
    notice_says(&browser, "web01 is enabled").await;
    let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
    assert_eq!(agents["items"][0]["disabled"], false, "{agents}");

    browser
        .click("#agent-web01 form[action$='/delete'] button")
        .await;
    assert!(browser.text("#question").await.starts_with("Delete web01?"));
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "web01 is deleted").await;
    let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
    assert_eq!(agents["items"].as_array().unwrap().len(), 0, "{agents}");
}

#[tokio::test]
async fn a_registration_token_is_shown_once_and_environments_are_created_and_deleted() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let browser = signed_in(&node, "env-admin").await;

    browser.open(&format!("{node}/environments")).await;
    browser.fill("#environment-name", "Staging").await;
    browser
        .fill("#environment-description", "before production")
        .await;
    browser.click("form[action='/environments'] button").await;
    notice_says(&browser, "Staging is created").await;
    browser.find("#environment-Staging").await;

    // A name the API refuses is shown beside the field, with its status.
    browser.fill("#environment-name", "Staging").await;
    browser.click("form[action='/environments'] button").await;
    problem_says(&browser, "already exists").await;

    browser.fill("#token-note", "new web servers").await;
    browser.fill("#token-uses", "3").await;
    browser
        .click("form[action='/environments/registration-tokens'] button")
        .await;
    let token = browser
        .find("#new-secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(token.starts_with("capreg_"), "{token}");
    browser.screenshot("registration-token-created").await;
    browser.assert_accessible("the new token page").await;

    // Never again: not on the list, which has its prefix only.
    browser.open(&format!("{node}/environments")).await;
    let source = browser.client().source().await.unwrap();
    assert!(!source.contains(&token), "the token is shown once only");
    let (_, tokens) = call(
        &node,
        ADMIN_KEY,
        "GET",
        "/api/agents/registration-tokens",
        None,
    )
    .await;
    let listed = &tokens["items"][0];
    assert_eq!(listed["uses_left"], 3, "{tokens}");
    assert!(token.starts_with(listed["prefix"].as_str().unwrap()));
    let id = listed["id"].as_i64().unwrap();
    browser.screenshot("environments").await;
    browser.assert_accessible("the environments page").await;

    browser.click(&format!("#token-{id} button")).await;
    browser.find("#question").await;
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "token is deleted").await;
    let (_, tokens) = call(
        &node,
        ADMIN_KEY,
        "GET",
        "/api/agents/registration-tokens",
        None,
    )
    .await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 0, "{tokens}");

    browser.click("#environment-Staging button").await;
    assert!(
        browser
            .text("#question")
            .await
            .contains("Delete the environment Staging?")
    );
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "Staging is deleted").await;
    let (_, environments) = call(&node, ADMIN_KEY, "GET", "/api/environments", None).await;
    assert!(
        !environments.to_string().contains("Staging"),
        "{environments}"
    );
}

/// Waits until the page's notice says `text` (the page before a form's answer may
/// have had a notice of its own).
pub(crate) async fn notice_says(browser: &Browser, text: &str) {
    let quoted = serde_json::to_string(text).unwrap();
    browser
        .until(
            Duration::from_secs(15),
            &format!("the notice to say {text}"),
            &format!("(document.querySelector('.notice')?.textContent ?? '').includes({quoted})"),
        )
        .await;
}

/// Waits until the page's problem says `text`.
pub(crate) async fn problem_says(browser: &Browser, text: &str) {
    let quoted = serde_json::to_string(text).unwrap();
    browser
        .until(
            Duration::from_secs(15),
            &format!("the problem to say {text}"),
            &format!("(document.querySelector('.problem')?.textContent ?? '').includes({quoted})"),
        )
        .await;
}
