//! Single sign-on against a real OpenID provider (the `oidc-provider` npm package),
//! through two nodes behind a real HAProxy: the callback lands on another node than
//! the one that began the sign-in.

use std::time::Duration;

use capstan_server::config::OidcSettings;
use capstan_testkit::{
    ADMIN_KEY, TempDir, TestDatabase,
    cluster::{start_node, test_settings},
    free_port,
    haproxy::HaProxy,
    oidc::{CLIENT_ID, CLIENT_SECRET, OidcProvider},
};
use secrecy::SecretString;
use serde_json::json;

use super::{
    call, detail,
    login::{audit_rows, session_cookie, with_cookie},
};

fn oidc_settings(issuer: &str, redirect_url: &str) -> OidcSettings {
    OidcSettings {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
        redirect_url: redirect_url.to_owned(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Begins a sign-in at `node`: the provider's URL and the browser-binding cookie.
async fn begin(node: &str) -> (String, String) {
    begin_at(&format!("{node}/api/login/oidc")).await
}

/// Begins a sign-in at `url`: the provider's URL and the browser-binding cookie.
async fn begin_at(url: &str) -> (String, String) {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("capstan_oidc="))
        .unwrap()
        .to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    (location, cookie.split(';').next().unwrap().to_owned())
}

/// Brings the provider's answer back to Capstan: status, Location, `Set-Cookie`s.
async fn callback(url: &str, cookie: &str) -> (u16, String, Vec<String>, String) {
    let response = client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (
        status,
        location,
        cookies,
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn single_sign_on_through_haproxy_finishes_on_another_node() {
    let db = TestDatabase::new().await;
    let blobs = TempDir::new("capstan-blobs");
    let ports = [free_port(), free_port()];
    let lb = HaProxy::start(&[
        ("sso-1".to_owned(), ports[0]),
        ("sso-2".to_owned(), ports[1]),
    ]);
    let redirect = format!("{}/api/login/oidc/callback", lb.url());
    let provider = OidcProvider::start(std::slice::from_ref(&redirect)).await;
    let mut nodes = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let mut settings = test_settings(&db.url, &blobs.0, &format!("sso-{}", i + 1));
        settings.listen = ([127, 0, 0, 1], port).into();
        settings.sign_in.oidc = Some(oidc_settings(&provider.issuer(), &redirect));
        nodes.push(start_node(settings).await);
    }
    lb.wait_all_up(Duration::from_secs(10)).await;
    let (first, lb_url) = (nodes[0].url(), lb.url());
    // Robert exists already with the email the provider will vouch for.
    let (status, body) = call(
        &first,
        ADMIN_KEY,
        "POST",
        "/api/users",
        Some(json!({"name": "robert", "kind": "person", "email": "bob@example.test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let robert = body["id"].as_i64().unwrap();

    // Begun on the first node; that node then stops, so the callback through the load
    // balancer can only land on the second.
    let (authorize, browser) = begin(&first).await;
    assert!(authorize.starts_with(&provider.issuer()), "{authorize}");
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let back = provider.sign_in(&authorize, "bob", &redirect).await;
    nodes[0].stop().await.unwrap();
    let (status, location, cookies, text) = callback(&back, &browser).await;
    assert_eq!(status, 303, "{text}");
    assert_eq!(location, "/");
    let session = session_cookie(&cookies);
    let who = with_cookie(&lb_url, &session, None, "GET", "/api/session", None).await;
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(who.body["user_id"], robert, "linked by the verified email");
    assert_eq!(who.body["login"], "oidc");

    // The provider's answer works once.
    let (status, _, _, text) = callback(&back, &browser).await;
    assert_eq!(status, 400, "{text}");

    // A new person is created at their first sign-on, and matched by subject after.
    let (authorize, browser) = begin(&lb_url).await;
    let back = provider.sign_in(&authorize, "carol", &redirect).await;
    // Without the cookie of the browser that began it, the answer is refused.
    let (status, _, _, text) = callback(&back, "capstan_oidc=stolen").await;
    assert_eq!(status, 400, "{text}");
    let (authorize, browser_2) = begin(&lb_url).await;
    let back = provider.sign_in(&authorize, "carol", &redirect).await;
    let (status, _, cookies, text) = callback(&back, &browser_2).await;
    assert_eq!(status, 303, "{text}");
    let carol = with_cookie(
        &lb_url,
        &session_cookie(&cookies),
        None,
        "GET",
        "/api/session",
        None,
    )
    .await;
    assert_eq!(carol.body["user_name"], "carol", "{}", carol.body);
    let (authorize, browser_3) = begin(&lb_url).await;
    let back = provider.sign_in(&authorize, "carol", &redirect).await;
    let (status, _, cookies, text) = callback(&back, &browser_3).await;
    assert_eq!(status, 303, "{text}");
    let again = with_cookie(
        &lb_url,
        &session_cookie(&cookies),
        None,
        "GET",
        "/api/session",
        None,
    )
    .await;
    assert_eq!(again.body["user_id"], carol.body["user_id"]);
    drop(browser);

    let logins = audit_rows(&db.url, "login").await;
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|row| row.0 == "person" && row.2 == "oidc"),
        "{logins:?}"
    );
}

#[tokio::test]
async fn a_provider_whose_metadata_redirects_is_refused() {
    let provider = OidcProvider::start(&["http://127.0.0.1:9/cb".to_owned()]).await;
    // A server that answers every request with a redirect to the real provider.
    let target = provider.issuer();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let target = target.clone();
        async move { axum::response::Redirect::temporary(&format!("{target}{uri}")) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cluster = capstan_testkit::TestCluster::start_with(&[None], |settings| {
        settings.sign_in.oidc = Some(oidc_settings(&redirector, "http://127.0.0.1:9/cb"));
    })
    .await;
    let response = client()
        .get(format!("{}/api/login/oidc", cluster.node(0).url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        detail(&body).contains("redirects are not followed"),
        "{body}"
    );
    assert!(!body.to_string().contains(CLIENT_SECRET), "{body}");
}

#[tokio::test]
async fn without_a_provider_single_sign_on_is_not_found() {
    let cluster = capstan_testkit::TestCluster::start(1).await;
    let response = client()
        .get(format!("{}/api/login/oidc", cluster.node(0).url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn capstan_login_in_the_browser_gets_a_key_through_a_one_time_code() {
    use std::io::BufRead as _;
    let db = TestDatabase::new().await;
    let blobs = TempDir::new("capstan-blobs");
    let port = free_port();
    let node = format!("http://127.0.0.1:{port}");
    let redirect = format!("{node}/api/login/oidc/callback");
    let provider = OidcProvider::start(std::slice::from_ref(&redirect)).await;
    let mut settings = test_settings(&db.url, &blobs.0, "sso-cli");
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.sign_in.oidc = Some(oidc_settings(&provider.issuer(), &redirect));
    let _node = start_node(settings).await;
    let config = TempDir::new("capstan-config");

    let mut child = std::process::Command::new(crate::capstan_bin())
        .args(["login", "--browser", "--no-open"])
        .env("CAPSTAN_SERVER", &node)
        .env_remove("CAPSTAN_API_KEY")
        .env("XDG_CONFIG_HOME", &config.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (url, stdout) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout);
        loop {
            let mut line = String::new();
            assert!(
                lines.read_line(&mut line).unwrap() > 0,
                "the CLI printed no URL"
            );
            if line.starts_with("http") {
                return (line.trim().to_owned(), lines);
            }
        }
    })
    .await
    .unwrap();
    assert!(url.contains("/api/login/oidc?cli_port="), "{url}");

    // The browser: to the provider, signed in as dave, back to the node, which sends
    // it on to the CLI's loopback listener with the one-time code.
    let (authorize, browser) = begin_at(&url).await;
    let back = provider.sign_in(&authorize, "dave", &redirect).await;
    let (status, location, _, text) = callback(&back, &browser).await;
    assert_eq!(status, 303, "{text}");
    assert!(
        location.starts_with("http://127.0.0.1:") && location.contains("code="),
        "{location}"
    );
    let page = reqwest::get(&location).await.unwrap();
    assert_eq!(page.status(), 200);

    let output = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout.into_inner(), &mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.success(), format!("{rest}{err}"))
    })
    .await
    .unwrap();
    assert!(
        output.0 && output.1.contains("signed in as user"),
        "{}",
        output.1
    );
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(config.0.join("capstan").join("credentials")).unwrap(),
    )
    .unwrap();
    let key = stored["key"].as_str().unwrap();
    let (status, body) = call(&node, key, "GET", "/api/projects", None).await;
    assert_eq!(status, 200, "{body}");
    // The code worked once.
    let code = location.split("code=").nth(1).unwrap();
    let (status, body) = call(
        &node,
        "",
        "POST",
        "/api/login/cli-code",
        Some(json!({"code": code, "purpose": "again"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let logins = audit_rows(&db.url, "login").await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].2, "oidc");
    assert_eq!(logins[0].3.as_deref(), stored["key_id"].as_str());
}
