//! Which agents' mailboxes this node knows to be empty, and a wake-up per agent.
//!
//! A mailbox is known empty once a query found nothing in it and no notification for
//! that agent arrived since the query began; any notification (a command sent, a
//! cancel, a revocation) or a LISTEN reconnect forgets that. So an idle agent's polls
//! cost no query, and a node never sleeps on a mailbox that has work.

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

struct Entry {
    changes: watch::Sender<u64>,
    /// The change count at which a query found the mailbox empty.
    empty_at: Option<u64>,
}

#[derive(Default)]
pub struct Mailboxes {
    entries: Mutex<HashMap<i64, Entry>>,
}

/// A poll's view of one mailbox, taken before it looks at the database.
pub struct Ticket {
    pub agent_id: i64,
    pub known_empty: bool,
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
    pub fn ticket(&self, agent_id: i64) -> Ticket {
        let mut entries = self.lock();
        let entry = entries.entry(agent_id).or_insert_with(|| Entry {
            changes: watch::Sender::new(0),
            empty_at: None,
        });
        let seen = *entry.changes.borrow();
        Ticket {
            agent_id,
            known_empty: entry.empty_at == Some(seen),
            seen,
            changes: entry.changes.subscribe(),
        }
    }

    /// A query begun with `ticket` found nothing.
    pub fn found_empty(&self, ticket: &Ticket) {
        if let Some(entry) = self.lock().get_mut(&ticket.agent_id) {
            if *entry.changes.borrow() == ticket.seen {
                entry.empty_at = Some(ticket.seen);
            }
        }
    }

    /// The agent's mailbox may have changed: wake its poll.
    pub fn changed(&self, agent_id: i64) {
        if let Some(entry) = self.lock().get_mut(&agent_id) {
            entry.empty_at = None;
            entry.changes.send_modify(|n| *n += 1);
        }
    }

    /// Forgets every mailbox's state and wakes every poll.
    pub fn reset(&self) {
        for entry in self.lock().values_mut() {
            entry.empty_at = None;
            entry.changes.send_modify(|n| *n += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_during_the_query_keeps_the_mailbox_unknown() {
        let boxes = Mailboxes::default();
        let ticket = boxes.ticket(7);
        assert!(!ticket.known_empty);
        boxes.changed(7);
        boxes.found_empty(&ticket);
        assert!(!boxes.ticket(7).known_empty);

        let mut ticket = boxes.ticket(7);
        boxes.found_empty(&ticket);
        assert!(boxes.ticket(7).known_empty);
        boxes.changed(7);
        tokio::time::timeout(std::time::Duration::from_secs(1), ticket.changed())
            .await
            .unwrap();
        assert!(!boxes.ticket(7).known_empty);

        let ticket = boxes.ticket(7);
        boxes.found_empty(&ticket);
        boxes.reset();
        assert!(!boxes.ticket(7).known_empty);
    }
}
