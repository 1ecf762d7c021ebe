//! Capstan's blob store: packages, artifacts and task logs live behind one URL that
//! every node shares (`file:///srv/capstan`, `memory://`).
//!
//! This crate turns the URL into an object store and proves at start that it can write,
//! read and delete. It must never import sqlx or axum: which blob belongs to which row
//! is the server's business.

use std::{fmt, path::PathBuf, sync::Arc};

use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, memory::InMemory, path::Path,
};

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
    store: Arc<dyn ObjectStore>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobStore({})", self.url)
    }
}

impl BlobStore {
    /// Opens the store a URL names. `file://` paths must be existing directories.
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        let fail = |reason: String| BlobError {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            fail(format!(
                "not a URL ({e}); write file:///absolute/path or memory://"
            ))
        })?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "memory" => Arc::new(InMemory::new()),
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| fail("a file:// URL needs an absolute path".to_owned()))?;
                check_directory(&path).map_err(fail)?;
                let local =
                    LocalFileSystem::new_with_prefix(&path).map_err(|e| fail(e.to_string()))?;
                Arc::new(local)
            }
            other => {
                return Err(fail(format!(
                    "unsupported blob store scheme `{other}://`; this build supports file:// and memory://"
                )));
            }
        };
        Ok(Self {
            url: url.to_owned(),
            store,
        })
    }

    /// The URL the store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes, reads back and deletes a small object: the start-up and ping check.
    pub async fn probe(&self) -> Result<(), BlobError> {
        let fail = |step: &str, e: object_store::Error| BlobError {
            url: self.url.clone(),
            reason: format!(
                "cannot {step} a probe object: {}",
                capstan_core::error_chain(&e)
            ),
        };
        let path = Path::from(format!("_capstan/probe/{}", uuid::Uuid::new_v4()));
        let content = bytes::Bytes::from_static(b"capstan probe");
        self.store
            .put(&path, PutPayload::from_bytes(content.clone()))
            .await
            .map_err(|e| fail("write", e))?;
        let read = self
            .store
            .get(&path)
            .await
            .map_err(|e| fail("read", e))?
            .bytes()
            .await
            .map_err(|e| fail("read", e))?;
        if read != content {
            return Err(BlobError {
                url: self.url.clone(),
                reason: "a probe object read back different bytes than were written".to_owned(),
            });
        }
        self.store
            .delete(&path)
            .await
            .map_err(|e| fail("delete", e))?;
        Ok(())
    }
}

fn check_directory(path: &PathBuf) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{} does not exist (create it, or mount the shared volume there)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_and_directory_stores_pass_the_probe() {
        BlobStore::from_url("memory://")
            .unwrap()
            .probe()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("capstan-blob-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("file://{}", dir.display());
        BlobStore::from_url(&url).unwrap().probe().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = BlobStore::from_url("file:///nonexistent/capstan-blobs").unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/capstan-blobs does not exist"),
            "{err}"
        );
    }

    #[test]
    fn unknown_schemes_and_garbage_are_refused() {
        let err = BlobStore::from_url("ftp://x/y").unwrap_err().to_string();
        assert!(
            err.contains("unsupported blob store scheme `ftp://`"),
            "{err}"
        );
        let err = BlobStore::from_url("not a url").unwrap_err().to_string();
        assert!(err.contains("not a URL"), "{err}");
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_written_fails_the_probe() {
        // /proc refuses new files even to root, so this holds whoever runs the test.
        let store = BlobStore::from_url("file:///proc").unwrap();
        let err = store.probe().await.unwrap_err().to_string();
        assert!(err.contains("cannot write a probe object"), "{err}");
    }
}
