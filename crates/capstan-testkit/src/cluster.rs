//! Several in-process nodes sharing one test database and one blob directory.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use capstan_api::ApiClient;
use capstan_core::NodeName;
use capstan_db::DatabaseUrl;
use capstan_server::{Node, NodeState, Settings, config::MasterKey, secrets::Secrets};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ADMIN_KEY, TempDir, TestDatabase};

/// The timings every test uses, short enough that "three missed heartbeats" is quick.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
    pub shutdown_grace: Duration,
}

impl Timings {
    pub fn for_tests() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
            lease_ttl: Duration::from_millis(1200),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The master key every test node holds unless a test chooses others.
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

/// A master key from its base64 form, for tests that choose their keys.
pub fn master_key(base64: &str) -> MasterKey {
    MasterKey::from_base64(base64).expect("a valid test master key")
}

/// Settings for a test node called `name` on a free port.
pub fn test_settings(database_url: &str, blob_dir: &std::path::Path, name: &str) -> Settings {
    let timings = Timings::for_tests();
    Settings {
        database_url: DatabaseUrl::parse(database_url).expect("a valid test database URL"),
        blob_url: format!("file://{}", blob_dir.display()),
        s3: capstan_blob::S3Options::default(),
        max_upload_size: 10 << 30,
        package_retention_versions: 0,
        task_blob_retention: Duration::from_secs(30 * 24 * 3600),
        blob_retention_every: Duration::from_secs(3600),
        audit_retention: Duration::from_secs(90 * 24 * 3600),
        audit_retention_every: Duration::from_secs(3600),
        release_retention_every: Duration::from_secs(3600),
        // Tests check agents when they mean to.
        agent_health_check_every: None,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        node_name: NodeName::parse(name).expect("a valid node name"),
        public_url: None,
        task_cap: None,
        heartbeat_interval: timings.heartbeat_interval,
        lease_ttl: timings.lease_ttl,
        task_history_retention: Duration::from_secs(30 * 24 * 3600),
        task_history_retention_every: Duration::from_secs(3600),
        api_key_max_lifetime: Duration::from_secs(365 * 24 * 3600),
        task_log_cap: 50 * 1024 * 1024,
        max_log_followers: 500,
        shutdown_grace: timings.shutdown_grace,
        request_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        body_timeout: Duration::from_secs(30),
        upload_stall_timeout: Duration::from_secs(60),
        db_pool_size: 4,
        master_key: Some(master_key(TEST_MASTER_KEY)),
        master_key_previous: Vec::new(),
        admin_api_key: Some(SecretString::from(ADMIN_KEY.to_owned())),
        trusted_proxies: Vec::new(),
        start_draining: false,
        sign_in: Default::default(),
    }
}

/// A running in-process node.
pub struct TestNode {
    pub addr: SocketAddr,
    pub state: Arc<NodeState>,
    /// The node's sealer of sensitive values, with the keys it was started with.
    pub secrets: Secrets,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestNode {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client authenticated with the admin key.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url(), Some(ADMIN_KEY.to_owned()))
    }

    /// Runs the node's orderly shutdown and returns how it ended.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// N nodes on one database.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub db: TestDatabase,
    pub blob_dir: TempDir,
}

impl TestCluster {
    /// Starts `n` nodes named `node-1` ... `node-n`.
    pub async fn start(n: usize) -> Self {
        Self::start_with_caps(&vec![None; n]).await
    }

    /// Starts one node per entry, named `node-1` ..., with that task cap (or the
    /// default).
    pub async fn start_with_caps(caps: &[Option<u32>]) -> Self {
        Self::start_with(caps, |_| {}).await
    }

    /// Like [`Self::start_with_caps`], with `tweak` applied to every node's settings.
    pub async fn start_with(caps: &[Option<u32>], tweak: impl Fn(&mut Settings)) -> Self {
        let db = TestDatabase::new().await;
        let blob_dir = TempDir::new("capstan-blobs");
        let mut nodes = Vec::new();
        for (i, cap) in caps.iter().enumerate() {
            let mut settings = test_settings(&db.url, &blob_dir.0, &format!("node-{}", i + 1));
            settings.task_cap =
                cap.map(|c| capstan_core::TaskCap::new(i64::from(c)).expect("a valid cap"));
            tweak(&mut settings);
            nodes.push(start_node(settings).await);
        }
        Self {
            nodes,
            db,
            blob_dir,
        }
    }

    pub fn node(&self, i: usize) -> &TestNode {
        &self.nodes[i]
    }
}

/// Builds and runs one node in this process.
pub async fn start_node(settings: Settings) -> TestNode {
    let node = Node::build(settings).await.expect("test node starts");
    let addr = node.local_addr();
    let state = node.state();
    let secrets = node.secrets();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(node.run(shutdown.clone()));
    TestNode {
        addr,
        state,
        secrets,
        shutdown,
        handle: Some(handle),
    }
}
