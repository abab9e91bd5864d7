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
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin connect");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    let mut raw = String::new();
    tokio::time::timeout(READ_TIMEOUT, s.read_to_string(&mut raw))
        .await
        .expect("admin reply timed out")
        .expect("admin read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
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
