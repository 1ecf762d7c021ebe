//! `PUT /api/lifecycles/{id}` and `capstan lifecycles update`: the phases replaced,
//! audited with before and after; bad input refused naming the field.

use capstan_testkit::{TestCluster, agents::ensure_environment};
use serde_json::{Value, json};

use super::cli;
use crate::projects::Api;

fn phase(name: &str, environments: &[&str]) -> Value {
    json!({ "name": name, "environments": environments, "rule": "all" })
}

#[tokio::test]
async fn put_replaces_the_phases_and_refuses_bad_ones_naming_the_field() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let client = cluster.node(0).client();
    for environment in ["Dev", "Test", "Production"] {
        ensure_environment(&client, environment).await;
    }
    let (status, created) = api
        .post(
            "/api/lifecycles",
            json!({ "name": "Standard", "phases": [phase("Dev", &["Dev"]), phase("Prod", &["Production"])] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, other) = api
        .post(
            "/api/lifecycles",
            json!({ "name": "Other", "phases": [phase("Dev", &["Dev"])] }),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let path = format!("/api/lifecycles/{id}");

    let mut test = phase("Test", &["Test"]);
    test["automatic"] = json!(true);
    test["retention"] = json!({ "keep_days": 30 });
    let (status, updated) = api
        .put(
            &path,
            json!({
                "name": "Standard 2",
                "description": "with Test",
                "phases": [phase("Dev", &["Dev"]), test, phase("Prod", &["Production"])],
            }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "Standard 2");
    assert_eq!(updated["phases"][1]["automatic"], true);
    assert_eq!(
        updated["phases"][1]["retention"],
        json!({ "keep_days": 30 })
    );
    let (_, shown) = api.get(&path).await;
    assert_eq!(shown, updated);
    let (_, audit) = api.get("/api/audit?action=lifecycle.update").await;
    let row = &audit["items"][0];
    assert_eq!(
        row["before"]["phases"].as_array().unwrap().len(),
        2,
        "{row}"
    );
    assert_eq!(row["after"]["phases"].as_array().unwrap().len(), 3, "{row}");
    assert_eq!(row["after"]["name"], "Standard 2");

    let many: Vec<Value> = (0..51).map(|i| phase(&format!("P{i}"), &["Dev"])).collect();
    let mut first_automatic = phase("Dev", &["Dev"]);
    first_automatic["automatic"] = json!(true);
    let mut two_limits = phase("Prod", &["Production"]);
    two_limits["retention"] = json!({ "keep_days": 3, "keep_releases": 3 });
    let cases = [
        (
            json!([{ "name": "Dev", "environments": ["Dev", "dev"], "rule": "all" }]),
            "phases[0].environments[1]",
            "named twice in phase `Dev`",
        ),
        (
            json!([phase("Dev", &["Dev"]), phase("Test", &["Test", "Dev"])]),
            "phases[1].environments[1]",
            "already in phase `Dev`",
        ),
        (
            json!([phase("Dev", &["Dev"]), phase("Empty", &[])]),
            "phases[1].environments",
            "has no environment",
        ),
        (
            json!([phase("Dev", &["Nowhere"])]),
            "phases[0].environments[0]",
            "there is no environment `Nowhere`",
        ),
        (
            json!([{ "name": "Dev", "environments": ["Dev"], "rule": "at_least", "min_count": 2 }]),
            "phases[0].min_count",
            "from 1 to 1, not 2",
        ),
        (
            json!([phase("Dev", &["Dev"]), phase("dev", &["Test"])]),
            "phases[1].name",
            "named twice",
        ),
        (json!(many), "phases", "at most 50 phases"),
        (
            json!([first_automatic]),
            "phases[0].automatic",
            "cannot be automatic",
        ),
        (
            json!([phase("Dev", &["Dev"]), two_limits]),
            "phases[1].retention",
            "not both",
        ),
        (json!([]), "phases", "at least one phase"),
    ];
    for (phases, field, words) in cases {
        let (status, body) = api
            .put(&path, json!({ "name": "Standard 2", "phases": phases }))
            .await;
        assert_eq!(status, 422, "{field}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["detail"].as_str().unwrap().contains(words)),
            "{field}: {body}"
        );
    }
    let (status, body) = api
        .put(
            &path,
            json!({ "name": "Standard 2", "phases": [phase("Dev", &["Dev"])], "extra": 1 }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api
        .put(
            &path,
            json!({ "name": "other", "phases": [phase("Dev", &["Dev"])] }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api
        .put(
            "/api/lifecycles/987654",
            json!({ "name": "Gone", "phases": [phase("Dev", &["Dev"])] }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Nothing of the refused requests was stored.
    let (_, shown) = api.get(&path).await;
    assert_eq!(shown, updated);

    let server = cluster.node(0).url();
    let (ok, out) = cli(
        &server,
        &[
            "lifecycles",
            "update",
            "Standard 2",
            "--phase",
            "Dev=Dev",
            "--phase",
            "Prod=Production:auto:keep=5",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("updated lifecycle"), "{out}");
    assert!(
        out.contains("all of Production, automatic, keeps 5 release(s)"),
        "{out}"
    );
    let (ok, out) = cli(
        &server,
        &[
            "lifecycles",
            "update",
            "Standard 2",
            "--phase",
            "Dev=Dev:auto",
        ],
    )
    .await;
    assert!(!ok && out.contains("phases[0].automatic"), "{out}");
}
