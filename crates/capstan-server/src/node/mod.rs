//! A node's life: [`Node::build`] checks its dependencies, binds and registers;
//! [`Node::run`] serves until told to stop, then drains and exits in order.

mod heartbeat;
mod notifications;
mod serve;
mod shutdown;
mod state;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use capstan_blob::BlobStore;
use capstan_core::TaskCap;
use capstan_db::{
    Pools,
    liveness::{self, NodeAnnouncement},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use state::NodeState;

use crate::{
    Settings,
    background::NamedTasks,
    metrics::NodeMetrics,
    runner::{self, Runner, TaskKinds},
};

/// What every handler and loop of a node shares.
pub struct NodeContext {
    pub settings: Settings,
    pub state: Arc<NodeState>,
    pub pools: Pools,
    pub blob: BlobStore,
    pub blob_health: crate::blobs::BlobHealth,
    /// Wakes the blob sweep at once (after a delete) instead of at its next round.
    pub blob_sweep: tokio::sync::Notify,
    /// Uploads this node is receiving now.
    pub uploads: crate::blobs::InFlight,
    pub metrics: NodeMetrics,
    pub runner: Runner,
    /// Cancelled when the node stops serving HTTP: answers that stream for as long as
    /// they are read (followed logs) end then, so the server can stop.
    pub http_stop: CancellationToken,
    /// One permit per task log this node streams live.
    pub log_followers: Arc<tokio::sync::Semaphore>,
    pub agents: crate::agents::AgentGateway,
    /// Seals and opens sensitive values under the master keys this node holds.
    pub secrets: crate::secrets::Secrets,
    /// API keys this node has checked, and uses of them not yet written.
    pub api_keys: crate::identity::KeyCache,
    /// Users' grants this node has read.
    pub access: crate::identity::access::AccessCache,
}

/// Open files a node wants: each agent's long poll holds a connection.
const WANTED_OPEN_FILES: u64 = 65_536;

/// Raises the soft limit on open files as far as the hard limit allows, since the
/// common default of 1024 would refuse agents' polls long before memory runs short.
/// The limit belongs to the process, so it is raised (and any warning given) once, however
/// many nodes the process runs (`capstan dev` runs three).
fn raise_open_files_limit() {
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(raise_open_files_limit_now);
}

fn raise_open_files_limit_now() {
    match rlimit::increase_nofile_limit(WANTED_OPEN_FILES) {
        Ok(limit) if limit < WANTED_OPEN_FILES => tracing::warn!(
            "open files are limited to {limit}: each polling agent holds a connection, so this \
             node can serve fewer than {limit} agents; raise the limit (LimitNOFILE=, ulimit -n)"
        ),
        Ok(limit) => tracing::debug!("open files limited to {limit}"),
        Err(e) => tracing::warn!("cannot read or raise the open files limit: {e}"),
    }
}

/// A start-up check that failed: which dependency, and why.
#[derive(Debug, thiserror::Error)]
#[error("✖ {check:<8} {reason}")]
pub struct StartupError {
    pub check: &'static str,
    pub reason: String,
}

/// A node that has passed its start-up checks, bound its port and registered.
pub struct Node {
    ctx: Arc<NodeContext>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Node {
    /// Checks the database and the blob store, applies migrations, binds the listen
    /// address (port 0 picks a free one) and registers the node row.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let fail = |check: &'static str| move |reason: String| StartupError { check, reason };

        let application_name = format!("capstan {}", settings.node_name);
        let pools = Pools::connect(
            &settings.database_url,
            settings.db_pool_size,
            &application_name,
        )
        .await
        .map_err(|e| fail("postgres")(e.to_string()))?;
        let schema = pools
            .migrate()
            .await
            .map_err(|e| fail("postgres")(format!("{}: {e}", settings.database_url)))?;
        tracing::info!(
            "✔ postgres {} (schema at {}{})",
            settings.database_url,
            schema.database_at,
            if schema.applied_now.is_empty() {
                String::new()
            } else {
                format!("; applied {:?} now", schema.applied_now)
            }
        );
        if let Some((newest, description)) = schema.unknown.last() {
            tracing::warn!(
                "the database has {} migration(s) this binary does not know (newest {newest}, \
                 `{description}`): a newer release migrated it. This node runs on that schema, \
                 as each release stays compatible with the one before it; upgrade it soon",
                schema.unknown.len()
            );
        }

        let keys = crate::secrets::check_keys(
            &pools.api,
            settings.master_key.as_ref(),
            &settings.master_key_previous,
        )
        .await
        .map_err(fail("keys"))?;
        for warning in &keys.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!("✔ keys     {}", keys.summary);
        let key_versions = keys.secrets.key_versions();

        let blob = BlobStore::open(&settings.blob_url, &settings.s3)
            .map_err(|e| fail("blob")(e.to_string()))?;
        blob.probe()
            .await
            .map_err(|e| fail("blob")(e.to_string()))?;
        tracing::info!("✔ blob     {}", blob.url());

        raise_open_files_limit();
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| fail("listen")(format!("cannot listen on {}: {e}", settings.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| fail("listen")(e.to_string()))?;
        tracing::info!("✔ listen   http://{local_addr}");

        let url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(local_addr));
        let name = settings.node_name.to_string();
        let announcement = NodeAnnouncement {
            id: uuid::Uuid::now_v7(),
            name: &name,
            version: crate::VERSION,
            url: &url,
            task_cap: TaskCap::DEFAULT.get(),
            draining: settings.start_draining,
            running_tasks: 0,
            heartbeat_interval: settings.heartbeat_interval,
            key_versions: &key_versions,
        };
        let (id, beat) = liveness::register(
            &pools.liveness,
            &announcement,
            settings.task_cap.map(TaskCap::get),
        )
        .await
        .map_err(|e| fail("register")(format!("cannot register node `{name}`: {e}")))?;
        let state = Arc::new(NodeState::new(
            id,
            name.clone(),
            url.clone(),
            settings.heartbeat_interval,
            beat.settings,
            beat.last_seen,
            key_versions.clone(),
        ));
        tracing::info!(
            node.id = %id,
            node.name = %name,
            task_cap = beat.settings.task_cap,
            draining = beat.settings.draining,
            "✔ node     `{name}` registered at {url}"
        );
        // A node that restarts under its name keeps its id; whatever it ran in its
        // previous life is not running now, so rescue it at once instead of waiting
        // for its leases to expire.
        let rescued = capstan_db::queue::rescue(
            &pools.liveness,
            capstan_db::queue::RescueScope::Released(id),
        )
        .await
        .map_err(|e| fail("register")(format!("cannot rescue tasks of the previous run: {e}")))?;
        if !rescued.is_empty() {
            tracing::warn!(
                node.name = %name,
                "rescued {} task(s) this node was running before it restarted",
                rescued.len()
            );
        }
        let metrics = NodeMetrics::new(&state);
        let log_followers = settings.max_log_followers as usize;
        let runner = Runner::new(TaskKinds::builtin(), state.clone(), settings.lease_ttl);
        Ok(Self {
            ctx: Arc::new(NodeContext {
                settings,
                state,
                pools,
                blob,
                blob_health: Default::default(),
                blob_sweep: tokio::sync::Notify::new(),
                uploads: Default::default(),
                metrics,
                runner,
                http_stop: CancellationToken::new(),
                log_followers: Arc::new(tokio::sync::Semaphore::new(log_followers)),
                agents: Default::default(),
                secrets: keys.secrets,
                api_keys: Default::default(),
                access: Default::default(),
            }),
            listener,
            local_addr,
        })
    }

    /// The address the node serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's live state.
    pub fn state(&self) -> Arc<NodeState> {
        self.ctx.state.clone()
    }

    /// The node's sealer of sensitive values.
    pub fn secrets(&self) -> crate::secrets::Secrets {
        self.ctx.secrets.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains and stops in order. Returns an
    /// error if one of the node's own loops stops on its own: a node that cannot
    /// heartbeat or hear about changes must not keep serving as if it could.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let mut tasks = NamedTasks::default();
        tasks.spawn("heartbeat", heartbeat::run(ctx.clone()));
        tasks.spawn("notifications", notifications::run(ctx.clone()));
        tasks.spawn("claim-loop", runner::claim_loop(ctx.clone()));
        tasks.spawn("lease-watchdog", runner::lease_watchdog(ctx.clone()));
        tasks.spawn("housekeeping", runner::housekeeping(ctx.clone()));
        tasks.spawn("blob-health", crate::blobs::watch_health(ctx.clone()));
        tasks.spawn("blob-sweep", crate::blobs::sweep(ctx.clone()));

        let http_stop = ctx.http_stop.clone();
        let app = crate::http::router(ctx.clone());
        let limits = serve::ConnectionLimits {
            header_read: ctx.settings.header_read_timeout,
            idle: ctx.settings.idle_timeout,
        };
        let server = serve::serve(self.listener, app, limits, http_stop.clone());
        let mut server = tokio::spawn(server);

        tokio::select! {
            () = shutdown.cancelled() => {}
            reason = tasks.first_exit() => {
                http_stop.cancel();
                tasks.shutdown().await;
                anyhow::bail!("{reason}; stopping node `{}`", ctx.state.name);
            }
            served = &mut server => {
                tasks.shutdown().await;
                served.context("the HTTP server task failed")?.context("the HTTP server stopped")?;
                anyhow::bail!("the HTTP server stopped on its own");
            }
        }
        shutdown::drain_and_stop(&ctx, tasks, http_stop, server).await;
        Ok(())
    }
}

fn default_public_url(local_addr: SocketAddr) -> String {
    if local_addr.ip().is_unspecified() {
        format!(
            "http://{}:{}",
            crate::config::host_name(),
            local_addr.port()
        )
    } else {
        format!("http://{local_addr}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::raise_open_files_limit;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `capstan dev` builds several nodes in one process: the limit is the process's,
    /// so its warning is too.
    #[test]
    fn the_open_files_warning_appears_once_per_process() {
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        rlimit::setrlimit(rlimit::Resource::NOFILE, soft.min(4096), hard.min(4096)).unwrap();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                raise_open_files_limit();
            }
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches("open files are limited to").count(), 1, "{log}");
    }
}
