//! `/admin/users`, `/admin/teams`, `/admin/roles`: a user created and disabled, a
//! team given a member and a grant, a role created; somebody who may not manage
//! users sees why, not a crash.

use capstan_testkit::{ADMIN_KEY, TestCluster, browser::Browser};
use serde_json::json;

use super::{
    PASSWORD,
    agents::{notice_says, problem_says},
    signed_in,
};
use crate::identity::{call, create_user};

#[tokio::test]
async fn an_administrator_manages_users_teams_and_roles() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let browser = signed_in(&node, "root").await;

    browser.open(&format!("{node}/admin/users")).await;
    browser.fill("#user-name", "dana").await;
    browser.fill("#user-display-name", "Dana D.").await;
    browser
        .click("form[action='/admin/users'] button[type=submit]")
        .await;
    notice_says(&browser, "User dana is created").await;
    browser.find("#user-dana").await;
    browser.screenshot("admin-users").await;
    browser.assert_accessible("the users page").await;

    browser.click("#user-dana form button").await;
    assert!(browser.text("#question").await.starts_with("Disable dana?"));
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "dana is disabled").await;
    let (_, users) = call(&node, ADMIN_KEY, "GET", "/api/users?name=dana", None).await;
    assert_eq!(users["items"][0]["disabled"], true, "{users}");
    let dana = users["items"][0]["id"].as_i64().unwrap();

    browser.open(&format!("{node}/admin/teams")).await;
    browser.fill("#team-name", "operators").await;
    browser
        .click("form[action='/admin/teams'] button[type=submit]")
        .await;
    notice_says(&browser, "Team operators is created").await;
    let (_, teams) = call(&node, ADMIN_KEY, "GET", "/api/teams", None).await;
    let team = teams["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "operators")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // An unknown name is refused in words; a known one is added.
    browser
        .fill(&format!("#member-{team}"), "nobody-here")
        .await;
    browser
        .click(&format!(
            "form[action='/admin/teams/{team}/members'] button"
        ))
        .await;
    problem_says(&browser, "no user named").await;
    browser.fill(&format!("#member-{team}"), "dana").await;
    browser
        .click(&format!(
            "form[action='/admin/teams/{team}/members'] button"
        ))
        .await;
    notice_says(&browser, "dana is a member now").await;
    let (_, members) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/teams/{team}/members"),
        None,
    )
    .await;
    assert_eq!(members["items"][0]["user_id"], dana, "{members}");

    browser
        .click(&format!(
            "form[action='/admin/teams/{team}/grants'] button[type=submit]"
        ))
        .await;
    notice_says(&browser, "The team has the role").await;
    let (_, grants) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/teams/{team}/grants"),
        None,
    )
    .await;
    assert_eq!(grants["items"].as_array().unwrap().len(), 1, "{grants}");
    browser.screenshot("admin-teams").await;
    browser.assert_accessible("the teams page").await;

    browser
        .click(&format!(
            "form[action='/admin/teams/{team}/members/{dana}/remove'] button"
        ))
        .await;
    browser.find("#question").await;
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "The member is removed").await;
    let (_, members) = call(
        &node,
        ADMIN_KEY,
        "GET",
        &format!("/api/teams/{team}/members"),
        None,
    )
    .await;
    assert_eq!(members["items"].as_array().unwrap().len(), 0, "{members}");

    browser.open(&format!("{node}/admin/roles")).await;
    browser.fill("#role-name", "watcher").await;
    browser.click("input[name=permission][value=view]").await;
    browser
        .click("input[name=permission][value=view_audit]")
        .await;
    browser
        .click("form[action='/admin/roles'] button[type=submit]")
        .await;
    notice_says(&browser, "Role watcher is created").await;
    let (_, roles) = call(&node, ADMIN_KEY, "GET", "/api/roles", None).await;
    let watcher = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "watcher")
        .unwrap();
    assert_eq!(
        watcher["permissions"],
        json!(["view", "view_audit"]),
        "{watcher}"
    );
    browser.screenshot("admin-roles").await;
    browser.assert_accessible("the roles page").await;
}

#[tokio::test]
async fn somebody_who_may_not_manage_users_sees_why() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let id = create_user(&node, "plain", "person").await;
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "PUT",
        &format!("/api/users/{id}/password"),
        Some(json!({ "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let browser = Browser::start().await;
    browser.sign_in(&node, "plain", PASSWORD).await;

    browser.open(&format!("{node}/admin/users")).await;
    let problem = browser.text(".problem").await;
    assert!(
        problem.contains("Forbidden") || problem.contains("manage_users"),
        "{problem}"
    );
    assert!(browser.text("main").await.contains("manage_users"));
    // Still a page in the frame: the navigation is there.
    browser.find("nav[aria-label=Main]").await;
    browser.screenshot("admin-users-forbidden").await;
    browser.assert_accessible("the refused users page").await;
}
