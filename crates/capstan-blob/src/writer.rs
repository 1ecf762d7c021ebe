//! Streamed uploads: bytes arrive in chunks, are hashed as they pass, and leave in
//! parts of [`PART_SIZE`] with at most [`PARTS_IN_FLIGHT`] being sent at once, so
//! memory stays flat (about 3 parts) whatever the object's size.

use std::{path::Path as FsPath, sync::Arc};

use bytes::Bytes;
use object_store::{
    MultipartId, ObjectStoreExt, PutPayload, WriteMultipart, multipart::MultipartStore,
    multipart::PartId, path::Path,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::{Backend, BlobStore, ObjectError, error};

/// S3 needs parts of at least 5 MiB (except the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
pub const PARTS_IN_FLIGHT: usize = 2;

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// An upload in progress. Dropping it unfinished abandons the upload and cleans up
/// what it stored (in the background).
pub struct BlobWriter {
    key: String,
    url: String,
    hasher: Hasher,
    size: u64,
    inner: Option<Inner>,
}

enum Inner {
    Parts(Parts),
    Staged(WriteMultipart),
}

struct Parts {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    /// The chunks of the part being filled, as they arrived: a part is sent as a list
    /// of the request's own buffers, never copied into one.
    pending: Vec<Bytes>,
    pending_len: usize,
    next: usize,
    sending: JoinSet<Result<(usize, PartId), object_store::Error>>,
    sent: Vec<(usize, PartId)>,
}

impl BlobWriter {
    pub(crate) async fn start(blob: &BlobStore, key: &str) -> Result<Self, ObjectError> {
        let path = blob.path(key);
        let inner =
            match &blob.backend {
                Backend::Multipart(store) => {
                    let id = store.create_multipart(&path).await.map_err(|e| {
                        blob.fail(key, &format!("cannot start an upload to {key}"), &e)
                    })?;
                    Inner::Parts(Parts {
                        store: store.clone(),
                        path,
                        id,
                        pending: Vec::new(),
                        pending_len: 0,
                        next: 0,
                        sending: JoinSet::new(),
                        sent: Vec::new(),
                    })
                }
                Backend::Directory(_) => {
                    let upload = blob.store.put_multipart(&path).await.map_err(|e| {
                        blob.fail(key, &format!("cannot start an upload to {key}"), &e)
                    })?;
                    Inner::Staged(WriteMultipart::new_with_chunk_size(upload, PART_SIZE))
                }
            };
        Ok(Self {
            key: key.to_owned(),
            url: blob.url.clone(),
            hasher: Hasher::start(),
            size: 0,
            inner: Some(inner),
        })
    }

    /// The key the object will have.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The store's id for this upload, when another node could abort it by id; record
    /// it so the upload can be cleaned up if this node dies.
    pub fn upload_id(&self) -> Option<&str> {
        match &self.inner {
            Some(Inner::Parts(parts)) => Some(&parts.id),
            _ => None,
        }
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fail(&self, e: &object_store::Error) -> ObjectError {
        ObjectError::Failed {
            url: self.url.clone(),
            what: format!("cannot upload {}", self.key),
            cause: error::explain(e),
        }
    }

    /// Accepts the next chunk; waits when enough parts are already being sent.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.hasher.update(chunk.clone()).await;
        self.size += chunk.len() as u64;
        let result = match self.inner.as_mut().expect("writer used after finish") {
            Inner::Staged(staged) => {
                let waited = staged.wait_for_capacity(PARTS_IN_FLIGHT).await;
                staged.put(chunk);
                waited
            }
            Inner::Parts(parts) => parts.write(chunk).await,
        };
        result.map_err(|e| self.fail(&e))
    }

    /// Sends what is left and makes the object visible at its key.
    pub async fn finish(mut self) -> Result<Written, ObjectError> {
        let result = match self.inner.take().expect("writer finished twice") {
            Inner::Staged(staged) => staged.finish().await.map(drop),
            Inner::Parts(parts) => parts.finish().await,
        };
        result.map_err(|e| self.fail(&e))?;
        let sha256 = std::mem::replace(&mut self.hasher, Hasher::Done)
            .finish()
            .await
            .map_err(|e| ObjectError::Failed {
                url: self.url.clone(),
                what: format!("cannot hash {}", self.key),
                cause: e.to_string(),
            })?;
        Ok(Written {
            key: self.key.clone(),
            size: self.size,
            sha256,
        })
    }

    /// Abandons the upload and removes what it stored.
    pub async fn abort(mut self) -> Result<(), ObjectError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        inner.abort().await.map_err(|e| self.fail(&e))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { drop(inner.abort().await) });
        }
    }
}

impl Inner {
    async fn abort(self) -> Result<(), object_store::Error> {
        match self {
            Inner::Staged(staged) => staged.abort().await,
            Inner::Parts(mut parts) => {
                parts.sending.abort_all();
                while parts.sending.join_next().await.is_some() {}
                parts.store.abort_multipart(&parts.path, &parts.id).await
            }
        }
    }
}

impl Parts {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), object_store::Error> {
        while self.pending_len + chunk.len() >= PART_SIZE {
            let rest = chunk.split_off(PART_SIZE - self.pending_len);
            self.pending.push(chunk);
            let part: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            self.pending_len = 0;
            self.send(part).await?;
            chunk = rest;
        }
        if !chunk.is_empty() {
            self.pending_len += chunk.len();
            self.pending.push(chunk);
        }
        Ok(())
    }

    async fn send(&mut self, part: PutPayload) -> Result<(), object_store::Error> {
        while self.sending.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let (store, path, id, index) = (
            self.store.clone(),
            self.path.clone(),
            self.id.clone(),
            self.next,
        );
        self.next += 1;
        self.sending.spawn(async move {
            let sent = store.put_part(&path, &id, index, part).await?;
            Ok((index, sent))
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), object_store::Error> {
        if let Some(joined) = self.sending.join_next().await {
            let sent = joined.map_err(|e| object_store::Error::JoinError { source: e })??;
            self.sent.push(sent);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), object_store::Error> {
        // The last part may be short; an empty object is one empty part.
        if self.pending_len > 0 || self.next == 0 {
            let last: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            self.send(last).await?;
        }
        while !self.sending.is_empty() {
            self.collect_one().await?;
        }
        self.sent.sort_by_key(|(index, _)| *index);
        let parts: Vec<PartId> = self.sent.drain(..).map(|(_, part)| part).collect();
        let outcome = self
            .store
            .complete_multipart(&self.path, &self.id, parts)
            .await;
        if outcome.is_err() {
            drop(self.store.abort_multipart(&self.path, &self.id).await);
        }
        outcome.map(drop)
    }
}

/// Hashes on a blocking thread of its own, so hashing overlaps receiving and sending
/// instead of adding to them: on a 2-core machine that is most of an upload's speed.
enum Hasher {
    Running {
        chunks: tokio::sync::mpsc::Sender<Bytes>,
        digest: tokio::task::JoinHandle<String>,
    },
    Done,
}

/// Chunks waiting to be hashed; beyond this the upload waits for the hash.
const HASH_QUEUE: usize = 16;

impl Hasher {
    fn start() -> Self {
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let digest = tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            while let Some(chunk) = queue.blocking_recv() {
                sha.update(&chunk);
            }
            hex(&sha.finalize())
        });
        Self::Running { chunks, digest }
    }

    async fn update(&mut self, chunk: Bytes) {
        if let Self::Running { chunks, .. } = self {
            // The receiver lives until `finish`; a send cannot fail before that.
            drop(chunks.send(chunk).await);
        }
    }

    async fn finish(self) -> Result<String, tokio::task::JoinError> {
        match self {
            Self::Running { chunks, digest } => {
                drop(chunks);
                digest.await
            }
            Self::Done => unreachable!("a writer finishes once"),
        }
    }
}

/// Removes the staging files a dead node's directory upload left beside `path`.
pub(crate) fn remove_staging_files(root: &FsPath, path: &Path) -> std::io::Result<()> {
    let target = root.join(path.as_ref());
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(());
    };
    let staging_prefix = format!("{}#", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&staging_prefix)
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
