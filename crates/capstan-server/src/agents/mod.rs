//! The agent gateway: what a node keeps in memory so that agents can long-poll it
//! cheaply. Mailboxes live in PostgreSQL; this side only remembers which mailboxes it
//! knows to be empty, which credentials it has checked, and which agents polled since
//! the last heartbeat, and drops what a notification says has changed. Which agents a
//! piece of work runs on is chosen in [`targets`].

pub mod credentials;
pub mod hand_over;
mod identities;
mod mailboxes;
mod seen;
pub mod targets;
mod task_wakers;

use capstan_db::notify::AgentNotice;

pub use identities::{Identities, Identity};
pub use mailboxes::{Contents, Mailboxes, Sending, Ticket};
pub use seen::SeenAgents;
pub use task_wakers::TaskWakers;

/// The gateway's state, one per node.
#[derive(Default)]
pub struct AgentGateway {
    pub mailboxes: std::sync::Arc<Mailboxes>,
    pub identities: Identities,
    pub seen: SeenAgents,
    /// Wakes tasks waiting for their commands' output and results.
    pub tasks: TaskWakers,
}

impl AgentGateway {
    /// A notification on the agents channel.
    pub fn notified(&self, notice: AgentNotice) {
        match notice {
            AgentNotice::Mail(agent) => self.mailboxes.notified(agent),
            AgentNotice::Revoked(agent) => {
                self.identities.forget(agent);
                self.mailboxes.changed(agent);
            }
            AgentNotice::Output(task) | AgentNotice::Done(task) => self.tasks.wake(task),
        }
    }

    /// LISTEN was (re)established: anything may have changed meanwhile.
    pub fn resync(&self) {
        self.identities.clear();
        self.mailboxes.reset();
        self.tasks.wake_all();
    }
}

/// Once per heartbeat: record which agents polled this node, and close commands
/// whose task no longer runs.
pub async fn housekeeping(ctx: &crate::node::NodeContext) {
    let (ids, versions) = ctx.agents.seen.take();
    if !ids.is_empty() {
        if let Err(e) =
            capstan_db::agents::record_seen(&ctx.pools.api, &ctx.state.name, &ids, &versions).await
        {
            tracing::warn!("cannot record which agents polled: {e}");
            ctx.agents.seen.restore(ids, versions);
        }
    }
    match capstan_db::mailbox::close_orphans(&ctx.pools.api).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("closed {n} agent command(s) whose task no longer runs"),
        Err(e) => tracing::warn!("cannot close agent commands of finished tasks: {e}"),
    }
}
