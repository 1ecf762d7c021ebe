//! Every notification the statements of `capstan-db` send, as a node's LISTEN
//! connection receives them from a real PostgreSQL, parses as its channel's notice:
//! several payloads are built in SQL, so only the real text can hold the parser to them.

use std::time::Duration;

use capstan_core::CommandState;
use capstan_db::{
    Pools,
    listen::{ListenEvent, listen},
    mailbox::{self, Finish, NewCommand},
    notify::{AgentNotice, NodeNotice, Notice, TaskNotice, UserNotice},
    tasks::{self, NewTask},
};
use capstan_testkit::TestDatabase;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

async fn next(events: &mut mpsc::Receiver<ListenEvent>) -> ListenEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("a notification within 5s")
        .expect("the listener is running")
}

async fn expect(events: &mut mpsc::Receiver<ListenEvent>, notice: Notice) {
    assert_eq!(next(events).await, ListenEvent::Notice(notice));
}

fn sleep_task() -> NewTask {
    NewTask {
        kind: "sleep".to_owned(),
        args: json!({}),
        on_node_lost: "fail",
        concurrency_key: None,
    }
}

/// A task running its first attempt on `node`, as a claim leaves it.
async fn running_task(db: &PgPool, node: Uuid) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO tasks (kind, on_node_lost, state, attempt, node_id, started_at,
                            lease_expires_at)
         VALUES ('sleep', 'fail', 'running', 1, $1, now(), now() + interval '1 minute')
         RETURNING id",
    )
    .bind(node)
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_payload_the_statements_send_parses_as_its_notice() {
    let test_db = TestDatabase::new().await;
    let url = capstan_db::DatabaseUrl::parse(&test_db.url).unwrap();
    let pools = Pools::connect(&url, 2, "capstan test").await.unwrap();
    let db = &pools.api;
    let (events_tx, mut events) = mpsc::channel(64);
    let listener = tokio::spawn(listen(
        pools.listen_config.clone(),
        Notice::CHANNELS.to_vec(),
        events_tx,
    ));
    assert_eq!(next(&mut events).await, ListenEvent::Connected);

    let node: Uuid = sqlx::query_scalar(
        "INSERT INTO nodes (id, name, version, url, task_cap, heartbeat_interval_ms)
         VALUES (gen_random_uuid(), 'node-1', '0.0.0', 'http://127.0.0.1:1', 5, 1000)
         RETURNING id",
    )
    .fetch_one(db)
    .await
    .unwrap();

    // A payload no channel defines is dropped by the listener, which goes on.
    sqlx::query("SELECT pg_notify($1, 'claimed:1')")
        .bind(capstan_db::TASKS_CHANNEL)
        .execute(db)
        .await
        .unwrap();

    capstan_db::nodes::update(db, node, Some(3), None)
        .await
        .unwrap();
    expect(&mut events, Notice::Node(NodeNotice::Changed(node))).await;
    capstan_db::liveness::set_draining(&pools.liveness, node)
        .await
        .unwrap();
    expect(&mut events, Notice::Node(NodeNotice::Changed(node))).await;

    tasks::create(db, &[sleep_task()], node).await.unwrap();
    expect(&mut events, Notice::Task(TaskNotice::QueuedBy(node))).await;
    tasks::create_one(&pools.enqueue, &sleep_task(), node, None)
        .await
        .unwrap();
    expect(&mut events, Notice::Task(TaskNotice::QueuedBy(node))).await;

    let cancelled = running_task(db, node).await;
    tasks::cancel(db, cancelled).await.unwrap();
    expect(&mut events, Notice::Task(TaskNotice::Cancel(cancelled))).await;

    let agent = super::agent_row(db).await;
    let task = running_task(db, node).await;
    let command = NewCommand {
        agent_id: agent,
        body: json!({}),
        timeout_ms: 60_000,
    };
    let ids = mailbox::send(db, task, 1, &[command]).await.unwrap();
    expect(&mut events, Notice::Agent(AgentNotice::Mail(agent))).await;
    mailbox::store_output(
        db,
        agent,
        ids[0],
        &[1],
        &["stdout".to_owned()],
        &["hello".to_owned()],
        1000,
    )
    .await
    .unwrap();
    expect(&mut events, Notice::Agent(AgentNotice::Output(task))).await;
    // Asking the agent to stop its running commands mails it once, however many.
    let second = NewCommand {
        agent_id: agent,
        body: json!({}),
        timeout_ms: 60_000,
    };
    let more = mailbox::send(db, task, 1, &[second]).await.unwrap();
    expect(&mut events, Notice::Agent(AgentNotice::Mail(agent))).await;
    for id in [ids[0], more[0]] {
        mailbox::ack(db, agent, id).await.unwrap();
    }
    let asked = mailbox::cancel_task_commands(db, task, 1, "test")
        .await
        .unwrap();
    assert_eq!(asked, 2);
    expect(&mut events, Notice::Agent(AgentNotice::Mail(agent))).await;
    let finish = Finish {
        state: CommandState::Succeeded,
        exit_code: Some(0),
        error: None,
        outputs: json!({}),
    };
    mailbox::finish(db, agent, ids[0], &finish).await.unwrap();
    expect(&mut events, Notice::Agent(AgentNotice::Done(task))).await;
    capstan_db::agents::delete_agent(db, agent).await.unwrap();
    expect(&mut events, Notice::Agent(AgentNotice::Revoked(agent))).await;

    // Rescue puts a lost node's task back in line and wakes every claimer.
    let requeue = sqlx::query_scalar::<_, i64>(
        "INSERT INTO tasks (kind, on_node_lost, state, attempt, node_id, started_at,
                            lease_expires_at)
         VALUES ('sleep', 'requeue', 'running', 1, $1, now(), now() - interval '1 minute')
         RETURNING id",
    )
    .bind(node)
    .fetch_one(db)
    .await
    .unwrap();
    let rescued =
        capstan_db::queue::rescue(&pools.liveness, capstan_db::queue::RescueScope::Expired)
            .await
            .unwrap();
    assert!(rescued.iter().any(|r| r.id == requeue), "{rescued:?}");
    expect(&mut events, Notice::Task(TaskNotice::Queued)).await;

    // Whatever stops an API key is announced in its transaction.
    use capstan_db::users::{self, NewApiKey, NewUser, UserChange};
    let user = users::create(
        db,
        &NewUser {
            name: "deploy-bot",
            display_name: "",
            email: None,
            kind: "service",
        },
    )
    .await
    .unwrap();
    let key = users::create_key(
        db,
        &NewApiKey {
            user_id: user.id,
            purpose: "CI",
            key_id: "AAAAAAAAAAAA",
            digest: &[0; 32],
            expires_at: time::OffsetDateTime::now_utc() + Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    users::revoke_key(db, user.id, "AAAAAAAAAAAA")
        .await
        .unwrap();
    expect(&mut events, Notice::User(UserNotice::KeyRevoked(key.id))).await;
    let disable = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    users::update(db, user.id, &disable).await.unwrap();
    expect(&mut events, Notice::User(UserNotice::Changed(user.id))).await;
    users::delete(db, user.id).await.unwrap();
    expect(&mut events, Notice::User(UserNotice::Changed(user.id))).await;

    // Whatever changes a user's grants is announced in its transaction.
    let team = capstan_db::access::create_team(db, "deployers", "")
        .await
        .unwrap();
    let role = capstan_db::access::list_roles(db, 1).await.unwrap()[0].id;
    capstan_db::access::create_grant(db, team.id, role, None, None)
        .await
        .unwrap();
    expect(&mut events, Notice::User(UserNotice::AccessChanged)).await;

    listener.abort();
}
