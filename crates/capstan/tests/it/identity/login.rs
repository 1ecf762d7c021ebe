//! Password sign-in through real nodes: the cookie, CSRF, signing out on every node,
//! what a failed login reveals, the flood brake and the audit rows.

use std::time::{Duration, Instant};

use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::{Value, json};

use super::{call, create_user, detail};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A two-node cluster that believes X-Forwarded-For from the loopback, so tests can
/// play clients at different addresses.
pub(crate) async fn cluster(n: usize) -> TestCluster {
    TestCluster::start_with(&vec![None; n], |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

/// Creates person `name` with the test password, an administrator (these tests are
/// about signing in, not about what the person may then do): its id.
pub(crate) async fn person(node: &str, name: &str) -> i64 {
    let id = create_user(node, name, "person").await;
    crate::access::make_administrator(node, name).await;
    let (status, body) = call(
        node,
        ADMIN_KEY,
        "PUT",
        &format!("/api/users/{id}/password"),
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    id
}

/// An answer: status, `Set-Cookie` values, JSON body.
pub(crate) struct Answer {
    pub status: u16,
    pub cookies: Vec<String>,
    pub body: Value,
}

/// `POST /api/login` from `address`.
pub(crate) async fn login(node: &str, name: &str, password: &str, address: &str) -> Answer {
    let response = reqwest::Client::new()
        .post(format!("{node}/api/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    Answer {
        status,
        cookies,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// `name=value` of the session cookie among `Set-Cookie` values.
pub(crate) fn session_cookie(cookies: &[String]) -> String {
    cookies
        .iter()
        .find(|c| c.starts_with("capstan_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

/// `method path` with the session `cookie` (and `csrf` as header when given).
pub(crate) async fn with_cookie(
    node: &str,
    cookie: &str,
    csrf: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{node}{path}"))
        .header("cookie", cookie);
    if let Some(token) = csrf {
        request = request.header("x-csrf-token", token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.unwrap()).await
}

/// Audit rows of `action`, oldest first: (actor kind, actor name, method, credential,
/// address, object name).
pub(crate) async fn audit_rows(
    db_url: &str,
    action: &str,
) -> Vec<(
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    let db = sqlx::PgPool::connect(db_url).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT actor_kind, actor_name, auth_method, credential, address, object_name
         FROM audit_events WHERE action = $1 ORDER BY id",
    )
    .bind(action)
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    rows
}

#[tokio::test]
async fn a_password_login_sets_a_secure_cookie_that_every_node_accepts() {
    let cluster = cluster(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    let id = person(&a, "alice").await;
    let answer = login(&a, "Alice", PASSWORD, "198.51.100.7").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let set = answer
        .cookies
        .iter()
        .find(|c| c.starts_with("capstan_session="))
        .unwrap();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert_eq!(answer.body["user_id"], id);
    assert_eq!(answer.body["login"], "password");
    assert!(!answer.body.to_string().contains(PASSWORD));
    let cookie = session_cookie(&answer.cookies);
    // The other node serves the session, and tells who it is.
    let session = with_cookie(&b, &cookie, None, "GET", "/api/session", None).await;
    assert_eq!(session.status, 200, "{}", session.body);
    assert_eq!(session.body["user_name"], "alice");
    assert_eq!(session.body["csrf_token"], answer.body["csrf_token"]);
    let nodes = with_cookie(&b, &cookie, None, "GET", "/api/nodes", None).await;
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    // The hash is in no answer.
    let (_, user) = call(&a, ADMIN_KEY, "GET", &format!("/api/users/{id}"), None).await;
    assert!(!user.to_string().contains("argon2"), "{user}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_read_the_same() {
    let cluster = cluster(1).await;
    let node = cluster.node(0).url();
    person(&node, "alice").await;
    let wrong = login(&node, "alice", "not the password at all", "198.51.100.1").await;
    let unknown = login(&node, "mallory", "not the password at all", "198.51.100.2").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(detail(&wrong.body), detail(&unknown.body));
    assert_eq!(
        detail(&wrong.body),
        "the user name or password is not valid"
    );
    assert!(wrong.cookies.is_empty() && unknown.cookies.is_empty());
}

#[tokio::test]
async fn a_change_made_with_the_session_cookie_needs_its_csrf_token() {
    let cluster = cluster(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    person(&a, "alice").await;
    let answer = login(&a, "alice", PASSWORD, "198.51.100.7").await;
    let cookie = session_cookie(&answer.cookies);
    let csrf = answer.body["csrf_token"].as_str().unwrap();
    let project = json!({"name": "shop"});
    let refused = with_cookie(
        &b,
        &cookie,
        None,
        "POST",
        "/api/projects",
        Some(project.clone()),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        detail(&refused.body).contains("X-CSRF-Token"),
        "{}",
        refused.body
    );
    let wrong = with_cookie(
        &b,
        &cookie,
        Some("forged"),
        "POST",
        "/api/projects",
        Some(project.clone()),
    )
    .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let made = with_cookie(
        &b,
        &cookie,
        Some(csrf),
        "POST",
        "/api/projects",
        Some(project),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    // A form post may carry the token as a field instead.
    let form = reqwest::Client::new()
        .post(format!("{b}/api/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 204);
    // Bearer keys need no token.
    let (status, body) = call(
        &a,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({"name": "web"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn after_logout_the_cookie_is_refused_by_both_nodes_at_once() {
    let cluster = cluster(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    person(&a, "alice").await;
    let answer = login(&a, "alice", PASSWORD, "198.51.100.7").await;
    let cookie = session_cookie(&answer.cookies);
    let csrf = answer.body["csrf_token"].as_str().unwrap();
    for node in [&a, &b] {
        assert_eq!(
            with_cookie(node, &cookie, None, "GET", "/api/nodes", None)
                .await
                .status,
            200
        );
    }
    let out = with_cookie(&b, &cookie, Some(csrf), "POST", "/api/logout", None).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(
        out.cookies.iter().any(|c| c.contains("Max-Age=0")),
        "{:?}",
        out.cookies
    );
    // No waiting: the very next request to either node is refused.
    for node in [&a, &b] {
        let refused = with_cookie(node, &cookie, None, "GET", "/api/nodes", None).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert!(
            detail(&refused.body).contains("session has ended"),
            "{}",
            refused.body
        );
    }
}

#[tokio::test]
async fn a_service_account_cannot_log_in() {
    let cluster = cluster(1).await;
    let node = cluster.node(0).url();
    let bot = create_user(&node, "deploy-bot", "service").await;
    let (status, body) = call(
        &node,
        ADMIN_KEY,
        "PUT",
        &format!("/api/users/{bot}/password"),
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        detail(&body).contains("service accounts never sign in"),
        "{body}"
    );
    let answer = login(&node, "deploy-bot", PASSWORD, "198.51.100.3").await;
    assert_eq!(answer.status, 401, "{}", answer.body);
}

#[tokio::test]
async fn a_person_changing_their_own_password_gives_the_current_one() {
    let cluster = cluster(1).await;
    let node = cluster.node(0).url();
    let id = person(&node, "alice").await;
    // Another browser signed in with the old password.
    let other = session_cookie(
        &login(&node, "alice", PASSWORD, "198.51.100.8")
            .await
            .cookies,
    );
    let answer = login(&node, "alice", PASSWORD, "198.51.100.7").await;
    let cookie = session_cookie(&answer.cookies);
    let csrf = answer.body["csrf_token"].as_str();
    let path = format!("/api/users/{id}/password");
    let without = with_cookie(
        &node,
        &cookie,
        csrf,
        "PUT",
        &path,
        Some(json!({"password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(without.status, 403, "{}", without.body);
    let short = with_cookie(
        &node,
        &cookie,
        csrf,
        "PUT",
        &path,
        Some(json!({"password": "short", "old_password": PASSWORD})),
    )
    .await;
    assert_eq!(short.status, 422, "{}", short.body);
    let changed = with_cookie(
        &node,
        &cookie,
        csrf,
        "PUT",
        &path,
        Some(json!({"password": "a brand new passphrase", "old_password": PASSWORD})),
    )
    .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    // The new password signs the other browser out; this one stays.
    let other_now = with_cookie(&node, &other, None, "GET", "/api/session", None).await;
    assert_eq!(other_now.status, 401, "{}", other_now.body);
    let this_now = with_cookie(&node, &cookie, None, "GET", "/api/session", None).await;
    assert_eq!(this_now.status, 200, "{}", this_now.body);
    assert_eq!(
        login(&node, "alice", "a brand new passphrase", "198.51.100.7")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn logins_failures_and_logouts_are_audited_with_actor_and_address() {
    let cluster = cluster(1).await;
    let node = cluster.node(0).url();
    person(&node, "alice").await;
    assert_eq!(
        login(&node, "alice", "wrong password!!", "203.0.113.9")
            .await
            .status,
        401
    );
    let answer = login(&node, "alice", PASSWORD, "203.0.113.10").await;
    let session_id = answer.body["session_id"].as_str().unwrap().to_owned();
    let cookie = session_cookie(&answer.cookies);
    let csrf = answer.body["csrf_token"].as_str();
    assert_eq!(
        with_cookie(&node, &cookie, csrf, "POST", "/api/logout", None)
            .await
            .status,
        204
    );

    let failed = audit_rows(&cluster.db.url, "login.failed").await;
    assert_eq!(
        failed,
        vec![(
            "anonymous".to_owned(),
            "alice".to_owned(),
            "none".to_owned(),
            None,
            Some("203.0.113.9".to_owned()),
            Some("alice".to_owned()),
        )]
    );
    let expected = (
        "person".to_owned(),
        "alice".to_owned(),
        "password".to_owned(),
        Some(session_id),
        Some("203.0.113.10".to_owned()),
        Some("alice".to_owned()),
    );
    assert_eq!(
        audit_rows(&cluster.db.url, "login").await,
        vec![expected.clone()]
    );
    // The logout came straight from the loopback, without X-Forwarded-For.
    let mut logout = expected;
    logout.4 = Some("127.0.0.1".to_owned());
    assert_eq!(audit_rows(&cluster.db.url, "logout").await, vec![logout]);
    // The password is in no audit row.
    let db = sqlx::PgPool::connect(&cluster.db.url).await.unwrap();
    let all: Vec<String> = sqlx::query_scalar("SELECT row_to_json(a)::text FROM audit_events a")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(
        all.iter()
            .all(|row| !row.contains(PASSWORD) && !row.contains("argon2")),
        "{all:?}"
    );
}

/// Times a wrong login.
async fn timed_wrong(node: &str, name: &str, address: &str) -> Duration {
    let start = Instant::now();
    let answer = login(node, name, "not the password at all", address).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    start.elapsed()
}

#[tokio::test]
async fn a_password_flood_is_slowed_per_account_not_answered_faster() {
    let cluster = cluster(2).await;
    let (a, b) = (cluster.node(0).url(), cluster.node(1).url());
    person(&a, "alice").await;
    person(&a, "bob").await;
    timed_wrong(&a, "warm-up", "192.0.2.201").await;
    timed_wrong(&b, "warm-up", "192.0.2.202").await;
    let first = timed_wrong(&a, "alice", "198.51.100.50").await;
    // Alternate the nodes: the count is the cluster's, not a node's. Each attempt
    // comes from a new address, so only the account's count slows it.
    let mut times = vec![first];
    for i in 0..5 {
        let node = if i % 2 == 0 { &b } else { &a };
        times.push(timed_wrong(node, "alice", &format!("198.51.100.{}", 60 + i)).await);
    }
    eprintln!("wrong logins against one account took {times:?}");
    // The owed waits are 0.2, 0.4, 0.8, 1.6 and 3.2 s on top of the check; the margins
    // are generous for a loaded machine.
    for later in &times[1..] {
        assert!(
            *later >= first,
            "a throttled answer came faster than the first: {times:?}"
        );
    }
    assert!(times[5] >= first + Duration::from_millis(2500), "{times:?}");
    assert!(times[5] > times[2] && times[4] > times[1], "{times:?}");
    // The correct password during the flood still waits.
    let start = Instant::now();
    assert_eq!(
        login(&a, "alice", PASSWORD, "198.51.100.99").await.status,
        200
    );
    let right = start.elapsed();
    assert!(right >= Duration::from_millis(2500), "took {right:?}");
    // Another account from another address is not slowed.
    let other = timed_wrong(&b, "bob", "192.0.2.1").await;
    assert!(
        other < first + Duration::from_millis(1500),
        "bob took {other:?}, first {first:?}"
    );
}

#[tokio::test]
async fn a_flood_from_one_address_is_slowed_across_accounts() {
    let cluster = cluster(1).await;
    let node = cluster.node(0).url();
    // A first check warms the node (the dummy hash is made on first use).
    timed_wrong(&node, "warm-up", "192.0.2.200").await;
    let first = timed_wrong(&node, "user-0", "198.51.100.200").await;
    let mut last = first;
    // Past the address's allowance (10) the waits start growing: 0.2, 0.4, 0.8, 1.6s.
    for i in 1..=14 {
        last = timed_wrong(&node, &format!("user-{i}"), "198.51.100.200").await;
    }
    eprintln!("first {first:?}, fifteenth {last:?}");
    assert!(
        last >= first + Duration::from_millis(1000),
        "first {first:?}, last {last:?}"
    );
    let elsewhere = timed_wrong(&node, "someone", "192.0.2.77").await;
    assert!(elsewhere < last, "elsewhere {elsewhere:?}, last {last:?}");
}

/// Runs the CLI without CAPSTAN_API_KEY, with `config` as XDG_CONFIG_HOME and `stdin`.
fn cli(server: &str, config: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(crate::capstan_bin())
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env_remove("CAPSTAN_API_KEY")
        .env("XDG_CONFIG_HOME", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn capstan_login_keeps_a_key_that_later_commands_use_and_logout_revokes() {
    use std::os::unix::fs::PermissionsExt as _;
    let cluster = cluster(1).await;
    let server = cluster.node(0).url();
    person(&server, "alice").await;
    let config = capstan_testkit::TempDir::new("capstan-config");
    let dir = config.0.clone();
    let (out, key) = tokio::task::spawn_blocking({
        let server = server.clone();
        move || {
            let (ok, out) = cli(&server, &dir, &["users", "list"], "");
            assert!(!ok, "no key yet: {out}");
            let (ok, out) = cli(
                &server,
                &dir,
                &["login", "--user", "alice", "--password-stdin"],
                "wrong password, surely\n",
            );
            assert!(!ok && out.contains("not valid"), "{out}");
            let (ok, out) = cli(
                &server,
                &dir,
                &["login", "--user", "alice", "--password-stdin"],
                &format!("{PASSWORD}\n"),
            );
            assert!(ok && out.contains("signed in as alice"), "{out}");
            let file = dir.join("capstan").join("credentials");
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
            let stored: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let key = stored["key"].as_str().unwrap().to_owned();
            let (ok, listed) = cli(&server, &dir, &["users", "list"], "");
            assert!(ok && listed.contains("alice"), "{listed}");
            let (ok, out) = cli(&server, &dir, &["logout"], "");
            assert!(ok && out.contains("revoked"), "{out}");
            assert!(!file.exists());
            (listed, key)
        }
    })
    .await
    .unwrap();
    assert!(out.contains("person"), "{out}");
    let (status, body) = call(&server, &key, "GET", "/api/nodes", None).await;
    assert_eq!(status, 401, "{body}");
    // The key was bought with a password: its login row says so.
    let rows = audit_rows(&cluster.db.url, "login").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "password");
}
