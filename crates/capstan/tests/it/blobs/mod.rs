//! The shared blob store: the package feed, task artifacts, and how the store's
//! failures show. The contract tests run once per kind of store: a local directory,
//! `memory://`, and a real S3-compatible server (s3s-fs) started by the tests.

mod artifacts;
mod conditional;
mod failures;
mod haproxy;
mod packages;

use std::path::{Path, PathBuf};

use capstan_blob::{BlobStore, S3Credentials, S3Options};
use capstan_server::Settings;
use capstan_testkit::{TestCluster, s3};

/// A kind of blob store the suite runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Directory,
    Memory,
    S3,
}

/// A cluster on one blob store, and a view of that store for checking what is left.
pub struct StoreCluster {
    pub cluster: TestCluster,
    pub store: BlobStore,
    /// Where the store keeps files, to look for stray staging files and parts.
    files: Option<PathBuf>,
}

impl StoreCluster {
    pub async fn start(backend: Backend, nodes: usize, tweak: impl Fn(&mut Settings)) -> Self {
        let (url, s3, files) = match backend {
            Backend::Directory => (String::new(), S3Options::default(), None),
            Backend::Memory => (
                format!("memory://{}", uuid::Uuid::new_v4()),
                S3Options::default(),
                None,
            ),
            Backend::S3 => {
                let server = s3::shared();
                let prefix = uuid::Uuid::new_v4().to_string();
                (
                    server.blob_url(&prefix),
                    s3_options(server),
                    Some(server.root().join(server.bucket()).join(&prefix)),
                )
            }
        };
        let cluster = TestCluster::start_with(&vec![None; nodes], |settings| {
            if !url.is_empty() {
                settings.blob_url.clone_from(&url);
                settings.s3 = s3.clone();
            }
            tweak(settings);
        })
        .await;
        let (store, files) = if url.is_empty() {
            let dir = cluster.blob_dir.0.clone();
            (
                BlobStore::from_url(&format!("file://{}", dir.display())).unwrap(),
                Some(dir),
            )
        } else {
            (BlobStore::open(&url, &s3).unwrap(), files)
        };
        Self {
            cluster,
            store,
            files,
        }
    }

    /// Every object under `prefix`, plus any file the store keeps outside its listing
    /// (staging files of directory uploads, parts of S3 uploads), except probes.
    pub async fn leftovers(&self, prefix: &str) -> Vec<String> {
        let mut found = self.store.list(prefix, 100).await.unwrap();
        if let Some(dir) = &self.files {
            found.extend(files_under(&dir.join(prefix)).into_iter().map(|p| {
                p.strip_prefix(dir)
                    .map_or_else(|_| p.display().to_string(), |k| k.display().to_string())
            }));
        }
        found.sort();
        found.dedup();
        found
    }
}

/// S3 settings for the shared test server, given in code.
pub fn s3_options(server: &s3::S3Server) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint()),
        path_style: true,
        credentials: Some(S3Credentials {
            access_key_id: s3::ACCESS_KEY.to_owned(),
            secret_access_key: s3::SECRET_KEY.to_owned(),
        }),
    }
}

/// Every file below `dir`, however deep.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Runs a contract test (an `async fn(Backend)`) once per kind of store.
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test]
                async fn directory() {
                    super::$test(crate::blobs::Backend::Directory).await;
                }
                #[tokio::test]
                async fn memory() {
                    super::$test(crate::blobs::Backend::Memory).await;
                }
                #[tokio::test]
                async fn s3() {
                    super::$test(crate::blobs::Backend::S3).await;
                }
            }
        )*
    };
}
pub(crate) use on_every_store;

/// Incompressible test bytes, for other test modules.
pub fn packages_noise(len: usize) -> Vec<u8> {
    packages::noise(len, 42)
}
