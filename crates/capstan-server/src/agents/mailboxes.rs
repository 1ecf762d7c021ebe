//! What this node knows of agents' mailboxes, and a wake-up per agent.
//!
//! A mailbox's content is known once a query found it empty and no notification for
//! that agent arrived since the query began; any notification (a command sent, a
//! cancel, a revocation) or a LISTEN reconnect forgets it. So an idle agent's polls
//! cost no query, and a node never sleeps on a mailbox that has work.
//!
//! A command sent by a task running on this node keeps the content known: the task
//! hands the committed commands over, and a poll waiting here answers with them at
//! once, without reading them back from PostgreSQL. The NOTIFY of that same insert,
//! expected since before the insert, says nothing new and is let pass. Notifications
//! name only the agent, so another node's that arrives first is taken for this one's
//! and this one's for the other's: the mailbox is then believed known only until this
//! node's own NOTIFY arrives, moments later, and is forgotten then.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use capstan_db::mailbox::Delivery;
use tokio::sync::watch;

struct Entry {
    changes: watch::Sender<u64>,
    /// The change count at which this node knows the mailbox holds exactly `parcel`
    /// (nothing, when a query found it empty).
    known_at: Option<u64>,
    /// Commands handed over since the mailbox was known empty.
    parcel: Vec<Delivery>,
    /// Running commands the mailbox asks to cancel, as the query that made it known
    /// found them: an agent that holds them all has nothing to learn from them.
    cancels: Vec<i64>,
    /// Sends by this node whose NOTIFY has not come back yet.
    expected: u32,
}

impl Entry {
    fn forget(&mut self) {
        self.known_at = None;
        self.parcel.clear();
        self.cancels.clear();
        self.changes.send_modify(|n| *n += 1);
    }
}

#[derive(Default)]
pub struct Mailboxes {
    entries: Mutex<HashMap<i64, Entry>>,
}

/// What a poll can tell without asking the database.
#[derive(Debug, Default)]
pub enum Contents {
    /// Ask the database.
    #[default]
    Unknown,
    Empty,
    /// The commands handed over by a task on this node: the whole mailbox.
    Handed(Vec<Delivery>),
}

/// A poll's view of one mailbox, taken before it looks at the database.
pub struct Ticket {
    pub agent_id: i64,
    pub contents: Contents,
    /// The cancels of a mailbox known [`Contents::Empty`].
    pub cancels: Vec<i64>,
    seen: u64,
    changes: watch::Receiver<u64>,
}

impl Ticket {
    /// Waits until the mailbox may have changed since the ticket was taken.
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            // The entry is gone only with the node; wait for the poll's deadline.
            std::future::pending::<()>().await;
        }
    }
}

impl Mailboxes {
    /// Takes a ticket; handed-over commands go with it, so only one poll answers them.
    pub fn ticket(&self, agent_id: i64) -> Ticket {
        let mut entries = self.lock();
        let entry = entries.entry(agent_id).or_insert_with(|| Entry {
            changes: watch::Sender::new(0),
            known_at: None,
            parcel: Vec::new(),
            cancels: Vec::new(),
            expected: 0,
        });
        let seen = *entry.changes.borrow();
        let contents = if entry.known_at != Some(seen) {
            Contents::Unknown
        } else if entry.parcel.is_empty() {
            Contents::Empty
        } else {
            // Delivered, not yet acknowledged: from now on only the database knows.
            entry.known_at = None;
            Contents::Handed(std::mem::take(&mut entry.parcel))
        };
        Ticket {
            agent_id,
            cancels: entry.cancels.clone(),
            contents,
            seen,
            changes: entry.changes.subscribe(),
        }
    }

    /// A query begun with `ticket` found no command to hand over, and `cancels`.
    pub fn found_empty(&self, ticket: &Ticket, cancels: Vec<i64>) {
        if let Some(entry) = self.lock().get_mut(&ticket.agent_id) {
            if *entry.changes.borrow() == ticket.seen {
                entry.known_at = Some(ticket.seen);
                entry.parcel.clear();
                entry.cancels = cancels;
            }
        }
    }

    /// The agent's mailbox may have changed: wake its poll.
    pub fn changed(&self, agent_id: i64) {
        if let Some(entry) = self.lock().get_mut(&agent_id) {
            entry.forget();
        }
    }

    /// A `mail:<agent>` notification: forgets what is known of the mailbox, unless it is
    /// the echo of a send by this node, which hands its commands over itself.
    pub fn notified(&self, agent_id: i64) {
        if let Some(entry) = self.lock().get_mut(&agent_id) {
            if entry.expected > 0 {
                entry.expected -= 1;
            } else {
                entry.forget();
            }
        }
    }

    /// This node is about to put commands in these agents' mailboxes: the guard
    /// hands them over once committed, and forgets the mailboxes if it is dropped
    /// instead (the send failed, or the run stopped).
    pub fn sending(self: &Arc<Self>, agents: impl IntoIterator<Item = i64>) -> Sending {
        // One NOTIFY per agent, however many commands it gets.
        let agents: HashSet<i64> = agents.into_iter().collect();
        let mut entries = self.lock();
        let mut expecting = Vec::new();
        for agent_id in agents {
            if let Some(entry) = entries.get_mut(&agent_id) {
                entry.expected += 1;
                expecting.push(agent_id);
            }
        }
        Sending {
            boxes: self.clone(),
            expecting,
            handed: false,
        }
    }

    /// Forgets every mailbox's state and wakes every poll.
    pub fn reset(&self) {
        for entry in self.lock().values_mut() {
            entry.expected = 0;
            entry.forget();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Commands on their way into mailboxes, from [`Mailboxes::sending`].
/// Owned, so a task run can carry it from the statement that sent the commands to the
/// moment it takes them in hand.
pub struct Sending {
    boxes: Arc<Mailboxes>,
    /// The agents polling this node, whose entries expect the send's NOTIFY.
    expecting: Vec<i64>,
    handed: bool,
}

impl Sending {
    /// The commands are committed, each with its agent: wake their polls and, where
    /// the rest of the mailbox is known, let them answer with the commands.
    pub fn handed_over(mut self, commands: Vec<(i64, Delivery)>) {
        self.handed = true;
        let mut entries = self.boxes.lock();
        for (agent_id, command) in commands {
            let Some(entry) = entries.get_mut(&agent_id) else {
                continue;
            };
            let now = *entry.changes.borrow();
            if entry.known_at != Some(now) {
                entry.forget();
                continue;
            }
            entry.parcel.push(command);
            entry.known_at = Some(now + 1);
            entry.changes.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        // Maybe committed, maybe not: a NOTIFY may or may not come. Expect none and
        // let the database answer.
        let mut entries = self.boxes.lock();
        for agent_id in &self.expecting {
            if let Some(entry) = entries.get_mut(agent_id) {
                entry.expected = entry.expected.saturating_sub(1);
                entry.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn command(id: i64) -> Delivery {
        Delivery {
            id,
            task_id: 1,
            body: Some(serde_json::json!({"kind": "script"})),
            timeout_ms: 1000,
            cancel: false,
        }
    }

    fn ids(contents: &Contents) -> Option<Vec<i64>> {
        match contents {
            Contents::Handed(parcel) => Some(parcel.iter().map(|d| d.id).collect()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_change_during_the_query_keeps_the_mailbox_unknown() {
        let boxes = Arc::new(Mailboxes::default());
        let ticket = boxes.ticket(7);
        assert!(matches!(ticket.contents, Contents::Unknown));
        boxes.changed(7);
        boxes.found_empty(&ticket, Vec::new());
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));

        let mut ticket = boxes.ticket(7);
        boxes.found_empty(&ticket, Vec::new());
        assert!(matches!(boxes.ticket(7).contents, Contents::Empty));
        boxes.changed(7);
        tokio::time::timeout(Duration::from_secs(1), ticket.changed())
            .await
            .unwrap();
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));

        let ticket = boxes.ticket(7);
        boxes.found_empty(&ticket, Vec::new());
        boxes.reset();
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    /// Sends `commands` (agent 7) as the runner does, the echo of its NOTIFY after.
    fn send(boxes: &Arc<Mailboxes>, commands: &[i64]) {
        let sending = boxes.sending(commands.iter().map(|_| 7));
        sending.handed_over(commands.iter().map(|&id| (7, command(id))).collect());
        boxes.notified(7);
    }

    fn known_empty(boxes: &Mailboxes) {
        let ticket = boxes.ticket(7);
        boxes.found_empty(&ticket, Vec::new());
        assert!(matches!(boxes.ticket(7).contents, Contents::Empty));
    }

    #[tokio::test]
    async fn commands_handed_over_to_a_known_mailbox_are_answered_once() {
        let boxes = Arc::new(Mailboxes::default());
        let mut waiting = boxes.ticket(7);
        boxes.found_empty(&waiting, Vec::new());
        send(&boxes, &[1]);
        send(&boxes, &[2, 3]);
        tokio::time::timeout(Duration::from_secs(1), waiting.changed())
            .await
            .unwrap();
        assert_eq!(ids(&boxes.ticket(7).contents), Some(vec![1, 2, 3]));
        // The commands are in the mailbox until acknowledged: ask the database.
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn the_echo_may_come_before_the_hand_over() {
        let boxes = Arc::new(Mailboxes::default());
        known_empty(&boxes);
        let sending = boxes.sending([7]);
        boxes.notified(7);
        assert!(matches!(boxes.ticket(7).contents, Contents::Empty));
        sending.handed_over(vec![(7, command(1))]);
        assert_eq!(ids(&boxes.ticket(7).contents), Some(vec![1]));
    }

    #[test]
    fn another_nodes_notification_is_believed_only_until_the_echo() {
        let boxes = Arc::new(Mailboxes::default());
        known_empty(&boxes);
        let sending = boxes.sending([7]);
        boxes.notified(7); // another node's, taken for the echo
        sending.handed_over(vec![(7, command(1))]);
        boxes.notified(7); // the echo, taken for another node's
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn one_send_of_several_commands_to_an_agent_expects_one_echo() {
        let boxes = Arc::new(Mailboxes::default());
        known_empty(&boxes);
        let sending = boxes.sending([7, 7]);
        sending.handed_over(vec![(7, command(1)), (7, command(2))]);
        boxes.notified(7); // the echo: one per agent and statement
        boxes.notified(7); // something else
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn a_send_that_never_hands_over_forgets_and_expects_nothing() {
        let boxes = Arc::new(Mailboxes::default());
        known_empty(&boxes);
        drop(boxes.sending([7]));
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
        known_empty(&boxes);
        boxes.notified(7);
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));

        known_empty(&boxes);
        let _lost = boxes.sending([7]);
        boxes.reset();
        known_empty(&boxes);
        boxes.notified(7);
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn a_hand_over_to_an_unknown_mailbox_only_wakes() {
        let boxes = Arc::new(Mailboxes::default());
        // Never polled here: nothing is kept.
        send(&boxes, &[1]);
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
        // Polled, not known empty.
        send(&boxes, &[2]);
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn a_notification_before_the_answer_drops_the_parcel() {
        let boxes = Arc::new(Mailboxes::default());
        known_empty(&boxes);
        send(&boxes, &[1]);
        // A cancel, or a command from another node: the parcel is no longer all.
        boxes.notified(7);
        assert!(matches!(boxes.ticket(7).contents, Contents::Unknown));
    }

    #[test]
    fn an_empty_answer_after_a_hand_over_does_not_drop_it() {
        let boxes = Arc::new(Mailboxes::default());
        let ticket = boxes.ticket(7);
        boxes.found_empty(&ticket, Vec::new());
        // A stale report of an empty mailbox, from before the hand-over.
        let late = boxes.ticket(7);
        send(&boxes, &[1]);
        boxes.found_empty(&late, Vec::new());
        assert_eq!(ids(&boxes.ticket(7).contents), Some(vec![1]));
    }

    #[test]
    fn cancels_found_with_the_mailbox_are_known_until_it_changes() {
        let boxes = Arc::new(Mailboxes::default());
        let ticket = boxes.ticket(7);
        boxes.found_empty(&ticket, vec![3]);
        let ticket = boxes.ticket(7);
        assert!(matches!(ticket.contents, Contents::Empty));
        assert_eq!(ticket.cancels, [3]);
        boxes.changed(7);
        let ticket = boxes.ticket(7);
        assert!(matches!(ticket.contents, Contents::Unknown));
        assert!(ticket.cancels.is_empty());
    }
}
