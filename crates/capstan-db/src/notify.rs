//! What each NOTIFY channel carries, encoded and parsed in one place.
//!
//! Senders in Rust build payloads with `encode`; statements that notify a whole set of
//! rows at once build the same text in SQL (`'mail:' || agent_id`, `'done:' || task_id`,
//! `'queued:' || node_id`, `id::text`), and the tests hold `parse` to exactly what they
//! send. The listener parses every payload; one that does not parse is only a lost hint,
//! since notifications never carry the truth (see [`crate::listen`]).

use std::fmt;

use uuid::Uuid;

/// The NOTIFY channel on which node changes are announced.
pub const NODES_CHANNEL: &str = "capstan_nodes";

/// The NOTIFY channel that wakes claimers and stops cancelled tasks.
pub const TASKS_CHANNEL: &str = "capstan_tasks";

/// The NOTIFY channel of agents' mailboxes and credentials, and of the agent commands
/// a task's run waits on.
pub const AGENTS_CHANNEL: &str = "capstan_agents";

/// The NOTIFY channel of users and API keys: a key that stopped working.
pub const USERS_CHANNEL: &str = "capstan_users";

/// A payload its channel does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{payload}` is not a notification of channel {channel}")]
pub struct UnknownNotice {
    pub channel: String,
    pub payload: String,
}

/// On [`NODES_CHANNEL`]: the node's task cap or draining flag changed. Payload: its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeNotice {
    Changed(Uuid),
}

/// On [`TASKS_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskNotice {
    /// `queued`: tasks may be claimable (finished ones freed a concurrency key, rescue
    /// put some back, a periodic one came due).
    Queued,
    /// `queued:<node id>`: that node queued tasks through its API, and woke its own
    /// claimer already.
    QueuedBy(Uuid),
    /// `cancel:<task id>`: the node running that task must stop it.
    Cancel(i64),
}

/// On [`AGENTS_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentNotice {
    /// `mail:<agent id>`: commands were put in the agent's mailbox or are to be
    /// cancelled.
    Mail(i64),
    /// `revoked:<agent id>`: the agent changed or was deleted; its cached credential and
    /// mailbox are stale.
    Revoked(i64),
    /// `out:<task id>`: an agent sent output of one of the task's commands.
    Output(i64),
    /// `done:<task id>`: one of the task's commands finished.
    Done(i64),
}

/// On [`USERS_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNotice {
    /// `user:<user id>`: the user was disabled, enabled, changed or deleted; its keys'
    /// cached checks are stale.
    Changed(i64),
    /// `key:<api key row id>`: the key was revoked.
    KeyRevoked(i64),
    /// `access`: a role, team, membership or grant changed; every cached grant is
    /// stale. One notice for all users: such changes are rare, and working out whom a
    /// role change touches would cost more than reloading.
    AccessChanged,
}

/// A notification of any channel Capstan listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Node(NodeNotice),
    Task(TaskNotice),
    Agent(AgentNotice),
    User(UserNotice),
}

impl NodeNotice {
    pub fn encode(&self) -> String {
        match self {
            Self::Changed(id) => id.to_string(),
        }
    }

    pub fn parse(payload: &str) -> Result<Self, UnknownNotice> {
        Uuid::parse_str(payload)
            .map(Self::Changed)
            .map_err(|_| unknown(NODES_CHANNEL, payload))
    }
}

impl TaskNotice {
    pub fn encode(&self) -> String {
        match self {
            Self::Queued => "queued".to_owned(),
            Self::QueuedBy(node) => format!("queued:{node}"),
            Self::Cancel(task) => format!("cancel:{task}"),
        }
    }

    pub fn parse(payload: &str) -> Result<Self, UnknownNotice> {
        let parsed = match payload.split_once(':') {
            None if payload == "queued" => Some(Self::Queued),
            Some(("queued", node)) => Uuid::parse_str(node).ok().map(Self::QueuedBy),
            Some(("cancel", task)) => id(task).map(Self::Cancel),
            _ => None,
        };
        parsed.ok_or_else(|| unknown(TASKS_CHANNEL, payload))
    }
}

impl AgentNotice {
    pub fn encode(&self) -> String {
        match self {
            Self::Mail(agent) => format!("mail:{agent}"),
            Self::Revoked(agent) => format!("revoked:{agent}"),
            Self::Output(task) => format!("out:{task}"),
            Self::Done(task) => format!("done:{task}"),
        }
    }

    pub fn parse(payload: &str) -> Result<Self, UnknownNotice> {
        let parsed = payload.split_once(':').and_then(|(kind, rest)| {
            let make = match kind {
                "mail" => Self::Mail,
                "revoked" => Self::Revoked,
                "out" => Self::Output,
                "done" => Self::Done,
                _ => return None,
            };
            id(rest).map(make)
        });
        parsed.ok_or_else(|| unknown(AGENTS_CHANNEL, payload))
    }
}

impl UserNotice {
    pub fn encode(&self) -> String {
        match self {
            Self::Changed(user) => format!("user:{user}"),
            Self::KeyRevoked(key) => format!("key:{key}"),
            Self::AccessChanged => "access".to_owned(),
        }
    }

    pub fn parse(payload: &str) -> Result<Self, UnknownNotice> {
        if payload == "access" {
            return Ok(Self::AccessChanged);
        }
        let parsed = payload.split_once(':').and_then(|(kind, rest)| {
            let make = match kind {
                "user" => Self::Changed,
                "key" => Self::KeyRevoked,
                _ => return None,
            };
            id(rest).map(make)
        });
        parsed.ok_or_else(|| unknown(USERS_CHANNEL, payload))
    }
}

impl Notice {
    /// Every channel a node listens on.
    pub const CHANNELS: [&'static str; 4] =
        [NODES_CHANNEL, TASKS_CHANNEL, AGENTS_CHANNEL, USERS_CHANNEL];

    pub fn channel(&self) -> &'static str {
        match self {
            Self::Node(_) => NODES_CHANNEL,
            Self::Task(_) => TASKS_CHANNEL,
            Self::Agent(_) => AGENTS_CHANNEL,
            Self::User(_) => USERS_CHANNEL,
        }
    }

    pub fn encode(&self) -> String {
        match self {
            Self::Node(notice) => notice.encode(),
            Self::Task(notice) => notice.encode(),
            Self::Agent(notice) => notice.encode(),
            Self::User(notice) => notice.encode(),
        }
    }

    pub fn parse(channel: &str, payload: &str) -> Result<Self, UnknownNotice> {
        match channel {
            NODES_CHANNEL => NodeNotice::parse(payload).map(Self::Node),
            TASKS_CHANNEL => TaskNotice::parse(payload).map(Self::Task),
            AGENTS_CHANNEL => AgentNotice::parse(payload).map(Self::Agent),
            USERS_CHANNEL => UserNotice::parse(payload).map(Self::User),
            other => Err(unknown(other, payload)),
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.encode(), self.channel())
    }
}

/// Ids as SQL's `bigint::text` writes them: decimal, no sign for positives, no padding.
fn id(text: &str) -> Option<i64> {
    text.parse().ok().filter(|n: &i64| n.to_string() == text)
}

fn unknown(channel: &str, payload: &str) -> UnknownNotice {
    UnknownNotice {
        channel: channel.to_owned(),
        payload: payload.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "0191d6a4-3c1e-7a2b-9f00-5e6d7c8b9a01";

    fn round_trips(notice: Notice, payload: &str) {
        assert_eq!(notice.encode(), payload);
        assert_eq!(Notice::parse(notice.channel(), payload), Ok(notice));
    }

    #[test]
    fn node_changes_round_trip() {
        let id = Uuid::parse_str(NODE).unwrap();
        round_trips(Notice::Node(NodeNotice::Changed(id)), NODE);
    }

    #[test]
    fn task_notices_round_trip() {
        let id = Uuid::parse_str(NODE).unwrap();
        round_trips(Notice::Task(TaskNotice::Queued), "queued");
        round_trips(
            Notice::Task(TaskNotice::QueuedBy(id)),
            &format!("queued:{NODE}"),
        );
        round_trips(Notice::Task(TaskNotice::Cancel(42)), "cancel:42");
    }

    #[test]
    fn agent_notices_round_trip() {
        round_trips(Notice::Agent(AgentNotice::Mail(7)), "mail:7");
        round_trips(Notice::Agent(AgentNotice::Revoked(7)), "revoked:7");
        round_trips(Notice::Agent(AgentNotice::Output(9)), "out:9");
        round_trips(Notice::Agent(AgentNotice::Done(9)), "done:9");
    }

    #[test]
    fn user_notices_round_trip() {
        round_trips(Notice::User(UserNotice::Changed(3)), "user:3");
        round_trips(Notice::User(UserNotice::KeyRevoked(12)), "key:12");
        round_trips(Notice::User(UserNotice::AccessChanged), "access");
    }

    #[test]
    fn payloads_a_channel_does_not_define_are_refused() {
        for (channel, payload) in [
            (NODES_CHANNEL, "not-a-uuid"),
            (NODES_CHANNEL, ""),
            (TASKS_CHANNEL, "queued:"),
            (TASKS_CHANNEL, "queued:web-1"),
            (TASKS_CHANNEL, "cancel:x"),
            (TASKS_CHANNEL, "cancel:+4"),
            (TASKS_CHANNEL, "claimed:4"),
            (TASKS_CHANNEL, "mail:4"),
            (AGENTS_CHANNEL, "mail"),
            (AGENTS_CHANNEL, "mail:"),
            (AGENTS_CHANNEL, "mail:007"),
            (AGENTS_CHANNEL, "done:1:2"),
            (AGENTS_CHANNEL, "cancel:4"),
            (USERS_CHANNEL, "user:"),
            (USERS_CHANNEL, "key:x"),
            (USERS_CHANNEL, "access:1"),
            (USERS_CHANNEL, "mail:4"),
            ("capstan_other", "queued"),
        ] {
            let err = Notice::parse(channel, payload).unwrap_err();
            assert_eq!(err.channel, channel);
            assert_eq!(err.payload, payload);
        }
        assert_eq!(
            TaskNotice::parse("claimed:4").unwrap_err().to_string(),
            "`claimed:4` is not a notification of channel capstan_tasks"
        );
    }
}
