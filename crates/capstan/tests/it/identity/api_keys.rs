use std::time::{Duration, Instant};

use capstan_testkit::{
    ADMIN_KEY, TempDir, TestCluster, TestDatabase,
    process::{ProcessOptions, ServerProcess},
};
use serde_json::json;

use super::{call, create_key, create_user, detail};
use crate::{capstan_bin, projects::variables::tables_holding};

/// Polls `node` with `key` until it answers 401, for at most `within`: the detail.
async fn refused_within(node: &str, key: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = call(node, key, "GET", "/api/projects", None).await;
        if status == 401 {
            return detail(&body).to_owned();
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            start.elapsed() < within,
            "{node} still accepts the key after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_service_accounts_key_opens_the_api() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let user = create_user(&node, "deploy-bot", "service").await;
    let created = create_key(&node, user, json!({"purpose": "CI", "expires_in": "90d"})).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("capk_"), "{created}");
    let (status, body) = call(&node, key, "GET", "/api/projects", None).await;
    assert_eq!(status, 200, "{body}");
    // 90 days, not the default 180.
    let expires = time::OffsetDateTime::parse(
        created["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((89..=90).contains(&days), "{created}");
    // Lists never show the key.
    let (status, listed) = call(
        &node,
        key,
        "GET",
        &format!("/api/users/{user}/api-keys"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["key_id"], created["key_id"]);
    assert!(!listed.to_string().contains(key));
    assert!(listed["items"][0].get("key").is_none(), "{listed}");
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_every_node_within_a_second() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    let user = create_user(&a, "deploy-bot", "service").await;
    let created = create_key(&a, user, json!({"purpose": "CI"})).await;
    let key = created["key"].as_str().unwrap();
    // Both nodes have checked (and cached) it.
    for node in [&a, &b] {
        assert_eq!(call(node, key, "GET", "/api/projects", None).await.0, 200);
    }
    let key_id = created["key_id"].as_str().unwrap();
    let (status, body) = call(
        &a,
        ADMIN_KEY,
        "DELETE",
        &format!("/api/users/{user}/api-keys/{key_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for node in [&a, &b] {
        let refused = refused_within(node, key, Duration::from_secs(1)).await;
        assert_eq!(refused, "the API key was revoked");
    }
    let (_, listed) = call(
        &b,
        ADMIN_KEY,
        "GET",
        &format!("/api/users/{user}/api-keys"),
        None,
    )
    .await;
    assert!(listed["items"][0]["revoked_at"].is_string(), "{listed}");
}

#[tokio::test]
async fn disabling_the_owner_stops_its_keys_on_every_node_and_enabling_restores_them() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    let user = create_user(&a, "alice", "person").await;
    let key = create_key(&a, user, json!({"purpose": "laptop"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for node in [&a, &b] {
        assert_eq!(call(node, &key, "GET", "/api/projects", None).await.0, 200);
    }
    let path = format!("/api/users/{user}");
    let (status, body) = call(
        &b,
        ADMIN_KEY,
        "PATCH",
        &path,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    for node in [&a, &b] {
        let refused = refused_within(node, &key, Duration::from_secs(1)).await;
        assert_eq!(refused, "the API key's owner is disabled");
    }
    call(
        &b,
        ADMIN_KEY,
        "PATCH",
        &path,
        Some(json!({"disabled": false})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in [&a, &b] {
        assert_eq!(call(node, &key, "GET", "/api/projects", None).await.0, 200);
    }
    // Deleting the user ends its keys at once too.
    let (status, _) = call(&a, ADMIN_KEY, "DELETE", &path, None).await;
    assert_eq!(status, 204);
    for node in [&a, &b] {
        let refused = refused_within(node, &key, Duration::from_secs(1)).await;
        assert_eq!(refused, "the API key is not valid");
    }
}

#[tokio::test]
async fn an_expired_key_is_refused_as_expired() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let user = create_user(&node, "deploy-bot", "service").await;
    let created = create_key(&node, user, json!({"purpose": "short", "expires_in": "1s"})).await;
    let key = created["key"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = call(&node, key, "GET", "/api/projects", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(detail(&body), "the API key has expired; create a new one");
}

#[tokio::test]
async fn malformed_and_mistyped_keys_are_told_apart_from_wrong_ones() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    let user = create_user(&node, "deploy-bot", "service").await;
    let key = create_key(&node, user, json!({"purpose": "CI"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = call(&node, "capk_short", "GET", "/api/projects", None).await;
    assert_eq!(status, 401);
    assert!(
        detail(&body).starts_with("the API key is malformed"),
        "{body}"
    );

    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let (status, body) = call(&node, &typo, "GET", "/api/projects", None).await;
    assert_eq!(status, 401);
    assert!(
        detail(&body).starts_with("the API key fails its checksum"),
        "{body}"
    );

    // A well-formed key with an unknown id, and the known id with a wrong secret, read
    // the same: nobody learns which key ids exist.
    let unknown = well_formed("capk_000000000000_", &key[18..50]);
    let wrong_secret = well_formed(&key[..18], "00000000000000000000000000000000");
    let (unknown_status, unknown_body) = call(&node, &unknown, "GET", "/api/projects", None).await;
    let (wrong_status, wrong_body) = call(&node, &wrong_secret, "GET", "/api/projects", None).await;
    assert_eq!((unknown_status, wrong_status), (401, 401));
    assert_eq!(unknown_body, wrong_body);
    assert_eq!(detail(&unknown_body), "the API key is not valid");
}

/// `head` + `secret` with a correct checksum: recomputed by asking the node would need
/// a valid key, so the CRC32 is computed here the same way.
fn well_formed(head: &str, secret: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let body = if head.ends_with('_') {
        format!("{head}{secret}")
    } else {
        format!("{head}_{secret}")
    };
    let mut crc = 0xFFFF_FFFFu32;
    for byte in body.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut n = u64::from(!crc);
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}_{}", String::from_utf8_lossy(&sum))
}

#[tokio::test]
async fn a_keys_secret_is_in_no_table_and_no_log_line_and_its_use_is_recorded() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-api-key-secret");
    let node = ServerProcess::start(
        &capstan_bin(),
        "keys",
        &db.url,
        &dir.0,
        &dir.0,
        ProcessOptions {
            env: vec![("RUST_LOG".into(), "debug".into())],
        },
    )
    .await;
    let url = node.url();
    let user = create_user(&url, "deploy-bot", "service").await;
    let created = create_key(&url, user, json!({"purpose": "CI"})).await;
    let key = created["key"].as_str().unwrap();
    let secret = &key[18..50];
    for _ in 0..3 {
        assert_eq!(call(&url, key, "GET", "/api/projects", None).await.0, 200);
    }
    // Recorded at a heartbeat, not on each request.
    let start = Instant::now();
    let listed = loop {
        let (_, listed) = call(
            &url,
            ADMIN_KEY,
            "GET",
            &format!("/api/users/{user}/api-keys"),
            None,
        )
        .await;
        if listed["items"][0]["last_used_at"].is_string() {
            break listed;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        listed["items"][0]["last_used_address"], "127.0.0.1",
        "{listed}"
    );

    assert_eq!(tables_holding(&db.url, secret).await, Vec::<String>::new());
    let log = node.log();
    assert!(
        log.contains("DEBUG"),
        "the node logs at debug level:\n{log}"
    );
    assert!(!log.contains(secret), "the node logged the key's secret");
    assert!(log.contains(created["key_id"].as_str().unwrap()), "{log}");
    // Each request's line names who sent it by the key's public id.
    let named = format!("deploy-bot (key {})", created["key_id"].as_str().unwrap());
    assert!(
        log.lines()
            .any(|line| line.contains("request") && line.contains(&named)),
        "no request line names {named}:
{log}"
    );
}
