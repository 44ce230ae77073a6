//! A real S3 server for tests: `s3s-fs` (installed by `.ci/run` with
//! `cargo install s3s-fs --version 0.14.1 --locked --features binary`),
//! serving a temporary folder on 127.0.0.1. Buckets are folders of its root.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kaon_artifacts::ArtifactStore;

/// Credentials the server checks signatures against.
pub const ACCESS_KEY: &str = "kaon-test-access";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "kaon-test-secret-key";

/// A running s3s-fs, stopped on drop.
pub struct S3Server {
    child: Child,
    /// The folder it serves; `root/<bucket>/<key>` is an object.
    pub root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KAON_S3S_FS") {
        return PathBuf::from(p);
    }
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")));
    for dir in candidates {
        let p = dir.join("s3s-fs");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "s3s-fs is not installed: the S3 contract test needs a real S3 server. \
         Install it with `cargo install s3s-fs --version 0.14.1 --locked --features binary` \
         (`.ci/run` does), or point KAON_S3S_FS at the binary."
    );
}

impl S3Server {
    /// Starts a server with one empty bucket.
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join(bucket)).expect("bucket folder");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Backend settings for this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// An artifact store at `s3://kaon-test/<prefix>`.
    pub fn store(&self, prefix: &str) -> ArtifactStore {
        ArtifactStore::open_with(
            &format!("s3://kaon-test/{prefix}"),
            std::path::Path::new("/"),
            &self.options(),
        )
        .expect("open s3 store")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
