//! A node's configuration: one typed struct, read from flags and `CAPSTAN_*` variables,
//! validated before anything starts.

use std::{net::SocketAddr, time::Duration};

use base64::Engine;
use capstan_blob::S3Options;
use capstan_core::{NodeName, TaskCap, format_size, parse_duration, parse_size};
use capstan_db::DatabaseUrl;
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The flags of `capstan server`. Every flag has a `CAPSTAN_*` variable of the same name.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// PostgreSQL URL shared by every node, e.g. postgres://capstan:secret@db:5432/capstan.
    #[arg(long, env = "CAPSTAN_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,

    /// Blob store shared by every node: file:///srv/capstan (a shared volume),
    /// s3://bucket/prefix (credentials from the AWS_* variables), or memory:// (one
    /// process only: for trials and tests).
    #[arg(long, env = "CAPSTAN_BLOB_URL")]
    pub blob_url: String,

    /// Endpoint of an S3-compatible server for s3:// blob URLs, e.g. http://minio:9000
    /// [default: AWS].
    #[arg(long, env = "CAPSTAN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Address S3 buckets by path (endpoint/bucket) rather than by host name
    /// (bucket.endpoint); most S3-compatible servers need it.
    #[arg(long, env = "CAPSTAN_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// The largest package or artifact a node accepts, e.g. 10GiB.
    #[arg(long, env = "CAPSTAN_MAX_UPLOAD_SIZE", default_value = "10GiB", value_parser = parse_size_arg)]
    pub max_upload_size: u64,

    /// Versions of each package that blob-retention keeps (the newest ones); 0 keeps all.
    #[arg(long, env = "CAPSTAN_PACKAGE_RETENTION_VERSIONS", default_value_t = 0)]
    pub package_retention_versions: u32,

    /// Logs and artifacts of tasks that finished longer ago than this are deleted by
    /// the periodic blob-retention task.
    #[arg(long, env = "CAPSTAN_TASK_BLOB_RETENTION", default_value = "30d", value_parser = parse_duration_arg)]
    pub task_blob_retention: Duration,

    /// How often blob-retention runs (once per period across the cluster).
    #[arg(long, env = "CAPSTAN_BLOB_RETENTION_EVERY", default_value = "1h", value_parser = parse_duration_arg)]
    pub blob_retention_every: Duration,

    /// Audit rows older than this are archived to the blob store as daily JSON Lines
    /// files (`audit/YYYY/MM/DD.jsonl`) and deleted; at least 1d.
    #[arg(long, env = "CAPSTAN_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration_arg)]
    pub audit_retention: Duration,

    /// How often audit-retention runs (once per period across the cluster).
    #[arg(long, env = "CAPSTAN_AUDIT_RETENTION_EVERY", default_value = "1h", value_parser = parse_duration_arg)]
    pub audit_retention_every: Duration,

    /// How often release-retention runs (once per period across the cluster): it
    /// deletes the releases the lifecycles' phase retentions no longer keep.
    #[arg(long, env = "CAPSTAN_RELEASE_RETENTION_EVERY", default_value = "1h", value_parser = parse_duration_arg)]
    pub release_retention_every: Duration,

    /// How often every enabled agent is health-checked (once per period across the
    /// cluster); `off` checks only on demand.
    #[arg(long, env = "CAPSTAN_AGENT_HEALTH_CHECK_EVERY", default_value = "10m", value_parser = parse_duration_or_off)]
    pub agent_health_check_every: Duration,

    /// Address to serve HTTP on.
    #[arg(long, env = "CAPSTAN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// This node's name, unique in the cluster [default: the host name].
    #[arg(long, env = "CAPSTAN_NODE_NAME", value_parser = parse_node_name)]
    pub node_name: Option<NodeName>,

    /// The URL other nodes and operators reach this node at [default: from the host
    /// name and port].
    #[arg(long, env = "CAPSTAN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Tasks this node runs at once, 0-1000 (0: API/UI only). Without it a new node
    /// gets 5 and a restarted node keeps the cap it had.
    #[arg(long, env = "CAPSTAN_TASK_CAP", value_parser = parse_task_cap)]
    pub task_cap: Option<TaskCap>,

    /// How often the node records that it is alive; it shows offline after three missed.
    #[arg(long, env = "CAPSTAN_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration_arg)]
    pub heartbeat_interval: Duration,

    /// How long a claimed task's lease lasts without renewal. Heartbeats renew it; a
    /// node that cannot renew stops its tasks one heartbeat before it runs out, and
    /// other nodes rescue them once it has. At least three heartbeat intervals.
    #[arg(long, env = "CAPSTAN_LEASE_TTL", default_value = "60s", value_parser = parse_duration_arg)]
    pub lease_ttl: Duration,

    /// Finished tasks older than this are deleted by the periodic
    /// task-history-retention task.
    #[arg(long, env = "CAPSTAN_TASK_HISTORY_RETENTION", default_value = "30d", value_parser = parse_duration_arg)]
    pub task_history_retention: Duration,

    /// How often task-history-retention runs (once per period across the cluster).
    #[arg(long, env = "CAPSTAN_TASK_HISTORY_RETENTION_EVERY", default_value = "1h", value_parser = parse_duration_arg)]
    pub task_history_retention_every: Duration,

    /// The most log one task keeps, 4KiB-64GiB. A log that reaches it ends with a line
    /// saying so, and later lines are dropped.
    #[arg(long, env = "CAPSTAN_TASK_LOG_CAP", default_value = "50MiB", value_parser = parse_task_log_cap)]
    pub task_log_cap: u64,

    /// Task logs this node streams live (`?follow=true`) at once; more get 503 with
    /// Retry-After, to try again or through another node. Each follower polls the
    /// database twice a second.
    #[arg(long, env = "CAPSTAN_MAX_LOG_FOLLOWERS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_log_followers: u32,

    /// How long a stopping node waits for its running tasks before it exits anyway.
    #[arg(long, env = "CAPSTAN_SHUTDOWN_GRACE", default_value = "5m", value_parser = parse_duration_arg)]
    pub shutdown_grace: Duration,

    /// How long a request may take before it is answered with 503.
    #[arg(long, env = "CAPSTAN_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration_arg)]
    pub request_timeout: Duration,

    /// How long a client may take to send a request's headers, from its first byte;
    /// slower connections are closed.
    #[arg(long, env = "CAPSTAN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration_arg)]
    pub header_read_timeout: Duration,

    /// How long a connection may stay open without a request under way (after it
    /// opens and between keep-alive requests). Keep it above the load balancer's own
    /// keep-alive timeout, so the balancer closes first.
    #[arg(long, env = "CAPSTAN_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration_arg)]
    pub idle_timeout: Duration,

    /// How long an agent may take to send a request body (registration, results,
    /// output); those routes are exempt from the request timeout because a poll waits.
    #[arg(long, env = "CAPSTAN_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration_arg)]
    pub body_timeout: Duration,

    /// How long an upload (package, artifact) may pause between two chunks. An upload
    /// has no total limit: it runs as long as its bytes keep coming.
    #[arg(long, env = "CAPSTAN_UPLOAD_STALL_TIMEOUT", default_value = "60s", value_parser = parse_duration_arg)]
    pub upload_stall_timeout: Duration,

    /// Connections in the API pool (the liveness pool is separate and small).
    #[arg(long, env = "CAPSTAN_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub db_pool_size: u32,

    /// 32 random bytes in base64 (`capstan master-key generate`): encrypts sensitive
    /// values at rest. Without it the node runs, but cannot store or read them.
    // Read as text and decoded in `into_settings`: clap would echo a rejected value.
    #[arg(long, env = "CAPSTAN_MASTER_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub master_key: Option<SecretString>,

    /// Earlier master keys, comma-separated base64, still accepted for reading while
    /// `capstan master-key rotate` re-encrypts values under CAPSTAN_MASTER_KEY. Remove
    /// them once the rotation has finished (see docs/security.md).
    #[arg(long, env = "CAPSTAN_MASTER_KEY_PREVIOUS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub master_key_previous: Vec<SecretString>,

    /// An API key with full rights (at least 16 characters). Without it, only users'
    /// and service accounts' API keys are accepted (and there is no way to create the
    /// first one).
    // Checked in `into_settings`, like the master key: clap would echo a rejected value.
    #[arg(long, env = "CAPSTAN_ADMIN_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub admin_api_key: Option<SecretString>,

    /// The longest lifetime an API key may be given (a key's default is 180 days, or
    /// this if shorter).
    #[arg(long, env = "CAPSTAN_API_KEY_MAX_LIFETIME", default_value = "365d", value_parser = parse_duration_arg)]
    pub api_key_max_lifetime: Duration,

    /// A browser session unused this long ends.
    #[arg(long, env = "CAPSTAN_SESSION_IDLE_TIMEOUT", default_value = "8h", value_parser = parse_duration_arg)]
    pub session_idle_timeout: Duration,

    /// A browser session ends this long after it began, used or not.
    #[arg(long, env = "CAPSTAN_SESSION_MAX_LIFETIME", default_value = "7d", value_parser = parse_duration_arg)]
    pub session_max_lifetime: Duration,

    /// The OpenID Connect provider people sign in with, e.g.
    /// https://login.example.com/realms/ops; unset: passwords only.
    #[arg(long, env = "CAPSTAN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The client id Capstan is registered under at the OpenID provider.
    #[arg(long, env = "CAPSTAN_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// The client secret given by the OpenID provider.
    // Checked in `into_settings`: clap would echo a rejected value.
    #[arg(long, env = "CAPSTAN_OIDC_CLIENT_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub oidc_client_secret: Option<SecretString>,

    /// Where the provider sends the browser back, as the browser reaches the cluster
    /// (the load balancer) [default: CAPSTAN_PUBLIC_URL + /api/login/oidc/callback].
    #[arg(long, env = "CAPSTAN_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,

    /// Proxies whose X-Forwarded-For is believed, as CIDRs or addresses, comma-separated.
    #[arg(long, env = "CAPSTAN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,

    /// Start drained: serve the API but take no tasks and answer ping with 418.
    #[arg(long, env = "CAPSTAN_START_DRAINING")]
    pub start_draining: bool,

    /// Log format.
    #[arg(long, env = "CAPSTAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A master key: 32 bytes, kept out of `Debug` output and wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

/// A node's validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub blob_url: String,
    pub s3: S3Options,
    pub max_upload_size: u64,
    pub package_retention_versions: u32,
    pub task_blob_retention: Duration,
    pub blob_retention_every: Duration,
    pub audit_retention: Duration,
    pub audit_retention_every: Duration,
    pub release_retention_every: Duration,
    /// `None`: agents are checked only on demand.
    pub agent_health_check_every: Option<Duration>,
    pub listen: SocketAddr,
    pub node_name: NodeName,
    pub public_url: Option<String>,
    pub task_cap: Option<TaskCap>,
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
    pub task_history_retention: Duration,
    pub task_history_retention_every: Duration,
    pub api_key_max_lifetime: Duration,
    /// Bytes of log one task keeps at most.
    pub task_log_cap: u64,
    pub max_log_followers: u32,
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub upload_stall_timeout: Duration,
    pub db_pool_size: u32,
    pub master_key: Option<MasterKey>,
    /// Keys of earlier versions, for reading values not yet rotated.
    pub master_key_previous: Vec<MasterKey>,
    pub admin_api_key: Option<SecretString>,
    pub trusted_proxies: Vec<IpNet>,
    pub start_draining: bool,
    pub sign_in: SignInSettings,
}

/// How people sign in: session lifetimes and the OpenID provider.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub session_idle: Duration,
    pub session_lifetime: Duration,
    /// `None`: passwords only.
    pub oidc: Option<OidcSettings>,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(8 * 3600),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            oidc: None,
        }
    }
}

/// The OpenID Connect provider and Capstan's registration there.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_url: String,
}

impl ServerArgs {
    /// Fills in defaults that need the machine (the host name) and checks what clap
    /// cannot check field by field.
    pub fn into_settings(self) -> Result<Settings, String> {
        let node_name = match self.node_name {
            Some(name) => name,
            None => {
                let host = host_name();
                NodeName::parse(host.clone()).map_err(|e| {
                    format!(
                        "the host name `{host}` cannot be a node name ({e}); set CAPSTAN_NODE_NAME"
                    )
                })?
            }
        };
        if self.heartbeat_interval < Duration::from_millis(50) {
            return Err("--heartbeat-interval must be at least 50ms".to_owned());
        }
        if self.lease_ttl < self.heartbeat_interval * 3 {
            return Err(format!(
                "--lease-ttl ({}) must be at least three heartbeat intervals ({}): a lease must survive a missed heartbeat",
                humantime::format_duration(self.lease_ttl),
                humantime::format_duration(self.heartbeat_interval * 3)
            ));
        }
        for (flag, value) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--body-timeout", self.body_timeout),
            ("--upload-stall-timeout", self.upload_stall_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(format!("{flag} must be at least 100ms"));
            }
        }
        if self.task_history_retention_every < Duration::from_secs(1) {
            return Err("--task-history-retention-every must be at least 1s".to_owned());
        }
        if self.blob_retention_every < Duration::from_secs(1) {
            return Err("--blob-retention-every must be at least 1s".to_owned());
        }
        if self.audit_retention < crate::audit::retention::MIN_RETENTION {
            return Err("--audit-retention must be at least 1d".to_owned());
        }
        if self.audit_retention_every < Duration::from_secs(1) {
            return Err("--audit-retention-every must be at least 1s".to_owned());
        }
        if self.release_retention_every < Duration::from_secs(1) {
            return Err("--release-retention-every must be at least 1s".to_owned());
        }
        if !self.agent_health_check_every.is_zero()
            && self.agent_health_check_every < Duration::from_secs(1)
        {
            return Err("--agent-health-check-every must be at least 1s".to_owned());
        }
        if let Some(endpoint) = &self.s3_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "--s3-endpoint must start with http:// or https://, got `{endpoint}`"
            ));
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--public-url must start with http:// or https://, got `{url}`"
                ));
            }
        }
        // An empty value means "not set", as compose files and Helm values often write.
        let master_key = self
            .master_key
            .filter(|key| !key.expose_secret().trim().is_empty())
            .map(|key| {
                MasterKey::from_base64(key.expose_secret())
                    .map_err(|e| format!("CAPSTAN_MASTER_KEY (--master-key): {e}"))
            })
            .transpose()?;
        let previous: Vec<&SecretString> = self
            .master_key_previous
            .iter()
            .filter(|key| !key.expose_secret().trim().is_empty())
            .collect();
        let master_key_previous = previous
            .iter()
            .enumerate()
            .map(|(i, key)| {
                MasterKey::from_base64(key.expose_secret()).map_err(|e| {
                    format!(
                        "CAPSTAN_MASTER_KEY_PREVIOUS (--master-key-previous), key {} of {}: {e}",
                        i + 1,
                        previous.len()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let admin_api_key = self
            .admin_api_key
            .map(|key| parse_admin_key(key.expose_secret()))
            .transpose()?;
        let sign_in = SignInSettings {
            session_idle: self.session_idle_timeout,
            session_lifetime: self.session_max_lifetime,
            oidc: oidc_settings(
                self.oidc_issuer,
                self.oidc_client_id,
                self.oidc_client_secret,
                self.oidc_redirect_url,
                self.public_url.as_deref(),
            )?,
        };
        if sign_in.session_idle < Duration::from_secs(1)
            || sign_in.session_lifetime < sign_in.session_idle
        {
            return Err(
                "--session-idle-timeout must be at least 1s and at most --session-max-lifetime"
                    .to_owned(),
            );
        }
        if master_key.is_none() && !master_key_previous.is_empty() {
            return Err(
                "CAPSTAN_MASTER_KEY_PREVIOUS is set but CAPSTAN_MASTER_KEY is not: previous keys \
                 only help read values during a rotation to the key in CAPSTAN_MASTER_KEY"
                    .to_owned(),
            );
        }
        Ok(Settings {
            database_url: self.database_url,
            blob_url: self.blob_url,
            s3: S3Options {
                endpoint: self.s3_endpoint,
                path_style: self.s3_path_style,
                credentials: None,
            },
            max_upload_size: self.max_upload_size,
            package_retention_versions: self.package_retention_versions,
            task_blob_retention: self.task_blob_retention,
            blob_retention_every: self.blob_retention_every,
            audit_retention: self.audit_retention,
            audit_retention_every: self.audit_retention_every,
            release_retention_every: self.release_retention_every,
            agent_health_check_every: Some(self.agent_health_check_every)
                .filter(|every| !every.is_zero()),
            listen: self.listen,
            node_name,
            public_url: self.public_url,
            task_cap: self.task_cap,
            heartbeat_interval: self.heartbeat_interval,
            lease_ttl: self.lease_ttl,
            task_history_retention: self.task_history_retention,
            task_history_retention_every: self.task_history_retention_every,
            api_key_max_lifetime: self.api_key_max_lifetime,
            task_log_cap: self.task_log_cap,
            max_log_followers: self.max_log_followers,
            shutdown_grace: self.shutdown_grace,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            upload_stall_timeout: self.upload_stall_timeout,
            db_pool_size: self.db_pool_size,
            master_key,
            master_key_previous,
            admin_api_key,
            trusted_proxies: self.trusted_proxies,
            start_draining: self.start_draining,
            sign_in,
        })
    }
}

/// The machine's host name, as the default node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "capstan".to_owned())
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(s)
}

fn parse_node_name(s: &str) -> Result<NodeName, String> {
    NodeName::parse(s).map_err(|e| e.to_string())
}

fn parse_task_cap(s: &str) -> Result<TaskCap, String> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    TaskCap::new(n).map_err(|e| e.to_string())
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A duration, or `off` (zero).
fn parse_duration_or_off(s: &str) -> Result<Duration, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    parse_duration_arg(s)
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// The smallest cap leaves room for the line that says the log was cut.
pub const MIN_TASK_LOG_CAP: u64 = 4 * 1024;
pub const MAX_TASK_LOG_CAP: u64 = 64 * 1024 * 1024 * 1024;

fn parse_task_log_cap(s: &str) -> Result<u64, String> {
    let cap = parse_size(s).map_err(|e| e.to_string())?;
    if !(MIN_TASK_LOG_CAP..=MAX_TASK_LOG_CAP).contains(&cap) {
        return Err(format!(
            "the task log cap must be between 4KiB and 64GiB, got {}",
            format_size(cap)
        ));
    }
    Ok(cap)
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither a CIDR (10.0.0.0/8) nor an IP address"))
}

/// Any text, kept secret; what it must be is checked in `into_settings`.
fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        MasterKey(key)
    }

    /// The key as base64, the form CAPSTAN_MASTER_KEY takes.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads 32 bytes of base64, saying how to make a key when it is wrong.
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| {
                format!(
                    "the master key is not base64 ({}); make one with `openssl rand -base64 32`",
                    describe_base64_error(&e)
                )
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "the master key must be 32 bytes, this one decodes to {}; make one with `openssl rand -base64 32`",
            bytes.len()
        )
    })?;
        Ok(MasterKey(key))
    }
}

/// Where base64 went wrong, without the offending character: it is part of the key.
fn describe_base64_error(error: &base64::DecodeError) -> String {
    use base64::DecodeError as E;
    match error {
        E::InvalidByte(offset, _) => format!("an invalid character at position {}", offset + 1),
        E::InvalidLastSymbol(offset, _) => {
            format!("an invalid last character at position {}", offset + 1)
        }
        E::InvalidLength(length) => format!("{length} characters is not a valid length"),
        E::InvalidPadding => "invalid padding".to_owned(),
    }
}

/// Says how long a rejected key is, never what it is.
fn parse_admin_key(s: &str) -> Result<SecretString, String> {
    let length = s.trim().chars().count();
    if length < 16 {
        return Err(format!(
            "CAPSTAN_ADMIN_API_KEY (--admin-api-key): the admin API key must be at least 16 characters; the one given has {length}"
        ));
    }
    Ok(SecretString::from(s.trim().to_owned()))
}

/// The OpenID settings: all of issuer, client id and secret, or none of them.
fn oidc_settings(
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    redirect_url: Option<String>,
    public_url: Option<&str>,
) -> Result<Option<OidcSettings>, String> {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    let no_secret = client_secret
        .as_ref()
        .is_none_or(|s| s.expose_secret().trim().is_empty());
    match (empty(&issuer), empty(&client_id), no_secret) {
        (true, true, true) => return Ok(None),
        (false, false, false) => {}
        _ => {
            return Err(
                "CAPSTAN_OIDC_ISSUER, CAPSTAN_OIDC_CLIENT_ID and CAPSTAN_OIDC_CLIENT_SECRET go together: set all three or none"
                    .to_owned(),
            );
        }
    }
    let issuer = issuer.unwrap_or_default();
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(format!(
            "--oidc-issuer must start with https:// (or http:// on a test bench), got `{issuer}`"
        ));
    }
    let redirect_url = match (redirect_url, public_url) {
        (Some(url), _) if !url.trim().is_empty() => url,
        (_, Some(public)) => format!("{}/api/login/oidc/callback", public.trim_end_matches('/')),
        _ => {
            return Err(
                "OpenID sign-in needs CAPSTAN_OIDC_REDIRECT_URL (or CAPSTAN_PUBLIC_URL): where the provider sends the browser back"
                    .to_owned(),
            );
        }
    };
    if !(redirect_url.starts_with("https://") || redirect_url.starts_with("http://")) {
        return Err(format!(
            "--oidc-redirect-url must start with https:// or http://, got `{redirect_url}`"
        ));
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id: client_id.unwrap_or_default(),
        client_secret: client_secret.unwrap_or_else(|| SecretString::from(String::new())),
        redirect_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_the_variable_of_the_same_name() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let expected = format!("CAPSTAN_{}", long.replace('-', "_").to_uppercase());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(expected.as_str()), "--{long}");
        }
    }

    const KEY: &str = "a2V5LWZvci10aGUtY29uZmlnLXRlc3RzLTAxMjM0NTY=";
    const OLD_KEY: &str = "b2xkLWtleS1mb3ItdGhlLWNvbmZpZy10ZXN0cy0wMTI=";

    fn args(extra: &[&str]) -> Result<ServerArgs, clap::Error> {
        let mut argv = vec![
            "capstan",
            "--database-url",
            "postgres://capstan@db/capstan",
            "--blob-url",
            "memory://",
            "--node-name",
            "n1",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|cli| cli.server)
    }

    #[test]
    fn master_keys_never_show_in_debug_output_or_errors() {
        let parsed = args(&[
            "--master-key",
            KEY,
            "--master-key-previous",
            &format!("{OLD_KEY},{OLD_KEY}"),
        ])
        .unwrap();
        let debug = format!("{parsed:?}");
        let settings = parsed.into_settings().unwrap();
        assert_eq!(settings.master_key_previous.len(), 2);
        let settings_debug = format!("{settings:?}");
        for text in [&debug, &settings_debug] {
            assert!(!text.contains(KEY) && !text.contains(OLD_KEY), "{text}");
            assert!(!text.contains("key-for-the"), "{text}");
        }
        assert!(
            settings_debug.contains("MasterKey(***)"),
            "{settings_debug}"
        );

        // A key one character short is still nearly the key: it must not be echoed.
        let short = &KEY[..KEY.len() - 4];
        let err = args(&["--master-key", short])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(
            err.contains("CAPSTAN_MASTER_KEY") && err.contains("32 bytes"),
            "{err}"
        );
        assert!(!err.contains(short), "{err}");
        let err = args(&[
            "--master-key",
            KEY,
            "--master-key-previous",
            &format!("{OLD_KEY},!!"),
        ])
        .unwrap()
        .into_settings()
        .unwrap_err();
        assert!(
            err.contains("key 2 of 2") && err.contains("not base64"),
            "{err}"
        );
        assert!(!err.contains(OLD_KEY), "{err}");
    }

    #[test]
    fn a_rejected_admin_key_or_master_key_is_never_echoed() {
        let short = "tiny-s3cret";
        let err = args(&["--admin-api-key", short])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(!err.contains(short), "{err}");
        assert!(
            err.contains("at least 16 characters") && err.contains("11"),
            "{err}"
        );
        // A key with one bad character: the character is part of the key.
        let bad = format!("{}%{}", &KEY[..10], &KEY[11..]);
        let err = args(&["--master-key", &bad])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(err.contains("not base64"), "{err}");
        assert!(!err.contains("37") && !err.contains('%'), "{err}");
    }

    #[test]
    fn an_empty_master_key_means_none() {
        let settings = args(&["--master-key", "", "--master-key-previous", ""])
            .unwrap()
            .into_settings()
            .unwrap();
        assert!(settings.master_key.is_none());
        assert!(settings.master_key_previous.is_empty());
    }

    #[test]
    fn previous_keys_without_a_current_one_are_refused() {
        let err = args(&["--master-key-previous", OLD_KEY])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(
            err.contains("CAPSTAN_MASTER_KEY_PREVIOUS is set but CAPSTAN_MASTER_KEY is not"),
            "{err}"
        );
    }

    #[test]
    fn a_generated_key_reads_back_as_itself() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::from_base64(&key.to_base64()).unwrap(), key);
        assert_ne!(MasterKey::generate(), key);
    }

    #[test]
    fn malformed_settings_are_refused_with_a_reason() {
        assert!(
            MasterKey::from_base64("c2hvcnQ=")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(
            MasterKey::from_base64("!!")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(parse_cidr("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert!(
            parse_task_cap("-1")
                .unwrap_err()
                .contains("between 0 and 1000")
        );
        assert!(
            parse_task_cap("many")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(
            parse_duration_arg("10")
                .unwrap_err()
                .contains("unit is missing")
        );
        assert!(
            parse_database_url("mysql://x@y/z")
                .unwrap_err()
                .contains("postgres://")
        );
        assert!(parse_admin_key("short").is_err());
        assert_eq!(parse_task_log_cap("50MiB").unwrap(), 50 * 1024 * 1024);
        assert!(
            parse_task_log_cap("100B")
                .unwrap_err()
                .contains("between 4KiB and 64GiB")
        );
        assert!(
            parse_task_log_cap("50")
                .unwrap_err()
                .contains("unit is missing")
        );
    }
}
