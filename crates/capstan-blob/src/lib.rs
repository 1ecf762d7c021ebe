//! Capstan's blob store: packages, artifacts and task logs live behind one URL that
//! every node shares (`file:///srv/capstan`, `s3://bucket/prefix`, `memory://`).
//!
//! This crate turns the URL into an object store, proves at start that it can write,
//! read and delete, and streams objects in and out with constant memory. It must never
//! import sqlx or axum: which blob belongs to which row is the server's business.

mod error;
pub mod keys;
mod open;
pub mod task_log;
mod writer;

use std::{fmt, ops::Range, sync::Arc};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, multipart::MultipartStore,
    path::Path,
};

pub use error::ObjectError;
pub use open::{S3Credentials, S3Options};
pub use writer::{BlobWriter, Written};

/// Why the blob store cannot be used, in one line that names the URL.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct BlobError {
    pub url: String,
    pub reason: String,
}

/// The cluster's shared blob store.
#[derive(Clone)]
pub struct BlobStore {
    url: String,
    /// Every key lives under this prefix (the path of an `s3://bucket/prefix` URL).
    prefix: String,
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

/// How uploads are written, and so how an abandoned one is cleaned up.
#[derive(Clone)]
enum Backend {
    /// Parts under an upload id that any node can abort (S3, memory).
    Multipart(Arc<dyn MultipartStore>),
    /// A staging file beside the final path (`<path>#<n>`), renamed into place.
    Directory(std::path::PathBuf),
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobStore({})", self.url)
    }
}

/// An object's size, as the store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
}

impl BlobStore {
    /// Opens the store a URL names, with S3 settings taken from the standard AWS
    /// variables plus `s3`. `file://` paths must be existing directories.
    pub fn open(url: &str, s3: &S3Options) -> Result<Self, BlobError> {
        open::open(url, s3)
    }

    /// Opens a store with default S3 settings (the AWS variables alone).
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        Self::open(url, &S3Options::default())
    }

    /// The URL the store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn fail(&self, key: &str, what: &str, e: &object_store::Error) -> ObjectError {
        ObjectError::from_store(&self.url, key, what, e)
    }

    /// Writes a small object in one request.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.fail(key, &format!("cannot write {key}"), &e))?;
        Ok(())
    }

    /// Reads a whole object into memory; for small objects only (log segments).
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        let what = format!("cannot read {key}");
        let found = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| self.fail(key, &what, &e))?;
        found.bytes().await.map_err(|e| self.fail(key, &what, &e))
    }

    /// The object's size, or `NotFound`.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let meta = self
            .store
            .head(&self.path(key))
            .await
            .map_err(|e| self.fail(key, &format!("cannot look up {key}"), &e))?;
        Ok(ObjectInfo { size: meta.size })
    }

    /// Streams an object, or the bytes `range` of it, without holding it in memory.
    pub async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, ObjectError>>, ObjectError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let found = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.fail(key, &format!("cannot read {key}"), &e))?;
        // A file is read in large blocks: object_store's own file stream reads 8 KiB at
        // a time, each on the blocking pool, which caps a download far below the disk.
        if let object_store::GetResultPayload::File(file, _) = found.payload {
            return Ok(file_stream(
                file,
                found.range,
                self.url.clone(),
                key.to_owned(),
            ));
        }
        let url = self.url.clone();
        let key = key.to_owned();
        Ok(found
            .into_stream()
            .map_err(move |e| {
                ObjectError::from_store(&url, &key, &format!("cannot read {key}"), &e)
            })
            .boxed())
    }

    /// Deletes an object; deleting one that does not exist succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(key, &format!("cannot delete {key}"), &e)),
        }
    }

    /// The keys under `prefix` (relative to the store's own prefix), at most `limit`.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, ObjectError> {
        let root = self.path(prefix);
        let mut found = Vec::new();
        let mut listing = self.store.list(Some(&root));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.fail(prefix, &format!("cannot list {prefix}"), &e))?;
            let full = meta.location.to_string();
            let key = match self.prefix.is_empty() {
                true => full,
                false => full
                    .strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&full)
                    .to_owned(),
            };
            found.push(key);
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// Starts a streamed upload to `key`. Nothing is visible at `key` until
    /// [`BlobWriter::finish`] succeeds.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, ObjectError> {
        BlobWriter::start(self, key).await
    }

    /// Cleans up after an upload whose writer is gone (its node died, or it was never
    /// finished): aborts the parts stored under `upload_id`, removes a staging file,
    /// and removes `key` itself in case the upload completed but was never recorded.
    pub async fn discard_upload(
        &self,
        key: &str,
        upload_id: Option<&str>,
    ) -> Result<(), ObjectError> {
        let path = self.path(key);
        match (&self.backend, upload_id) {
            (Backend::Multipart(parts), Some(id)) => {
                match parts.abort_multipart(&path, &id.to_owned()).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        // Stores answer differently for an upload that was already
                        // completed or aborted; the object delete below settles it.
                        let failure =
                            self.fail(key, &format!("cannot abort the upload of {key}"), &e);
                        let cause = failure.cause().to_ascii_lowercase();
                        if !cause.contains("nosuchupload") && !cause.contains("not found") {
                            return Err(failure);
                        }
                    }
                }
            }
            (Backend::Multipart(_), None) => {}
            (Backend::Directory(root), _) => {
                writer::remove_staging_files(root, &path).map_err(|e| ObjectError::Failed {
                    url: self.url.clone(),
                    what: format!("cannot remove the staging file of {key}"),
                    cause: error::explain(&e),
                })?
            }
        }
        self.delete(key).await
    }

    /// Writes, reads back and deletes a small object: the start-up and ping check.
    pub async fn probe(&self) -> Result<(), BlobError> {
        let fail = |step: &str, e: ObjectError| BlobError {
            url: self.url.clone(),
            reason: format!("cannot {step} a probe object: {}", e.cause()),
        };
        // A write would quietly recreate a vanished directory (an unmounted volume)
        // and hide that the data is gone.
        if let Backend::Directory(root) = &self.backend {
            open::check_directory(root).map_err(|reason| BlobError {
                url: self.url.clone(),
                reason,
            })?;
        }
        let key = format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4());
        let content = Bytes::from_static(b"capstan probe");
        self.put(&key, content.clone())
            .await
            .map_err(|e| fail("write", e))?;
        let read = self.get(&key).await.map_err(|e| fail("read", e))?;
        if read != content {
            return Err(BlobError {
                url: self.url.clone(),
                reason: "a probe object read back different bytes than were written".to_owned(),
            });
        }
        self.delete(&key).await.map_err(|e| fail("delete", e))?;
        Ok(())
    }

    /// Deletes probe objects older than `age`: those a node killed between writing and
    /// deleting its probe left behind. Returns how many went.
    pub async fn delete_stale_probes(
        &self,
        age: std::time::Duration,
    ) -> Result<usize, ObjectError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(age)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let root = self.path(PROBE_PREFIX.trim_end_matches('/'));
        let stale: Vec<Path> = self
            .store
            .list(Some(&root))
            .try_filter(|meta| std::future::ready(meta.last_modified.timestamp() < cutoff))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.fail(PROBE_PREFIX, "cannot list probe objects", &e))?;
        for path in &stale {
            self.store
                .delete(path)
                .await
                .map_err(|e| self.fail(path.as_ref(), "cannot delete a stale probe object", &e))?;
        }
        Ok(stale.len())
    }
}

/// Where probe objects are written, one fresh key per probe.
const PROBE_PREFIX: &str = "_capstan/probe/";

/// Bytes of a file read per blocking call when streaming it.
const FILE_READ_BLOCK: usize = 1024 * 1024;

/// Streams `range` of an open file in [`FILE_READ_BLOCK`] reads on the blocking pool.
fn file_stream(
    file: std::fs::File,
    range: Range<u64>,
    url: String,
    key: String,
) -> BoxStream<'static, Result<Bytes, ObjectError>> {
    let state = (Some(file), range.start);
    futures::stream::unfold(state, move |(file, position)| {
        let (url, key) = (url.clone(), key.clone());
        async move {
            let file = file?;
            if position >= range.end {
                return None;
            }
            let len = (range.end - position).min(FILE_READ_BLOCK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buffer = vec![0; len];
                let mut filled = 0;
                while filled < len {
                    match file.read_at(&mut buffer[filled..], position + filled as u64)? {
                        0 => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the file is shorter than when it was opened",
                            ));
                        }
                        n => filled += n,
                    }
                }
                Ok((file, Bytes::from(buffer)))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok((file, block)) => {
                    let next = position + block.len() as u64;
                    Some((Ok(block), (Some(file), next)))
                }
                Err(e) => Some((
                    Err(ObjectError::Failed {
                        url,
                        what: format!("cannot read {key}"),
                        cause: error::explain(&e),
                    }),
                    (None, range.end),
                )),
            }
        }
    })
    .boxed()
}
