//! Agents that polled this node since the last heartbeat, written in one statement
//! per heartbeat instead of one per poll.

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct SeenAgents {
    versions: Mutex<HashMap<i64, String>>,
}

impl SeenAgents {
    pub fn saw(&self, agent_id: i64, version: &str) {
        let mut versions = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match versions.get_mut(&agent_id) {
            Some(known) if known == version => {}
            Some(known) => *known = version.to_owned(),
            None => {
                versions.insert(agent_id, version.to_owned());
            }
        }
    }

    /// Takes what was seen since the last call: ids and versions.
    pub fn take(&self) -> (Vec<i64>, Vec<String>) {
        let taken = std::mem::take(
            &mut *self
                .versions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        taken.into_iter().unzip()
    }

    /// Puts back what could not be written, unless seen again meanwhile.
    pub fn restore(&self, ids: Vec<i64>, versions: Vec<String>) {
        let mut current = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, version) in ids.into_iter().zip(versions) {
            current.entry(id).or_insert(version);
        }
    }
}
