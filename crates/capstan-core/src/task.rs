//! What a task is, independent of where it is stored or run: its states, what rescue
//! does when its node is lost, and the arguments of the built-in kinds.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a task is in its life. Only `queued` and `running` can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// True once nothing can change the task any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A string that names no task state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a task state; use queued, running, succeeded, failed or cancelled")]
pub struct UnknownTaskState(pub String);

state_text!(TaskState, UnknownTaskState);

/// What rescue does with a running task whose node stopped renewing its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeLostPolicy {
    /// Fail it, naming the lost node: for work that must not run twice.
    #[default]
    Fail,
    /// Queue it again at its place in line: for idempotent work.
    Requeue,
    /// Queue it again like `requeue`, but the commands it sent to agents go on: the
    /// next attempt adopts them (their outcomes, their output) and sends only what was
    /// never sent. For work on agents that must not run twice on one machine.
    Resume,
}

impl NodeLostPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Requeue => "requeue",
            Self::Resume => "resume",
        }
    }
}

impl fmt::Display for NodeLostPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeLostPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(Self::Fail),
            "requeue" => Ok(Self::Requeue),
            "resume" => Ok(Self::Resume),
            other => Err(format!(
                "`{other}` is not a node-lost policy; use fail, requeue or resume"
            )),
        }
    }
}

/// Tasks sharing a key run one at a time across the cluster, in the order queued.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConcurrencyKey(String);

impl ConcurrencyKey {
    pub const MAX_LEN: usize = 200;

    pub fn parse(key: impl Into<String>) -> Result<Self, String> {
        let key = key.into();
        let len = key.chars().count();
        if len == 0 || len > Self::MAX_LEN {
            return Err(format!(
                "a concurrency key is 1 to {} characters, this one has {len}",
                Self::MAX_LEN
            ));
        }
        if key.chars().any(char::is_control) {
            return Err("a concurrency key cannot contain control characters".to_owned());
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ConcurrencyKey {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<ConcurrencyKey> for String {
    fn from(key: ConcurrencyKey) -> Self {
        key.0
    }
}

/// Arguments of the built-in `sleep` kind: waits, then succeeds or fails. For
/// operators checking a cluster and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds (at most one day).
    #[serde(default)]
    pub ms: u64,
    /// Fail instead of succeeding once the time is up.
    #[serde(default)]
    pub fail: bool,
    /// What rescue does if the node running it is lost.
    #[serde(default)]
    pub on_node_lost: NodeLostPolicy,
    /// Log a line `tick N` every this many milliseconds while sleeping. Without it the
    /// task logs nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_every_ms: Option<u64>,
    /// Pad each tick line to this many bytes of text, to exercise log sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u32>,
}

impl SleepArgs {
    pub const MAX_MS: u64 = 24 * 60 * 60 * 1000;
    /// The longest tick line: as long as a log line may be.
    pub const MAX_LOG_BYTES: u32 = 64 * 1024;

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.ms > Self::MAX_MS {
            return Err(format!(
                "`ms` is at most {} (one day), got {}",
                Self::MAX_MS,
                self.ms
            ));
        }
        match (self.log_every_ms, self.log_bytes) {
            (Some(0), _) => return Err("`log_every_ms` must be at least 1".to_owned()),
            (Some(every), _) if every > Self::MAX_MS => {
                return Err(format!(
                    "`log_every_ms` is at most {} (one day), got {every}",
                    Self::MAX_MS
                ));
            }
            (None, Some(_)) => {
                return Err("`log_bytes` pads tick lines, so it needs `log_every_ms`".to_owned());
            }
            (_, Some(bytes)) if bytes > Self::MAX_LOG_BYTES => {
                return Err(format!(
                    "`log_bytes` is at most {} (the longest log line), got {bytes}",
                    Self::MAX_LOG_BYTES
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_ones_are_named() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
        }
        assert_eq!(
            "done".parse::<TaskState>().unwrap_err().to_string(),
            "`done` is not a task state; use queued, running, succeeded, failed or cancelled"
        );
        assert!(TaskState::Cancelled.is_finished());
        assert!(!TaskState::Running.is_finished());
    }

    #[test]
    fn node_lost_policies_agree_in_text_and_json() {
        for policy in [
            NodeLostPolicy::Fail,
            NodeLostPolicy::Requeue,
            NodeLostPolicy::Resume,
        ] {
            assert_eq!(policy.as_str().parse::<NodeLostPolicy>(), Ok(policy));
            assert_eq!(
                serde_json::to_value(policy).unwrap(),
                serde_json::json!(policy.as_str())
            );
        }
        assert_eq!(
            "retry".parse::<NodeLostPolicy>().unwrap_err(),
            "`retry` is not a node-lost policy; use fail, requeue or resume"
        );
    }

    #[test]
    fn concurrency_keys_are_bounded() {
        assert!(ConcurrencyKey::parse("deploy:web").is_ok());
        assert!(ConcurrencyKey::parse("").is_err());
        assert!(ConcurrencyKey::parse("x".repeat(201)).is_err());
        assert!(ConcurrencyKey::parse("a\nb").is_err());
    }

    #[test]
    fn sleep_args_refuse_too_long_a_sleep() {
        assert!(
            SleepArgs {
                ms: SleepArgs::MAX_MS,
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
        let err = SleepArgs {
            ms: SleepArgs::MAX_MS + 1,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("at most 86400000"), "{err}");
    }

    #[test]
    fn sleep_log_args_are_bounded_and_padding_needs_ticks() {
        let ticking = SleepArgs {
            log_every_ms: Some(100),
            log_bytes: Some(1024),
            ..Default::default()
        };
        assert!(ticking.validate().is_ok());
        let never = SleepArgs {
            log_every_ms: Some(0),
            ..Default::default()
        };
        assert!(never.validate().unwrap_err().contains("at least 1"));
        let padded_only = SleepArgs {
            log_bytes: Some(10),
            ..Default::default()
        };
        assert!(
            padded_only
                .validate()
                .unwrap_err()
                .contains("needs `log_every_ms`")
        );
        let huge = SleepArgs {
            log_every_ms: Some(1),
            log_bytes: Some(SleepArgs::MAX_LOG_BYTES + 1),
            ..Default::default()
        };
        assert!(huge.validate().unwrap_err().contains("at most 65536"));
    }
}
