//! `/account`: an API key created (shown once) and revoked; the password changed.

use capstan_testkit::TestCluster;

use super::{PASSWORD, agents::notice_says, signed_in};
use crate::identity::call;

#[tokio::test]
async fn an_api_key_is_shown_once_works_and_is_revoked() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let browser = signed_in(&node, "keyholder").await;

    browser.open(&format!("{node}/account")).await;
    browser.fill("#key-purpose", "deploy script").await;
    browser.fill("#key-expires", "30d").await;
    browser
        .click("form[action='/account/api-keys'] button")
        .await;
    let key = browser
        .find("#new-secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(key.starts_with("capk_"), "{key}");
    browser.screenshot("api-key-created").await;
    browser.assert_accessible("the new key page").await;

    // The key acts as its owner.
    let (status, session) = call(&node, &key, "GET", "/api/users?name=keyholder", None).await;
    assert_eq!(status, 200, "{session}");

    browser.open(&format!("{node}/account")).await;
    let source = browser.client().source().await.unwrap();
    assert!(!source.contains(&key), "the key is shown once only");
    let row = browser.text("table tbody tr").await;
    assert!(
        row.contains("deploy script") && row.contains("active"),
        "{row}"
    );
    browser.screenshot("account").await;
    browser.assert_accessible("the account page").await;

    browser.click("form[action$='/revoke'] button").await;
    let question = browser.text("#question").await;
    assert!(question.starts_with("Revoke the API key"), "{question}");
    browser.click(".confirm button[type=submit]").await;
    notice_says(&browser, "is revoked").await;
    let (status, _) = call(&node, &key, "GET", "/api/users?name=keyholder", None).await;
    assert_eq!(status, 401, "a revoked key is refused");
    assert!(browser.text("table tbody tr").await.contains("revoked"));

    // A password change needs the current one; a wrong one is refused in words.
    browser
        .fill("#old-password", "not the password at all")
        .await;
    browser
        .fill("#new-password", "a brand new long passphrase")
        .await;
    browser
        .fill("#repeated-password", "a brand new long passphrase")
        .await;
    browser
        .click("form[action='/account/password'] button")
        .await;
    super::agents::problem_says(&browser, "old_password").await;
    browser.fill("#old-password", PASSWORD).await;
    browser
        .fill("#new-password", "a brand new long passphrase")
        .await;
    browser
        .fill("#repeated-password", "a brand new long passphrase")
        .await;
    browser
        .click("form[action='/account/password'] button")
        .await;
    notice_says(&browser, "Your password is changed").await;
    let answer = crate::identity::login::login(
        &node,
        "keyholder",
        "a brand new long passphrase",
        "127.0.0.1",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
