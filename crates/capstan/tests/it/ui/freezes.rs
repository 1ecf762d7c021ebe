//! `/freezes`: a recurring window created, a bad fixed one refused beside its field,
//! and the window deleted after a confirmation.

use capstan_testkit::{ADMIN_KEY, TestCluster};

use super::{
    agents::{notice_says, problem_says},
    signed_in,
};
use crate::{access::create_environment, identity::call};

#[tokio::test]
async fn a_freeze_window_is_created_and_deleted() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    create_environment(&node, "Production").await;
    let browser = signed_in(&node, "freezer").await;

    browser.open(&format!("{node}/freezes")).await;
    browser.fill("#freeze-name", "bad-start").await;
    browser.fill("#freeze-start", "tomorrow morning").await;
    browser.fill("#freeze-end", "2030-01-02T00:00:00Z").await;
    browser
        .click("form[action='/freezes'] button[type=submit]")
        .await;
    problem_says(&browser, "start").await;
    browser.find("#freeze-start-error").await;
    browser.assert_accessible("the refused freeze form").await;

    browser.fill("#freeze-name", "weekends").await;
    browser
        .fill("#freeze-description", "no changes over the weekend")
        .await;
    browser.click("input[name=kind][value=recurring]").await;
    browser.fill("#freeze-cron", "0 18 * * 5").await;
    browser.fill("#freeze-duration", "62h").await;
    browser.fill("#freeze-time_zone", "Europe/Berlin").await;
    browser.fill("#freeze-environments", "Production").await;
    browser
        .click("form[action='/freezes'] button[type=submit]")
        .await;
    notice_says(&browser, "Freeze window weekends is created").await;
    let row = browser.text("#freeze-weekends").await;
    assert!(
        row.contains("0 18 * * 5") && row.contains("Production"),
        "{row}"
    );
    let (_, freezes) = call(&node, ADMIN_KEY, "GET", "/api/freezes", None).await;
    let window = &freezes["items"][0];
    assert_eq!(window["name"], "weekends", "{freezes}");
    assert_eq!(window["duration"], "62h", "{freezes}");
    assert_eq!(window["environments"][0], "Production", "{freezes}");
    browser.screenshot("freezes").await;
    browser.assert_accessible("the freezes page").await;

    browser.click("#freeze-weekends button").await;
    assert!(
        browser
            .text("#question")
            .await
            .starts_with("Delete the freeze window weekends?")
    );
    browser.assert_accessible("the delete confirmation").await;
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "weekends is deleted").await;
    let (_, freezes) = call(&node, ADMIN_KEY, "GET", "/api/freezes", None).await;
    assert_eq!(freezes["items"].as_array().unwrap().len(), 0, "{freezes}");
}
