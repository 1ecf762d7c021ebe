//! The store's contract, checked on every backend that works without a server.
//! (The S3 backend runs the same checks through the server's test suite.)

use bytes::Bytes;
use capstan_blob::BlobStore;
use futures::TryStreamExt;

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("capstan-blob-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stores() -> Vec<(BlobStore, Option<std::path::PathBuf>)> {
    let dir = temp_dir();
    vec![
        (
            BlobStore::from_url(&format!("memory://{}", uuid::Uuid::new_v4())).unwrap(),
            None,
        ),
        (
            BlobStore::from_url(&format!("file://{}", dir.display())).unwrap(),
            Some(dir),
        ),
    ]
}

#[tokio::test]
async fn every_store_passes_the_probe() {
    for (store, _) in stores() {
        store.probe().await.unwrap();
    }
}

#[tokio::test]
async fn a_streamed_upload_is_hashed_and_reads_back_whole_and_in_ranges() {
    for (store, _) in stores() {
        let mut writer = store.writer("packages/a/1.0.0/x").await.unwrap();
        // 20 MiB in uneven chunks: several parts, and a short last one.
        let chunk: Vec<u8> = (0..=250u8).cycle().take(3 * 1024 * 1024 + 7).collect();
        let mut expected = Vec::new();
        for _ in 0..7 {
            writer.write(Bytes::from(chunk.clone())).await.unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert!(
            store
                .head("packages/a/1.0.0/x")
                .await
                .unwrap_err()
                .is_not_found()
        );
        let written = writer.finish().await.unwrap();
        assert_eq!(written.size, expected.len() as u64);
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&expected);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(written.sha256, hex);

        let all: Vec<Bytes> = store
            .stream("packages/a/1.0.0/x", None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.concat(), expected);
        let part: Vec<Bytes> = store
            .stream("packages/a/1.0.0/x", Some(100..5_000_000))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(part.concat(), expected[100..5_000_000]);
    }
}

#[tokio::test]
async fn an_abandoned_upload_leaves_nothing() {
    for (store, dir) in stores() {
        let mut writer = store.writer("packages/b/1.0.0/y").await.unwrap();
        writer
            .write(Bytes::from(vec![1u8; 9 * 1024 * 1024]))
            .await
            .unwrap();
        let id = writer.upload_id().map(str::to_owned);
        writer.abort().await.unwrap();
        store
            .discard_upload("packages/b/1.0.0/y", id.as_deref())
            .await
            .unwrap();
        assert!(store.list("packages", 10).await.unwrap().is_empty());
        if let Some(dir) = dir {
            let left: Vec<_> = walk(&dir);
            assert!(left.is_empty(), "files left behind: {left:?}");
        }
    }
}

#[tokio::test]
async fn a_dropped_writer_cleans_up_its_staging_file() {
    let dir = temp_dir();
    let store = BlobStore::from_url(&format!("file://{}", dir.display())).unwrap();
    let mut writer = store.writer("artifacts/1/log.txt/z").await.unwrap();
    writer.write(Bytes::from_static(b"half")).await.unwrap();
    drop(writer);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let left = walk(&dir);
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[tokio::test]
async fn probes_a_killed_node_left_behind_are_deleted_once_stale() {
    let dir = temp_dir();
    let store = BlobStore::from_url(&format!("file://{}", dir.display())).unwrap();
    let probes = dir.join("_capstan/probe");
    std::fs::create_dir_all(&probes).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::create(probes.join("old"))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    std::fs::write(probes.join("in-flight"), "capstan probe").unwrap();
    store
        .put("packages/old", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.join("packages/old"))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(store.delete_stale_probes(hour).await.unwrap(), 1);
    let mut left = walk(&dir);
    left.sort();
    assert_eq!(
        left,
        [
            dir.join("_capstan/probe/in-flight"),
            dir.join("packages/old")
        ]
    );
    // Nothing stale is left, and a store that never probed has nothing to list.
    assert_eq!(store.delete_stale_probes(hour).await.unwrap(), 0);
    let empty = BlobStore::from_url(&format!("memory://{}", uuid::Uuid::new_v4())).unwrap();
    assert_eq!(empty.delete_stale_probes(hour).await.unwrap(), 0);
}

#[tokio::test]
async fn memory_stores_with_one_name_are_shared_within_a_process() {
    let name = format!("memory://{}", uuid::Uuid::new_v4());
    let a = BlobStore::from_url(&name).unwrap();
    let b = BlobStore::from_url(&name).unwrap();
    a.put("k", Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), Bytes::from_static(b"v"));
}

#[test]
fn bad_urls_are_explained() {
    let err = BlobStore::from_url("file:///nonexistent/capstan-blobs")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/capstan-blobs does not exist"),
        "{err}"
    );
    let err = BlobStore::from_url("ftp://x/y").unwrap_err().to_string();
    assert!(
        err.contains("unsupported blob store scheme `ftp://`"),
        "{err}"
    );
    let err = BlobStore::from_url("not a url").unwrap_err().to_string();
    assert!(err.contains("not a URL"), "{err}");
    let err = BlobStore::from_url("s3:///prefix").unwrap_err().to_string();
    assert!(err.contains("names a bucket"), "{err}");
}

#[tokio::test]
async fn a_directory_that_cannot_be_written_fails_the_probe() {
    // /proc refuses new files even to root, so this holds whoever runs the test.
    let store = BlobStore::from_url("file:///proc").unwrap();
    let err = store.probe().await.unwrap_err().to_string();
    assert!(err.contains("cannot write a probe object"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
