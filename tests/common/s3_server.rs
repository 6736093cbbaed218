//! A real S3-protocol server on loopback for one test: moto's server
//! (`moto_server`, from PyPI's `moto[server]`, version pinned in `.ci/run`),
//! started on a free port with one bucket, and killed when the
//! [`S3Server`] is dropped.
//!
//! Which binary runs: `$SHARDWAL_MOTO_SERVER` if set (`.ci/run` sets it to
//! the one it installed; then a server that does not start fails the test),
//! else `moto_server` found on `PATH`. With neither, [`S3Server::start`]
//! prints "skipping: ..." to stderr and returns `None`, and the test skips.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};

/// The environment variable naming the `moto_server` binary to run.
pub const MOTO_SERVER_ENV: &str = "SHARDWAL_MOTO_SERVER";

/// How long [`S3Server::start`] waits for the server to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running moto S3 server on `127.0.0.1` holding one empty bucket. The
/// child process is killed and reaped on drop.
pub struct S3Server {
    /// Base URL of the server, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created for this server.
    pub bucket: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("pid", &self.child.id())
            .finish()
    }
}

/// The binary to run, and whether it was asked for explicitly.
fn find_binary() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os(MOTO_SERVER_ENV) {
        return Some((PathBuf::from(p), true));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .map(|p| (p, false))
}

/// A port on loopback that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Send `PUT /bucket` (create the bucket) and return the HTTP status code,
/// or `None` if the server does not accept connections yet.
fn create_bucket(addr: SocketAddr, bucket: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let head = String::from_utf8_lossy(&resp);
    head.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

impl S3Server {
    /// Start a server on a free loopback port, create [`S3Server::bucket`]
    /// and wait (at most [`READY_TIMEOUT`]) until it answers. `None`, after
    /// a "skipping: ..." line on stderr, when no `moto_server` is installed.
    /// Panics if an installed server fails to start or create the bucket.
    pub fn start() -> Option<S3Server> {
        let Some((bin, explicit)) = find_binary() else {
            eprintln!(
                "skipping: moto_server is not installed (not on PATH and ${MOTO_SERVER_ENV} \
                 unset); `bash .ci/run` installs it, or `pip install 'moto[server]'`"
            );
            return None;
        };
        let bucket = "shardwal-test".to_string();
        let dir = tempfile::tempdir().expect("temp dir for the server log");
        let log = dir.path().join("moto.log");
        // A port can be taken between free_port and the server's bind: try a
        // few.
        for _attempt in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("create server log");
            let err = out.try_clone().expect("clone log handle");
            let mut child = match Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
            {
                Ok(c) => c,
                Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("skipping: cannot run {}: {e}", bin.display());
                    return None;
                }
                Err(e) => panic!("cannot run {}: {e}", bin.display()),
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().expect("poll moto_server") {
                    let text = read_log(&log);
                    // 127: a pyenv shim (or wrapper) whose interpreter lacks moto.
                    if !explicit && status.code() == Some(127) {
                        eprintln!(
                            "skipping: {} is not runnable ({status}): {}",
                            bin.display(),
                            text.trim()
                        );
                        return None;
                    }
                    if text.contains("Address already in use") {
                        break; // next attempt, another port
                    }
                    panic!("moto_server exited early ({status}):\n{text}");
                }
                match create_bucket(addr, &bucket) {
                    Some(200) => {
                        return Some(S3Server {
                            endpoint: format!("http://{addr}"),
                            bucket,
                            child,
                            log,
                            _dir: dir,
                        });
                    }
                    Some(code) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "moto_server answered {code} to creating bucket {bucket}:\n{}",
                            read_log(&log)
                        );
                    }
                    None if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "moto_server not ready within {READY_TIMEOUT:?}:\n{}",
                            read_log(&log)
                        );
                    }
                }
            }
        }
        panic!("moto_server could not bind a free port in 3 attempts");
    }

    /// An `AmazonS3` store for [`S3Server::bucket`]: plain HTTP, dummy
    /// credentials, region `us-east-1`, path-style requests, and conditional
    /// put by `If-None-Match: *` / `If-Match` (`S3ConditionalPut::ETagMatch`,
    /// which moto honours), so `PutMode::Create` on an existing object
    /// fails with `object_store::Error::AlreadyExists`.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id("shardwal-test")
            .with_secret_access_key("shardwal-test")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .expect("build AmazonS3 for the test server");
        Arc::new(s3)
    }

    /// What the server printed so far (its request log), for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
