//! The task runner: claims tasks up to the node's cap, runs them, writes their
//! outcomes under their fencing token, renews their leases, and stops them when it
//! must (cancelled, or the lease can no longer be trusted).
//!
//! A slot stays taken until the outcome of its run is committed, so the attempts in the
//! database never show a node running more than its cap, even for a moment.

mod claim_loop;
mod housekeeping;
pub mod kinds;
mod leases;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub(crate) use claim_loop::run as claim_loop;
pub(crate) use housekeeping::run as housekeeping;
pub use kinds::{TaskKind, TaskKinds};
pub(crate) use leases::{renew as renew_leases, watchdog as lease_watchdog};

use crate::NodeState;

/// Why a run was stopped before it finished.
#[derive(Debug, Clone)]
enum StopReason {
    /// An operator cancelled the task.
    Cancelled,
    /// The node no longer holds the lease: write nothing, just let go.
    Fenced(String),
}

/// A task this node holds a slot for.
struct Running {
    attempt: i32,
    stop: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

/// A run that ended, on its way to the claim loop.
#[derive(Debug)]
struct Finished {
    id: i64,
    attempt: i32,
    kind: String,
    /// `None` when the run was fenced off: there is nothing it may write.
    outcome: Option<(&'static str, Option<String>)>,
}

/// The node's task runner, shared by its loops and its API handlers.
pub struct Runner {
    pub kinds: TaskKinds,
    state: Arc<NodeState>,
    lease_ttl: Duration,
    running: Mutex<HashMap<i64, Running>>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    /// Wakes the claim loop now: this node queued tasks, or its cap or drain changed.
    wake: Notify,
    /// Wakes the claim loop shortly: another node queued tasks or released a key.
    wake_for_others: Notify,
    /// When the last lease renewal that succeeded was sent.
    renewed_at: Mutex<Instant>,
}

impl Runner {
    pub fn new(kinds: TaskKinds, state: Arc<NodeState>, lease_ttl: Duration) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Self {
            kinds,
            state,
            lease_ttl,
            running: Mutex::new(HashMap::new()),
            finished_tx,
            finished_rx: Mutex::new(Some(finished_rx)),
            wake: Notify::new(),
            wake_for_others: Notify::new(),
            renewed_at: Mutex::new(Instant::now()),
        }
    }

    /// The lease a claim takes and a renewal extends.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Asks the claim loop to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks the claim loop to look for work soon: within [`claim_loop::OTHERS_DELAY`],
    /// or at its next cycle if that comes first. Under load one claim then answers many
    /// notifications, instead of every node racing for every task.
    pub fn wake_for_others(&self) {
        self.wake_for_others.notify_one();
    }

    /// True if the node takes tasks and has a slot free right now.
    pub fn has_free_slot(&self) -> bool {
        !self.state.draining()
            && self.leases_trusted()
            && (self.held() as u32) < self.state.task_cap()
    }

    /// Tasks holding a slot: running, or finished with their outcome not yet written.
    pub fn held(&self) -> usize {
        self.running.lock().expect("running lock").len()
    }

    /// The (id, attempt) of every task this node holds.
    fn held_attempts(&self) -> Vec<(i64, i32)> {
        self.running
            .lock()
            .expect("running lock")
            .iter()
            .map(|(id, r)| (*id, r.attempt))
            .collect()
    }

    /// Stops a task this node runs because an operator cancelled it. Returns false if
    /// this node does not run it.
    pub fn cancel(&self, id: i64) -> bool {
        self.stop(id, StopReason::Cancelled);
        self.running.lock().expect("running lock").contains_key(&id)
    }

    /// Stops every run without writing its outcome; the caller hands the tasks back.
    pub(crate) fn abandon_all(&self, why: &str) -> usize {
        let held = self.held_attempts();
        for (id, _) in &held {
            self.stop(*id, StopReason::Fenced(why.to_owned()));
        }
        held.len()
    }

    /// Stops a run for `reason`. True if it was running and not stopped before.
    fn stop(&self, id: i64, reason: StopReason) -> bool {
        let running = self.running.lock().expect("running lock");
        let Some(run) = running.get(&id) else {
            return false;
        };
        let first = !run.stop.is_cancelled();
        let mut slot = run.reason.lock().expect("reason lock");
        // Fencing wins over cancelling: a fenced run may not even write "cancelled".
        if slot.is_none() || matches!(reason, StopReason::Fenced(_)) {
            *slot = Some(reason);
        }
        run.stop.cancel();
        first
    }

    /// How long ago the last successful renewal was sent. The database extended every
    /// lease to at least that moment plus the TTL.
    fn since_renewal(&self) -> Duration {
        self.renewed_at.lock().expect("renewed_at lock").elapsed()
    }

    /// Leases are trusted until one heartbeat before they could expire: a node that has
    /// not renewed by then stops its work and claims nothing new.
    fn fence_after(&self) -> Duration {
        self.lease_ttl.saturating_sub(self.state.heartbeat_interval)
    }

    fn leases_trusted(&self) -> bool {
        self.since_renewal() < self.fence_after()
    }

    fn record_renewal(&self, sent: Instant) {
        let mut renewed = self.renewed_at.lock().expect("renewed_at lock");
        if sent > *renewed {
            *renewed = sent;
        }
    }

    fn release(&self, id: i64) {
        let mut running = self.running.lock().expect("running lock");
        running.remove(&id);
        self.state.set_running_tasks(running.len() as u32);
    }
}
