//! The task resource: `/api/tasks`, one task's attempts, and cancelling.

use capstan_core::{ConcurrencyKey, NodeLostPolicy, TaskState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Blocked;

/// `POST /api/tasks`: queue one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// A registered kind, e.g. `sleep`.
    pub kind: String,
    /// The kind's arguments; each kind says which it accepts.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// Tasks sharing a key run one at a time across the cluster, in the order queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub concurrency_key: Option<ConcurrencyKey>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl CreateTaskRequest {
    pub fn new(kind: &str, args: serde_json::Value) -> Self {
        Self {
            kind: kind.to_owned(),
            args,
            concurrency_key: None,
        }
    }
}

/// `POST /api/tasks/batch`: queue many tasks in one transaction, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTasksRequest {
    #[schema(min_items = 1, max_items = 50_000)]
    pub tasks: Vec<CreateTaskRequest>,
}

/// The ids of a batch, in the order the tasks were given (which is also queue order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateTasksResponse {
    pub ids: Vec<i64>,
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskResponse {
    /// Queue order: a lower id was queued earlier and starts no later.
    pub id: i64,
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub state: TaskState,
    /// What happens if the node running it is lost: `fail`, `requeue` or `resume`.
    #[schema(value_type = String, example = "fail")]
    pub on_node_lost: NodeLostPolicy,
    #[schema(value_type = Option<String>)]
    pub concurrency_key: Option<ConcurrencyKey>,
    /// The node running it, or the one that ran its last attempt.
    pub node_id: Option<Uuid>,
    pub node_name: Option<String>,
    /// How many times it has been claimed; 0 while never started.
    pub attempt: u32,
    /// Cancellation was asked for and the running node has not yet stopped it.
    pub cancel_requested: bool,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-23T11:31:55.123456Z")]
    pub queued_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Set while queued: its place in line and every reason it has not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Blocked>,
}

/// One page of `GET /api/tasks`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskResponse>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// One claim of a task by a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptResponse {
    pub attempt: u32,
    pub node_id: Uuid,
    pub node_name: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// `succeeded`, `failed`, `cancelled`, `lost` (its node stopped renewing the lease),
    /// `parked` (it went back to the queue to wait for an operator), or absent while it
    /// runs.
    pub outcome: Option<String>,
}

/// `GET /api/tasks/{id}/attempts`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub items: Vec<AttemptResponse>,
}

/// Filters and paging of `GET /api/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only tasks on this node (its id or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
