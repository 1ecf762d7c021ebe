//! The address a row records is the client's: the forwarded one only when the request
//! came through a trusted proxy (here a real HAProxy), the peer's otherwise.

use capstan_testkit::{ADMIN_KEY, TestCluster, haproxy::HaProxy};
use serde_json::{Value, json};

use super::Trail;

async fn create_project_through(proxy: &str, name: &str, forwarded_for: &str) {
    let response = reqwest::Client::new()
        .post(format!("{proxy}/api/projects"))
        .bearer_auth(ADMIN_KEY)
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

async fn address_of_change(trusted: &[&str]) -> Value {
    let cluster = TestCluster::start_with(&[None], |settings| {
        settings.trusted_proxies = trusted.iter().map(|p| p.parse().unwrap()).collect();
    })
    .await;
    let node = cluster.node(0);
    let proxy = HaProxy::start(&[("n1".to_owned(), node.addr.port())]);
    proxy.wait_all_up(std::time::Duration::from_secs(10)).await;
    let mut trail = Trail::new(&node.url());
    create_project_through(&proxy.url(), "Shop", "203.0.113.7").await;
    trail.one("project.create").await["actor"]["address"].clone()
}

#[tokio::test]
async fn a_change_through_a_trusted_proxy_records_the_forwarded_address() {
    assert_eq!(address_of_change(&["127.0.0.1/32"]).await, "203.0.113.7");
}

#[tokio::test]
async fn a_change_through_an_untrusted_proxy_records_the_proxys_address() {
    assert_eq!(address_of_change(&["10.0.0.0/8"]).await, "127.0.0.1");
}
