//! Where a command sent to an agent stands, independent of where it is stored.

use serde::{Deserialize, Serialize};

/// The life of one command in an agent's mailbox. `pending`, `delivered` and `running`
/// can still change; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Pending,
    Delivered,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl CommandState {
    pub const ALL: [CommandState; 7] = [
        Self::Pending,
        Self::Delivered,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// True while the agent may still run it or report on it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Delivered | Self::Running)
    }

    /// For sentences: `timed out` rather than `timed_out`.
    pub fn in_words(self) -> &'static str {
        match self {
            Self::TimedOut => "timed out",
            other => other.as_str(),
        }
    }
}

/// A string that names no command state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a command state; use pending, delivered, running, succeeded, failed, \
     timed_out or cancelled"
)]
pub struct UnknownCommandState(pub String);

state_text!(CommandState, UnknownCommandState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_as_text_and_json() {
        for state in CommandState::ALL {
            assert_eq!(state.as_str().parse::<CommandState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().to_owned())
            );
        }
        assert_eq!(CommandState::TimedOut.in_words(), "timed out");
    }

    #[test]
    fn an_unknown_state_is_an_error_not_a_failure() {
        let err = "exploded".parse::<CommandState>().unwrap_err();
        assert_eq!(err, UnknownCommandState("exploded".to_owned()));
        assert!(
            err.to_string()
                .starts_with("`exploded` is not a command state")
        );
        assert!("Failed".parse::<CommandState>().is_err());
        assert!(CommandState::try_from(String::new()).is_err());
    }

    #[test]
    fn only_unfinished_states_are_open() {
        let open: Vec<_> = CommandState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(
            open,
            [
                CommandState::Pending,
                CommandState::Delivered,
                CommandState::Running
            ]
        );
    }
}
