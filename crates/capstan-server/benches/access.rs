//! What a node spends checking a request's API key and its permission on a warm cache:
//! the key's format and checksum, its digest, the cached key check, the caller's
//! cached grants, the route's requirement and the grant check. In process, no HTTP.
//!
//! `cargo bench -p capstan-server --bench access` against the PostgreSQL the tests use
//! (`CAPSTAN_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`):
//! it makes a database of its own, fills the caches once from it, and drops it.

use std::time::{Duration, Instant};

use capstan_core::access::Scope;
use capstan_server::{
    http::access::{Caller, refusal, requirement},
    identity::{KeyCache, access::AccessCache, keys},
};
use sqlx::{Connection, PgConnection, PgPool};

const WARMUP: usize = 10_000;
const ITERATIONS: usize = 200_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let admin_url = std::env::var("CAPSTAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("capstan_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let result = run(&database_url(&admin_url, &name)).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

async fn run(url: &str) -> anyhow::Result<()> {
    let db = PgPool::connect(url).await?;
    capstan_db::MIGRATOR.run(&db).await?;
    let (user, key_text, shop, test) = seed(&db).await?;

    let keys = KeyCache::default();
    let access = AccessCache::default();
    let route = ("POST", "/api/deployments/{id}/cancel");
    let scope = Scope::Deployment {
        project: shop,
        environment: test,
    };
    let check = || async {
        let presented = keys::parse(&key_text).expect("a well-formed key");
        let principal = keys
            .authenticate(&db, &presented, "127.0.0.1".to_owned())
            .await
            .expect("the database")
            .expect("a valid key");
        let grants = access.grants(&db, user).await.expect("the database");
        let needed = requirement(route.0, route.1).expect("a declared route");
        let permission = needed.permission().expect("a permission");
        let caller = Caller::new(principal, Some(grants));
        refusal(&caller, permission, scope).is_ok()
    };
    for _ in 0..WARMUP {
        assert!(check().await, "the deployer may cancel on Shop in Test");
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        let allowed = check().await;
        samples.push(started.elapsed());
        assert!(allowed);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let total: Duration = samples.iter().sum();
    println!(
        "key + permission check, warm cache, {ITERATIONS} iterations: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs, mean {:.2} µs",
        micros(at(0.50)),
        micros(at(0.99)),
        micros(samples[samples.len() - 1]),
        micros(total / ITERATIONS as u32),
    );
    wrong_keys(&db, &keys, &key_text).await;
    Ok(())
}

/// A wrong key costs the same whether its secret is wrong from the first character or
/// only in the last: the node compares digests of the whole key, in constant time.
/// Both are timed in alternation, so drift on the machine falls on both alike.
async fn wrong_keys(db: &PgPool, keys: &KeyCache, key_text: &str) {
    let body_len = keys::PREFIX.len() + 12 + 1 + 32;
    let body = &key_text[..body_len];
    let secret_at = keys::PREFIX.len() + 13;
    let wrong_at = |i: usize| {
        let mut bytes = body.as_bytes().to_vec();
        bytes[secret_at + i] = if bytes[secret_at + i] == b'a' {
            b'b'
        } else {
            b'a'
        };
        let body = String::from_utf8(bytes).expect("base62");
        let text = format!("{body}_{}", keys::checksum(&body));
        keys::parse(&text).expect("a well-formed key")
    };
    let first = wrong_at(0);
    let last = wrong_at(31);
    let time = |key: &keys::PresentedKey| {
        let key = keys::PresentedKey {
            key_id: key.key_id.clone(),
            digest: key.digest,
        };
        async move {
            let started = Instant::now();
            let refused = keys
                .authenticate(db, &key, "127.0.0.1".to_owned())
                .await
                .expect("the database")
                .is_err();
            assert!(refused, "a wrong key is refused");
            started.elapsed()
        }
    };
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for _ in 0..WARMUP {
        time(&first).await;
        time(&last).await;
    }
    for _ in 0..ITERATIONS {
        early.push(time(&first).await);
        late.push(time(&last).await);
    }
    early.sort_unstable();
    late.sort_unstable();
    let median = |s: &[Duration]| s[s.len() / 2];
    println!(
        "wrong key, warm cache, {ITERATIONS} each: secret wrong from its first character p50 {:.3} µs, only in its last p50 {:.3} µs, ratio {:.3}",
        micros(median(&early)),
        micros(median(&late)),
        median(&late).as_secs_f64() / median(&early).as_secs_f64(),
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A deployer on Shop in Test with a live key: (user id, key text, Shop, Test).
async fn seed(db: &PgPool) -> anyhow::Result<(i64, String, i64, i64)> {
    let user = capstan_db::users::create(
        db,
        &capstan_db::users::NewUser {
            name: "bench-bot",
            display_name: "",
            email: None,
            kind: "service",
        },
    )
    .await?;
    let key = keys::generate();
    capstan_db::users::create_key(
        db,
        &capstan_db::users::NewApiKey {
            user_id: user.id,
            purpose: "benchmark",
            key_id: &key.key_id,
            digest: &key.digest,
            expires_at: time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
        },
    )
    .await?;
    let shop = capstan_db::projects::create(db, "Shop", "").await?.id;
    let test: i64 =
        sqlx::query_scalar("INSERT INTO environments (name) VALUES ('Test') RETURNING id")
            .fetch_one(db)
            .await?;
    let team = capstan_db::access::create_team(db, "deployers", "")
        .await?
        .id;
    capstan_db::access::add_member(db, team, user.id).await?;
    let deployer: i64 = sqlx::query_scalar("SELECT id FROM roles WHERE name = 'deployer'")
        .fetch_one(db)
        .await?;
    capstan_db::access::create_grant(db, team, deployer, Some(&[shop]), Some(&[test])).await?;
    Ok((user.id, key.text, shop, test))
}
