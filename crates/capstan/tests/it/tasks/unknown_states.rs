//! A state the database holds that this release does not know (a newer release wrote
//! it, or someone relaxed a constraint) is an error that names it, never a task or
//! command quietly read as `failed`.

use capstan_api::ClientError;
use capstan_db::{DbError, mailbox, task_logs, tasks};
use capstan_testkit::{TestCluster, TestDatabase};
use sqlx::PgPool;

/// Lets the tables hold states the code does not know, as a newer schema might.
/// A node's housekeeping may read these tables meanwhile, and PostgreSQL may end the
/// schema change as a deadlock with it: the change is tried again then.
async fn relax_state_checks(db: &PgPool) {
    for attempt in 1.. {
        let changed = sqlx::raw_sql(
            "ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_state_check;
             ALTER TABLE agent_commands DROP CONSTRAINT IF EXISTS agent_commands_state_check;",
        )
        .execute(db)
        .await;
        match changed {
            Ok(_) => return,
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("40P01") && attempt < 5 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot relax the state checks: {e}"),
        }
    }
}

/// A fresh database whose tables let through states the code does not know.
async fn relaxed_database() -> (TestDatabase, PgPool) {
    let test_db = TestDatabase::new().await;
    let db = PgPool::connect(&test_db.url).await.unwrap();
    relax_state_checks(&db).await;
    (test_db, db)
}

async fn task_in(db: &PgPool, state: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO tasks (kind, on_node_lost, state, finished_at)
         VALUES ('sleep', 'fail', $1, now()) RETURNING id",
    )
    .bind(state)
    .fetch_one(db)
    .await
    .unwrap()
}

/// A command of task `task_id` in `state`, with the agent it was sent to; returns
/// (agent id, command id).
async fn command_in(db: &PgPool, task_id: i64, state: &str) -> (i64, i64) {
    let agent = super::agent_row(db).await;
    let command: i64 = sqlx::query_scalar(
        "INSERT INTO agent_commands (agent_id, task_id, task_attempt, body, timeout_ms, state)
         VALUES ($1, $2, 1, '{}', 1000, $3) RETURNING id",
    )
    .bind(agent)
    .bind(task_id)
    .bind(state)
    .fetch_one(db)
    .await
    .unwrap();
    (agent, command)
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, DbError>, state: &str) {
    match result {
        Err(DbError::Corrupt { what }) => {
            assert!(what.contains(&format!("`{state}`")), "{what}")
        }
        other => panic!("expected an unreadable state to be an error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_task_state_is_an_error_not_failed() {
    let (_test_db, db) = relaxed_database().await;
    let id = task_in(&db, "paused").await;

    assert_corrupt(tasks::get(&db, id).await, "paused");
    let filter = tasks::TaskFilter {
        limit: 10,
        ..Default::default()
    };
    assert_corrupt(tasks::list(&db, &filter).await, "paused");
    assert_corrupt(task_logs::view(&db, id, 0).await, "paused");
}

#[tokio::test]
async fn an_unknown_command_state_is_an_error_not_failed() {
    let (_test_db, db) = relaxed_database().await;
    let task = task_in(&db, "succeeded").await;
    let (agent, command) = command_in(&db, task, "exploded").await;

    assert_corrupt(mailbox::of_task(&db, task, 10).await, "exploded");
    assert_corrupt(mailbox::body(&db, agent, command).await, "exploded");
    assert_corrupt(mailbox::ack(&db, agent, command).await, "exploded");
}

/// Through the API the same rows answer 500, the cause left in the node's log.
#[tokio::test]
async fn the_api_answers_500_for_a_state_it_cannot_read() {
    let cluster = TestCluster::start(1).await;
    let db = PgPool::connect(&cluster.db.url).await.unwrap();
    relax_state_checks(&db).await;
    let client = cluster.node(0).client();

    let paused = task_in(&db, "paused").await;
    let status = |e: ClientError| match e {
        ClientError::Api(problem) => problem.status,
        other => panic!("expected an answer, got {other}"),
    };
    assert_eq!(status(client.get_task(paused).await.unwrap_err()), 500);

    let task = task_in(&db, "succeeded").await;
    command_in(&db, task, "exploded").await;
    assert_eq!(status(client.task_commands(task).await.unwrap_err()), 500);
}
