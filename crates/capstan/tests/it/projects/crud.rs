use capstan_testkit::TestCluster;
use serde_json::json;

use super::{Api, detail};

#[tokio::test]
async fn projects_are_created_listed_in_pages_renamed_and_deleted() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(api.project(&format!("Shop {i}")).await);
    }
    let (status, first) = api.get("/api/projects?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let mut seen: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    let mut cursor = first["next"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let (_, page) = api
            .get(&format!("/api/projects?limit=2&cursor={next}"))
            .await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        cursor = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ids);

    let (_, found) = api.get("/api/projects?name=shop%203").await;
    assert_eq!(found["items"][0]["id"], ids[3]);
    let (_, searched) = api.get("/api/projects?search=op%204").await;
    assert_eq!(searched["items"].as_array().unwrap().len(), 1);

    let (status, renamed) = api
        .call(
            "PATCH",
            &format!("/api/projects/{}", ids[0]),
            Some(json!({ "name": "Storefront", "description": "the web shop" })),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Storefront");
    assert_eq!(renamed["process_version"], 0);

    let (status, _) = api
        .call("DELETE", &format!("/api/projects/{}", ids[0]), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = api.get(&format!("/api/projects/{}", ids[0])).await;
    assert_eq!(status, 404);
    assert!(detail(&body).contains("no project"), "{body}");
}

#[tokio::test]
async fn project_names_are_unique_in_any_case_and_checked() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    api.project("Payments").await;
    let (status, body) = api
        .post("/api/projects", json!({ "name": "PAYMENTS" }))
        .await;
    assert_eq!(status, 409);
    assert!(detail(&body).contains("already exists"), "{body}");
    for (name, why) in [("", "empty"), (" padded", "spaces"), ("a\u{7}b", "control")] {
        let (status, body) = api.post("/api/projects", json!({ "name": name })).await;
        assert_eq!(status, 422, "{name:?}");
        assert!(detail(&body).contains(why), "{body}");
    }
    let description = json!({ "name": "x", "description": "d".repeat(4001) });
    let (status, body) = api.post("/api/projects", description).await;
    assert_eq!(status, 422);
    assert!(
        detail(&body).contains("description: at most 4000 bytes"),
        "{body}"
    );
    let (status, body) = api
        .post("/api/projects", json!({ "name": "x", "colour": "red" }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("colour"), "{body}");
    let (status, body) = api.call("PATCH", "/api/projects/1", Some(json!({}))).await;
    assert_eq!(status, 422);
    assert!(detail(&body).contains("nothing to change"), "{body}");
    let (status, body) = api.get("/api/projects?limit=0").await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("limit"), "{body}");
}
