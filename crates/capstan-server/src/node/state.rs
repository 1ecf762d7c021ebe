//! What a node knows about itself, shared by its loops and its handlers.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU32, Ordering},
};

use capstan_api::NodeResponse;
use capstan_db::liveness::{NodeAnnouncement, NodeSettings};
use time::OffsetDateTime;
use uuid::Uuid;

/// The node's live view of itself. Task cap and draining mirror the node's row, which
/// any node may change; the rest is the node's own.
pub struct NodeState {
    pub id: Uuid,
    pub name: String,
    pub version: &'static str,
    pub url: String,
    pub heartbeat_interval: std::time::Duration,
    /// The master key versions this node can decrypt, found at start.
    pub key_versions: Vec<i32>,
    task_cap: AtomicU32,
    draining: AtomicBool,
    /// Set once shutdown begins; from then on the node is draining whatever its row says.
    shutting_down: AtomicBool,
    running_tasks: AtomicU32,
    last_seen: Mutex<OffsetDateTime>,
}

impl NodeState {
    pub(crate) fn new(
        id: Uuid,
        name: String,
        url: String,
        heartbeat_interval: std::time::Duration,
        settings: NodeSettings,
        last_seen: OffsetDateTime,
        key_versions: Vec<i32>,
    ) -> Self {
        Self {
            id,
            name,
            version: crate::VERSION,
            url,
            heartbeat_interval,
            key_versions,
            task_cap: AtomicU32::new(settings.task_cap),
            draining: AtomicBool::new(settings.draining),
            shutting_down: AtomicBool::new(false),
            running_tasks: AtomicU32::new(0),
            last_seen: Mutex::new(last_seen),
        }
    }

    pub fn task_cap(&self) -> u32 {
        self.task_cap.load(Ordering::Relaxed)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.shutting_down()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn running_tasks(&self) -> u32 {
        self.running_tasks.load(Ordering::Relaxed)
    }

    pub(crate) fn set_running_tasks(&self, running: u32) {
        self.running_tasks.store(running, Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> OffsetDateTime {
        *self.last_seen.lock().expect("last_seen lock poisoned")
    }

    pub(crate) fn record_seen(&self, at: OffsetDateTime) {
        *self.last_seen.lock().expect("last_seen lock poisoned") = at;
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Takes on the settings the cluster holds for this node, logging what changed.
    pub(crate) fn apply(&self, settings: NodeSettings) {
        let old_cap = self.task_cap.swap(settings.task_cap, Ordering::Relaxed);
        if old_cap != settings.task_cap {
            tracing::info!(
                node.name = %self.name,
                task_cap = settings.task_cap,
                "task cap changed from {old_cap} to {}",
                settings.task_cap
            );
        }
        let was_draining = self.draining.swap(settings.draining, Ordering::Relaxed);
        if was_draining != settings.draining {
            let now = if settings.draining {
                "draining: no new tasks, ping answers 418"
            } else {
                "no longer draining"
            };
            tracing::info!(node.name = %self.name, draining = settings.draining, "node is {now}");
        }
    }

    /// What the node tells the database about itself.
    pub(crate) fn announcement(&self) -> NodeAnnouncement<'_> {
        NodeAnnouncement {
            id: self.id,
            name: &self.name,
            version: self.version,
            url: &self.url,
            task_cap: self.task_cap(),
            draining: self.draining(),
            running_tasks: self.running_tasks(),
            heartbeat_interval: self.heartbeat_interval,
            key_versions: &self.key_versions,
        }
    }

    /// The node as the API shows it.
    pub fn to_response(&self) -> NodeResponse {
        NodeResponse {
            id: self.id,
            name: self.name.clone(),
            version: self.version.to_owned(),
            url: self.url.clone(),
            task_cap: self.task_cap(),
            draining: self.draining(),
            running_tasks: self.running_tasks(),
            last_seen: self.last_seen(),
            online: !self.shutting_down(),
        }
    }
}
