//! Freeze windows through real nodes and agents: a deployment inside a window waits
//! parked until it closes (or is refused, or overrides it with the permission), and bad
//! windows are refused naming the field.

use std::time::Duration;

use capstan_testkit::{TestCluster, eventually};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    access::{call, grant, member, role_id},
    deployments::{Fleet, step},
    projects::Api,
};

const DONE: &[&str] = &["succeeded", "failed", "cancelled", "aborted"];

fn instant(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// The reason a queued deployment gives for waiting, once it gives one.
async fn held_reason(fleet: &Fleet, id: i64) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("deployment {id} to say it is held"),
        || async {
            let (_, body) = fleet.api.get(&format!("/api/deployments/{id}")).await;
            let reason = body["blocked_by"]["reasons"][0].clone();
            (body["state"] == "queued" && reason["reason"] == "freeze").then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn a_recurring_window_holds_a_deployment_and_lets_it_go_when_it_closes() {
    let fleet = Fleet::start(1, 1).await;
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    // Opens at the start of every minute (Kolkata is UTC+05:30, so its minutes are
    // UTC's) and stays open for 40 s.
    let (status, window) = fleet
        .api
        .post(
            "/api/freezes",
            json!({
                "name": "Every minute",
                "cron": "* * * * *",
                "duration": "40s",
                "time_zone": "Asia/Kolkata",
                "projects": ["Shop"],
                "environments": ["Production"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{window}");
    assert_eq!(window["kind"], "recurring");
    assert_eq!(window["projects"], json!(["Shop"]));

    // Queue it well inside an opening, so the window is open when it is checked.
    eventually(Duration::from_secs(70), "the start of a minute", || async {
        (OffsetDateTime::now_utc().second() < 20).then_some(())
    })
    .await;
    let queued_at = OffsetDateTime::now_utc();
    let id = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let shown = held_reason(&fleet, id).await;
    let reason = &shown["blocked_by"]["reasons"][0];
    assert_eq!(reason["window"], "Every minute", "{shown:#}");
    let until = instant(&reason["until"]);
    assert_eq!(until.second(), 40, "{shown:#}");
    assert!(
        until > queued_at && until - queued_at <= time::Duration::seconds(41),
        "{queued_at} {shown:#}"
    );
    assert!(
        shown["blocked_by"]["summary"]
            .as_str()
            .unwrap()
            .contains("freeze window `Every minute` is open until"),
        "{shown:#}"
    );

    let done = fleet.wait_state(id, DONE, Duration::from_secs(90)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let started = instant(&done["started_at"]);
    assert!(started >= until, "started {started}, window closed {until}");
}

#[tokio::test]
async fn refusing_overriding_and_deleting_a_window_that_holds_a_deployment() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let now = OffsetDateTime::now_utc();
    let (status, window) = fleet
        .api
        .post(
            "/api/freezes",
            json!({
                "name": "Holidays",
                "start": rfc3339(now - time::Duration::hours(1)),
                "end": rfc3339(now + time::Duration::hours(2)),
                "environments": ["Production"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{window}");
    assert_eq!(window["kind"], "fixed");
    assert_eq!(window["projects"], json!([]));
    assert!(window["open_until"].is_string(), "{window}");

    // Refused: 409 naming the window and its end, and nothing stored.
    let (status, refused) = fleet
        .api
        .post(
            "/api/deployments",
            json!({ "release_id": release, "environment": "Production", "if_frozen": "refuse" }),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["freeze_window"], "Holidays", "{refused}");
    assert_eq!(instant(&refused["until"]), instant(&window["end"]));
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("freeze window `Holidays`"),
        "{refused}"
    );
    let (_, listed) = fleet.api.get("/api/deployments").await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    // A deployer may deploy, but not past the window.
    let (_, deployer_key, team) = member(&node, "deployer").await;
    let deployer = role_id(&node, "deployer").await;
    grant(&node, team, deployer, None, None).await;
    let (status, forbidden) = call(
        &node,
        &deployer_key,
        "POST",
        "/api/deployments",
        Some(
            json!({ "release_id": release, "environment": "Production", "override_freeze": true }),
        ),
    )
    .await;
    assert_eq!(status, 403, "{forbidden}");
    assert_eq!(forbidden["missing_permission"], "override_freeze");
    let (_, listed) = fleet.api.get("/api/deployments").await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    // The administrator overrides: it starts at once, and the override is audited.
    // (Deployments of one project to one environment start in the order queued, so
    // this one goes first.)
    let overriding = fleet
        .deploy(
            json!({ "release_id": release, "environment": "Production", "override_freeze": true }),
        )
        .await;
    let done = fleet
        .wait_state(overriding, DONE, Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    let (status, audit) = fleet
        .api
        .get("/api/audit?action=deployment.override_freeze")
        .await;
    assert_eq!(status, 200, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["object"]["id"], overriding.to_string(), "{audit}");
    assert_eq!(rows[0]["after"]["windows"], json!(["Holidays"]), "{audit}");
    let overriding_id = overriding.to_string();
    let (_, created) = fleet.api.get("/api/audit?action=deployment.create").await;
    let row = created["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"]["id"].as_str() == Some(overriding_id.as_str()))
        .unwrap_or_else(|| panic!("{created}"));
    assert_eq!(row["after"]["override_freeze"], true, "{row}");

    // Waiting (the default): held until the window is deleted, then it runs at once.
    let (status, queued) = call(
        &node,
        &deployer_key,
        "POST",
        "/api/deployments",
        Some(json!({ "release_id": release, "environment": "Production" })),
    )
    .await;
    assert_eq!(status, 201, "{queued}");
    let held = queued["id"].as_i64().unwrap();
    let shown = held_reason(&fleet, held).await;
    assert_eq!(
        instant(&shown["blocked_by"]["reasons"][0]["until"]),
        instant(&window["end"])
    );

    let (status, body) = fleet
        .api
        .call("DELETE", &format!("/api/freezes/{}", window["id"]), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let done = fleet.wait_state(held, DONE, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let (_, audit) = fleet.api.get("/api/audit?action=freeze.delete").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

#[tokio::test]
async fn bad_windows_are_refused_naming_the_field() {
    let cluster = TestCluster::start(1).await;
    let api = Api::new(&cluster.node(0).url());
    api.project("Shop").await;
    let cases = [
        (
            json!({ "cron": "0 0 30 2 *", "duration": "1h", "time_zone": "UTC" }),
            "cron",
            "never fires",
        ),
        (
            json!({ "cron": "0 18 * *", "duration": "1h", "time_zone": "UTC" }),
            "cron",
            "five fields",
        ),
        (
            json!({ "cron": "0 18 * * FRI", "duration": "62h", "time_zone": "Europe/Atlantis" }),
            "time_zone",
            "is not a time zone",
        ),
        (
            json!({ "cron": "0 18 * * FRI", "duration": "0s", "time_zone": "UTC" }),
            "duration",
            "longer than nothing",
        ),
        (
            json!({ "cron": "0 18 * * FRI", "duration": "90d", "time_zone": "UTC" }),
            "duration",
            "at most 31 days",
        ),
        (
            json!({ "start": "2026-12-31T00:00:00Z", "end": "2026-12-24T00:00:00Z" }),
            "end",
            "must end after it starts",
        ),
        (
            json!({ "start": "Christmas", "end": "2026-12-24T00:00:00Z" }),
            "start",
            "not an RFC 3339 instant",
        ),
        (
            json!({ "start": "2026-12-24T00:00:00Z" }),
            "end",
            "needs `end`",
        ),
        (
            json!({ "start": "2026-12-24T00:00:00Z", "end": "2026-12-31T00:00:00Z",
                    "environments": ["Nowhere"] }),
            "environments[0]",
            "there is no environment `Nowhere`",
        ),
        (
            json!({ "start": "2026-12-24T00:00:00Z", "end": "2026-12-31T00:00:00Z",
                    "projects": ["Shop", "Nothing"] }),
            "projects[1]",
            "there is no project `Nothing`",
        ),
        (
            json!({ "start": "2026-12-24T00:00:00Z", "end": "2026-12-31T00:00:00Z",
                    "name": "x".repeat(101) }),
            "name",
            "at most 100 characters",
        ),
    ];
    for (mut body, field, words) in cases {
        if body.get("name").is_none() {
            body["name"] = json!("Bad");
        }
        let (status, answer) = api.post("/api/freezes", body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let errors = answer["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["detail"].as_str().unwrap().contains(words)),
            "{field}: {answer}"
        );
    }
    let (_, listed) = api.get("/api/freezes").await;
    assert_eq!(listed["items"], json!([]));

    // A good one, then the same name again, then a change that goes wrong.
    let good = json!({
        "name": "Weekend", "cron": "0 18 * * FRI", "duration": "62h",
        "time_zone": "Europe/Berlin",
    });
    let (status, created) = api.post("/api/freezes", good.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert!(created["next_start"].is_string(), "{created}");
    let (status, answer) = api.post("/api/freezes", good).await;
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = api
        .put(
            &format!("/api/freezes/{}", created["id"]),
            json!({ "name": "Weekend", "cron": "0 18 * * FRI", "duration": "62h",
                    "time_zone": "Berlin" }),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "time_zone", "{answer}");
    let (status, answer) = api.call("GET", "/api/freezes/999999", None).await;
    assert_eq!(status, 404, "{answer}");
}

async fn cli(server: &str, args: &[&str]) -> (bool, String) {
    let server = server.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::capstan(&server, &args)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_cli_manages_windows_and_deploys_past_or_around_them() {
    let fleet = Fleet::start(1, 1).await;
    let server = fleet.cluster.node(0).url();
    let (_, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let (_, shown) = fleet.api.get(&format!("/api/releases/{release}")).await;
    let version = shown["version"].as_str().unwrap().to_owned();

    let (ok, out) = cli(
        &server,
        &[
            "freezes",
            "create",
            "Weekend",
            "--cron",
            "0 18 * * FRI",
            "--duration",
            "62h",
            "--time-zone",
            "Europe/Berlin",
        ],
    )
    .await;
    assert!(ok && out.contains("created freeze window"), "{out}");
    assert!(out.contains("every project in every environment"), "{out}");
    let (ok, out) = cli(
        &server,
        &[
            "freezes",
            "create",
            "Never",
            "--cron",
            "0 0 30 2 *",
            "--duration",
            "1h",
            "--time-zone",
            "UTC",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("cron") && out.contains("never fires"),
        "{out}"
    );

    // Turn it into a holiday freeze of Production that is open now.
    let now = OffsetDateTime::now_utc();
    let start = rfc3339(now - time::Duration::hours(1));
    let end = rfc3339(now + time::Duration::hours(1));
    let (ok, out) = cli(
        &server,
        &[
            "freezes",
            "update",
            "weekend",
            "--name",
            "Holidays",
            "--environment",
            "Production",
            "--start",
            &start,
            "--end",
            &end,
        ],
    )
    .await;
    assert!(ok && out.contains("updated freeze window"), "{out}");
    let (ok, out) = cli(&server, &["freezes", "show", "holidays"]).await;
    assert!(ok && out.contains("open until"), "{out}");
    let (ok, out) = cli(&server, &["freezes", "list"]).await;
    assert!(
        ok && out.contains("Holidays") && out.contains("Production"),
        "{out}"
    );

    let deploy = |extra: &'static [&'static str]| {
        let mut args = vec![
            "deploy",
            "--project",
            "Shop",
            "--release",
            version.as_str(),
            "--environment",
            "Production",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let args = deploy(&["--if-frozen", "refuse"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = cli(&server, &args).await;
    assert!(!ok && out.contains("freeze window `Holidays`"), "{out}");
    let args = deploy(&["--override-freeze", "--follow"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = cli(&server, &args).await;
    assert!(ok, "{out}");

    let (ok, out) = cli(&server, &["freezes", "delete", "Holidays"]).await;
    assert!(ok && out.contains("deleted freeze window"), "{out}");
    let (_, out) = cli(&server, &["freezes", "list"]).await;
    assert!(!out.contains("Holidays"), "{out}");
}

#[tokio::test]
async fn a_window_created_after_a_deployment_was_queued_holds_it_when_it_comes_to_start() {
    let fleet = Fleet::start(1, 1).await;
    // The first fails and waits for an operator; the second waits behind it (one
    // project, one environment) until the first is answered.
    // Only the first run fails.
    let once = fleet.dir().join("failed-once");
    let mut failing = step(
        "Deploy",
        &format!("[ -e '{0}' ] || {{ touch '{0}'; exit 4; }}", once.display()),
    );
    failing["failure_policy"] = json!({ "mode": "guided" });
    let (_, release) = fleet.release("Shop", json!([failing]), json!([])).await;
    let first = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let (_, question) = fleet.wait_question(first, Duration::from_secs(30)).await;
    let second = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let (_, shown) = fleet.api.get(&format!("/api/deployments/{second}")).await;
    assert_eq!(shown["state"], "queued", "{shown:#}");

    let now = OffsetDateTime::now_utc();
    let (status, window) = fleet
        .api
        .post(
            "/api/freezes",
            json!({
                "name": "Late",
                "start": rfc3339(now - time::Duration::minutes(1)),
                "end": rfc3339(now + time::Duration::hours(1)),
                "projects": ["Shop"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{window}");
    let (status, body) = fleet.answer(first, &question, "ignore").await;
    assert_eq!(status, 200, "{body}");
    fleet.wait_state(first, DONE, Duration::from_secs(60)).await;
    let held = held_reason(&fleet, second).await;
    assert_eq!(held["blocked_by"]["reasons"][0]["window"], "Late");

    // Shortened to have ended already: the held deployment is asked again at once.
    let (status, body) = fleet
        .api
        .put(
            &format!("/api/freezes/{}", window["id"]),
            json!({
                "name": "Late",
                "start": rfc3339(now - time::Duration::minutes(1)),
                "end": rfc3339(now - time::Duration::seconds(1)),
                "projects": ["Shop"],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["open_until"].is_null(), "{body}");
    let done = fleet
        .wait_state(second, DONE, Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
}
