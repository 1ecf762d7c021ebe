//! Why a queued task has not started: its place in line and every reason that holds,
//! worded once for the API, the CLI and logs.
//!
//! Nodes do not record which task kinds they know, so every queued task counts as in
//! line and every node that is up as one that could run it; where a cluster mixes
//! releases, a task of a kind only newer nodes know shows the reasons of the whole
//! cluster rather than `no_node_for_kind`.

use std::collections::HashMap;

use capstan_api::{Blocked, BlockedBy, NodeLoad};
use capstan_db::{
    DbError,
    blocked::{self, QueuedTask, Waiting},
};

/// Why each of the tasks `ids` that is still queued waits, by task id, read in one
/// statement whatever the number of tasks. A task missing from the answer has started
/// or finished (or does not exist).
pub async fn look_up(pool: &sqlx::PgPool, ids: &[i64]) -> Result<HashMap<i64, Blocked>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = pool.acquire().await?;
    let db = &mut *conn;
    let waiting = blocked::look_up(&mut *db, ids).await?;
    let mut found = explain(&waiting);
    // A parked task waits for an operator, not for the queue.
    let ids: Vec<i64> = found.keys().copied().collect();
    let mut questions: HashMap<i64, Vec<i64>> = HashMap::new();
    for (task, question) in capstan_db::deployments::parked_questions(&mut *db, &ids).await? {
        questions.entry(task).or_default().push(question);
    }
    for (task, asked) in questions {
        if let Some(blocked) = found.get_mut(&task) {
            blocked.reasons = asked
                .into_iter()
                .map(|intervention_id| BlockedBy::Intervention { intervention_id })
                .collect();
            blocked.ahead.clear();
            blocked.summary = summary(&blocked.reasons);
        }
    }
    // A deployment held by one of its gates (approvals, a freeze, its schedule)
    // waits for that alone.
    for (task, reason) in capstan_db::held::reasons(&mut *db, &ids).await? {
        if let (Some(blocked), Ok(reason)) = (found.get_mut(&task), serde_json::from_value(reason))
        {
            blocked.reasons = vec![reason];
            blocked.ahead.clear();
            blocked.summary = summary(&blocked.reasons);
        }
    }
    // A key held by a deployment's task names the deployment too.
    let holders: Vec<i64> = waiting.tasks.iter().filter_map(|t| t.key_holder).collect();
    if !holders.is_empty() {
        let deployments: HashMap<i64, i64> = capstan_db::deployments::of_tasks(&mut *db, &holders)
            .await?
            .into_iter()
            .collect();
        for blocked in found.values_mut() {
            for reason in &mut blocked.reasons {
                if let BlockedBy::ConcurrencyKey {
                    task_id,
                    deployment_id,
                    ..
                } = reason
                {
                    *deployment_id = deployments.get(task_id).copied();
                }
            }
            blocked.summary = summary(&blocked.reasons);
        }
    }
    Ok(found)
}

fn summary(reasons: &[BlockedBy]) -> String {
    if reasons.is_empty() {
        "nothing holds it back; a node with a free slot claims it shortly".to_owned()
    } else {
        reasons
            .iter()
            .map(BlockedBy::in_words)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Words what [`blocked::look_up`] read.
pub fn explain(waiting: &Waiting) -> HashMap<i64, Blocked> {
    let cluster = cluster_reason(waiting);
    waiting
        .tasks
        .iter()
        .map(|task| (task.id, explain_one(task, waiting, cluster.as_ref())))
        .collect()
}

fn explain_one(task: &QueuedTask, waiting: &Waiting, cluster: Option<&BlockedBy>) -> Blocked {
    let mut reasons: Vec<BlockedBy> = cluster.into_iter().cloned().collect();
    if let (Some(key), Some(holder)) = (&task.concurrency_key, task.key_holder) {
        reasons.push(BlockedBy::ConcurrencyKey {
            key: key.clone(),
            task_id: holder,
            deployment_id: None,
        });
    }
    let summary = summary(&reasons);
    Blocked {
        position: u32::try_from(task.position).unwrap_or(u32::MAX),
        // `front` is in line order and `position` counts the tasks ahead of it in
        // that same line.
        ahead: waiting
            .front
            .iter()
            .copied()
            .take(usize::try_from(task.position - 1).unwrap_or(0))
            .filter(|id| *id != task.id)
            .collect(),
        reasons,
        summary,
    }
}

/// What holds back every queued task alike: no node that is up claims tasks, or every
/// one that does is at its task cap.
fn cluster_reason(waiting: &Waiting) -> Option<BlockedBy> {
    let claiming: Vec<_> = waiting.nodes.iter().filter(|n| !n.draining).collect();
    if claiming.is_empty() {
        return Some(BlockedBy::NoNodeUp {
            draining: waiting.nodes.iter().map(|n| n.name.clone()).collect(),
        });
    }
    claiming
        .iter()
        .all(|n| n.running_tasks >= n.task_cap)
        .then(|| BlockedBy::TaskCap {
            nodes: claiming
                .iter()
                .map(|n| NodeLoad {
                    name: n.name.clone(),
                    running: n.running_tasks.max(0) as u32,
                    cap: n.task_cap.max(0) as u32,
                })
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use capstan_db::blocked::LiveNode;

    use super::*;

    fn node(name: &str, running: i32, cap: i32, draining: bool) -> LiveNode {
        LiveNode {
            name: name.to_owned(),
            task_cap: cap,
            draining,
            running_tasks: running,
        }
    }

    fn queued(id: i64, position: i64, key: Option<(&str, i64)>) -> QueuedTask {
        QueuedTask {
            id,
            position,
            concurrency_key: key.map(|(k, _)| k.to_owned()),
            key_holder: key.map(|(_, h)| h),
        }
    }

    #[test]
    fn full_nodes_and_a_held_key_are_both_reasons_in_one_sentence() {
        let waiting = Waiting {
            tasks: vec![queued(42, 3, Some(("deploy:web", 7)))],
            front: vec![40, 41, 42, 43],
            nodes: vec![
                node("node-a", 5, 5, false),
                node("node-b", 5, 5, false),
                node("node-c", 0, 5, true),
            ],
        };
        let blocked = &explain(&waiting)[&42];
        assert_eq!(blocked.position, 3);
        assert_eq!(blocked.ahead, vec![40, 41]);
        assert_eq!(blocked.reasons.len(), 2);
        assert_eq!(
            blocked.summary,
            "every node is at its task cap (node-a 5/5, node-b 5/5); \
             task 7 holds concurrency key `deploy:web` and goes first"
        );
    }

    #[test]
    fn a_cluster_with_a_free_slot_holds_nothing_back() {
        let waiting = Waiting {
            tasks: vec![queued(1, 1, None)],
            front: vec![1],
            nodes: vec![node("node-a", 5, 5, false), node("node-b", 1, 5, false)],
        };
        let blocked = &explain(&waiting)[&1];
        assert!(blocked.reasons.is_empty());
        assert!(blocked.ahead.is_empty());
        assert!(blocked.summary.contains("nothing holds it back"));
    }

    #[test]
    fn no_node_up_and_every_node_draining_are_told_apart() {
        let mut waiting = Waiting {
            tasks: vec![queued(1, 1, None)],
            front: vec![1],
            nodes: vec![],
        };
        assert_eq!(explain(&waiting)[&1].summary, "no node is up");
        waiting.nodes = vec![node("node-a", 0, 5, true), node("node-b", 1, 5, true)];
        assert_eq!(
            explain(&waiting)[&1].summary,
            "every node that is up is draining (node-a, node-b)"
        );
    }
}
