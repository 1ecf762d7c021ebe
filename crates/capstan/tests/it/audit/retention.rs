//! Rows older than the retention go to the blob store as one JSON Lines file per UTC
//! day, checked, and only then leave the table; a run repeated after a crash between
//! the two neither loses nor repeats a row.

use std::time::Duration;

use capstan_blob::BlobStore;
use capstan_server::audit::retention::{archive_key, archive_old};
use capstan_testkit::{ADMIN_KEY, TestCluster, tasks::wait_task};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::{OffsetDateTime, macros::time};

use super::call;

const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Appends a row dated `at` straight in the table, as one written then would be.
async fn old_row(pool: &PgPool, at: OffsetDateTime, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO audit_events (at, actor_kind, actor_name, auth_method, action, object_kind,
             object_id, object_name, after)
         VALUES ($1, 'admin_key', 'admin key', 'admin_key', 'project.create', 'project', '1', $2,
                 jsonb_build_object('name', $2::text))
         RETURNING id",
    )
    .bind(at)
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn lines(file: &[u8]) -> Vec<Value> {
    std::str::from_utf8(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["object"]["name"].as_str().unwrap())
        .collect()
}

async fn ids(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM audit_events ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_days_are_archived_as_json_lines_then_deleted_by_the_periodic_task() {
    let cluster = TestCluster::start(1).await;
    let n = cluster.node(0).url();
    let pool = PgPool::connect(&cluster.db.url).await.unwrap();
    let today = OffsetDateTime::now_utc().date();
    let day_a = today - time::Duration::days(120);
    let day_b = today - time::Duration::days(100);
    old_row(&pool, day_a.with_time(time!(0:00)).assume_utc(), "a1").await;
    old_row(
        &pool,
        day_a.with_time(time!(23:59:59.999999)).assume_utc(),
        "a2",
    )
    .await;
    old_row(&pool, day_b.with_time(time!(12:00)).assume_utc(), "b1").await;
    // Younger than the retention: kept.
    let young = old_row(
        &pool,
        OffsetDateTime::now_utc() - time::Duration::days(89),
        "young",
    )
    .await;
    let (status, _) = call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/projects",
        Some(json!({"name": "Now"})),
    )
    .await;
    assert_eq!(status, 201);

    let (status, task) = call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/tasks",
        Some(json!({"kind": "audit-retention", "args": {"older_than_ms": RETENTION.as_millis() as u64}})),
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let client = cluster.node(0).client();
    wait_task(
        &client,
        task["id"].as_i64().unwrap(),
        Duration::from_secs(20),
        "retention",
        |t| t.state.is_finished(),
    )
    .await;
    let done = client.get_task(task["id"].as_i64().unwrap()).await.unwrap();
    assert_eq!(done.state.as_str(), "succeeded", "{done:?}");

    let blob = BlobStore::from_url(&format!("file://{}", cluster.blob_dir.0.display())).unwrap();
    let file_a = lines(&blob.get(&archive_key(day_a)).await.unwrap());
    assert_eq!(names(&file_a), ["a1", "a2"]);
    assert_eq!(file_a[0]["actor"]["name"], "admin key");
    assert_eq!(file_a[0]["after"]["name"], "a1");
    let file_b = lines(&blob.get(&archive_key(day_b)).await.unwrap());
    assert_eq!(names(&file_b), ["b1"]);
    assert!(archive_key(day_a).starts_with(&format!("audit/{}/", day_a.year())));

    let left: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(object_name, action) FROM audit_events ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    // The young row, the project and the retention task itself.
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left[0], "young");
    assert!(ids(&pool).await.contains(&young));

    // A retention shorter than a day is refused.
    let (status, refused) = call(
        &n,
        ADMIN_KEY,
        "POST",
        "/api/tasks",
        Some(json!({"kind": "audit-retention", "args": {"older_than_ms": 1000}})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
}

#[tokio::test]
async fn a_run_repeated_after_a_crash_between_upload_and_delete_loses_and_repeats_nothing() {
    let cluster = cluster_calling_retention_itself().await;
    let pool = PgPool::connect(&cluster.db.url).await.unwrap();
    let blob = BlobStore::from_url(&format!("file://{}", cluster.blob_dir.0.display())).unwrap();
    let day = OffsetDateTime::now_utc().date() - time::Duration::days(95);
    let at = |h: u8| {
        day.with_time(time::Time::from_hms(h, 0, 0).unwrap())
            .assume_utc()
    };
    old_row(&pool, at(1), "one").await;
    old_row(&pool, at(2), "two").await;

    // The crash: a previous run wrote the day's file with both rows and died before
    // deleting them.
    let (_, page) = call(
        &cluster.node(0).url(),
        ADMIN_KEY,
        "GET",
        "/api/audit?limit=10",
        None,
    )
    .await;
    let mut written: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| serde_json::to_string(row).unwrap())
        .collect();
    written.reverse();
    blob.put(
        &archive_key(day),
        format!("{}\n", written.join("\n")).into(),
    )
    .await
    .unwrap();
    // A row of that day arrived after the file was written.
    old_row(&pool, at(3), "three").await;

    let archived = archive_old(&pool, &blob, RETENTION).await.unwrap();
    assert_eq!(archived.days, [day]);
    assert_eq!(archived.rows, 3);
    let file = lines(&blob.get(&archive_key(day)).await.unwrap());
    assert_eq!(
        names(&file),
        ["one", "two", "three"],
        "each row once, in order"
    );
    assert_eq!(ids(&pool).await, Vec::<i64>::new());

    // Running again finds nothing and leaves the file as it is.
    let again = archive_old(&pool, &blob, RETENTION).await.unwrap();
    assert_eq!(again.rows, 0);
    assert_eq!(
        names(&lines(&blob.get(&archive_key(day)).await.unwrap())),
        ["one", "two", "three"]
    );
}

#[tokio::test]
async fn a_busy_day_is_archived_in_pages_and_carried_over_whole() {
    let cluster = cluster_calling_retention_itself().await;
    let pool = PgPool::connect(&cluster.db.url).await.unwrap();
    let blob = BlobStore::from_url(&format!("file://{}", cluster.blob_dir.0.display())).unwrap();
    let day = OffsetDateTime::now_utc().date() - time::Duration::days(91);
    let noon = day.with_time(time!(12:00)).assume_utc();
    // More rows than one page, and a file of several upload chunks.
    sqlx::query(
        "INSERT INTO audit_events (at, actor_kind, actor_name, auth_method, action, object_kind,
             object_id, object_name, after)
         SELECT $1 + n * interval '1 ms', 'admin_key', 'admin key', 'admin_key',
                'task.create', 'task', n::text, 'task ' || n,
                jsonb_build_object('kind', 'sleep', 'padding', repeat('x', 200))
         FROM generate_series(1, 12000) AS n",
    )
    .bind(noon)
    .execute(&pool)
    .await
    .unwrap();
    let archived = archive_old(&pool, &blob, RETENTION).await.unwrap();
    assert_eq!(archived.rows, 12_000);
    assert_eq!(ids(&pool).await, Vec::<i64>::new());

    // A late row of the same day: the next run carries the whole file over and adds it.
    old_row(&pool, noon, "late").await;
    let again = archive_old(&pool, &blob, RETENTION).await.unwrap();
    assert_eq!(again.rows, 1);
    let file = lines(&blob.get(&archive_key(day)).await.unwrap());
    assert_eq!(file.len(), 12_001);
    let mut seen: Vec<i64> = file.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order");
    seen.dedup();
    assert_eq!(seen.len(), 12_001, "no row twice");
    assert_eq!(file[0]["object"]["name"], "task 1");
    assert_eq!(file[12_000]["object"]["name"], "late");
}

/// A node whose own audit-retention keeps ten years, so only the test's calls of
/// `archive_old` touch the old days it writes.
async fn cluster_calling_retention_itself() -> TestCluster {
    TestCluster::start_with(&[None], |settings| {
        settings.audit_retention = Duration::from_secs(3650 * 24 * 3600);
    })
    .await
}
