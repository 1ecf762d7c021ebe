//! What identifies a server node and bounds how much work it takes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's name: unique in the cluster, shown to operators, used by the CLI.
///
/// 1–63 characters of letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit, so it is safe in a URL, a log line and a Kubernetes pod name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

/// Why a string is not a valid node name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeNameError {
    #[error("a node name cannot be empty")]
    Empty,
    #[error("a node name is at most 63 characters, `{0}` has {1}")]
    TooLong(String, usize),
    #[error(
        "a node name may contain only letters, digits, `-`, `_` and `.` and must start with a letter or digit: `{0}`"
    )]
    BadCharacters(String),
}

impl NodeName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 63;

    /// Checks `name` and wraps it.
    pub fn parse(name: impl Into<String>) -> Result<Self, NodeNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NodeNameError::Empty);
        }
        let len = name.chars().count();
        if len > Self::MAX_LEN {
            return Err(NodeNameError::TooLong(name, len));
        }
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !first_ok || !rest_ok {
            return Err(NodeNameError::BadCharacters(name));
        }
        Ok(Self(name))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NodeName {
    type Error = NodeNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> Self {
        name.0
    }
}

/// How many tasks a node runs at once. 0 makes an API/UI-only node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct TaskCap(u32);

/// Why a number is not a valid task cap.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("task_cap must be between 0 and {max}, got {got}", max = TaskCap::MAX)]
pub struct TaskCapError {
    got: i64,
}

impl TaskCap {
    /// The highest cap accepted: far beyond what one node should run (the reference
    /// sizing tables stop at 160), so this only catches typos.
    pub const MAX: u32 = 1000;
    /// The cap of a node that was never told otherwise.
    pub const DEFAULT: TaskCap = TaskCap(5);

    /// Checks `n` and wraps it.
    pub fn new(n: i64) -> Result<Self, TaskCapError> {
        match u32::try_from(n) {
            Ok(v) if v <= Self::MAX => Ok(Self(v)),
            _ => Err(TaskCapError { got: n }),
        }
    }

    /// The cap as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TaskCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<i64> for TaskCap {
    type Error = TaskCapError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TaskCap> for u32 {
    fn from(cap: TaskCap) -> Self {
        cap.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_the_rules() {
        assert!(NodeName::parse("node-1").is_ok());
        assert!(NodeName::parse("capstan-7f9c.prod_a").is_ok());
        assert_eq!(NodeName::parse(""), Err(NodeNameError::Empty));
        assert!(matches!(
            NodeName::parse("-x"),
            Err(NodeNameError::BadCharacters(_))
        ));
        assert!(matches!(
            NodeName::parse("a b"),
            Err(NodeNameError::BadCharacters(_))
        ));
        assert!(matches!(
            NodeName::parse("a/b"),
            Err(NodeNameError::BadCharacters(_))
        ));
        assert!(matches!(
            NodeName::parse("x".repeat(64)),
            Err(NodeNameError::TooLong(_, 64))
        ));
    }

    #[test]
    fn task_caps_are_bounded() {
        assert_eq!(TaskCap::new(0).unwrap().get(), 0);
        assert_eq!(TaskCap::new(1000).unwrap().get(), 1000);
        assert!(TaskCap::new(1001).is_err());
        assert!(TaskCap::new(-1).is_err());
        assert!(TaskCap::new(i64::MAX).is_err());
        assert_eq!(
            TaskCap::new(-3).unwrap_err().to_string(),
            "task_cap must be between 0 and 1000, got -3"
        );
    }
}
