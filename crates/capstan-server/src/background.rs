//! Background tasks with names, so a node can say which of its loops stopped and why.

use std::future::Future;

use tokio::task::JoinSet;

/// The node's long-running loops. Each has a name; none is expected to end on its own
/// while the node runs, so one that does is a reason to stop the node.
#[derive(Default)]
pub struct NamedTasks {
    set: JoinSet<&'static str>,
}

impl NamedTasks {
    /// Starts `future` under `name`.
    pub fn spawn(&mut self, name: &'static str, future: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(async move {
            future.await;
            name
        });
    }

    /// Waits for the first task to end and says which one, and how.
    pub async fn first_exit(&mut self) -> String {
        match self.set.join_next().await {
            Some(Ok(name)) => format!("background task `{name}` stopped"),
            Some(Err(e)) if e.is_panic() => format!("a background task panicked: {e}"),
            Some(Err(e)) => format!("a background task ended: {e}"),
            None => std::future::pending().await,
        }
    }

    /// Stops every task.
    pub async fn shutdown(&mut self) {
        self.set.shutdown().await;
    }
}
