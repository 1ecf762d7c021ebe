//! Signing in and out through the pages.

use std::time::Duration;

use capstan_testkit::{TestCluster, browser::Browser};

use super::{PASSWORD, person};

#[tokio::test]
async fn a_person_signs_in_with_a_password_returns_where_they_were_and_signs_out() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    person(&node, "ada").await;
    let browser = Browser::start().await;

    // A page asked for before signing in returns there after.
    browser.open(&format!("{node}/nodes")).await;
    browser.find("form[action='/login']").await;
    browser.screenshot("sign-in").await;
    browser.assert_accessible("the sign-in page").await;

    browser.fill("#name", "ada").await;
    browser.fill("#password", "not the password").await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    let refusal = browser.text(".problem").await;
    assert!(refusal.contains("not valid"), "{refusal}");

    browser.fill("#password", PASSWORD).await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    browser
        .until(
            Duration::from_secs(10),
            "the nodes page after signing in",
            "location.pathname === '/nodes'",
        )
        .await;
    assert_eq!(browser.text("header.top .who a").await, "ada");

    browser.click("header.top .who button").await;
    browser
        .until(
            Duration::from_secs(10),
            "the sign-in page after signing out",
            "location.pathname === '/login'",
        )
        .await;
    // The session is over on the server: the page sends the browser back to sign in.
    browser.open(&format!("{node}/nodes")).await;
    browser.find("form[action='/login']").await;
}

#[tokio::test]
async fn every_page_is_served_under_a_strict_policy_with_cached_assets() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let answer = reqwest::get(format!("{node}/login")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let policy = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let page = answer.text().await.unwrap();
    assert!(!page.contains("<script>"), "an inline script: {page}");
    let css = page
        .split('"')
        .find(|s| s.starts_with("/assets/capstan.") && s.ends_with(".css"))
        .expect("the style sheet's hashed address");
    let asset = reqwest::get(format!("{node}{css}")).await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Another build's name of the same file is served, but not kept.
    let other = reqwest::get(format!("{node}/assets/capstan.0000000000000000.css"))
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.headers()["cache-control"], "no-cache");
    // A sign-in form posted from elsewhere (no token cookie) signs nobody in.
    let forged = reqwest::Client::new()
        .post(format!("{node}/login"))
        .form(&[
            ("name", "ada"),
            ("password", PASSWORD),
            ("login_token", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(
        forged
            .headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().starts_with("capstan_session="))
    );
}
