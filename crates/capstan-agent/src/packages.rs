//! The package cache: `<home>/packages/<sha256>`, each file verified before it gets
//! that name, so a file under a hash's name always has that hash.
//!
//! A download goes to a temporary file in the same directory, hashed as it arrives,
//! and is renamed into place only when its size and sha256 match. Two commands
//! fetching one package at once each download it; the second rename replaces the
//! first with identical bytes.

use std::{
    io,
    path::{Path, PathBuf},
    time::Instant,
};

use capstan_api::PackageRef;
use capstan_core::format_size;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{
    client::{AgentClient, CallError},
    home::sync_dir,
    output::OutputLog,
    retry::{Backoff, humanise},
};

/// Verified packages, by sha256.
#[derive(Debug, Clone)]
pub struct PackageCache {
    dir: PathBuf,
}

/// Why one download attempt failed.
enum Attempt {
    /// Worth another try: the connection broke, the server was unavailable.
    Retry(String),
    /// The command fails with this sentence.
    Fail(String),
}

impl PackageCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the package with this sha256 is kept.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The package's file in the cache, downloaded first unless a file of the right
    /// size is there. Transient failures are retried until the command's deadline,
    /// which the caller enforces; the error is a sentence for the command's result.
    pub async fn fetch(
        &self,
        client: &AgentClient,
        package: &PackageRef,
        log: &OutputLog,
    ) -> Result<PathBuf, String> {
        let label = format!("{} {}", package.id, package.version);
        let sha256 = checked_sha256(&package.sha256)
            .map_err(|reason| format!("package {label} cannot be fetched: {reason}"))?;
        let path = self.path_of(&sha256);
        if let Ok(metadata) = tokio::fs::metadata(&path).await {
            if metadata.is_file() && metadata.len() == package.size {
                log.agent(&format!(
                    "package {label} is in the cache (cache hit): {}",
                    path.display()
                ))
                .await;
                return Ok(path);
            }
        }
        if !package.download.starts_with('/') {
            return Err(format!(
                "package {label} cannot be fetched: its download path `{}` is not a path on the server",
                package.download
            ));
        }
        log.agent(&format!(
            "downloading package {label} ({})",
            format_size(package.size)
        ))
        .await;
        let started = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            match self.download(client, package, &sha256, &label).await {
                Ok(()) => break,
                Err(Attempt::Fail(reason)) => return Err(reason),
                Err(Attempt::Retry(reason)) => {
                    let pause = backoff.next_pause();
                    log.agent(&format!(
                        "downloading package {label} failed: {reason}; retrying in {}",
                        humanise(pause)
                    ))
                    .await;
                    tokio::time::sleep(pause).await;
                }
            }
        }
        log.agent(&format!(
            "downloaded package {label} in {}, sha256 verified",
            humanise(started.elapsed())
        ))
        .await;
        Ok(path)
    }

    async fn download(
        &self,
        client: &AgentClient,
        package: &PackageRef,
        sha256: &str,
        label: &str,
    ) -> Result<(), Attempt> {
        let mut response = client
            .download(&package.download)
            .await
            .map_err(|e| failed_call(label, &e))?;
        let partial = Partial::create(&self.dir, sha256)
            .await
            .map_err(|e| Attempt::Fail(format!("cannot store package {label}: {e}")))?;
        let cannot_write = |e: io::Error| {
            Attempt::Fail(format!(
                "cannot store package {label} in {}: {e}",
                self.dir.display()
            ))
        };
        let mut file = tokio::fs::File::from_std(partial.open().map_err(cannot_write)?);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Attempt::Retry(capstan_core::error_chain(&e)))?
        {
            received += chunk.len() as u64;
            if received > package.size {
                return Err(Attempt::Fail(format!(
                    "package {label} is larger than the {} bytes it should have",
                    package.size
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(cannot_write)?;
        }
        if received != package.size {
            return Err(Attempt::Fail(format!(
                "package {label} has {received} bytes, not the {} it should have",
                package.size
            )));
        }
        let actual = format!("{:x}", hasher.finalize());
        if actual != sha256 {
            return Err(Attempt::Fail(format!(
                "package {label} does not match its checksum: expected sha256 {sha256}, got {actual}"
            )));
        }
        file.sync_all().await.map_err(cannot_write)?;
        drop(file);
        partial
            .keep_as(&self.path_of(sha256))
            .map_err(cannot_write)?;
        sync_dir(&self.dir).map_err(cannot_write)?;
        Ok(())
    }
}

fn failed_call(label: &str, error: &CallError) -> Attempt {
    if error.is_transient() || error.is_unauthorized() {
        Attempt::Retry(error.to_string())
    } else {
        Attempt::Fail(format!(
            "cannot download package {label}: {}",
            error.detail()
        ))
    }
}

/// The sha256 in lowercase, if it is one: it becomes a file name, so nothing else
/// (`../`, say) may pass.
fn checked_sha256(sha256: &str) -> Result<String, String> {
    let lower = sha256.trim().to_ascii_lowercase();
    if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(lower)
    } else {
        Err(format!(
            "`{sha256}` is not a sha256 (64 hexadecimal digits)"
        ))
    }
}

/// A download in progress, removed unless kept: a failed or abandoned download
/// (the command timed out or was cancelled mid-transfer) leaves no litter.
struct Partial {
    path: Option<PathBuf>,
}

impl Partial {
    async fn create(dir: &Path, sha256: &str) -> io::Result<Self> {
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(format!(".{sha256}.{:016x}.part", rand::random::<u64>()));
        Ok(Self { path: Some(path) })
    }

    fn open(&self) -> io::Result<std::fs::File> {
        let path = self.path.as_ref().expect("a partial download has a path");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    }

    fn keep_as(mut self, target: &Path) -> io::Result<()> {
        let path = self.path.take().expect("a partial download has a path");
        std::fs::rename(&path, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Router, extract::State, http::StatusCode, routing::get};
    use tokio::sync::mpsc;

    use super::*;
    use crate::{output::Masker, testing::TempDir};

    /// A server with one package at `/pkg` and one that always fails at `/missing`.
    struct PackageServer {
        url: String,
        downloads: Arc<AtomicUsize>,
    }

    async fn serve(body: Vec<u8>) -> PackageServer {
        let downloads = Arc::new(AtomicUsize::new(0));
        let state = (Arc::new(body), downloads.clone());
        let app = Router::new()
            .route(
                "/pkg",
                get(
                    |State((body, count)): State<(Arc<Vec<u8>>, Arc<AtomicUsize>)>| async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        body.as_ref().clone()
                    },
                ),
            )
            .route(
                "/missing",
                get(|| async { (StatusCode::NOT_FOUND, "no such package version") }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        PackageServer { url, downloads }
    }

    fn package(bytes: &[u8], download: &str) -> PackageRef {
        PackageRef {
            id: "MyApp".to_owned(),
            version: "1.2.3".to_owned(),
            sha256: format!("{:x}", Sha256::digest(bytes)),
            size: bytes.len() as u64,
            download: download.to_owned(),
        }
    }

    fn log() -> (OutputLog, mpsc::Receiver<capstan_api::OutputLine>) {
        let (lines_tx, lines_rx) = mpsc::channel(100);
        (OutputLog::new(Masker::default(), lines_tx), lines_rx)
    }

    fn texts(lines_rx: &mut mpsc::Receiver<capstan_api::OutputLine>) -> Vec<String> {
        let mut texts = Vec::new();
        while let Ok(line) = lines_rx.try_recv() {
            texts.push(line.text);
        }
        texts
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_miss_downloads_and_verifies_then_a_hit_skips_the_transfer() {
        let bytes = b"the package's bytes".repeat(1000);
        let server = serve(bytes.clone()).await;
        let dir = TempDir::new();
        let cache = PackageCache::new(dir.path());
        let client = AgentClient::new(&server.url, None).unwrap();
        let package = package(&bytes, "/pkg");
        let (log, mut lines_rx) = log();

        let path = cache.fetch(&client, &package, &log).await.unwrap();
        assert_eq!(path, dir.path().join(&package.sha256));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(server.downloads.load(Ordering::SeqCst), 1);
        let miss = texts(&mut lines_rx);
        assert!(
            miss[0].starts_with("downloading package MyApp 1.2.3"),
            "{miss:?}"
        );
        assert!(miss[1].ends_with("sha256 verified"), "{miss:?}");

        let again = cache.fetch(&client, &package, &log).await.unwrap();
        assert_eq!(again, path);
        assert_eq!(
            server.downloads.load(Ordering::SeqCst),
            1,
            "no second transfer"
        );
        let hit = texts(&mut lines_rx);
        assert_eq!(hit.len(), 1);
        assert!(hit[0].contains("cache hit"), "{hit:?}");
        assert_eq!(files_in(dir.path()), vec![package.sha256]);
    }

    #[tokio::test]
    async fn a_corrupted_download_fails_naming_both_checksums_and_leaves_nothing() {
        let served = b"corrupted bytes!".to_vec();
        let server = serve(served.clone()).await;
        let dir = TempDir::new();
        let cache = PackageCache::new(dir.path());
        let client = AgentClient::new(&server.url, None).unwrap();
        let mut expected = package(b"original bytes!!", "/pkg");
        assert_eq!(expected.size, served.len() as u64);
        let (log, _lines_rx) = log();

        let err = cache.fetch(&client, &expected, &log).await.unwrap_err();
        let actual = format!("{:x}", Sha256::digest(&served));
        assert_eq!(
            err,
            format!(
                "package MyApp 1.2.3 does not match its checksum: expected sha256 {}, got {actual}",
                expected.sha256
            )
        );
        assert!(
            files_in(dir.path()).is_empty(),
            "{:?}",
            files_in(dir.path())
        );

        expected.size += 1;
        let err = cache.fetch(&client, &expected, &log).await.unwrap_err();
        assert!(err.contains("has 16 bytes, not the 17"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_download_and_a_bad_checksum_fail_clearly() {
        let server = serve(Vec::new()).await;
        let dir = TempDir::new();
        let cache = PackageCache::new(dir.path());
        let client = AgentClient::new(&server.url, None).unwrap();
        let (log, _lines_rx) = log();

        let err = cache
            .fetch(&client, &package(b"x", "/missing"), &log)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "cannot download package MyApp 1.2.3: no such package version"
        );

        let mut evil = package(b"x", "/pkg");
        evil.sha256 = "../../etc/passwd".to_owned();
        let err = cache.fetch(&client, &evil, &log).await.unwrap_err();
        assert!(err.contains("is not a sha256"), "{err}");
        assert_eq!(server.downloads.load(Ordering::SeqCst), 0);
    }
}
