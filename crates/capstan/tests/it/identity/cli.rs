use std::process::Command;

use capstan_testkit::TestCluster;

use crate::{capstan_bin, cli::capstan};

/// Runs the CLI with `key` as CAPSTAN_API_KEY.
fn capstan_as(server: &str, key: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(capstan_bin())
        .args(args)
        .env("CAPSTAN_SERVER", server)
        .env("CAPSTAN_API_KEY", key)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_manage_service_accounts_and_their_keys_from_the_cli() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    tokio::task::spawn_blocking(move || {
        let (ok, out) = capstan(
            &server,
            &["users", "create", "deploy-bot", "--kind", "service"],
        );
        assert!(ok, "{out}");
        assert!(out.contains("created service"), "{out}");

        let (ok, out) = capstan(
            &server,
            &[
                "api-keys",
                "create",
                "--user",
                "Deploy-Bot",
                "--purpose",
                "CI",
                "--expires-in",
                "90d",
            ],
        );
        assert!(ok, "{out}");
        let key = out
            .split_whitespace()
            .find(|w| w.starts_with("capk_"))
            .unwrap()
            .to_owned();

        // Listing users needs `manage_users`, which the account gets through a team.
        tokio::runtime::Handle::current()
            .block_on(crate::access::make_administrator(&server, "deploy-bot"));
        // The new key works as CAPSTAN_API_KEY.
        let (ok, out, err) = capstan_as(&server, &key, &["users", "list"]);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("deploy-bot") && out.contains("service"),
            "{out}"
        );

        let (ok, out) = capstan(&server, &["api-keys", "list", "--user", "deploy-bot"]);
        assert!(ok, "{out}");
        assert!(!out.contains(&key), "{out}");
        let key_id = &key[5..17];
        assert!(out.contains(key_id) && out.contains("live"), "{out}");

        let (ok, out) = capstan(&server, &["users", "disable", "deploy-bot"]);
        assert!(ok && out.contains("disabled"), "{out}");
        let (ok, _, err) = capstan_as(&server, &key, &["users", "list"]);
        assert!(!ok);
        assert!(err.contains("owner is disabled"), "{err}");
        let (ok, out) = capstan(&server, &["users", "enable", "deploy-bot"]);
        assert!(ok && out.contains("enabled"), "{out}");

        let (ok, out) = capstan(
            &server,
            &["api-keys", "revoke", "--user", "deploy-bot", key_id],
        );
        assert!(ok, "{out}");
        let (ok, _, err) = capstan_as(&server, &key, &["users", "list"]);
        assert!(!ok);
        assert!(err.contains("revoked"), "{err}");

        let (ok, out) = capstan(&server, &["users", "show", "deploy-bot"]);
        assert!(ok && out.contains("\"kind\": \"service\""), "{out}");
        let (ok, out) = capstan(&server, &["users", "delete", "deploy-bot"]);
        assert!(ok, "{out}");
        let (ok, out) = capstan(&server, &["users", "show", "deploy-bot"]);
        assert!(
            !ok && out.contains("no user is named `deploy-bot`"),
            "{out}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sets_a_persons_password_from_the_cli_and_the_person_signs_in() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let node = server.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out) = capstan(&server, &["users", "create", "grace", "--kind", "person"]);
        assert!(ok, "{out}");
        let set = |password: &str| {
            let mut child = Command::new(capstan_bin())
                .args(["users", "password", "grace", "--password-stdin"])
                .env("CAPSTAN_SERVER", &server)
                .env("CAPSTAN_API_KEY", capstan_testkit::ADMIN_KEY)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
            let output = child.wait_with_output().unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr),
            )
        };
        let (ok, out) = set("short");
        assert!(!ok, "a short password is refused: {out}");
        assert!(out.contains("12"), "{out}");
        let (ok, out) = set(super::login::PASSWORD);
        assert!(ok, "{out}");
        assert!(out.contains("set the password of grace"), "{out}");
    })
    .await
    .unwrap();
    let answer = super::login::login(&node, "grace", super::login::PASSWORD, "127.0.0.1").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
