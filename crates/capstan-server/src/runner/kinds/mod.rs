//! The registry of task kinds. Each kind validates its arguments when a task is
//! queued, declares what rescue does if its node is lost, and runs a claimed task.
//! Later features (deployments, health checks, retention of blobs) plug in here.

mod agent_work;
mod blob_retention;
mod deploy;
mod health_check;
pub mod master_key_rotation;
mod retention;
pub mod script;
mod sleep;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use capstan_core::NodeLostPolicy;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use agent_work::SentWithClaim;
pub use blob_retention::{BLOB_RETENTION, BlobRetention};
pub use health_check::{HEALTH_CHECK, HealthCheck};
pub use master_key_rotation::{MASTER_KEY_ROTATION, MasterKeyRotation};
pub use retention::{TASK_HISTORY_RETENTION, TaskHistoryRetention};

use crate::node::NodeContext;

/// A task's arguments after its kind checked them.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The arguments as stored: normalised, defaults filled in.
    pub args: serde_json::Value,
    pub on_node_lost: NodeLostPolicy,
}

/// One claimed attempt of a task, handed to its kind to run.
pub struct TaskRun {
    pub ctx: Arc<NodeContext>,
    pub id: i64,
    pub attempt: i32,
    pub args: serde_json::Value,
    /// Cancelled when the run must stop: the task was cancelled, or the node lost its
    /// lease. The runner also drops the run's future, so awaiting this is only needed
    /// for work that must clean up.
    pub stop: CancellationToken,
    /// The task's log, which operators read with `capstan tasks logs`.
    pub log: super::TaskLog,
    /// Commands the statement that claimed the task already sent, if any.
    pub sent: Option<SentWithClaim>,
    /// Why `stop` was cancelled, once it was.
    pub cause: StopCause,
}

/// Why a run was stopped, for cleanup that runs as the run is dropped: the reason is
/// set before `stop` is cancelled, so a dropped run always finds it.
#[derive(Debug, Clone)]
pub struct StopCause(Arc<Mutex<Option<super::StopReason>>>);

impl StopCause {
    pub(super) fn new(reason: Arc<Mutex<Option<super::StopReason>>>) -> Self {
        Self(reason)
    }

    /// True when the run lost its lease (or its node handed it back): what it started
    /// is no longer its to end, but the next attempt's, or rescue's.
    pub fn fenced(&self) -> bool {
        matches!(
            *self.0.lock().expect("reason lock"),
            Some(super::StopReason::Fenced(_))
        )
    }
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// The task is done: it succeeded.
    Done,
    /// The task waits for an operator or a time: it goes back to the queue, parked,
    /// holding no slot of any node's task cap, until what it waits for is given (its
    /// kind's service un-parks it) or `until` has come; a node then claims it again
    /// and its next attempt goes on from what the last one stored.
    Parked {
        why: String,
        until: Option<time::OffsetDateTime>,
    },
    /// The task will not run: it ends cancelled, for the reason given (a deployment
    /// whose `no_deploy_after` passed before it could start).
    Cancelled { why: String },
}

/// A kind of task.
pub trait TaskKind: Send + Sync + 'static {
    /// The name tasks are queued under.
    fn name(&self) -> &'static str;

    /// Checks and normalises `args`; the error names the field at fault.
    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String>;

    /// How long a cancelled run may go on to clean up (it sees `stop` cancelled)
    /// before it is dropped. Most kinds need none.
    fn cancel_grace(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Runs one attempt. `Err` fails the task with that reason.
    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>>;
}

/// The kinds this node knows. A node claims only tasks of kinds it knows, so during a
/// rolling upgrade an older node leaves a newer kind to the nodes that know it.
#[derive(Clone)]
pub struct TaskKinds {
    kinds: BTreeMap<&'static str, Arc<dyn TaskKind>>,
}

impl TaskKinds {
    /// The built-in kinds.
    pub fn builtin() -> Self {
        let mut kinds = Self {
            kinds: BTreeMap::new(),
        };
        kinds.register(sleep::Sleep);
        kinds.register(TaskHistoryRetention);
        kinds.register(BlobRetention);
        kinds.register(script::Script);
        kinds.register(HealthCheck);
        kinds.register(MasterKeyRotation);
        kinds.register(deploy::Deploy);
        kinds.register(crate::audit::retention::AuditRetention);
        kinds.register(crate::lifecycles::retention::ReleaseRetention);
        kinds
    }

    pub fn register(&mut self, kind: impl TaskKind) {
        self.kinds.insert(kind.name(), Arc::new(kind));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn TaskKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// Validates a task about to be queued, or says what is wrong with it.
    pub fn prepare(&self, kind: &str, args: &serde_json::Value) -> Result<Prepared, String> {
        let Some(found) = self.get(kind) else {
            return Err(format!(
                "there is no task kind `{kind}`; the kinds are: {}",
                self.names().join(", ")
            ));
        };
        if !args.is_object() {
            return Err(format!("`args` of a `{kind}` task must be a JSON object"));
        }
        found
            .prepare(args)
            .map_err(|reason| format!("bad `args` for a `{kind}` task: {reason}"))
    }
}

/// A task's arguments as the API shows them: secrets masked.
pub fn redact(kind: &str, args: serde_json::Value) -> serde_json::Value {
    match kind {
        script::SCRIPT => script::redact(args),
        _ => args,
    }
}

/// Reads a kind's arguments with serde, turning its error into a sentence.
pub(crate) fn parse_args<T: serde::de::DeserializeOwned>(
    args: &serde_json::Value,
) -> Result<T, String> {
    serde_json::from_value(args.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_and_bad_args_are_explained() {
        let kinds = TaskKinds::builtin();
        let err = kinds.prepare("nap", &serde_json::json!({})).unwrap_err();
        assert_eq!(
            err,
            "there is no task kind `nap`; the kinds are: audit-retention, blob-retention, deploy, health-check, master-key-rotation, release-retention, script, sleep, task-history-retention"
        );
        let err = kinds
            .prepare("sleep", &serde_json::json!({"ms": "long"}))
            .unwrap_err();
        assert!(
            err.starts_with("bad `args` for a `sleep` task: invalid type"),
            "{err}"
        );
        let err = kinds
            .prepare("sleep", &serde_json::json!({"seconds": 1}))
            .unwrap_err();
        assert!(err.contains("unknown field `seconds`"), "{err}");
        let err = kinds.prepare("sleep", &serde_json::json!([1])).unwrap_err();
        assert!(err.contains("must be a JSON object"), "{err}");
        let ok = kinds
            .prepare(
                "sleep",
                &serde_json::json!({"ms": 5, "on_node_lost": "requeue"}),
            )
            .unwrap();
        assert_eq!(ok.on_node_lost, NodeLostPolicy::Requeue);
        assert_eq!(
            ok.args,
            serde_json::json!({"ms": 5, "fail": false, "on_node_lost": "requeue"})
        );
    }
}
