//! Queueing tasks and reading back what happened to them, for the queue's tests.

use std::time::Duration;

use capstan_api::{
    ApiClient, AttemptResponse, CreateTaskRequest, CreateTasksRequest, TaskQuery, TaskResponse,
};
use capstan_core::TaskState;
use time::OffsetDateTime;

use crate::eventually;

/// Queues `n` `sleep` tasks with `args` in one batch; returns their ids in queue order.
pub async fn queue_sleeps(client: &ApiClient, n: usize, args: serde_json::Value) -> Vec<i64> {
    let tasks = (0..n)
        .map(|_| CreateTaskRequest::new("sleep", args.clone()))
        .collect();
    client
        .create_tasks(&CreateTasksRequest { tasks })
        .await
        .expect("queueing a batch")
        .ids
}

/// Waits until no task is queued or running: a node claims a task on create only
/// when nothing older waits and no claim of its own holds the free slot, and the
/// periodic tasks queued at its start may not have finished yet.
pub async fn wait_idle(client: &ApiClient) {
    eventually(
        Duration::from_secs(10),
        "no task queued or running",
        || async {
            for state in [TaskState::Queued, TaskState::Running] {
                let query = TaskQuery {
                    state: Some(state),
                    ..Default::default()
                };
                if !client.list_tasks(&query).await.unwrap().items.is_empty() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Waits until every task in `ids` has finished and returns them.
pub async fn wait_finished(client: &ApiClient, ids: &[i64], within: Duration) -> Vec<TaskResponse> {
    eventually(within, "every task to finish", || async {
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            let task = client.get_task(*id).await.ok()?;
            if !task.state.is_finished() {
                return None;
            }
            done.push(task);
        }
        Some(done)
    })
    .await
}

/// Waits until task `id` satisfies `check` and returns it.
pub async fn wait_task(
    client: &ApiClient,
    id: i64,
    within: Duration,
    what: &str,
    check: impl Fn(&TaskResponse) -> bool,
) -> TaskResponse {
    eventually(within, what, || async {
        let task = client.get_task(id).await.ok()?;
        check(&task).then_some(task)
    })
    .await
}

/// Every attempt of every task in `ids`, with its task id.
pub async fn attempts_of(client: &ApiClient, ids: &[i64]) -> Vec<(i64, AttemptResponse)> {
    let mut all = Vec::new();
    for id in ids {
        for attempt in client.task_attempts(*id).await.expect("attempts").items {
            all.push((*id, attempt));
        }
    }
    all
}

/// The (start, end) of each attempt, for [`max_overlap`].
pub fn intervals(
    attempts: &[(i64, AttemptResponse)],
) -> Vec<(OffsetDateTime, Option<OffsetDateTime>)> {
    attempts
        .iter()
        .map(|(_, a)| (a.started_at, a.finished_at))
        .collect()
}

/// The most intervals open at any one moment. An interval ending at the instant
/// another starts does not overlap it; an open one (`None`) runs forever.
pub fn max_overlap(intervals: &[(OffsetDateTime, Option<OffsetDateTime>)]) -> usize {
    let mut events: Vec<(OffsetDateTime, i32)> = Vec::new();
    for (start, end) in intervals {
        events.push((*start, 1));
        if let Some(end) = end {
            events.push((*end, -1));
        }
    }
    // Ends sort before starts at the same instant.
    events.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        open += delta;
        most = most.max(open);
    }
    most as usize
}

/// The whole log of task `id` as `GET /api/tasks/{id}/log` answers it now.
pub async fn whole_log(client: &ApiClient, id: i64) -> String {
    let mut chunks = client.task_log(id).await.expect("reading the task log");
    let mut text = Vec::new();
    while let Some(chunk) = chunks.next().await.expect("reading the task log") {
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).expect("a log is UTF-8")
}
