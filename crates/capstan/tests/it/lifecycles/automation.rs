//! Automatic phases: a success that lets a release into an automatic phase queues one
//! deployment per environment of the phase, once, whichever node records it.

use std::time::Duration;

use capstan_testkit::{agents::ensure_environment, eventually};
use serde_json::{Value, json};

use super::{DONE, cli, move_agent};
use crate::deployments::{Fleet, step};

/// The deployments of `release`, oldest first.
async fn deployments_of(fleet: &Fleet, release: i64) -> Vec<Value> {
    let (status, page) = fleet
        .api
        .get(&format!("/api/deployments?release_id={release}&limit=100"))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

fn to<'a>(deployments: &'a [Value], environment: &str) -> Vec<&'a Value> {
    deployments
        .iter()
        .filter(|d| d["environment"] == environment)
        .collect()
}

async fn succeed(fleet: &Fleet, release: i64, environment: &str) -> i64 {
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": environment }))
        .await;
    let shown = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
    assert_eq!(shown["state"], "succeeded", "{shown}");
    id
}

async fn use_lifecycle(fleet: &Fleet, project: i64, lifecycle: &Value) {
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/projects/{project}/lifecycle"),
            json!({ "lifecycle_id": lifecycle["id"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_dev_success_queues_one_test_deployment_with_its_reason() {
    let fleet = Fleet::start(1, 4).await;
    let client = fleet.cluster.node(0).client();
    for environment in ["Dev", "Dev2", "Test", "QA"] {
        ensure_environment(&client, environment).await;
    }
    move_agent(&fleet, "web01", "Dev").await;
    move_agent(&fleet, "web02", "Dev2").await;
    move_agent(&fleet, "web03", "Test").await;
    // web04 stays in Production; QA has no agent at all.
    let (project, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (status, lifecycle) = fleet
        .api
        .post(
            "/api/lifecycles",
            json!({
                "name": "Standard",
                "phases": [
                    { "name": "Dev", "environments": ["Dev", "Dev2"], "rule": "at_least", "min_count": 1 },
                    { "name": "Test", "environments": ["Test", "QA"], "rule": "at_least", "min_count": 1, "automatic": true },
                    { "name": "Prod", "environments": ["Production"], "rule": "all" },
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{lifecycle}");
    assert_eq!(lifecycle["phases"][1]["automatic"], true, "{lifecycle}");
    use_lifecycle(&fleet, project, &lifecycle).await;

    // At least 1 of 2: the first Dev success lets the release into Test.
    let dev = succeed(&fleet, release, "Dev").await;
    let all = deployments_of(&fleet, release).await;
    let tests = to(&all, "Test");
    assert_eq!(tests.len(), 1, "{all:?}");
    assert_eq!(
        tests[0]["trigger"],
        json!({ "kind": "lifecycle", "phase": "Test", "after_deployment": dev })
    );
    assert!(to(&all, "Production").is_empty(), "{all:?}");
    assert!(to(&all, "QA").is_empty(), "{all:?}");
    let automatic = tests[0]["id"].as_i64().unwrap();
    let shown = fleet
        .wait_state(automatic, DONE, Duration::from_secs(60))
        .await;
    assert_eq!(shown["state"], "succeeded", "{shown}");
    assert_eq!(shown["trigger"]["phase"], "Test", "{shown}");

    // The Dev deployment's log says what was queued and what was not.
    let (_, dev_shown) = fleet.api.get(&format!("/api/deployments/{dev}")).await;
    let log = fleet.log(&dev_shown).await;
    assert!(
        log.contains(&format!(
            "entered automatic phase Test: queued deployment {automatic} to Test"
        )),
        "{log}"
    );
    assert!(
        log.contains("its deployment to QA was not queued: no enabled, healthy agent"),
        "{log}"
    );

    // The audit log names the lifecycle as who queued it, and keeps the skip.
    let (status, audit) = fleet
        .api
        .get(&format!(
            "/api/audit?action=deployment.create&object_id={automatic}"
        ))
        .await;
    assert_eq!(status, 200, "{audit}");
    let row = &audit["items"][0];
    assert_eq!(row["actor"]["kind"], "system", "{audit}");
    assert_eq!(row["actor"]["name"], "lifecycle", "{audit}");
    let (_, skipped) = fleet
        .api
        .get("/api/audit?action=deployment.auto_skipped")
        .await;
    let skipped = skipped["items"].as_array().unwrap().clone();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["after"]["environment"], "QA");
    assert!(
        skipped[0]["after"]["reason"]
            .as_str()
            .unwrap()
            .contains("no enabled, healthy agent of environment QA"),
        "{skipped:?}"
    );

    // The second Dev success lets the release into nothing new, and Prod is not
    // automatic: the Test success queued nothing.
    succeed(&fleet, release, "Dev2").await;
    let all = deployments_of(&fleet, release).await;
    assert_eq!(to(&all, "Test").len(), 1, "{all:?}");
    assert!(to(&all, "Production").is_empty(), "{all:?}");

    let (ok, out) = cli(
        &fleet.cluster.node(0).url(),
        &["deployments", "show", &automatic.to_string()],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "queued by the lifecycle: deployment {dev} let the release into automatic phase Test"
        )),
        "{out}"
    );
}

/// Two Dev environments, both needed, finishing at the same moment on two nodes: the
/// release enters Test once, whatever the order in which the nodes record them.
#[tokio::test]
async fn two_successes_on_two_nodes_at_once_queue_one_deployment_per_test_environment() {
    // One task per node: the two Dev deployments run on different nodes.
    let fleet = Fleet::start_with_cap(2, Some(1), 4).await;
    let client = fleet.cluster.node(0).client();
    for environment in ["Dev1", "Dev2", "Test1", "Test2"] {
        ensure_environment(&client, environment).await;
    }
    move_agent(&fleet, "web01", "Dev1").await;
    move_agent(&fleet, "web02", "Dev2").await;
    move_agent(&fleet, "web03", "Test1").await;
    move_agent(&fleet, "web04", "Test2").await;
    let (status, lifecycle) = fleet
        .api
        .post(
            "/api/lifecycles",
            json!({
                "name": "Both",
                "phases": [
                    { "name": "Dev", "environments": ["Dev1", "Dev2"], "rule": "all" },
                    { "name": "Test", "environments": ["Test1", "Test2"], "rule": "all", "automatic": true },
                ]
            }),
        )
        .await;
    assert_eq!(status, 201, "{lifecycle}");
    let dir = fleet.dir().display().to_string();
    let pool = sqlx::PgPool::connect(&fleet.cluster.db.url).await.unwrap();
    for round in 0..4 {
        let gate = format!("{dir}/go-{round}");
        let (project, release) = fleet
            .release(
                &format!("Race{round}"),
                json!([step(
                    "wait",
                    &format!("while [ ! -f {gate} ]; do sleep 0.02; done")
                )]),
                json!([]),
            )
            .await;
        use_lifecycle(&fleet, project, &lifecycle).await;
        let first = fleet
            .deploy(json!({ "release_id": release, "environment": "Dev1" }))
            .await;
        let second = fleet
            .deploy(json!({ "release_id": release, "environment": "Dev2" }))
            .await;
        fleet
            .wait_state(first, &["running"], Duration::from_secs(60))
            .await;
        fleet
            .wait_state(second, &["running"], Duration::from_secs(60))
            .await;
        // Both wait on the same file, and their successes then wait on the rows this
        // transaction holds: once it lets go, the two nodes record them at once.
        let mut hold = pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM deployments WHERE id = ANY($1) FOR NO KEY UPDATE")
            .bind(vec![first, second])
            .execute(&mut *hold)
            .await
            .unwrap();
        std::fs::write(&gate, b"go").unwrap();
        eventually(
            Duration::from_secs(60),
            "both successes to wait on the held rows",
            || async {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                (waiting >= 2).then_some(())
            },
        )
        .await;
        hold.rollback().await.unwrap();
        for id in [first, second] {
            let shown = fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
            assert_eq!(shown["state"], "succeeded", "round {round}: {shown}");
        }
        let all = deployments_of(&fleet, release).await;
        for environment in ["Test1", "Test2"] {
            let automatic = to(&all, environment);
            assert_eq!(
                automatic.len(),
                1,
                "round {round}: one deployment to {environment}: {all:?}"
            );
            let after = automatic[0]["trigger"]["after_deployment"]
                .as_i64()
                .unwrap();
            assert!(after == first || after == second, "{all:?}");
        }
        // The Test deployments find the file there and finish: the next round's Dev
        // deployments find the nodes free.
        for d in to(&all, "Test1").into_iter().chain(to(&all, "Test2")) {
            let id = d["id"].as_i64().unwrap();
            fleet.wait_state(id, DONE, Duration::from_secs(60)).await;
        }
    }
    // The database itself refuses a second automatic deployment of a release to an
    // environment.
    let twice = sqlx::query(
        "INSERT INTO deployments (project_id, release_id, environment_id, trigger)
         SELECT project_id, release_id, environment_id, trigger FROM deployments
         WHERE trigger IS NOT NULL LIMIT 1",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        twice.to_string().contains("deployments_automatic_once"),
        "{twice}"
    );
    // Each of the four rounds left exactly two automatic deployments.
    let automatic = eventually(Duration::from_secs(5), "the audit rows", || async {
        let (_, audit) = fleet
            .api
            .get("/api/audit?action=deployment.create&actor=lifecycle&limit=100")
            .await;
        audit["items"].as_array().map(Vec::len)
    })
    .await;
    assert_eq!(automatic, 8);
}
