//! A real S3-compatible server (s3s-fs) on 127.0.0.1, for blob-store tests that must
//! go through SigV4, HTTP and a store that can go away: an in-memory store shows none
//! of that. s3s-fs keeps objects as plain files under [`S3Server::root`], a bucket
//! being a directory.
//!
//! Install it with `cargo install --locked s3s-fs@0.14.1 --features binary` (or run
//! `./scripts/test.sh`, which does).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{TempDir, free_port};

pub const ACCESS_KEY: &str = "AKIDTEST";
pub const SECRET_KEY: &str = "SECRETTEST";
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "capstan-test";

const READY_WITHIN: Duration = Duration::from_secs(10);
/// Free ports tried before giving up; each is lost only to a race with another process.
const PORT_ATTEMPTS: usize = 5;

/// Why s3s-fs did not start listening.
enum Launch {
    /// Another process holds the port.
    PortTaken,
    Failed(String),
}

/// Runs s3s-fs and SIGKILLs it when a line, or end of file, arrives on stdin. Our end
/// of that pipe closes when the test binary exits, however it exits, so the server
/// never outlives it, not even [`shared`], which is never dropped; on end of file the
/// supervisor also removes the temp directory (`$1`), which nothing else would.
/// `wait` makes the supervisor exit with the server, so an early crash shows.
const SUPERVISOR: &str = r#"dir="$1"; shift
"$@" & pid=$!
{ if read -r _; then kill -9 "$pid"; else kill -9 "$pid"; rm -rf "$dir"; fi; } <&0 &
wait "$pid""#;

/// An s3s-fs process over a fresh temp directory holding one bucket, [`BUCKET`].
/// Killed on drop.
pub struct S3Server {
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    root: PathBuf,
    running: Option<(Child, ChildStdin)>,
}

/// One server per test binary, started on first use. Tests sharing it isolate
/// themselves with a unique key prefix; a test that stops the store starts its own.
pub fn shared() -> &'static S3Server {
    static SHARED: OnceLock<S3Server> = OnceLock::new();
    SHARED.get_or_init(S3Server::start)
}

impl S3Server {
    /// Starts s3s-fs on a free port and waits (≤ 10 s) until it is listening. A port
    /// that another process took between being found free and being bound is given
    /// up for another.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        let bin = find_binary();
        let dir = TempDir::new("capstan-s3");
        let root = dir.0.join("data");
        std::fs::create_dir_all(root.join(BUCKET)).expect("creating the bucket directory");
        let mut server = Self {
            port,
            bin,
            dir,
            root,
            running: None,
        };
        for _ in 0..PORT_ATTEMPTS {
            match server.launch() {
                Ok(()) => return server,
                Err(Launch::PortTaken) => server.port = free_port(),
                Err(Launch::Failed(why)) => panic!("{why}"),
            }
        }
        panic!(
            "s3s-fs found every one of {PORT_ATTEMPTS} free ports taken:\n{}",
            server.log()
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// Where s3s-fs stores objects: `root()/<bucket>/<key>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `s3://capstan-test/<prefix>`, a Capstan blob URL inside the bucket.
    pub fn blob_url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{}", prefix.trim_start_matches('/'))
    }

    /// What a Capstan node needs in its environment to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("CAPSTAN_S3_ENDPOINT", self.endpoint()),
            ("CAPSTAN_S3_PATH_STYLE", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// SIGKILLs the server, as an outage would; the data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some((mut child, mut stdin)) = self.running.take() {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, and waits until it is ready.
    pub fn resume(&mut self) {
        match self.launch() {
            Ok(()) => {}
            Err(Launch::PortTaken) => panic!(
                "s3s-fs cannot listen on port {} again: another process took it",
                self.port
            ),
            Err(Launch::Failed(why)) => panic!("{why}"),
        }
    }

    /// Runs s3s-fs on `self.port` and waits until it says it is listening. Only its own
    /// words count: another test's server may accept connections on a port this one
    /// failed to bind.
    fn launch(&mut self) -> Result<(), Launch> {
        if self.running.is_some() {
            return Ok(());
        }
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("opening the s3s-fs log");
        let earlier = self.log().len();
        let mut child = Command::new("bash")
            .args(["-c", SUPERVISOR, "s3s-supervisor"])
            .arg(&self.dir.0)
            .arg(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs (through bash)");
        let stdin = child.stdin.take().expect("the supervisor's stdin");
        self.running = Some((child, stdin));
        let listening = format!("server is running at http://127.0.0.1:{}", self.port);
        let started = Instant::now();
        loop {
            let said = self.log().get(earlier..).unwrap_or_default().to_owned();
            if said.contains(&listening) {
                return Ok(());
            }
            let (child, _) = self.running.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                // All it wrote before exiting is in the file now.
                let said = self.log().get(earlier..).unwrap_or_default().to_owned();
                // A line, not end of file, so the supervisor's reader leaves the
                // directory (the data, the log) for the next attempt.
                if let Some((_, mut stdin)) = self.running.take() {
                    let _ = stdin.write_all(b"stop\n");
                }
                if said.contains("Address already in use") {
                    return Err(Launch::PortTaken);
                }
                return Err(Launch::Failed(format!(
                    "s3s-fs exited with {status} before listening on port {}:\n{said}",
                    self.port
                )));
            }
            if started.elapsed() > READY_WITHIN {
                self.stop();
                return Err(Launch::Failed(format!(
                    "s3s-fs did not listen on port {} within {READY_WITHIN:?}:\n{said}",
                    self.port
                )));
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "synchronous so that shared() can start it; ready in tens of ms"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything s3s-fs has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("s3s-fs.log")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s3s-fs` on PATH, else in ~/.cargo/bin (where `cargo install` puts it, often not
/// on a CI PATH).
fn find_binary() -> PathBuf {
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
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed (looked on PATH and in ~/.cargo/bin): run \
                 `cargo install --locked s3s-fs@0.14.1 --features binary` or ./scripts/test.sh"
            )
        })
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::{
        ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, aws::AmazonS3Builder,
        path::Path as ObjectPath,
    };

    use super::*;

    fn store(server: &S3Server, secret: &str) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_bucket_name(server.bucket())
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            // Fail fast while the store is down instead of retrying for minutes.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .expect("building the S3 client")
    }

    #[tokio::test]
    async fn put_get_list_and_refuse_a_wrong_secret() {
        let server = S3Server::start();
        let s3 = store(&server, SECRET_KEY);
        let key = ObjectPath::from("t1/hello.txt");
        s3.put(&key, PutPayload::from_static(b"hello s3"))
            .await
            .expect("put");
        let got = s3
            .get(&key)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert_eq!(&got[..], b"hello s3");
        let listed: Vec<_> = s3
            .list(Some(&ObjectPath::from("t1")))
            .try_collect()
            .await
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].location, key);
        assert!(server.root().join(BUCKET).join("t1/hello.txt").is_file());

        let wrong = store(&server, "not-the-secret");
        let error = wrong
            .put(&ObjectPath::from("t1/nope"), PutPayload::from_static(b"x"))
            .await
            .expect_err("a wrong secret must be refused");
        let message = format!("{error:?}");
        assert!(
            message.contains("403") || message.contains("SignatureDoesNotMatch"),
            "expected a 403, got {message}"
        );
        assert!(!server.root().join(BUCKET).join("t1/nope").exists());
    }

    #[tokio::test]
    async fn stop_and_resume_keep_the_data() {
        let mut server = S3Server::start();
        let s3 = store(&server, SECRET_KEY);
        let before = ObjectPath::from("t2/before");
        s3.put(&before, PutPayload::from_static(b"1"))
            .await
            .expect("put");

        server.stop();
        let down = s3
            .put(
                &ObjectPath::from("t2/while-down"),
                PutPayload::from_static(b"2"),
            )
            .await;
        assert!(down.is_err(), "a put must fail while the store is down");

        server.resume();
        s3.put(&ObjectPath::from("t2/after"), PutPayload::from_static(b"3"))
            .await
            .expect("put after resume");
        let got = s3
            .get(&before)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert_eq!(&got[..], b"1");
    }

    #[test]
    fn shared_is_one_server() {
        let a = shared();
        let b = shared();
        assert!(std::ptr::eq(a, b));
        assert!(std::net::TcpStream::connect(("127.0.0.1", a.port)).is_ok());
        assert_eq!(a.blob_url("/run-1/x"), "s3://capstan-test/run-1/x");
        assert!(
            a.env()
                .contains(&("CAPSTAN_S3_ENDPOINT".to_owned(), a.endpoint()))
        );
    }

    /// Something else accepting connections on the port is not taken for the server.
    #[test]
    fn a_port_another_process_holds_is_given_up_for_another() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = taken.local_addr().expect("its address").port();
        let server = S3Server::start_on(port);
        assert_ne!(server.port, port);
        assert!(
            server.log().contains("Address already in use"),
            "{}",
            server.log()
        );
        assert!(
            server
                .log()
                .contains(&format!("server is running at {}", server.endpoint()))
        );
    }
}
