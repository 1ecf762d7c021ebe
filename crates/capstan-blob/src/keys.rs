//! Where each kind of blob lives. Every upload gets a fresh key, so a replaced or
//! half-written blob never overwrites one that a database row points to.

use uuid::Uuid;

/// A package version's content.
pub fn package(id: &str, version: &str) -> String {
    format!("packages/{id}/{version}/{}", Uuid::new_v4())
}

/// A task artifact's content.
pub fn artifact(task_id: i64, name: &str) -> String {
    format!("artifacts/{task_id}/{name}/{}", Uuid::new_v4())
}
