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
mod log_compaction;
mod log_writer;
mod queueing;
mod supervise;

use capstan_core::TaskState;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub(crate) use claim_loop::run as claim_loop;
pub(crate) use housekeeping::run as housekeeping;
pub use kinds::{TaskKind, TaskKinds, redact};
pub(crate) use leases::{renew as renew_leases, watchdog as lease_watchdog};
pub use log_writer::TaskLog;
pub use queueing::{Audited, queue_many, queue_one, queue_one_audited, queue_one_sending};

use crate::NodeState;

/// Log compactions one node runs at once; each is mostly waiting on the blob store.
const LOG_COMPACTIONS: usize = 4;

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
    outcome: Option<(TaskState, Option<String>)>,
    /// A parked run's time to be claimed again (see [`kinds::Ran::Parked`]).
    parked_until: Option<time::OffsetDateTime>,
    /// The run stored some of the task's log, to be compacted once the outcome is in.
    logged: bool,
}

/// The node's slots: tasks it holds, and slots promised to claims in flight.
#[derive(Default)]
struct Slots {
    tasks: HashMap<i64, Running>,
    /// Slots a claim in flight may fill (the claim loop's, or an API handler's that
    /// queues a task and claims it in the same statement). Counted as taken, so two
    /// claimers on one node can never together exceed its cap.
    reserved: u32,
}

/// The node's task runner, shared by its loops and its API handlers.
pub struct Runner {
    pub kinds: TaskKinds,
    kind_names: Vec<String>,
    state: Arc<NodeState>,
    lease_ttl: Duration,
    running: Mutex<Slots>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    /// Wakes the claim loop now: this node queued tasks, or its cap or drain changed.
    wake: Notify,
    /// Wakes the claim loop shortly: another node queued tasks or released a key.
    wake_for_others: Notify,
    /// When the last lease renewal that succeeded was sent.
    renewed_at: Mutex<Instant>,
    /// Bounds the log compactions running at once on this node.
    log_compactions: Semaphore,
}

impl Runner {
    pub fn new(kinds: TaskKinds, state: Arc<NodeState>, lease_ttl: Duration) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Self {
            kind_names: kinds.names().into_iter().map(str::to_owned).collect(),
            kinds,
            state,
            lease_ttl,
            running: Mutex::new(Slots::default()),
            finished_tx,
            finished_rx: Mutex::new(Some(finished_rx)),
            wake: Notify::new(),
            wake_for_others: Notify::new(),
            renewed_at: Mutex::new(Instant::now()),
            log_compactions: Semaphore::new(LOG_COMPACTIONS),
        }
    }

    /// The kinds this node runs, as the claim statements take them.
    pub fn kind_names(&self) -> &[String] {
        &self.kind_names
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

    /// Tasks holding a slot: running, or finished with their outcome not yet written.
    pub fn held(&self) -> usize {
        self.running.lock().expect("running lock").tasks.len()
    }

    /// Reserves up to `want` free slots for a claim about to run, counting `freeing`
    /// held slots as free (outcomes written by the same statement). Returns how many;
    /// none while the node may not claim.
    pub(crate) fn reserve(&self, want: u32, freeing: usize) -> u32 {
        if self.state.draining() || !self.leases_trusted() {
            return 0;
        }
        let mut slots = self.running.lock().expect("running lock");
        let busy = (slots.tasks.len().saturating_sub(freeing)) as u32 + slots.reserved;
        let granted = want.min(self.state.task_cap().saturating_sub(busy));
        slots.reserved += granted;
        granted
    }

    /// Gives back reserved slots; call after the claimed tasks were started.
    pub(crate) fn unreserve(&self, n: u32) {
        let mut slots = self.running.lock().expect("running lock");
        slots.reserved = slots.reserved.saturating_sub(n);
    }

    /// The (id, attempt) of every task this node holds.
    fn held_attempts(&self) -> Vec<(i64, i32)> {
        self.running
            .lock()
            .expect("running lock")
            .tasks
            .iter()
            .map(|(id, r)| (*id, r.attempt))
            .collect()
    }

    /// Stops a task this node runs because an operator cancelled it. Returns false if
    /// this node does not run it.
    pub fn cancel(&self, id: i64) -> bool {
        self.stop(id, StopReason::Cancelled);
        self.running
            .lock()
            .expect("running lock")
            .tasks
            .contains_key(&id)
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
        let Some(run) = running.tasks.get(&id) else {
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

    /// Takes a slot for a task just claimed (under a reservation).
    fn hold(&self, id: i64, run: Running) {
        let mut running = self.running.lock().expect("running lock");
        running.tasks.insert(id, run);
        self.state.set_running_tasks(running.tasks.len() as u32);
    }

    /// Frees the slot of a task whose outcome is written or that was fenced off.
    fn release(&self, id: i64) {
        let mut running = self.running.lock().expect("running lock");
        running.tasks.remove(&id);
        self.state.set_running_tasks(running.tasks.len() as u32);
    }
}
