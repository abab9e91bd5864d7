//! Shared test harness: throwaway `redis-server` instances, the proxy (in-process or as the
//! binary), and a raw RESP client that returns the exact bytes of every reply; relays between
//! the proxy and Redis that inject faults (here) or that the test steers (`relay.rs`); a real
//! Redis Cluster (`cluster.rs`).
//!
//! Everything here is bounded: servers are polled for readiness with a deadline, every socket
//! read has a timeout, and every spawned process is killed (and reaped) on drop.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp::{Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod cluster;
pub mod relay;
pub mod tls;
pub mod traffic;

/// How long one reply may take before the test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server or proxy may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Polls `f` every few milliseconds until it returns `Some`, or panics with `what` after `limit`.
pub fn poll_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Async flavour of [`poll_until`].
pub async fn poll_until_async<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll_until_async`] for checks that borrow test state mutably (an async closure).
pub async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A numeric field of `NEARCACHE INFO` (`cache_hits`, `cache_entries` ...), asked through `c`.
pub async fn info_u64(c: &mut RawConn, field: &str) -> u64 {
    let info = c.cmd(&["NEARCACHE", "INFO"]).await;
    let info = String::from_utf8_lossy(&info);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

/// `cache_hits` from `NEARCACHE INFO`.
pub async fn cache_hits(c: &mut RawConn) -> u64 {
    info_u64(c, "cache_hits").await
}

/// Reads `key` with `GET` through `c` until a read is a cache hit, each read answering the
/// bulk string `value`, for up to `limit`.
pub async fn read_until_hit(c: &mut RawConn, key: &str, value: &str, limit: Duration) {
    let before = cache_hits(c).await;
    let want = format!("${}\r\n{value}\r\n", value.len());
    eventually(limit, &format!("{key} cached"), async || {
        assert_eq!(c.cmd(&["GET", key]).await, want.as_bytes(), "GET {key}");
        cache_hits(c).await > before
    })
    .await;
}

/// Whether `python3` can import redis-py (scripts/test.sh installs it where it can); when it
/// cannot, says so, so that a test leaving its redis-py case out is seen doing it.
pub fn has_redis_py() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("python3 with the redis module not found; redis-py case not run");
    }
    found
}

// ---------------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------------

/// A `redis-server` child process in its own temp dir, killed and reaped on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
    launches: u32,
    /// The port is a TLS port (`--tls-port`), and there is no plain one.
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a fresh port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh port with extra arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut errors = Vec::new();
        for _ in 0..5 {
            match Self::start_on_port(free_port(), extra) {
                Ok(s) => return s,
                Err(e) => errors.push(e),
            }
        }
        panic!("could not start redis-server: {errors:#?}");
    }

    /// Starts a server on a given port (fails if the port is taken or the server exits).
    pub fn start_on_port(port: u16, extra: &[&str]) -> Result<RedisServer, String> {
        Self::start_on(port, extra, false)
    }

    /// Starts a server that speaks TLS only (`--port 0 --tls-port PORT`) on a fresh port;
    /// `extra` names its certificates (`--tls-cert-file` ...).
    pub fn start_tls(extra: &[&str]) -> RedisServer {
        let mut errors = Vec::new();
        for _ in 0..5 {
            match Self::start_on(free_port(), extra, true) {
                Ok(s) => return s,
                Err(e) => errors.push(e),
            }
        }
        panic!("could not start redis-server with TLS: {errors:#?}");
    }

    fn start_on(port: u16, extra: &[&str], tls: bool) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut s = RedisServer {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            launches: 0,
            tls,
        };
        s.launch()?;
        Ok(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr().parse().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.launches))
    }

    /// The current launch's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn launch(&mut self) -> Result<(), String> {
        self.launches += 1;
        let log = self.log_path();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "redis-server on port {port} exited early ({status}): {}",
                    tail(&text, 600)
                ));
            }
            // "Ready to accept connections" proves that *our* child owns the port.
            let ready = std::fs::read_to_string(&log)
                .map(|t| t.contains("Ready to accept connections"))
                .unwrap_or(false);
            // A TLS port cannot be pinged in plain text; the log line and a connection do.
            let answers = if self.tls {
                StdStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                ping_any(self.port)
            };
            if ready && answers {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} not ready in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the server and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port, with empty data. Retries while the port is busy.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something on `port` answers an inline PING with any reply (`+PONG`, `-NOAUTH`..).
fn ping_any(port: u16) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Ok(mut s) = StdStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(n) if n > 0)
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Sends one command to `addr` over a short-lived blocking connection and returns the raw reply.
/// For set-up and checks that bypass the proxy.
/// Calls per command as Redis counts them (`INFO commandstats`), asked of the Redis at `addr`.
pub fn commandstats(addr: &str) -> std::collections::BTreeMap<String, u64> {
    commandstats_of(&redis_cmd_blocking(addr, &[b"INFO", b"commandstats"]))
}

/// Calls per command in an `INFO commandstats` reply.
pub fn commandstats_of(info: &[u8]) -> std::collections::BTreeMap<String, u64> {
    String::from_utf8_lossy(info)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_string(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

pub fn redis_cmd_blocking(addr: &str, args: &[&[u8]]) -> Bytes {
    let mut s = StdStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut out = BytesMut::new();
    resp::encode_command(args, &mut out);
    s.write_all(&out).unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(n) = resp::scan(&buf, &limits()).expect("bad reply") {
            return buf.split_to(n).freeze();
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).expect("read reply");
        assert!(n > 0, "connection closed before a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// The proxy started in-process with `nearcache::start`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The TLS listener, if `tls_listen` is set.
    pub tls: Option<SocketAddr>,
    running: Option<nearcache::Running>,
}

impl Proxy {
    /// A proxy on 127.0.0.1:0 in front of `upstream` (`host:port`), admin endpoint disabled.
    pub async fn start(upstream: &str) -> Proxy {
        Self::start_config(Self::config(upstream)).await
    }

    /// The config [`Proxy::start`] uses, for tests that tweak it.
    pub fn config(upstream: &str) -> nearcache::Config {
        nearcache::Config::default()
            .with("listen", "127.0.0.1:0")
            .with("upstream", upstream)
            .with("admin_listen", "none")
    }

    pub async fn start_config(config: nearcache::Config) -> Proxy {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let running = tokio::time::timeout(START_TIMEOUT, nearcache::start(config.clone()))
            .await
            .unwrap_or_else(|_| panic!("nearcache::start did not return within {START_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("nearcache::start({config:?}) failed: {e:#}"));
        Proxy {
            addr: running.listen_addr.expect("a plain-TCP listener"),
            admin: running.admin_addr,
            tls: running.tls_addr,
            running: Some(running),
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            if tokio::time::timeout(Duration::from_secs(10), r.shutdown())
                .await
                .is_err()
            {
                panic!("Running::shutdown did not finish within 10 s");
            }
        }
    }
}

/// Settings given by name and text, as in the config file, for tests that tweak a config.
pub trait With {
    /// The config with setting `name` set to `value`; panics on a bad value.
    fn with(self, name: &str, value: &str) -> Self;
}

impl With for nearcache::Config {
    fn with(mut self, name: &str, value: &str) -> Self {
        if let Err(e) = self.set(name, value) {
            panic!("{name} = {value:?}: {e}");
        }
        self
    }
}

/// The `nearcache` binary as a child process, killed on drop.
pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The TLS listener (`tls=` in the ready line), if any.
    pub tls: Option<SocketAddr>,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Spawns `nearcache --listen 127.0.0.1:0 --upstream UPSTREAM --admin-listen 127.0.0.1:0`.
    pub fn spawn(upstream: &str) -> ProxyProcess {
        Self::spawn_admin(upstream, &[])
    }

    /// [`ProxyProcess::spawn`] with extra arguments.
    pub fn spawn_admin(upstream: &str, extra: &[&str]) -> ProxyProcess {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--admin-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::spawn_args(&args)
    }

    /// Spawns the binary with explicit arguments and waits for its ready line.
    pub fn spawn_args(args: &[&str]) -> ProxyProcess {
        Self::spawn_env(&[], args)
    }

    /// [`ProxyProcess::spawn_args`] with environment variables set for the child only.
    pub fn spawn_env(env: &[(&str, &str)], args: &[&str]) -> ProxyProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nearcache.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nearcache"))
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logfile)
            .spawn()
            .expect("spawn nearcache binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so a chatty stdout can never block the proxy.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nearcache printed no ready line within {START_TIMEOUT:?}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let parsed = parse_ready_line(&line);
        let Some((addr, admin)) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unexpected ready line {line:?}; stderr:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let tls = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tls="))
            .and_then(|a| a.parse().ok());
        ProxyProcess {
            addr,
            admin,
            tls,
            child,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the proxy wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl ProxyProcess {
    /// The process id, e.g. to read `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns the proxy in front of `upstream` on a free port, without admin port, with
    /// `extra` flags.
    pub fn spawn_with(upstream: &str, extra: &[&str]) -> ProxyProcess {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--no-admin",
        ];
        args.extend_from_slice(extra);
        Self::spawn_args(&args)
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        poll_until(limit, "nearcache to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- nearcache stderr (tail) ---\n{}",
                tail(&self.logs(), 4000)
            );
        }
    }
}

/// Parses `nearcache ready listen=A admin=B` (B may be `none`).
pub fn parse_ready_line(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let rest = line.trim_end().strip_prefix("nearcache ready ")?;
    let mut listen = None;
    let mut admin = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("listen=") {
            listen = Some(v.parse().ok()?);
        } else if let Some(v) = word.strip_prefix("admin=") {
            admin = Some(if v == "none" {
                None
            } else {
                Some(v.parse().ok()?)
            });
        }
    }
    Some((listen?, admin?))
}

// ---------------------------------------------------------------------------------------------
// Raw RESP client
// ---------------------------------------------------------------------------------------------

/// Replies are read as the proxy reads them: whatever Redis can send.
pub fn limits() -> Limits {
    Limits::UNBOUNDED
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum ReadError {
    Timeout,
    Closed { pending: Bytes },
    Protocol(String),
    Io(std::io::Error),
}

/// A raw RESP connection that hands back each reply's exact bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    pub timeout: Duration,
    pub peer: SocketAddr,
}

impl RawConn {
    pub async fn connect(addr: &str) -> RawConn {
        match Self::try_connect(addr).await {
            Ok(c) => c,
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }

    pub async fn try_connect(addr: &str) -> std::io::Result<RawConn> {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        Ok(RawConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            timeout: READ_TIMEOUT,
            peer,
        })
    }

    /// This end's address (what the server sees as the client's).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes one command.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let mut out = BytesMut::new();
        resp::encode_command(args, &mut out);
        self.send_raw(&out).await;
    }

    /// Writes raw bytes (inline commands, garbage).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .await
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.peer));
    }

    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timeout",
            )),
        }
    }

    /// The exact bytes of the next reply frame; panics on timeout or close.
    pub async fn read_raw(&mut self) -> Bytes {
        match self.try_read_raw().await {
            Ok(b) => b,
            Err(e) => panic!("reading a reply from {}: {e:?}", self.peer),
        }
    }

    pub async fn try_read_raw(&mut self) -> Result<Bytes, ReadError> {
        read_frame_bytes(&mut self.stream, &mut self.buf, self.timeout).await
    }

    /// The next reply, parsed.
    pub async fn read_frame(&mut self) -> Frame {
        to_frame(&self.read_raw().await)
    }

    /// Sends one command and returns its reply's bytes.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Bytes {
        self.send(args).await;
        self.read_raw().await
    }

    /// Like [`RawConn::cmd`] but reports failures instead of panicking.
    pub async fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Bytes, ReadError> {
        let mut out = BytesMut::new();
        resp::encode_command(args, &mut out);
        self.try_send_raw(&out).await.map_err(ReadError::Io)?;
        self.try_read_raw().await
    }

    /// Writes all commands in one go (while reading concurrently, so large pipelines cannot
    /// deadlock on full socket buffers), then returns exactly `cmds.len()` replies.
    pub async fn pipeline<A: AsRef<[u8]>, C: AsRef<[A]>>(&mut self, cmds: &[C]) -> Vec<Bytes> {
        let mut out = BytesMut::new();
        for c in cmds {
            resp::encode_command(c.as_ref(), &mut out);
        }
        self.pipeline_raw(&out, cmds.len()).await
    }

    /// Writes `bytes` in one go and reads `n` replies.
    pub async fn pipeline_raw(&mut self, bytes: &[u8], n: usize) -> Vec<Bytes> {
        let timeout = self.timeout;
        let peer = self.peer;
        let (mut r, mut w) = self.stream.split();
        let buf = &mut self.buf;
        let write = async {
            tokio::time::timeout(timeout * 4, w.write_all(bytes))
                .await
                .unwrap_or_else(|_| panic!("pipeline write to {peer} timed out"))
                .unwrap_or_else(|e| panic!("pipeline write to {peer}: {e}"));
        };
        let read = async {
            let mut replies = Vec::with_capacity(n);
            for i in 0..n {
                match read_frame_bytes(&mut r, buf, timeout).await {
                    Ok(b) => replies.push(b),
                    Err(e) => panic!("pipeline reply {i} of {n} from {peer}: {e:?}"),
                }
            }
            replies
        };
        let ((), replies) = tokio::join!(write, read);
        replies
    }

    /// Waits for the peer to close the connection. Returns any bytes that arrived first
    /// (empty when the close came cleanly); panics if the connection stays open.
    pub async fn expect_closed(&mut self) -> Bytes {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!(
                    "connection to {} still open after {:?} (pending {})",
                    self.peer,
                    self.timeout,
                    show(&self.buf)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => return self.buf.split().freeze(),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// True when the peer closes the connection within `limit` (bytes arriving meanwhile are
    /// kept for later reads).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends `HELLO 3` and returns its reply.
    pub async fn hello3(&mut self) -> Bytes {
        self.cmd(&["HELLO", "3"]).await
    }

    /// Closes the write side and drops the socket.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

async fn read_frame_bytes<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Bytes, ReadError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match resp::scan(buf, &limits()) {
            Ok(Some(n)) => return Ok(buf.split_to(n).freeze()),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Protocol(format!("{e} in {}", show(buf)))),
        }
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, r.read_buf(buf)).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Ok(0)) => {
                return Err(ReadError::Closed {
                    pending: buf.split().freeze(),
                })
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ReadError::Io(e)),
        }
    }
}

/// Parses one complete frame.
pub fn to_frame(bytes: &[u8]) -> Frame {
    let mut b = BytesMut::from(bytes);
    // Built recursively: the default depth cap.
    resp::parse_frame(&mut b, &Limits::default())
        .unwrap_or_else(|e| panic!("unparseable reply {}: {e}", show(bytes)))
        .unwrap_or_else(|| panic!("incomplete reply {}", show(bytes)))
}

/// Encodes a frame back to bytes.
pub fn to_bytes(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode(frame, &mut out);
    out.freeze()
}

/// Printable form of wire bytes: escapes non-printables, elides the middle of long inputs.
pub fn show(b: &[u8]) -> String {
    const MAX: usize = 400;
    let mut s = String::new();
    let esc = |s: &mut String, part: &[u8]| {
        for &c in part {
            match c {
                b'\r' => s.push_str("\\r"),
                b'\n' => s.push_str("\\n"),
                b'"' => s.push_str("\\\""),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(c as char),
                _ => {
                    let _ = write!(s, "\\x{c:02x}");
                }
            }
        }
    };
    s.push('"');
    if b.len() <= MAX {
        esc(&mut s, b);
    } else {
        esc(&mut s, &b[..MAX / 2]);
        let _ = write!(s, "...<{} bytes>...", b.len() - MAX);
        esc(&mut s, &b[b.len() - MAX / 2..]);
    }
    s.push('"');
    s
}

/// A short printable label for a command.
pub fn show_cmd<A: AsRef<[u8]>>(args: &[A]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let a = a.as_ref();
        if a.len() > 40 {
            let _ = write!(s, "{}..<{} bytes>", show(&a[..20]), a.len());
        } else {
            s.push_str(&show(a));
        }
    }
    s
}

/// Owned argument vector from string-ish pieces.
pub fn args<A: AsRef<[u8]>>(parts: &[A]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_ref().to_vec()).collect()
}

/// Reads a file into a string, empty on error.
pub fn read_to_string(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------------------------

/// What a finished child process produced.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args..` with `stdin`, killing it and panicking if it outlives `limit`.
pub fn run_tool(
    program: &str,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> ToolOutput {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {args:?} still running after {limit:?}; killed. stderr: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ToolOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The body of an HTTP GET to the admin port (headers included; fine for `/metrics` lookups).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    let mut body = String::new();
    tokio::time::timeout(READ_TIMEOUT, s.read_to_string(&mut body))
        .await
        .expect("admin reply timed out")
        .expect("admin read");
    body
}

/// How many times Redis ran `cmd` (from INFO commandstats; 0 if never).
/// One sample from the admin port's `/metrics` (`name` may carry labels:
/// `x_total{reason="error"}`); 0 when absent.
pub async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let body = http_get(admin, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn command_calls(redis: &mut RawConn, cmd: &str) -> u64 {
    let info = redis.cmd(&["INFO", "commandstats"]).await;
    commandstats_of(&info).get(cmd).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting TCP relay between the proxy and Redis
// ---------------------------------------------------------------------------------------------

/// What the relay does to the bytes Redis sends back.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Delivers them one byte per write.
    Dribble,
    /// Cuts each of the first `conns` connections after `bytes` bytes from Redis.
    CutAfter { bytes: usize, conns: usize },
    /// Holds back Redis's first bytes on each of the first `conns` connections for `delay`.
    DelayFirst { delay: Duration, conns: usize },
}

/// A relay on 127.0.0.1:0 forwarding to `upstream`, ended when dropped.
pub struct FaultRelay {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultRelay {
    pub async fn start(upstream: &str, fault: Fault) -> FaultRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_string();
        let accept = tokio::spawn(async move {
            let mut accepted = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                accepted += 1;
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let limit = match fault {
                    Fault::CutAfter { bytes, conns } if accepted <= conns => Some(bytes),
                    _ => None,
                };
                let delay = match fault {
                    Fault::DelayFirst { delay, conns } if accepted <= conns => Some(delay),
                    _ => None,
                };
                tokio::spawn(relay_pair(client, server, fault, limit, delay));
            }
        });
        FaultRelay { addr, accept }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay_pair(
    client: TcpStream,
    server: TcpStream,
    fault: Fault,
    limit: Option<usize>,
    mut delay: Option<Duration>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut crd, mut cwr) = client.into_split();
    let (mut srd, mut swr) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut crd, &mut swr).await;
    };
    let down = async move {
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match srd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            if let Some(d) = delay.take() {
                tokio::time::sleep(d).await;
            }
            if let Some(limit) = limit {
                let room = limit.saturating_sub(sent);
                if chunk.len() >= room {
                    let _ = cwr.write_all(&chunk[..room]).await;
                    return;
                }
            }
            sent += chunk.len();
            match fault {
                Fault::Dribble => {
                    while let Some((first, rest)) = chunk.split_first() {
                        if cwr.write_all(std::slice::from_ref(first)).await.is_err() {
                            return;
                        }
                        chunk = rest;
                    }
                }
                Fault::CutAfter { .. } | Fault::DelayFirst { .. } => {
                    if cwr.write_all(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Either direction ending closes both sockets (their halves drop with the futures).
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// An HTTP GET to the admin port: status and raw body bytes (binary-safe, e.g. profiles).
/// `limit` bounds the whole exchange (profiles take as long as they sample).
pub async fn http_get_bytes(addr: SocketAddr, path: &str, limit: Duration) -> (u16, Vec<u8>) {
    let reply = http_request(addr, path, &[], limit).await;
    (reply.status, reply.body)
}

/// An HTTP response: its status, its head (status line and headers) and its body, de-chunked.
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// A header's value (the name in any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP GET to the admin port with extra request `headers`, within `limit`.
pub async fn http_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> HttpReply {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    let mut raw = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("GET {path} took longer than {limit:?}"))
        .expect("admin read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {}", show(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let body = &raw[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    HttpReply { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}
