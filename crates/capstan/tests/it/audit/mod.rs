//! The audit log: one row per change, in the change's own transaction, naming who,
//! how, from where, and the object before and after; never a secret; kept for the
//! retention, then archived to the blob store by day.

mod access_changes;
mod actions;
mod addresses;
mod deployments;
mod list;
mod retention;
mod secrets;

use capstan_testkit::ADMIN_KEY;
use serde_json::Value;

pub(crate) use crate::identity::call;

/// Every row with an id above `after`, oldest first.
pub(crate) async fn rows_after(node: &str, after: i64) -> Vec<Value> {
    let (status, page) = call(node, ADMIN_KEY, "GET", "/api/audit?limit=500", None).await;
    assert_eq!(status, 200, "{page}");
    let mut rows: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["id"].as_i64().unwrap() > after)
        .cloned()
        .collect();
    rows.reverse();
    rows
}

/// The rows written since the last call, which must be exactly one of `action`.
pub(crate) struct Trail {
    node: String,
    pub(crate) seen: i64,
}

impl Trail {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            seen: 0,
        }
    }

    /// The one new row, which must be `action`.
    pub(crate) async fn one(&mut self, action: &str) -> Value {
        let rows = self.take().await;
        assert_eq!(
            rows.len(),
            1,
            "expected one row of {action}, found {}: {rows:#?}",
            rows.len()
        );
        assert_eq!(rows[0]["action"], action, "{:#}", rows[0]);
        rows[0].clone()
    }

    /// Asserts nothing was recorded since the last look.
    pub(crate) async fn none(&mut self, what: &str) {
        let rows = self.take().await;
        assert!(rows.is_empty(), "{what} recorded {rows:#?}");
    }

    /// Skips what was recorded so far.
    pub(crate) async fn take_all(&mut self) {
        self.take().await;
    }

    async fn take(&mut self) -> Vec<Value> {
        let rows = rows_after(&self.node, self.seen).await;
        if let Some(last) = rows.last() {
            self.seen = last["id"].as_i64().unwrap();
        }
        rows
    }
}
