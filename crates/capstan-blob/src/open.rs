//! From a URL to a store: `file:///path`, `s3://bucket/prefix`, `memory://[name]`.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use object_store::{
    ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem, memory::InMemory,
    multipart::MultipartStore,
};

use crate::{Backend, BlobError, BlobStore};

/// S3 settings beyond the standard AWS variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), which are always read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The endpoint of an S3-compatible server, e.g. `http://minio:9000`.
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`; what most
    /// S3-compatible servers need.
    pub path_style: bool,
}

pub(crate) fn open(url: &str, s3: &S3Options) -> Result<BlobStore, BlobError> {
    let fail = |reason: String| BlobError {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| {
        fail(format!(
            "not a URL ({e}); write file:///absolute/path, s3://bucket/prefix or memory://"
        ))
    })?;
    let (store, backend, prefix): (Arc<dyn ObjectStore>, Backend, String) = match parsed.scheme() {
        "memory" => {
            let store = named_memory_store(parsed.host_str().unwrap_or(""));
            (store.clone(), Backend::Multipart(store), String::new())
        }
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| fail("a file:// URL needs an absolute path".to_owned()))?;
            check_directory(&path).map_err(fail)?;
            let local = LocalFileSystem::new_with_prefix(&path).map_err(|e| fail(e.to_string()))?;
            (Arc::new(local), Backend::Directory(path), String::new())
        }
        "s3" => {
            let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                fail("an s3:// URL names a bucket: s3://bucket/prefix".to_owned())
            })?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            builder = builder.with_virtual_hosted_style_request(!s3.path_style);
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let s3_store = Arc::new(builder.build().map_err(|e| {
                fail(format!(
                    "cannot configure S3: {}",
                    capstan_core::error_chain(&e)
                ))
            })?);
            let prefix = parsed.path().trim_matches('/').to_owned();
            (s3_store.clone(), Backend::Multipart(s3_store), prefix)
        }
        other => {
            return Err(fail(format!(
                "unsupported blob store scheme `{other}://`; use file://, s3:// or memory://"
            )));
        }
    };
    Ok(BlobStore {
        url: url.to_owned(),
        prefix,
        store,
        backend,
    })
}

/// `memory://name` is one store per name within a process, so in-process test nodes
/// can share one; nothing survives the process.
fn named_memory_store(name: &str) -> Arc<InMemory> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    stores
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
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

// The store behind `Backend::Multipart` must be usable as both traits.
const _: fn() = || {
    fn both<T: ObjectStore + MultipartStore>() {}
    both::<InMemory>();
    both::<object_store::aws::AmazonS3>();
};
