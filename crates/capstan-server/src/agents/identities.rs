//! Credentials this node has checked, so a poll costs no query. A revocation (delete,
//! disable, any change) is announced on the agents channel and drops the entry at once.

use std::{collections::HashMap, sync::Mutex};

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: i64,
    pub name: String,
    pub disabled: bool,
}

#[derive(Default)]
pub struct Identities {
    by_digest: Mutex<HashMap<[u8; 32], Identity>>,
}

impl Identities {
    pub fn get(&self, digest: &[u8; 32]) -> Option<Identity> {
        self.lock().get(digest).cloned()
    }

    pub fn remember(&self, digest: [u8; 32], identity: Identity) {
        self.lock().insert(digest, identity);
    }

    pub fn forget(&self, agent_id: i64) {
        self.lock().retain(|_, identity| identity.id != agent_id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Identity>> {
        self.by_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
