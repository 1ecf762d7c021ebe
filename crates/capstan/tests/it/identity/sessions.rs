//! Sessions end on every node: when idle too long, and when their person is disabled.

use std::time::Duration;

use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::json;

use super::{
    call, detail,
    login::{login, person, session_cookie, with_cookie},
};

#[tokio::test]
async fn an_idle_session_ends() {
    let cluster = TestCluster::start_with(&[None, None], |settings| {
        settings.sign_in.session_idle = Duration::from_secs(1);
    })
    .await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    person(&a, "alice").await;
    let answer = login(&a, "alice", super::login::PASSWORD, "198.51.100.7").await;
    let cookie = session_cookie(&answer.cookies);
    // Used within the idle time, it lives on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            with_cookie(&b, &cookie, None, "GET", "/api/nodes", None)
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = with_cookie(&a, &cookie, None, "GET", "/api/nodes", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
}

#[tokio::test]
async fn a_disabled_persons_session_is_refused_by_every_node() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    let id = person(&a, "alice").await;
    let answer = login(&a, "alice", super::login::PASSWORD, "198.51.100.7").await;
    let cookie = session_cookie(&answer.cookies);
    let (status, body) = call(
        &a,
        ADMIN_KEY,
        "PATCH",
        &format!("/api/users/{id}"),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for node in [&a, &b] {
        let refused = with_cookie(node, &cookie, None, "GET", "/api/nodes", None).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert!(
            detail(&refused.body).contains("sign in again"),
            "{}",
            refused.body
        );
    }
    // A bogus cookie reads the same, and a request with no credential says how to sign in.
    let bogus = with_cookie(&a, "capstan_session=x.y", None, "GET", "/api/nodes", None).await;
    assert_eq!(bogus.status, 401);
    let (status, body) = call(&a, "", "GET", "/api/nodes", None).await;
    assert_eq!(status, 401, "{body}");
}
