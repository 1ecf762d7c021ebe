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

#[tokio::test]
async fn a_person_signs_in_with_single_sign_on_from_the_sign_in_page() {
    use capstan_server::config::OidcSettings;
    use capstan_testkit::{
        TempDir, TestDatabase,
        cluster::start_node,
        cluster::test_settings,
        free_port,
        oidc::{CLIENT_ID, CLIENT_SECRET, OidcProvider},
    };
    use secrecy::SecretString;

    let db = TestDatabase::new().await;
    let blobs = TempDir::new("capstan-blobs");
    let port = free_port();
    let node = format!("http://127.0.0.1:{port}");
    let redirect = format!("{node}/api/login/oidc/callback");
    let provider = OidcProvider::start(std::slice::from_ref(&redirect)).await;
    let mut settings = test_settings(&db.url, &blobs.0, "sso-ui");
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.sign_in.oidc = Some(OidcSettings {
        issuer: provider.issuer(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
        redirect_url: redirect.clone(),
    });
    let _node = start_node(settings).await;

    let browser = Browser::start().await;
    browser.open(&format!("{node}/login")).await;
    browser.screenshot("sign-in-sso").await;
    browser
        .assert_accessible("the sign-in page with single sign-on")
        .await;
    browser.click("a[href='/api/login/oidc']").await;
    // The provider's own pages: its development sign-in form, then its consent.
    browser.fill("input[name=login]", "carol").await;
    browser.fill("input[name=password]", "any").await;
    browser.click("button[type=submit]").await;
    browser
        .until(
            Duration::from_secs(20),
            "the provider's consent or Capstan's dashboard",
            &format!(
                "location.origin === '{node}' || document.querySelector('button[type=submit]') !== null"
            ),
        )
        .await;
    if !browser
        .client()
        .current_url()
        .await
        .unwrap()
        .as_str()
        .starts_with(&node)
    {
        browser.click("button[type=submit]").await;
    }
    browser
        .until(
            Duration::from_secs(20),
            "signed in on the dashboard",
            &format!("location.origin === '{node}' && location.pathname === '/'"),
        )
        .await;
    browser.find("header.top .who").await;
    let who: serde_json::Value = {
        let cookie = browser
            .client()
            .get_named_cookie(capstan_api::login::SESSION_COOKIE)
            .await
            .expect("the session cookie");
        reqwest::Client::new()
            .get(format!("{node}/api/session"))
            .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(who["login"], "oidc", "{who}");
}
