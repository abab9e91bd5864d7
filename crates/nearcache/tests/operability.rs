//! What an operator relies on: `/metrics` in the format it declares (checked by Prometheus's
//! own parsers, `promtool`), the `/healthz` and `/readyz` probes, the process metrics and
//! build info, configuration checking and the environment, and the operating-system edges
//! (file descriptor limit, TCP keepalive, the Unix socket, log files), and the example
//! configuration in `deploy/`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// An HTTP GET with an optional `Accept` header: the status code, the `Content-Type`, the body.
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let reply = http_request(addr, path, &headers, READ_TIMEOUT).await;
    let content_type = reply.header("content-type").unwrap_or_default().to_string();
    (reply.status, content_type, reply.text())
}

/// `promtool`, which the Debian package `prometheus` installs (scripts/deps.sh does).
fn promtool() -> &'static str {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool not found: install the Debian package `prometheus` (scripts/deps.sh does)"
    );
    "promtool"
}

async fn proxy_with_admin(redis: &RedisServer) -> Proxy {
    Proxy::start_config(Proxy::config(&redis.addr()).with("admin_listen", "127.0.0.1:0")).await
}

/// Traffic that makes every labelled family show samples (commands by outcome, latency
/// histograms, a hit).
async fn some_traffic(proxy: &Proxy) {
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.cmd(&["SET", "k", "v"]).await;
    for _ in 0..3 {
        c.cmd(&["GET", "k"]).await;
    }
    c.cmd(&["INCR", "k"]).await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_by_default_and_pass_promtool() {
    let promtool = promtool();
    let redis = RedisServer::start();
    let proxy = proxy_with_admin(&redis).await;
    some_traffic(&proxy).await;
    let admin = proxy.admin.unwrap();
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (status, content_type, body) = get(admin, "/metrics", accept).await;
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!body.contains("# EOF"), "{accept:?}");
        let out = run_tool(
            promtool,
            &["check", "metrics"],
            Some(body.clone().into_bytes()),
            TOOL_LIMIT,
        );
        assert!(
            out.status.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
            "promtool check metrics: {:?}\n{}{}\n--- body:\n{body}",
            out.status,
            out.stdout,
            out.stderr
        );
        for family in [
            "# TYPE nearcache_commands_total counter",
            "# TYPE nearcache_command_duration_seconds histogram",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_virtual_memory_bytes gauge",
        ] {
            assert!(body.contains(family), "{family} missing in\n{body}");
        }
        let commit = nearcache::obs::process::COMMIT;
        let build = format!(
            "nearcache_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(body.contains(&build), "{build} missing in\n{body}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn metrics_are_openmetrics_when_the_scraper_asks_and_pass_prometheus_parser() {
    let promtool = promtool();
    let redis = RedisServer::start();
    let proxy = proxy_with_admin(&redis).await;
    some_traffic(&proxy).await;
    let admin = proxy.admin.unwrap();
    let (status, content_type, body) = get(admin, "/metrics", Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Every sample of a counter family is `<family>_total`, as OpenMetrics requires.
    let mut counter: Option<String> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            counter = rest.strip_suffix(" counter").map(str::to_string);
        } else if let (Some(family), false) = (&counter, line.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert_eq!(name, format!("{family}_total"), "{line}");
        }
    }
    // Prometheus's OpenMetrics parser, as promtool's backfill uses it; backfilling needs a
    // timestamp on every sample, which a scrape does not carry, so one is added.
    let dir = tempfile::tempdir().unwrap();
    let stamped: String = body
        .lines()
        .map(|l| match l.starts_with('#') {
            true => format!("{l}\n"),
            false => format!("{l} 1700000000\n"),
        })
        .collect();
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, stamped).unwrap();
    let blocks = dir.path().join("blocks");
    let out = run_tool(
        promtool,
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().unwrap(),
            blocks.to_str().unwrap(),
        ],
        None,
        TOOL_LIMIT,
    );
    assert!(
        out.status.success(),
        "promtool rejected the OpenMetrics body: {}{}\n--- body:\n{body}",
        out.stdout,
        out.stderr
    );
    // Without `# EOF` the same parser refuses it: the check above can fail.
    let cut = std::fs::read_to_string(&input)
        .unwrap()
        .replace("# EOF\n", "");
    std::fs::write(&input, cut).unwrap();
    let out = run_tool(
        promtool,
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().unwrap(),
            dir.path().join("again").to_str().unwrap(),
        ],
        None,
        TOOL_LIMIT,
    );
    assert!(!out.status.success(), "promtool took a body without # EOF");
    proxy.shutdown().await;
}

#[tokio::test]
async fn readiness_follows_redis_and_the_invalidation_connection() {
    let mut redis = RedisServer::start();
    let proxy = proxy_with_admin(&redis).await;
    let admin = proxy.admin.unwrap();
    eventually(START_TIMEOUT, "/readyz to say ready", async || {
        get(admin, "/readyz", None).await.0 == 200
    })
    .await;
    let (_, _, body) = get(admin, "/readyz", None).await;
    assert_eq!(body, "ready\n");

    redis.kill();
    eventually(START_TIMEOUT, "/readyz to say not ready", async || {
        get(admin, "/readyz", None).await.0 == 503
    })
    .await;
    let (_, _, body) = get(admin, "/readyz", None).await;
    assert!(body.starts_with("not ready:\n"), "{body}");
    // The process is still alive: liveness does not follow Redis.
    let (status, _, body) = get(admin, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    redis.restart();
    eventually(START_TIMEOUT, "/readyz to say ready again", async || {
        get(admin, "/readyz", None).await.0 == 200
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_proxy_without_a_cache_is_ready_once_redis_answers() {
    let redis = RedisServer::start();
    let config = Proxy::config(&redis.addr())
        .with("admin_listen", "127.0.0.1:0")
        .with("max_memory", "0");
    let proxy = Proxy::start_config(config).await;
    let admin = proxy.admin.unwrap();
    eventually(START_TIMEOUT, "/readyz to say ready", async || {
        get(admin, "/readyz", None).await.0 == 200
    })
    .await;
    proxy.shutdown().await;
}

/// The binary with `env` set (`NAME=value` words, as env(1) takes them) and `args`, run to its
/// exit: configuration checks return at once.
fn run_binary(env: &[&str], args: &[&str]) -> ToolOutput {
    let mut argv: Vec<&str> = env.to_vec();
    argv.push(env!("CARGO_BIN_EXE_nearcache"));
    argv.extend_from_slice(args);
    run_tool("env", &argv, None, TOOL_LIMIT)
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nearcache.toml");
    std::fs::write(
        &file,
        "max_memory = \"1gb\"\nupstream_conns = 3\ntimeout = \"30s\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = run_binary(
        &[
            "NEARCACHE_MAX_MEMORY=2gb",
            "NEARCACHE_UPSTREAM_PASSWORD=hunter2",
        ],
        &["--check-config", "--config", file, "--upstream-conns", "4"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("configuration OK"), "{}", out.stderr);
    // flag > environment > file > default.
    for line in [
        "upstream_conns = 4\n",
        "max_memory = \"2gb\"\n",
        "timeout = \"30s\"\n",
        "listen = \"127.0.0.1:6380\"\n",
        "upstream_password = \"********\"\n",
    ] {
        assert!(
            out.stdout.contains(line),
            "{line:?} missing in\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
    // What it prints is a configuration file that loads back to the same settings.
    let printed = nearcache::Config::from_toml(&out.stdout).unwrap().config;
    assert_eq!(printed.max_memory.0, 2 << 30);
    assert_eq!(printed.upstream_conns, 4);
}

#[test]
fn check_config_fails_with_status_1_naming_the_setting_where_it_was_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_memory = \"12xb\"\n").unwrap();
    let file = file.to_str().unwrap();
    for (env, args, needle) in [
        (
            vec![],
            vec!["--config", file],
            "bad.toml: max_memory: invalid size",
        ),
        (
            vec!["NEARCACHE_MAX_MEMORY=2xb"],
            vec![],
            "NEARCACHE_MAX_MEMORY: invalid size",
        ),
        (
            vec![],
            vec!["--max-memory", "2xb"],
            "--max-memory: invalid size",
        ),
        (
            vec!["NEARCACHE_TCP_KEEPALIVE=100ms"],
            vec![],
            "tcp_keepalive must be at least 1s",
        ),
        (
            vec![],
            vec!["--unixsocketperm", "770"],
            "unixsocketperm needs unixsocket",
        ),
    ] {
        let mut argv = vec!["--check-config"];
        argv.extend(args);
        let out = run_binary(&env, &argv);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{env:?} {argv:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(needle),
            "{needle:?} not in {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
}

#[tokio::test]
async fn client_and_upstream_sockets_have_tcp_keepalive() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    // `ss -o` shows a keepalive timer on sockets with SO_KEEPALIVE; 300s is the default.
    let sockets = |filter: String| {
        let out = run_tool(
            "ss",
            &["-tnoH", "state", "established", &filter],
            None,
            TOOL_LIMIT,
        );
        assert!(out.status.success(), "ss: {}", out.stderr);
        out.stdout
    };
    let client_side = sockets(format!("( sport = :{} )", proxy.addr.port()));
    assert!(
        !client_side.trim().is_empty(),
        "the client's socket is not listed"
    );
    for line in client_side.lines() {
        assert!(line.contains("timer:(keepalive,4min"), "{line}");
    }
    let upstream_side = sockets(format!("( dport = :{} )", redis.port()));
    assert!(upstream_side.lines().count() >= 2, "{upstream_side}");
    for line in upstream_side.lines() {
        assert!(line.contains("timer:(keepalive,"), "{line}");
    }
    proxy.shutdown().await;
}

/// Kills the child on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The soft and hard open-file limits of process `pid`.
fn nofile(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

#[test]
fn the_open_file_limit_is_raised_for_max_clients_and_logged() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nearcache.log");
    // Started with a soft limit of 256; 1000 clients and 64 upstream connections want 1096.
    let child = std::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_nearcache"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
            "--upstream",
            &redis.addr(),
        ])
        .args(["--max-clients", "1000", "--max-open-conns", "64"])
        .args(["--log-file", log.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn nearcache");
    let child = Reaped(child);
    let pid = child.0.id();
    let logged = poll_until(START_TIMEOUT, "the open file limit log line", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("open file limit").then_some(text)
    });
    let (soft, hard) = nofile(pid).expect("/proc/PID/limits");
    let wanted = 1000 + 64 + 32;
    assert_eq!(soft, wanted.min(hard), "{logged}");
    if hard >= wanted {
        assert!(logged.contains("open file limit raised"), "{logged}");
        assert!(
            logged.contains("was=256") && logged.contains("wanted=1096"),
            "{logged}"
        );
    }
}

#[test]
fn logs_have_no_colour_codes_off_a_terminal_and_go_to_the_log_file() {
    let redis = RedisServer::start();
    let plain = ProxyProcess::spawn_with(&redis.addr(), &[]);
    poll_until(START_TIMEOUT, "a log line", || {
        plain.logs().contains("nearcache started").then_some(())
    });
    assert!(!plain.logs().contains('\x1b'), "{:?}", plain.logs());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n.log");
    std::fs::write(&file, "kept\n").unwrap();
    let to_file = ProxyProcess::spawn_with(&redis.addr(), &["--log-file", file.to_str().unwrap()]);
    let text = poll_until(START_TIMEOUT, "the log file", || {
        let t = std::fs::read_to_string(&file).ok()?;
        t.contains("nearcache started").then_some(t)
    });
    assert!(
        text.starts_with("kept\n"),
        "the log file is appended to: {text}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        !to_file.logs().contains("nearcache started"),
        "{}",
        to_file.logs()
    );
}

/// One command over a Unix socket connection, its whole reply.
async fn unix_cmd(s: &mut tokio::net::UnixStream, args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_TIMEOUT, s.read(&mut chunk))
            .await
            .expect("reply timed out")
            .unwrap();
        assert!(n > 0, "closed before a reply");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(len) = resp::scan(&buf, &limits()).expect("a RESP reply") {
            assert_eq!(len, buf.len(), "one reply");
            return buf;
        }
    }
}

#[tokio::test]
async fn clients_connect_on_the_unix_socket_too() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nearcache.sock");
    // A socket file left by an earlier run is replaced, as redis-server does.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let config = Proxy::config(&redis.addr())
        .with("unixsocket", path.to_str().unwrap())
        .with("unixsocketperm", "770");
    let proxy = Proxy::start_config(config).await;
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o770);

    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    assert_eq!(unix_cmd(&mut s, &["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(unix_cmd(&mut s, &["GET", "k"]).await, b"$1\r\nv\r\n");
    let list = String::from_utf8(unix_cmd(&mut s, &["CLIENT", "LIST"]).await).unwrap();
    let shown = format!("addr={0}:0 laddr={0}:0 ", path.display());
    assert!(list.contains(&shown), "{shown:?} not in {list}");
    // TCP clients are served beside it.
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    proxy.shutdown().await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn a_unix_socket_path_held_by_another_file_is_an_error() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "not a socket").unwrap();
    let config = Proxy::config(&redis.addr()).with("unixsocket", path.to_str().unwrap());
    let err = match nearcache::start(config).await {
        Ok(_) => panic!("started on a path held by a regular file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

/// The next datagram on `sock` as text, or a panic after `READ_TIMEOUT`.
fn next_notice(sock: &std::os::unix::net::UnixDatagram) -> String {
    sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification from nearcache");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
            "--upstream",
            &redis.addr(),
        ])
        .env("NOTIFY_SOCKET", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn nearcache");
    let mut child = Reaped(child);
    assert_eq!(next_notice(&sock), "READY=1\n");
    let pid = child.0.id().to_string();
    let kill = |signal: &str| {
        let out = run_tool("kill", &[signal, &pid], None, TOOL_LIMIT);
        assert!(out.status.success(), "{}", out.stderr);
    };
    kill("-HUP");
    let reloading = next_notice(&sock);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next_notice(&sock), "READY=1\n");
    kill("-TERM");
    assert_eq!(next_notice(&sock), "STOPPING=1\n");
    let status = poll_until(START_TIMEOUT, "nearcache to exit", || {
        child.0.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status:?}");
}
