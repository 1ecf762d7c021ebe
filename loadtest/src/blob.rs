//! The blob store's large-object benchmark: one package of random bytes (1 GiB by
//! default) uploaded to and downloaded from a real `capstan server` on loopback, each
//! round against a plain file copy of the same bytes on the same disk.
//!
//! Each round:
//!
//! 1. **Copy**: `std::fs::copy` of the source file (in-kernel `copy_file_range` on
//!    Linux), without fsync, because the file store does not fsync either. The fsync
//!    that follows is timed on its own and reported as a second, slower baseline.
//! 2. **Upload**: a fresh node on a fresh database; `POST /api/packages/raw` with the
//!    file streamed from disk in 1 MiB chunks, timed from the first byte sent to the
//!    201.
//! 3. **Download**: `GET /api/packages/{id}/{version}/raw` written to a file, timed
//!    from the request to the last byte written; then (untimed) its size and sha256
//!    are checked against the source, as are the ones the 201 reported.
//!
//! Every phase starts with the file system synced, so none pays for an earlier
//! phase's writeback. The node's resident memory is sampled every 50 ms for the whole
//! round. Figures are printed as JSON lines on stdout and as a summary on stderr.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use bytes::{Bytes, BytesMut};
use capstan_api::PackageResponse;
use capstan_core::format_size;
use rand::{RngCore as _, SeedableRng as _, rngs::SmallRng};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::database::Database;
use crate::nodes::{self, ADMIN_KEY, BenchNode};

const MIB: f64 = 1024.0 * 1024.0;
const CHUNK: usize = 1024 * 1024;
const RSS_EVERY: Duration = Duration::from_millis(50);
/// What the node may take per round, at most, beyond its idle footprint.
const RSS_GROWTH_GOAL_MIB: f64 = 64.0;
/// The share of the plain copy's throughput an upload or download must reach.
const THROUGHPUT_GOAL: f64 = 0.5;
const PACKAGE_ID: &str = "blob-bench";
const S3_BUCKET: &str = "capstan-bench";
const S3_ACCESS_KEY: &str = "AKIDBENCH";
const S3_SECRET_KEY: &str = "SECRETBENCH";

/// `capstan-loadtest blob`: upload and download through a node against a file copy.
#[derive(Debug, clap::Args)]
pub struct BlobArgs {
    /// Size of the package.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Rounds to run; the summary gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Where the work directory (source file, copies, blob store, logs) is made; it
    /// needs room for four times `--size`.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// The node's blob store; by default a fresh `file://` directory per round inside
    /// the work directory. A `file://` store should be on the work directory's disk,
    /// or the copy it is compared with is not a fair baseline. Each round's package
    /// is deleted through the node at the end of the round.
    #[arg(long, conflicts_with = "s3")]
    blob_url: Option<String>,
    /// Store blobs in an S3-compatible server (s3s-fs, started here on loopback with
    /// its data in the work directory) instead of a directory.
    #[arg(long)]
    s3: bool,
    /// Before each round, wait until the machine is less busy than this (per cent of
    /// all CPUs, over one second): on a shared machine, neighbours skew the figures.
    #[arg(long, default_value_t = 10.0)]
    idle_below: f64,
    /// The PostgreSQL server on which each round's throwaway database is created.
    #[arg(
        long,
        env = "CAPSTAN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

fn parse_size(s: &str) -> Result<u64, String> {
    capstan_core::parse_size(s).map_err(|e| e.to_string())
}

pub async fn run(args: BlobArgs) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.size > 0, "--size must be more than 0 bytes");
    let work = args
        .dir
        .join(format!("capstan-blob-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = run_in(&args, &work).await;
    // The data is several times --size; the logs are worth keeping only on failure.
    for data in ["source.bin", "copy.bin", "download.bin", "blobs", "s3"] {
        remove(&work.join(data));
    }
    match &result {
        Ok(()) => remove(&work),
        Err(_) => eprintln!("node logs kept in {}", work.display()),
    }
    result
}

fn remove(path: &Path) {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = removed {
        eprintln!("cannot remove {}: {e}", path.display());
    }
}

async fn run_in(args: &BlobArgs, work: &Path) -> anyhow::Result<()> {
    let store = if args.s3 {
        Store::S3(S3sFs::start(&work.join("s3")).await?)
    } else if let Some(url) = &args.blob_url {
        warn_if_other_disk(url, work);
        Store::Given(url.clone())
    } else {
        Store::Directory
    };
    let variant = store.variant();

    let source = work.join("source.bin");
    eprintln!(
        "writing {} of random bytes to {}",
        format_size(args.size),
        source.display()
    );
    let (size, sha256) = {
        let source = source.clone();
        let size = args.size;
        tokio::task::spawn_blocking(move || write_random(&source, size)).await??
    };

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let busy = wait_until_idle(args.idle_below).await;
        eprintln!(
            "round {round}/{}: machine {busy:.0}% busy beforehand",
            args.rounds
        );
        let figures = run_round(args, work, &store, round, &source, &sha256).await?;
        let extra = json!({ "size_bytes": size, "store": store.url(work, round) });
        let figure = |metric: &str, value: f64| emit(variant, metric, value, round, &extra);
        figure("machine_busy_pct", busy);
        figures.emit(figure);
        rounds.push(figures);
    }
    summarize(args, variant, &rounds);
    Ok(())
}

/// Where the node keeps its blobs.
enum Store {
    /// A fresh directory per round in the work directory.
    Directory,
    /// A URL given on the command line, shared by every round.
    Given(String),
    /// A bucket in our own s3s-fs, with a fresh prefix per round.
    S3(S3sFs),
}

impl Store {
    fn variant(&self) -> &'static str {
        match self {
            Store::Directory => "file",
            Store::Given(url) if url.starts_with("file:") => "file",
            Store::Given(_) => "given",
            Store::S3(_) => "s3",
        }
    }

    fn url(&self, work: &Path, round: u32) -> String {
        match self {
            Store::Directory => format!(
                "file://{}",
                work.join("blobs").join(format!("r{round}")).display()
            ),
            Store::Given(url) => url.clone(),
            Store::S3(_) => format!("s3://{S3_BUCKET}/r{round}"),
        }
    }

    /// Makes the round's store exist and returns the node's environment for it.
    fn prepare(&self, work: &Path, round: u32) -> anyhow::Result<Vec<(&'static str, String)>> {
        let mut env = vec![("CAPSTAN_BLOB_URL", self.url(work, round))];
        match self {
            Store::Directory => {
                std::fs::create_dir_all(work.join("blobs").join(format!("r{round}")))?;
            }
            Store::Given(_) => {}
            Store::S3(s3) => env.extend(s3.env()),
        }
        Ok(env)
    }

    /// Removes what the round stored, so rounds do not add up on disk.
    fn clear(&self, work: &Path, round: u32) {
        match self {
            Store::Directory => remove(&work.join("blobs").join(format!("r{round}"))),
            Store::Given(_) => {}
            Store::S3(s3) => remove(&s3.root.join(S3_BUCKET).join(format!("r{round}"))),
        }
    }
}

fn warn_if_other_disk(url: &str, work: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Some(dir) = url.strip_prefix("file://") else {
        return;
    };
    let device = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    if device(Path::new(dir)) != device(work) {
        eprintln!(
            "warning: {dir} is not on the same file system as {}; the copy baseline runs on the latter",
            work.display()
        );
    }
}

/// Writes `size` random bytes (incompressible, so no layer can shortcut them) to
/// `path`, flushed to disk; returns the size and sha256.
fn write_random(path: &Path, size: u64) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::create(path)?;
    let mut rng = SmallRng::from_os_rng();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        rng.fill_bytes(&mut buffer[..n]);
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok((size, hex(&hasher.finalize())))
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; CHUNK];
    let mut size = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((size, hex(&hasher.finalize())));
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes the work directory's file system, so the next phase starts with no dirty
/// pages from the last one to write back.
async fn sync(work: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync")
        .arg("--file-system")
        .arg(work)
        .status()
        .await
        .context("running sync")?;
    ensure!(status.success(), "sync --file-system failed: {status}");
    Ok(())
}

/// The figures of one round.
struct Round {
    copy_mib_s: f64,
    copy_fsync_mib_s: f64,
    upload_mib_s: f64,
    download_mib_s: f64,
    rss_baseline_mib: f64,
    rss_upload_peak_mib: f64,
    rss_download_peak_mib: f64,
    rss_samples: usize,
    upload_cpu: CpuShare,
    download_cpu: CpuShare,
    sha256_mib_s: f64,
}

impl Round {
    fn upload_ratio(&self) -> f64 {
        self.upload_mib_s / self.copy_mib_s
    }

    fn download_ratio(&self) -> f64 {
        self.download_mib_s / self.copy_mib_s
    }

    fn rss_growth_mib(&self) -> f64 {
        self.rss_upload_peak_mib.max(self.rss_download_peak_mib) - self.rss_baseline_mib
    }

    fn emit(&self, emit: impl Fn(&str, f64)) {
        emit("copy_mib_per_s", self.copy_mib_s);
        emit("copy_fsync_mib_per_s", self.copy_fsync_mib_s);
        emit("read_sha256_mib_per_s", self.sha256_mib_s);
        emit("upload_mib_per_s", self.upload_mib_s);
        emit("download_mib_per_s", self.download_mib_s);
        emit("upload_to_copy_ratio", self.upload_ratio());
        emit("download_to_copy_ratio", self.download_ratio());
        emit("node_rss_baseline_mib", self.rss_baseline_mib);
        emit("node_rss_upload_peak_mib", self.rss_upload_peak_mib);
        emit("node_rss_download_peak_mib", self.rss_download_peak_mib);
        emit("node_rss_growth_mib", self.rss_growth_mib());
        emit("node_rss_samples", self.rss_samples as f64);
        for (phase, cpu) in [("upload", self.upload_cpu), ("download", self.download_cpu)] {
            emit(&format!("node_cpu_{phase}_pct"), cpu.node_pct);
            emit(&format!("client_cpu_{phase}_pct"), cpu.client_pct);
            emit(&format!("other_cpu_{phase}_pct"), cpu.other_pct);
        }
    }
}

fn emit(variant: &str, metric: &str, value: f64, round: u32, extra: &serde_json::Value) {
    let mut line = json!({
        "system": "capstan",
        "benchmark": "blob",
        "variant": variant,
        "metric": metric,
        "value": (value * 1000.0).round() / 1000.0,
        "round": round,
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

async fn run_round(
    args: &BlobArgs,
    work: &Path,
    store: &Store,
    round: u32,
    source: &Path,
    sha256: &str,
) -> anyhow::Result<Round> {
    let size = args.size;
    let mib_s = |elapsed: Duration| size as f64 / MIB / elapsed.as_secs_f64();

    let copy = work.join("copy.bin");
    sync(work).await?;
    let (copied, fsynced) = {
        let (source, copy) = (source.to_owned(), copy.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, Duration)> {
            let started = Instant::now();
            std::fs::copy(&source, &copy)?;
            let copied = started.elapsed();
            std::fs::File::open(&copy)?.sync_all()?;
            Ok((copied, started.elapsed()))
        })
        .await??
    };
    remove(&copy);

    let database = Database::create(&args.database_url, "capstan_blob_bench", round).await?;
    let result = through_node(args, work, store, round, source, sha256, &database).await;
    database.drop().await;
    store.clear(work, round);
    let node = result?;
    Ok(Round {
        copy_mib_s: mib_s(copied),
        copy_fsync_mib_s: mib_s(fsynced),
        upload_mib_s: mib_s(node.upload),
        download_mib_s: mib_s(node.download),
        rss_baseline_mib: node.rss_baseline_mib,
        rss_upload_peak_mib: node.peaks.max_mib[Phase::Upload as usize],
        rss_download_peak_mib: node.peaks.max_mib[Phase::Download as usize],
        rss_samples: node.peaks.samples,
        upload_cpu: node.upload_cpu,
        download_cpu: node.download_cpu,
        sha256_mib_s: mib_s(node.hashed),
    })
}

/// What one node did in a round.
struct NodeFigures {
    upload: Duration,
    download: Duration,
    rss_baseline_mib: f64,
    peaks: Peaks,
    upload_cpu: CpuShare,
    download_cpu: CpuShare,
    /// How long this process took to read the download back and hash it: what one
    /// core can hash here, the ceiling of an upload that hashes as it receives.
    hashed: Duration,
}

async fn through_node(
    args: &BlobArgs,
    work: &Path,
    store: &Store,
    round: u32,
    source: &Path,
    sha256: &str,
    database: &Database,
) -> anyhow::Result<NodeFigures> {
    let env = store.prepare(work, round)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let log_dir = work.join(format!("round-{round}"));
    std::fs::create_dir_all(&log_dir)?;
    let mut started = nodes::start(1, 1, &database.url, &log_dir, &env).await?;
    let node = started.pop().context("no node started")?;
    let sampler = Sampler::start(node.pid());
    let mut result = upload_download(args, work, &node, &sampler, round, source, sha256).await;
    if result.is_ok() && matches!(store, Store::Given(_)) {
        // A store we did not make, we cannot empty ourselves: the node deletes the
        // package, and its sweep (woken by the delete) the blob.
        if let Err(e) = delete_package(&node, round).await {
            result = Err(e);
        }
    }
    let peaks = sampler.stop();
    nodes::stop(vec![node]).await;
    let mut figures = result?;
    figures.peaks = peaks;
    Ok(figures)
}

async fn upload_download(
    args: &BlobArgs,
    work: &Path,
    node: &BenchNode,
    sampler: &Sampler,
    round: u32,
    source: &Path,
    sha256: &str,
) -> anyhow::Result<NodeFigures> {
    let client = reqwest::Client::new();
    let version = package_version(round);

    // Let the node finish starting (migrations, first heartbeat) before its idle
    // footprint is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sync(work).await?;
    let rss_baseline_mib = node.rss_mib().context("the node has exited")?;
    let cpu_before = CpuTimes::now(node.pid());
    sampler.enter(Phase::Upload);
    let started = Instant::now();
    let response = client
        .post(format!("{}/api/packages/raw", node.url))
        .query(&[("id", PACKAGE_ID), ("version", version.as_str())])
        .bearer_auth(ADMIN_KEY)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::CONTENT_LENGTH, args.size)
        .body(reqwest::Body::wrap_stream(read_chunks(source.to_owned())))
        .send()
        .await?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        bail!("upload answered {status}: {}", response.text().await?);
    }
    let uploaded: PackageResponse = response.json().await?;
    let upload = started.elapsed();
    sampler.enter(Phase::Between);
    let upload_cpu = CpuTimes::now(node.pid()).share_since(cpu_before, upload);
    ensure!(
        uploaded.size == args.size && uploaded.sha256 == sha256,
        "the node stored {} bytes with sha256 {}; sent {} bytes with sha256 {sha256}",
        uploaded.size,
        uploaded.sha256,
        args.size
    );

    sync(work).await?;
    let target = work.join("download.bin");
    let cpu_before = CpuTimes::now(node.pid());
    sampler.enter(Phase::Download);
    let started = Instant::now();
    let response = client
        .get(format!(
            "{}/api/packages/{PACKAGE_ID}/{version}/raw",
            node.url
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        bail!("download answered {status}: {}", response.text().await?);
    }
    write_chunks(response, &target).await?;
    let download = started.elapsed();
    sampler.enter(Phase::Between);
    let download_cpu = CpuTimes::now(node.pid()).share_since(cpu_before, download);

    let hashing = Instant::now();
    let (got_size, got_sha256) = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || hash_file(&target)).await??
    };
    let hashed = hashing.elapsed();
    remove(&target);
    ensure!(
        got_size == args.size && got_sha256 == sha256,
        "downloaded {got_size} bytes with sha256 {got_sha256}; uploaded {} bytes with sha256 {sha256}",
        args.size
    );
    Ok(NodeFigures {
        upload,
        download,
        rss_baseline_mib,
        peaks: Peaks::default(),
        upload_cpu,
        download_cpu,
        hashed,
    })
}

/// Each round stores its own version, so no round meets an earlier one's package.
fn package_version(round: u32) -> String {
    format!("1.0.{round}")
}

async fn delete_package(node: &BenchNode, round: u32) -> anyhow::Result<()> {
    reqwest::Client::new()
        .delete(format!(
            "{}/api/packages/{PACKAGE_ID}/{}",
            node.url,
            package_version(round)
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .error_for_status()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// The file at `path` as a stream of 1 MiB chunks, read by a thread of its own so the
/// client spends no runtime turns on the disk.
fn read_chunks(
    path: PathBuf,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) => return drop(chunk_tx.blocking_send(Err(e))),
        };
        loop {
            let mut chunk = BytesMut::zeroed(CHUNK);
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return drop(chunk_tx.blocking_send(Err(e))),
                }
            }
            if filled == 0 {
                return;
            }
            chunk.truncate(filled);
            if chunk_tx.blocking_send(Ok(chunk.freeze())).is_err() {
                return;
            }
        }
    });
    futures::stream::unfold(chunk_rx, |mut chunk_rx| async move {
        chunk_rx.recv().await.map(|chunk| (chunk, chunk_rx))
    })
}

/// Writes a response body to `path` through a thread of its own; returns once the
/// last byte is written (not fsynced, as neither the copy nor the store fsyncs).
async fn write_chunks(mut response: reqwest::Response, path: &Path) -> anyhow::Result<()> {
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(4);
    let path = path.to_owned();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&path)?;
        while let Some(batch) = batch_rx.blocking_recv() {
            for chunk in batch {
                file.write_all(&chunk)?;
            }
        }
        Ok(())
    });
    let received = async {
        // Chunks arrive as small as the node sends them; handed over in batches of
        // about 1 MiB, they wake the writer a thousand times per GiB, not a hundred
        // thousand.
        let mut batch = Vec::new();
        let mut batched = 0;
        while let Some(chunk) = response.chunk().await? {
            batched += chunk.len();
            batch.push(chunk);
            if batched >= CHUNK {
                batched = 0;
                if batch_tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        }
        drop(batch_tx.send(batch).await);
        anyhow::Ok(())
    }
    .await;
    drop(batch_tx);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the download's writer thread panicked"))?;
    received?;
    written.context("writing the download")?;
    Ok(())
}

/// The part of a round the node's memory is sampled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle = 0,
    Upload = 1,
    Between = 2,
    Download = 3,
}

/// The highest resident memory seen in each [`Phase`], in MiB.
#[derive(Debug, Default)]
struct Peaks {
    max_mib: [f64; 4],
    samples: usize,
}

/// Samples a process's resident memory every [`RSS_EVERY`] on a thread of its own, so
/// a busy runtime cannot delay a sample.
struct Sampler {
    phase: Arc<AtomicUsize>,
    stop_tx: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Peaks>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let phase = Arc::new(AtomicUsize::new(Phase::Idle as usize));
        let (stop_tx, stop_rx) = mpsc::channel();
        let current = phase.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            // The stop channel doubles as the timer.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(RSS_EVERY) {
                if let Some(rss) = nodes::rss_mib(pid) {
                    let slot = &mut peaks.max_mib[current.load(Ordering::Relaxed)];
                    *slot = slot.max(rss);
                    peaks.samples += 1;
                }
            }
            peaks
        });
        Self {
            phase,
            stop_tx,
            thread,
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as usize, Ordering::Relaxed);
    }

    fn stop(self) -> Peaks {
        // A closed channel ends the sampling loop.
        drop(self.stop_tx);
        self.thread.join().unwrap_or_default()
    }
}

/// CPU time used so far, in seconds: by the node, by this process, and by the whole
/// machine (all CPUs).
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    node: f64,
    client: f64,
    machine: f64,
}

/// CPU used during a phase, in per cent of one CPU.
#[derive(Debug, Clone, Copy)]
struct CpuShare {
    node_pct: f64,
    client_pct: f64,
    /// Everything else: neighbours, and kernel threads (writeback, loopback softirqs
    /// handled outside our processes).
    other_pct: f64,
}

impl CpuTimes {
    fn now(node_pid: u32) -> Self {
        Self {
            node: nodes::cpu_seconds(node_pid).unwrap_or(f64::NAN),
            client: nodes::cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
            machine: machine_cpu_seconds().map_or(f64::NAN, |(busy, _)| busy),
        }
    }

    fn share_since(self, earlier: Self, elapsed: Duration) -> CpuShare {
        let pct = |used: f64| used / elapsed.as_secs_f64() * 100.0;
        let (node, client) = (self.node - earlier.node, self.client - earlier.client);
        CpuShare {
            node_pct: pct(node),
            client_pct: pct(client),
            other_pct: pct((self.machine - earlier.machine - node - client).max(0.0)),
        }
    }
}

/// Busy and total CPU seconds of the whole machine since boot, summed over CPUs.
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // user nice system idle iowait irq softirq steal; the guest times that follow
    // are already counted in user and nice.
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 8 {
        return None;
    }
    let total: f64 = fields.iter().sum();
    let busy = total - fields[3] - fields[4];
    Some((busy / 100.0, total / 100.0))
}

/// How busy the machine is over one second, in per cent of all CPUs.
async fn machine_busy_pct() -> f64 {
    let Some((busy0, total0)) = machine_cpu_seconds() else {
        return f64::NAN;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some((busy1, total1)) = machine_cpu_seconds() else {
        return f64::NAN;
    };
    100.0 * (busy1 - busy0) / (total1 - total0).max(0.01)
}

/// Waits (at most 30 minutes) until the machine is less than `below` per cent busy;
/// returns how busy it was last.
async fn wait_until_idle(below: f64) -> f64 {
    let started = Instant::now();
    let mut said = false;
    loop {
        let busy = machine_busy_pct().await;
        if busy.is_nan() || busy < below {
            return busy;
        }
        if started.elapsed() > Duration::from_secs(30 * 60) {
            eprintln!("the machine is still {busy:.0}% busy after 30 minutes; going ahead");
            return busy;
        }
        if !said {
            eprintln!("waiting for the machine to be less than {below}% busy (now {busy:.0}%)");
            said = true;
        }
    }
}

/// An s3s-fs process on a free loopback port, its data under `root`; killed on drop.
struct S3sFs {
    endpoint: String,
    root: PathBuf,
    child: Child,
}

impl S3sFs {
    async fn start(root: &Path) -> anyhow::Result<Self> {
        let bin = s3s_fs_binary()?;
        std::fs::create_dir_all(root.join(S3_BUCKET))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(root.with_file_name("s3s-fs.log"))?;
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            root: root.to_owned(),
            child,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = server.child.try_wait()? {
                bail!("s3s-fs exited with {status} before accepting connections");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("s3s-fs did not accept connections on port {port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("s3s-fs on {} over {}", server.endpoint, root.display());
        Ok(server)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("CAPSTAN_S3_ENDPOINT", self.endpoint.clone()),
            ("CAPSTAN_S3_PATH_STYLE", "true".to_owned()),
        ]
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs` on PATH, else in ~/.cargo/bin, where `cargo install` puts it.
fn s3s_fs_binary() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo| cargo.join("bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|bin| bin.is_file())
        .context(
            "s3s-fs is not installed (looked on PATH and in ~/.cargo/bin): \
             `cargo install --locked s3s-fs@0.14.1 --features binary`",
        )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn summarize(args: &BlobArgs, variant: &str, rounds: &[Round]) {
    let med = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let max = |f: fn(&Round) -> f64| rounds.iter().map(f).fold(f64::MIN, f64::max);
    let per_round = |f: fn(&Round) -> f64| {
        rounds
            .iter()
            .map(|r| format!("{:.2}", f(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let (upload_ratio, download_ratio) = (med(Round::upload_ratio), med(Round::download_ratio));
    let growth_max = max(Round::rss_growth_mib);
    eprintln!();
    eprintln!(
        "blob store ({variant}): {} up and down, {} rounds, medians",
        format_size(args.size),
        rounds.len()
    );
    eprintln!(
        "  plain copy (std::fs::copy, no fsync) {:>8.1} MiB/s   with fsync {:.1} MiB/s",
        med(|r| r.copy_mib_s),
        med(|r| r.copy_fsync_mib_s)
    );
    eprintln!(
        "  read + sha256 on one core            {:>8.1} MiB/s   (the ceiling of an upload that hashes as it receives)",
        med(|r| r.sha256_mib_s)
    );
    eprintln!(
        "  upload through the node              {:>8.1} MiB/s   {upload_ratio:.2}× copy (rounds {})   goal ≥ {THROUGHPUT_GOAL}×: {}",
        med(|r| r.upload_mib_s),
        per_round(Round::upload_ratio),
        verdict(upload_ratio >= THROUGHPUT_GOAL)
    );
    eprintln!(
        "  download through the node            {:>8.1} MiB/s   {download_ratio:.2}× copy (rounds {})   goal ≥ {THROUGHPUT_GOAL}×: {}",
        med(|r| r.download_mib_s),
        per_round(Round::download_ratio),
        verdict(download_ratio >= THROUGHPUT_GOAL)
    );
    eprintln!(
        "  node RSS   idle {:.1} MiB, upload peak {:.1} MiB, download peak {:.1} MiB; growth {:.1} MiB (highest round {growth_max:.1})   goal < {RSS_GROWTH_GOAL_MIB} MiB: {}",
        med(|r| r.rss_baseline_mib),
        med(|r| r.rss_upload_peak_mib),
        med(|r| r.rss_download_peak_mib),
        med(Round::rss_growth_mib),
        verdict(growth_max < RSS_GROWTH_GOAL_MIB)
    );
    eprintln!(
        "  CPU, % of one core    upload: node {:.0}%, client {:.0}%, other {:.0}%   download: node {:.0}%, client {:.0}%, other {:.0}%",
        med(|r| r.upload_cpu.node_pct),
        med(|r| r.upload_cpu.client_pct),
        med(|r| r.upload_cpu.other_pct),
        med(|r| r.download_cpu.node_pct),
        med(|r| r.download_cpu.client_pct),
        med(|r| r.download_cpu.other_pct)
    );
}
