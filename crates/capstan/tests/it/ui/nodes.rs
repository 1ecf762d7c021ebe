//! `/nodes`: drain and undrain with a confirmation, and the ping that follows.

use std::time::Duration;

use capstan_testkit::{TestCluster, eventually};

use super::signed_in;

#[tokio::test]
async fn draining_a_node_from_its_page_asks_first_then_its_ping_answers_418() {
    let cluster = TestCluster::start(2).await;
    let node = cluster.node(0).url();
    let other = cluster.node(1);
    let browser = signed_in(&node, "ops").await;

    browser.open(&format!("{node}/nodes")).await;
    browser.find(&format!("#node-{}", other.state.name)).await;
    browser.screenshot("nodes").await;
    browser.assert_accessible("the nodes page").await;

    browser
        .click(&format!(
            "#node-{} form[action$='/drain'] button",
            other.state.name
        ))
        .await;
    let question = browser.text("#question").await;
    assert!(
        question.starts_with(&format!("Drain {}?", other.state.name)),
        "{question}"
    );
    browser.screenshot("nodes-confirm-drain").await;
    browser.assert_accessible("the drain confirmation").await;
    // Nothing changes before the confirmation.
    let ping = reqwest::get(format!("{}/api/nodes/ping", other.url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);

    browser.click(".confirm button[type=submit]").await;
    let done = browser.text(".notice").await;
    assert!(done.contains("is draining"), "{done}");
    eventually(
        Duration::from_secs(10),
        "the drained node's ping is 418",
        || async {
            let ping = reqwest::get(format!("{}/api/nodes/ping", other.url()))
                .await
                .ok()?;
            (ping.status() == 418).then_some(())
        },
    )
    .await;

    // A cap out of range is refused beside the table, and nothing changes (the field's
    // own limits are lifted first, as in a browser that does not check them).
    browser
        .client()
        .execute(
            "document.querySelectorAll('input[name=task_cap]').forEach(i => i.removeAttribute('max'))",
            vec![],
        )
        .await
        .unwrap();
    browser
        .fill(
            &format!("#node-{} input[name=task_cap]", other.state.name),
            "5000",
        )
        .await;
    browser
        .click(&format!(
            "#node-{} form[action$='/cap'] button",
            other.state.name
        ))
        .await;
    let refusal = browser.text(".problem").await;
    assert!(refusal.contains("from 0 to 1000"), "{refusal}");

    browser
        .click(&format!(
            "#node-{} form[action$='/undrain'] button",
            other.state.name
        ))
        .await;
    browser.click(".confirm button[type=submit]").await;
    eventually(
        Duration::from_secs(10),
        "the undrained node's ping is 200",
        || async {
            let ping = reqwest::get(format!("{}/api/nodes/ping", other.url()))
                .await
                .ok()?;
            (ping.status() == 200).then_some(())
        },
    )
    .await;
}
