//! `capstan dev`: a whole cluster on one machine, for trying Capstan out and for
//! developing it. A private PostgreSQL from the machine's own binaries, a local
//! directory as the blob store, three nodes on consecutive ports. Data is kept under
//! the data directory between runs.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use capstan_core::NodeName;
use capstan_db::DatabaseUrl;
use capstan_server::{Node, Settings};
use clap::Args;
use rand::RngCore as _;
use secrecy::SecretString;
use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the cluster keeps its database, blobs and keys between runs.
    #[arg(long, default_value = ".capstan/dev")]
    data_dir: PathBuf,
    /// The first of the nodes' consecutive ports.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// How many nodes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// The private PostgreSQL's port.
    #[arg(long, default_value_t = 54329)]
    pg_port: u16,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    // Held until we return: everything below may assume no other `capstan dev` uses this
    // data directory, including stopping a PostgreSQL left running on it.
    let _instance = InstanceLock::take(&data_dir, args.port)?;
    let node_ports = (0..args.nodes).map(|i| args.port + i);
    ensure_free(node_ports, "a node")?;
    let postgres = PrivatePostgres::start(&data_dir, args.pg_port)?;
    let result = run_cluster(&args, &data_dir, &postgres).await;
    postgres.stop();
    result
}

/// An exclusive lock on `<data dir>/lock` for the life of the process, naming its
/// holder. The kernel releases it however the process ends, so a killed run never
/// leaves a stale lock behind.
struct InstanceLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl InstanceLock {
    fn take(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        use std::io::{Read as _, Seek as _};
        let path = data_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                file.set_len(0)?;
                file.rewind()?;
                write!(file, "{} http://127.0.0.1:{port}", std::process::id())?;
                file.flush()?;
                Ok(Self { _file: file })
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                match holder.split_once(' ') {
                    Some((pid, url)) => bail!(
                        "capstan dev is already running here (pid {pid}, {url}); stop it \
                         first, or give this one another --data-dir and ports"
                    ),
                    // It has the lock but has not written its name yet.
                    None => bail!(
                        "capstan dev is already running here (it holds {}); stop it first, \
                         or give this one another --data-dir and ports",
                        path.display()
                    ),
                }
            }
            Err((_, errno)) => Err(anyhow::Error::new(errno))
                .with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Fails, naming the first of `ports` on 127.0.0.1 that something else listens on.
fn ensure_free(ports: impl IntoIterator<Item = u16>, what: &str) -> anyhow::Result<()> {
    for port in ports {
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            bail!(
                "port {port} is taken ({e}), so {what} cannot listen on it: is another \
                 capstan dev or server running with another --data-dir? Stop it, or pick \
                 free ports with --port and --pg-port"
            );
        }
    }
    Ok(())
}

async fn run_cluster(
    args: &DevArgs,
    data_dir: &Path,
    postgres: &PrivatePostgres,
) -> anyhow::Result<()> {
    let database_url = postgres.wait_for_database("capstan").await?;
    let admin_key = read_or_create_secret(&data_dir.join("admin-api-key"), |bytes| {
        format!("cpk_{}", hex(bytes))
    })?;
    let master_key = read_or_create_secret(&data_dir.join("master-key"), |bytes| {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })?;
    let blob_dir = data_dir.join("blobs");
    std::fs::create_dir_all(&blob_dir)?;

    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let port = args.port + i;
        let server_args = capstan_server::ServerArgs {
            database_url: DatabaseUrl::parse(&database_url).map_err(anyhow::Error::msg)?,
            blob_url: format!("file://{}", blob_dir.display()),
            s3_endpoint: None,
            s3_path_style: false,
            max_upload_size: 10 << 30,
            package_retention_versions: 0,
            task_blob_retention: Duration::from_secs(30 * 24 * 3600),
            blob_retention_every: Duration::from_secs(3600),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            audit_retention_every: Duration::from_secs(3600),
            release_retention_every: Duration::from_secs(3600),
            agent_health_check_every: Duration::from_secs(600),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            node_name: Some(NodeName::parse(format!("dev-{}", i + 1))?),
            public_url: None,
            task_cap: None,
            heartbeat_interval: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(60),
            task_history_retention: Duration::from_secs(30 * 24 * 3600),
            task_history_retention_every: Duration::from_secs(3600),
            api_key_max_lifetime: Duration::from_secs(365 * 24 * 3600),
            task_log_cap: 50 * 1024 * 1024,
            max_log_followers: 500,
            shutdown_grace: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            upload_stall_timeout: Duration::from_secs(60),
            db_pool_size: 5,
            master_key: None,
            master_key_previous: Vec::new(),
            admin_api_key: Some(SecretString::from(admin_key.clone())),
            trusted_proxies: Vec::new(),
            start_draining: false,
            session_idle_timeout: Duration::from_secs(8 * 3600),
            session_max_lifetime: Duration::from_secs(7 * 24 * 3600),
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_redirect_url: None,
            log_format: capstan_server::LogFormat::Text,
        };
        let mut settings: Settings = server_args.into_settings().map_err(anyhow::Error::msg)?;
        settings.master_key = Some(parse_master_key(&master_key)?);
        let node = Node::build(settings)
            .await
            .map_err(|e| anyhow::anyhow!("node dev-{}: {e}", i + 1))?;
        nodes.push(node);
    }

    let mut banner = String::new();
    writeln!(banner)?;
    writeln!(banner, "Capstan dev cluster is up ({} nodes):", nodes.len())?;
    for node in &nodes {
        writeln!(
            banner,
            "  {:<8} http://{}",
            node.state().name,
            node.local_addr()
        )?;
    }
    writeln!(banner, "  admin API key  {admin_key}")?;
    writeln!(banner, "  database       {database_url}")?;
    writeln!(
        banner,
        "  master key     {} (encrypts sensitive values; keep it with the data)",
        data_dir.join("master-key").display()
    )?;
    writeln!(banner, "  blob store     {}", blob_dir.display())?;
    writeln!(
        banner,
        "  data           {} (kept between runs)",
        data_dir.display()
    )?;
    writeln!(banner)?;
    writeln!(
        banner,
        "Try: CAPSTAN_SERVER=http://{} CAPSTAN_API_KEY={admin_key} capstan nodes list",
        nodes[0].local_addr()
    )?;
    writeln!(banner, "Press Ctrl-C to stop.")?;
    crate::output::write_best_effort(&banner);

    let shutdown = crate::signals::shutdown_on_signal();
    let mut running = tokio::task::JoinSet::new();
    for node in nodes {
        let token = shutdown.clone();
        running.spawn(async move { node.run(token).await });
    }
    let mut failure = None;
    while let Some(result) = running.join_next().await {
        let outcome = result.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!("{e:#}");
            shutdown.cancel();
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn parse_master_key(text: &str) -> anyhow::Result<capstan_server::config::MasterKey> {
    capstan_server::config::MasterKey::from_base64(text).map_err(anyhow::Error::msg)
}

/// A PostgreSQL server of our own, run as an unprivileged user when we are root
/// (PostgreSQL refuses to run as root).
struct PrivatePostgres {
    bin_dir: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Child,
}

impl PrivatePostgres {
    fn start(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        let bin_dir = find_postgres_binaries()?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let data = data_dir.join("postgres");
        if let Some((uid, gid)) = run_as {
            // The user needs to reach the data directory through our own.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o755))?;
            std::fs::create_dir_all(&data)?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        std::fs::create_dir_all(&data)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;

        if data.join("PG_VERSION").exists() {
            // A previous run that was killed may have left its server running: ours to
            // stop, as the instance lock says no running `capstan dev` uses it.
            let _ = as_user(Command::new(bin_dir.join("pg_ctl")), run_as)
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        ensure_free([port], "PostgreSQL")?;

        if !data.join("PG_VERSION").exists() {
            crate::output::write_best_effort(&format!(
                "creating a PostgreSQL cluster in {}\n",
                data.display()
            ));
            let status = as_user(Command::new(bin_dir.join("initdb")), run_as)
                .args(["-D"])
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ])
                .stdout(Stdio::null())
                .status()
                .context("cannot run initdb")?;
            if !status.success() {
                bail!("initdb failed ({status}) for {}", data.display());
            }
        }

        let log = std::fs::File::create(data_dir.join("postgres.log"))?;
        let child = as_user(Command::new(bin_dir.join("postgres")), run_as)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C must reach us, not PostgreSQL, so the nodes
            // can still write their last words before we stop it.
            .process_group(0)
            .spawn()
            .context("cannot start postgres")?;
        Ok(Self {
            bin_dir,
            data,
            port,
            run_as,
            child,
        })
    }

    /// Waits until the server accepts connections and the database exists.
    async fn wait_for_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection as _;
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let started = Instant::now();
        let mut conn = loop {
            match sqlx::PgConnection::connect(&admin_url).await {
                Ok(conn) => break conn,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    bail!(
                        "PostgreSQL did not come up on port {} within 30s: {e}; see {}",
                        self.port,
                        self.data.with_file_name("postgres.log").display()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await?;
        }
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    fn stop(mut self) {
        let _ = as_user(Command::new(self.bin_dir.join("pg_ctl")), self.run_as)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
        let _ = self.child.wait();
        crate::output::write_best_effort(&format!(
            "PostgreSQL stopped; data kept in {}\n",
            self.data.display()
        ));
    }
}

fn as_user(mut command: Command, run_as: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    command
}

/// The newest PostgreSQL server binaries on the machine.
fn find_postgres_binaries() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = candidates.pop() {
        return Ok(newest);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let dir = PathBuf::from(dir);
        if dir.join("postgres").exists() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries (postgres, initdb) were not found in /usr/lib/postgresql/*/bin \
         or on PATH; install them with `apt-get install postgresql` (Debian, Ubuntu) or \
         `dnf install postgresql-server` (Fedora, RHEL)"
    )
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `postgres` if the machine has that user, else `nobody`.
fn unprivileged_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    let lookup = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    lookup("postgres").or_else(|| lookup("nobody")).context(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as",
    )
}

/// Reads a secret kept from an earlier run, or makes a new one (mode 0600).
fn read_or_create_secret(path: &Path, encode: impl Fn(&[u8]) -> String) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Ok(existing) = std::fs::read_to_string(path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_owned());
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = encode(&bytes);
    // Created 0600 rather than chmod-ed after writing, so the secret is never readable
    // by others, not even for a moment.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
