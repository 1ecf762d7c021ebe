//! `/lifecycles`: a lifecycle with an unknown environment is refused beside that
//! field; corrected, it is created and shown with its phases.

use capstan_testkit::{ADMIN_KEY, TestCluster};

use super::{
    agents::{notice_says, problem_says},
    signed_in,
};
use crate::{access::create_environment, identity::call};

#[tokio::test]
async fn a_lifecycle_is_refused_beside_its_bad_field_then_created() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    create_environment(&node, "Test").await;
    create_environment(&node, "Production").await;
    let browser = signed_in(&node, "planner").await;

    browser.open(&format!("{node}/lifecycles")).await;
    browser.click("a[href='/lifecycles/new']").await;
    browser.fill("#lifecycle-name", "Standard").await;
    browser.fill("#phase-0-name", "Testing").await;
    browser.fill("#phase-0-environments", "Test").await;
    browser.fill("#phase-1-name", "Live").await;
    browser.fill("#phase-1-environments", "Prodution").await;
    browser
        .click("form[action='/lifecycles'] button[type=submit]")
        .await;
    problem_says(&browser, "Prodution").await;
    let beside = browser.text("#phase-1-environments-error").await;
    assert!(beside.contains("no environment `Prodution`"), "{beside}");
    browser.screenshot("lifecycle-refused").await;
    browser
        .assert_accessible("the refused lifecycle form")
        .await;
    let (_, lifecycles) = call(&node, ADMIN_KEY, "GET", "/api/lifecycles", None).await;
    assert_eq!(lifecycles["items"].as_array().unwrap().len(), 0);

    // What was typed is still there; only the bad field changes.
    assert_eq!(
        browser
            .find("#phase-0-name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Testing")
    );
    browser.fill("#phase-1-environments", "Production").await;
    browser.click("#phase-1-automatic").await;
    browser
        .click("form[action='/lifecycles'] button[type=submit]")
        .await;
    notice_says(&browser, "Lifecycle Standard is created").await;
    let section = browser.text("#lifecycle-Standard").await;
    assert!(
        section.contains("Testing") && section.contains("Production"),
        "{section}"
    );
    let (_, lifecycles) = call(&node, ADMIN_KEY, "GET", "/api/lifecycles", None).await;
    let phases = &lifecycles["items"][0]["phases"];
    assert_eq!(phases[1]["environments"][0], "Production", "{lifecycles}");
    assert_eq!(phases[1]["automatic"], true, "{lifecycles}");
    browser.screenshot("lifecycles").await;
    browser.assert_accessible("the lifecycles page").await;
}
