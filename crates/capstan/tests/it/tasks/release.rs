//! A held task let go while a node runs it (claimed to ask a deployment's gates) is
//! not parked by that run's outcome: the release is noted on the task, and the outcome
//! leaves it claimable. Without the note, an approval that completes at that instant
//! would be lost and the deployment would wait for good.

use std::time::Duration;

use capstan_core::TaskState;
use capstan_db::queue::{self, Claimer, Outcome};
use capstan_testkit::TestDatabase;
use serde_json::json;

#[tokio::test]
async fn a_release_noted_while_the_task_runs_wins_over_the_run_parking_it() {
    let db = TestDatabase::new().await;
    let pools = capstan_db::Pools::connect(
        &capstan_db::DatabaseUrl::parse(&db.url).unwrap(),
        2,
        "capstan test",
    )
    .await
    .unwrap();
    let node = uuid::Uuid::now_v7();
    let kinds = vec!["sleep".to_owned()];
    let claimer = Claimer {
        node_id: node,
        lease_ttl: Duration::from_secs(60),
        kinds: &kinds,
    };
    capstan_db::tasks::create(
        &pools.api,
        &[capstan_db::tasks::NewTask {
            kind: "sleep".into(),
            args: json!({}),
            on_node_lost: "requeue",
            concurrency_key: None,
        }],
        node,
    )
    .await
    .unwrap();
    let parked = |attempt| Outcome {
        id: 0,
        attempt,
        state: TaskState::Queued,
        error: Some("held".to_owned()),
        parked_until: None,
    };
    let state = |id: i64| {
        let db = pools.api.clone();
        async move {
            sqlx::query_as::<_, (String, bool, bool)>(
                "SELECT state, parked, release_requested FROM tasks WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };

    // Without a release the run parks it, and no claim takes it.
    let claimed = queue::complete_and_claim(&pools.liveness, claimer, &[], 1)
        .await
        .unwrap()
        .claimed;
    let id = claimed[0].id;
    let outcome = Outcome {
        id,
        ..parked(claimed[0].attempt)
    };
    let cycle = queue::complete_and_claim(&pools.liveness, claimer, &[outcome], 1)
        .await
        .unwrap();
    assert_eq!(cycle.completed, [id]);
    assert!(cycle.claimed.is_empty(), "a parked task was claimed");
    assert_eq!(state(id).await, ("queued".to_owned(), true, false));

    // Released while parked: claimable at once.
    assert!(
        capstan_db::held::release_task(&pools.api, id)
            .await
            .unwrap()
    );
    let claimed = queue::complete_and_claim(&pools.liveness, claimer, &[], 1)
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 1);
    assert_eq!(state(id).await, ("running".to_owned(), false, false));

    // Released while running: the release is noted, and the run's parking outcome
    // leaves the task claimable: the next claim takes it.
    assert!(
        capstan_db::held::release_task(&pools.api, id)
            .await
            .unwrap()
    );
    assert_eq!(state(id).await, ("running".to_owned(), false, true));
    let outcome = Outcome {
        id,
        ..parked(claimed[0].attempt)
    };
    queue::complete_and_claim(&pools.liveness, claimer, &[outcome], 0)
        .await
        .unwrap();
    assert_eq!(state(id).await, ("queued".to_owned(), false, false));
    let claimed = queue::complete_and_claim(&pools.liveness, claimer, &[], 1)
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 1, "the released task was left parked");

    // A finished task has nothing to release.
    let done = Outcome {
        id,
        attempt: claimed[0].attempt,
        state: TaskState::Succeeded,
        error: None,
        parked_until: None,
    };
    queue::complete_and_claim(&pools.liveness, claimer, &[done], 0)
        .await
        .unwrap();
    assert!(
        !capstan_db::held::release_task(&pools.api, id)
            .await
            .unwrap()
    );
}
