//! `/audit`: the rows of the audit log and its filters.

use std::time::Duration;

use capstan_testkit::TestCluster;

use super::signed_in;
use crate::projects::Api;

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_audit_log_shows_rows_and_filters_them() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let api = Api::new(&node);
    let shop = api.project("Shop").await;
    let browser = signed_in(&node, "auditor").await;

    browser.open(&format!("{node}/audit")).await;
    browser
        .find(&format!("table.audit a[href='/projects/{shop}']"))
        .await;
    let (status, rows) = api.get("/api/audit?action=project.create").await;
    assert_eq!(status, 200, "{rows}");
    let row = rows["items"][0]["id"].as_i64().unwrap();
    assert!(
        browser
            .text(&format!("#audit-{row}"))
            .await
            .contains("project.create")
    );
    browser.screenshot("audit").await;
    browser.assert_accessible("the audit log").await;

    // By action: only project.create rows.
    browser.fill("#action", "project.create").await;
    browser.click("form.filters button[type=submit]").await;
    browser
        .until(
            WITHIN,
            "only project.create rows",
            "location.search.includes('action=project.create') \
             && [...document.querySelectorAll('table.audit tbody td code')] \
                  .every(c => c.textContent == 'project.create') \
             && document.querySelectorAll('table.audit tbody tr').length == 1",
        )
        .await;

    // An actor nobody is: no row.
    browser.fill("#action", "").await;
    browser.fill("#actor", "nobody-at-all").await;
    browser.click("form.filters button[type=submit]").await;
    browser
        .until(
            WITHIN,
            "no row",
            "document.querySelector('#audit-results .notice') != null",
        )
        .await;
    assert!(
        browser
            .text("#audit-results .notice")
            .await
            .contains("No row matches")
    );

    // A time the API cannot read: its problem, in words.
    browser.open(&format!("{node}/audit?since=yesterday")).await;
    let problem = browser.text(".problem").await;
    assert!(problem.contains("is not an RFC 3339 time"), "{problem}");
}
