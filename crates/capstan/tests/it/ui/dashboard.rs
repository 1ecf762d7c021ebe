//! `/`: the dashboard's cells (release, state, a newer release), its filters and its
//! pages, with and without htmx.

use std::time::Duration;

use capstan_testkit::ADMIN_KEY;
use serde_json::json;

use super::signed_in;
use crate::access::{call, environment_id};
use crate::deployments::{Fleet, step};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_dashboard_shows_a_deployed_cell_with_a_newer_release_and_filters_and_pages() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (shop, first) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let blog = fleet.api.project("Blog").await;
    let production = environment_id(&node, "Production").await;
    let (status, body) = fleet
        .api
        .post("/api/environments", json!({ "name": "Staging" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let deployment = fleet
        .deploy(json!({ "release_id": first, "environment": "Production" }))
        .await;
    fleet.wait_state(deployment, &["succeeded"], WITHIN).await;
    let (status, body) = fleet
        .api
        .post("/api/releases", json!({ "project_id": shop }))
        .await;
    assert_eq!(status, 201, "{body}");

    // What the API says the cell holds.
    let (status, dashboard) = call(&node, ADMIN_KEY, "GET", "/api/dashboard", None).await;
    assert_eq!(status, 200, "{dashboard}");
    let cell = dashboard["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["project_id"] == shop && c["environment_id"] == production)
        .expect("a Shop × Production cell")
        .clone();
    assert_eq!(cell["newer_release"], true, "{cell}");
    let release = cell["release"].as_str().unwrap().to_owned();

    let browser = signed_in(&node, "dashboard-viewer").await;
    browser.open(&format!("{node}/")).await;
    let link = format!("table.dashboard a[href='/deployments/{deployment}']");
    let shown = browser.text(&link).await;
    assert!(shown.contains(&release), "{shown}");
    assert!(shown.contains("succeeded"), "{shown}");
    let newer = browser
        .client()
        .execute(
            &format!(
                "return document.querySelector(\"table.dashboard td:has(a[href='/deployments/{deployment}']) .newer\")?.textContent"
            ),
            vec![],
        )
        .await
        .unwrap();
    let newer = newer.as_str().unwrap_or_default().to_owned();
    assert!(newer.contains("newer release waits"), "{newer}");
    browser
        .find(&format!("table.dashboard a[href='/projects/{shop}']"))
        .await;
    browser
        .find(&format!("table.dashboard a[href='/projects/{blog}']"))
        .await;
    browser.screenshot("dashboard").await;
    browser.assert_accessible("the dashboard").await;

    // The environment filter (htmx swaps the table and keeps the address).
    let environments = browser
        .client()
        .execute(
            "return document.querySelectorAll('table.dashboard thead th').length",
            vec![],
        )
        .await
        .unwrap();
    assert!(environments.as_u64().unwrap() > 2, "{environments}");
    browser
        .find("#environment_id")
        .await
        .select_by_value(&production.to_string())
        .await
        .unwrap();
    browser
        .until(
            WITHIN,
            "only Production's column",
            &format!(
                "document.querySelectorAll('table.dashboard thead th').length == 2 \
                 && location.search.includes('environment_id={production}')"
            ),
        )
        .await;
    browser.find(&link).await;

    // A name search that matches one project shows it alone.
    browser.fill("#project", "sho").await;
    browser.click("form.filters button[type=submit]").await;
    browser
        .until(
            WITHIN,
            "Shop alone",
            &format!(
                "document.querySelectorAll('table.dashboard tbody tr').length == 1 \
                 && document.querySelector(\"table.dashboard a[href='/projects/{shop}']\") != null"
            ),
        )
        .await;

    // One project a page: Blog first (by name), then the next page has Shop.
    browser.open(&format!("{node}/?limit=1")).await;
    browser
        .find(&format!("table.dashboard a[href='/projects/{blog}']"))
        .await;
    browser.click("nav.pager a[rel=next]").await;
    browser
        .until(
            WITHIN,
            "the next page, with Shop",
            &format!(
                "document.querySelector(\"table.dashboard a[href='/projects/{shop}']\") != null \
                 && location.search.includes('cursor=')"
            ),
        )
        .await;
    let blog_shown = browser
        .client()
        .execute(
            &format!("return document.querySelector(\"table.dashboard a[href='/projects/{blog}']\") != null"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(blog_shown, serde_json::Value::Bool(false));

    // A bad page size is the page's refusal, in words.
    browser.open(&format!("{node}/?limit=5000")).await;
    let problem = browser.text(".problem").await;
    assert!(problem.contains("from 1 to 500"), "{problem}");
}
