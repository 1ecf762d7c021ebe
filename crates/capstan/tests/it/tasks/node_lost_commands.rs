//! What rescue leaves of a lost node's agent commands, by the task's node-lost policy,
//! as the mailbox statements see it: a `fail` task's commands are orphans at once; a
//! `resume` task's stay alive for the next attempt, which finds them.

use capstan_db::{
    mailbox::{self, NewCommand, Standing},
    queue::{self, RescueScope},
};
use capstan_testkit::TestDatabase;
use serde_json::json;
use sqlx::PgPool;

/// A task whose first attempt's lease expired: its node is lost.
async fn lost_task(db: &PgPool, policy: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO tasks (kind, on_node_lost, state, attempt, node_id, started_at,
                            lease_expires_at)
         VALUES ('script', $1, 'running', 1, gen_random_uuid(), now(),
                 now() - interval '1 minute')
         RETURNING id",
    )
    .bind(policy)
    .fetch_one(db)
    .await
    .unwrap()
}

fn command(agent: i64) -> NewCommand {
    NewCommand {
        agent_id: agent,
        body: json!({}),
        timeout_ms: 60_000,
    }
}

async fn open_states(db: &PgPool, task: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT state || CASE WHEN cancel_requested THEN '+cancel' ELSE '' END
         FROM agent_commands WHERE task_id = $1 ORDER BY id",
    )
    .bind(task)
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_resumable_tasks_commands_outlive_its_lost_attempt_and_a_failing_tasks_do_not() {
    let test_db = TestDatabase::new().await;
    let url = capstan_db::DatabaseUrl::parse(&test_db.url).unwrap();
    let pools = capstan_db::Pools::connect(&url, 2, "capstan test")
        .await
        .unwrap();
    let db = &pools.api;
    let agent = super::agent_row(db).await;
    let fail = lost_task(db, "fail").await;
    let resume = lost_task(db, "resume").await;
    // One command each that runs, one still waiting in the mailbox.
    let fail_ids = mailbox::send(db, fail, 1, &[command(agent), command(agent)])
        .await
        .unwrap();
    let resume_ids = mailbox::send(db, resume, 1, &[command(agent), command(agent)])
        .await
        .unwrap();
    for id in [fail_ids[0], resume_ids[0]] {
        assert_eq!(mailbox::ack(db, agent, id).await.unwrap(), Standing::Open);
    }

    let rescued = queue::rescue(&pools.liveness, RescueScope::Expired)
        .await
        .unwrap();
    let state_of = |id| rescued.iter().find(|r| r.id == id).unwrap().state;
    assert_eq!(state_of(fail).as_str(), "failed");
    assert_eq!(state_of(resume).as_str(), "queued");

    // While the resumable task waits in line its commands go on: handed over, acked.
    let handed: Vec<i64> = mailbox::poll(db, agent)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| !d.cancel)
        .map(|d| d.id)
        .collect();
    assert_eq!(handed, vec![resume_ids[1]]);
    assert_eq!(
        mailbox::ack(db, agent, resume_ids[0]).await.unwrap(),
        Standing::Open
    );
    assert_eq!(
        mailbox::ack(db, agent, fail_ids[0]).await.unwrap(),
        Standing::TaskEnded
    );
    mailbox::close_orphans(db).await.unwrap();
    assert_eq!(
        open_states(db, fail).await,
        ["running+cancel", "cancelled"],
        "the failed task's commands are closed as before"
    );
    assert_eq!(open_states(db, resume).await, ["running", "delivered"]);

    // The next attempt claims the task and finds what the lost one sent.
    sqlx::query("UPDATE tasks SET state = 'running', attempt = 2 WHERE id = $1")
        .bind(resume)
        .execute(db)
        .await
        .unwrap();
    let found: Vec<i64> = mailbox::of_task_for_resume(db, resume)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.outcome.id)
        .collect();
    assert_eq!(found, resume_ids);
    assert!(
        mailbox::of_task_for_resume(db, fail)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        mailbox::ack(db, agent, resume_ids[1]).await.unwrap(),
        Standing::Open
    );
    // The lost attempt, should it wake, can neither send nor cancel any more.
    assert!(
        mailbox::send(db, resume, 1, &[command(agent)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        mailbox::cancel_task_commands(db, resume, 1, "stale")
            .await
            .unwrap(),
        0
    );
    assert_eq!(open_states(db, resume).await, ["running", "running"]);
    // The attempt that holds it can.
    assert_eq!(
        mailbox::cancel_task_commands(db, resume, 2, "stopped")
            .await
            .unwrap(),
        2
    );
}
