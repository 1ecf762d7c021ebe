//! The node resource: `/api/nodes`, `/api/nodes/{id}` and `/api/nodes/ping`.

use capstan_core::TaskCap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A server node as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeResponse {
    /// Stable for the life of the node's name: a restart keeps it.
    pub id: Uuid,
    pub name: String,
    /// The Capstan version the node runs.
    pub version: String,
    /// Where the node itself can be reached (not the load balancer's address).
    pub url: String,
    pub task_cap: u32,
    pub draining: bool,
    pub running_tasks: u32,
    /// The node's last heartbeat.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: OffsetDateTime,
    /// Seen within three of its own heartbeat intervals and not stopped.
    pub online: bool,
}

/// `PATCH /api/nodes/{id}`: change a node's task cap, draining flag, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNodeRequest {
    /// Tasks the node runs at once; 0 makes an API/UI-only node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 1000)]
    pub task_cap: Option<TaskCap>,
    /// True to stop the node taking tasks and traffic (ping 418).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
}

impl UpdateNodeRequest {
    /// True when the request would change nothing.
    pub fn is_empty(&self) -> bool {
        self.task_cap.is_none() && self.draining.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_refuses_unknown_fields_and_bad_caps() {
        let err = serde_json::from_str::<UpdateNodeRequest>(r#"{"taskcap": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `taskcap`"), "{err}");
        let err = serde_json::from_str::<UpdateNodeRequest>(r#"{"task_cap": 5000}"#).unwrap_err();
        assert!(err.to_string().contains("between 0 and 1000"), "{err}");
        let ok: UpdateNodeRequest = serde_json::from_str(r#"{"draining": true}"#).unwrap();
        assert_eq!(ok.draining, Some(true));
    }
}
