use capstan_testkit::{ADMIN_KEY, TestCluster};
use serde_json::json;

use super::{call, create_environment, create_key, create_user, detail};
use crate::cli::capstan;

#[tokio::test(flavor = "multi_thread")]
async fn operators_give_a_team_deploy_on_shop_in_test_from_the_cli() {
    let cluster = TestCluster::start(1).await;
    let server = cluster.node(0).url();
    let (status, _) = call(
        &server,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({ "name": "Shop" })),
    )
    .await;
    assert_eq!(status, 201);
    create_environment(&server, "Test").await;
    let shop_other = create_environment(&server, "Production").await;
    let user = create_user(&server, "ci-deployer", "service").await;
    let key = create_key(&server, user, json!({ "purpose": "CI" })).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let url = server.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out) = capstan(&url, &["teams", "create", "shop-testers"]);
        assert!(ok && out.contains("created team"), "{out}");
        let (ok, out) = capstan(
            &url,
            &["teams", "add-member", "shop-testers", "ci-deployer"],
        );
        assert!(ok, "{out}");
        let (ok, out) = capstan(
            &url,
            &[
                "teams",
                "grant",
                "shop-testers",
                "--role",
                "deployer",
                "--project",
                "Shop",
                "--environment",
                "Test",
            ],
        );
        assert!(ok, "{out}");
        assert!(
            out.contains(
                "granted deployer to shop-testers on projects [Shop], environments [Test]"
            ),
            "{out}"
        );
        let (ok, out) = capstan(&url, &["teams", "grants", "shop-testers"]);
        assert!(ok && out.contains("deployer"), "{out}");
        let (ok, out) = capstan(
            &url,
            &[
                "roles",
                "create",
                "approver",
                "--permission",
                "view",
                "--permission",
                "answer_interventions",
            ],
        );
        assert!(ok, "{out}");
        let (ok, out) = capstan(&url, &["roles", "list"]);
        assert!(
            ok && out.contains("approver") && out.contains("built-in"),
            "{out}"
        );
    })
    .await
    .unwrap();

    let (status, body) = call(
        &server,
        &key,
        "GET",
        &format!("/api/environments/{shop_other}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        detail(&body),
        format!("there is no environment {shop_other}")
    );
    let (status, body) = call(&server, &key, "GET", "/api/projects", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["name"], "Shop", "{body}");
}
