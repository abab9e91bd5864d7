//! TLS on both sides against real servers: clients (redis-cli `--tls`, redis-py `ssl=True`, a
//! rustls client) through the proxy's TLS listener, mutual TLS, certificate reload on SIGHUP,
//! a bad certificate file at start and on reload, and the proxy talking TLS to a TLS-only
//! `redis-server` (with invalidations still arriving). Certificates are made per test by rcgen
//! (`common::tls::Pki`).

mod common;

use std::time::Duration;

use common::tls::{Pki, TlsClient};
use common::*;

const CONVERGE: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The in-process proxy's config with a TLS listener on 127.0.0.1:0 using `pki`'s server
/// certificate, clients checked against its CA as `auth` says.
fn tls_config(upstream: &str, pki: &Pki, auth: &str) -> nearcache::Config {
    Proxy::config(upstream)
        .with("tls_listen", "127.0.0.1:0")
        .with("tls_cert_file", &pki.file("server.crt"))
        .with("tls_key_file", &pki.file("server.key"))
        .with("tls_ca_cert_file", &pki.file("ca.crt"))
        .with("tls_auth_clients", auth)
}

async fn start_tls(upstream: &str, pki: &Pki, auth: &str) -> (Proxy, String) {
    let config = tls_config(upstream, pki, auth);
    let proxy = Proxy::start_config(config).await;
    let tls = proxy.tls.expect("tls_listen set").to_string();
    (proxy, tls)
}

/// redis-cli over TLS to `addr`, with the client certificate.
async fn cli_tls(pki: &Pki, addr: &str, args: &[&str]) -> ToolOutput {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut all: Vec<String> = [
        "--tls",
        "--cacert",
        &pki.file("ca.crt"),
        "--cert",
        &pki.file("client.crt"),
        "--key",
        &pki.file("client.key"),
        "-h",
        host,
        "-p",
        port,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run_tool("redis-cli", &args, None, TOOL_TIMEOUT)
    })
    .await
    .unwrap()
}

/// How many times Redis ran `cmd`, asked over `conn`.
async fn calls_over(conn: &mut TlsClient, cmd: &str) -> u64 {
    let info = conn.cmd(&[b"INFO", b"commandstats"]).await.unwrap();
    commandstats_of(&info).get(cmd).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_over_tls_sets_gets_and_is_served_from_the_cache() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (proxy, tls) = start_tls(&redis.addr(), &pki, "yes").await;
    let out = cli_tls(&pki, &tls, &["SET", "tls:k", "v1"]).await;
    assert_eq!(out.stdout, "OK\n", "{out:?}");
    let out = cli_tls(&pki, &tls, &["GET", "tls:k"]).await;
    assert_eq!(out.stdout, "v1\n", "{out:?}");
    // Once the value is cached, a GET through the TLS listener does not reach Redis.
    let mut direct = RawConn::connect(&redis.addr()).await;
    eventually(
        CONVERGE,
        "a GET over TLS served from the cache",
        async || {
            let before = command_calls(&mut direct, "get").await;
            let out = cli_tls(&pki, &tls, &["GET", "tls:k"]).await;
            assert_eq!(out.stdout, "v1\n", "{out:?}");
            command_calls(&mut direct, "get").await == before
        },
    )
    .await;
    // CLIENT LIST shows the TLS client with its TCP address.
    let mut c = pki.connect(&tls, true).await.unwrap();
    let list = c.cmd(&[b"CLIENT", b"LIST"]).await.unwrap();
    let list = String::from_utf8_lossy(&list);
    assert!(list.contains("addr=127.0.0.1:"), "{list}");
    // The plain listener still serves beside the TLS one.
    let mut plain = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&plain.cmd(&["GET", "tls:k"]).await[..], b"$2\r\nv1\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_with_ssl_reads_and_writes_through_the_tls_listener() {
    if !has_redis_py() {
        return;
    }
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (proxy, tls) = start_tls(&redis.addr(), &pki, "yes").await;
    let (_, port) = tls.rsplit_once(':').unwrap();
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='localhost', port={port}, ssl=True, ssl_ca_certs={ca:?},\n\
         \x20   ssl_certfile={cert:?}, ssl_keyfile={key:?}, socket_timeout=5)\n\
         assert r.set('py:k', 'hello')\n\
         assert r.get('py:k') == b'hello', r.get('py:k')\n\
         p = r.pipeline(transaction=True)\n\
         p.incr('py:n'); p.incr('py:n')\n\
         assert p.execute() == [1, 2]\n\
         print('ok')\n",
        ca = pki.file("ca.crt"),
        cert = pki.file("client.crt"),
        key = pki.file("client.key"),
    );
    let out = tokio::task::spawn_blocking(move || {
        run_tool("python3", &["-c", &script], None, TOOL_TIMEOUT)
    })
    .await
    .unwrap();
    assert_eq!(out.stdout, "ok\n", "{out:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_unless_optional() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (proxy, tls) = start_tls(&redis.addr(), &pki, "yes").await;
    let mut with = pki.connect(&tls, true).await.unwrap();
    assert_eq!(&with.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");
    // Under TLS 1.3 the refusal comes after the client's side of the handshake: at the latest,
    // the first command fails.
    let refused = match pki.connect(&tls, false).await {
        Err(_) => true,
        Ok(mut c) => c.cmd(&[b"PING"]).await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    proxy.shutdown().await;

    let (proxy, tls) = start_tls(&redis.addr(), &pki, "optional").await;
    for with_cert in [true, false] {
        let mut c = pki.connect(&tls, with_cert).await.unwrap();
        assert_eq!(&c.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");
    }
    // A certificate from another CA is still refused.
    let stranger = Pki::new();
    let refused = match pki.connect_as(&tls, Some(&stranger)).await {
        Err(_) => true,
        Ok(mut c) => c.cmd(&[b"PING"]).await.is_err(),
    };
    assert!(
        refused,
        "a client certificate from an unknown CA was accepted"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_to_a_tls_only_redis_caches_and_invalidates() {
    let pki = Pki::new();
    let args = pki.redis_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let redis = RedisServer::start_tls(&args);
    let upstream = format!("rediss://{}", redis.addr());
    let config = Proxy::config(&upstream)
        .with("upstream_tls_ca_cert_file", &pki.file("ca.crt"))
        .with("upstream_tls_cert_file", &pki.file("client.crt"))
        .with("upstream_tls_key_file", &pki.file("client.key"))
        .with("upstream_tls_server_name", "localhost");
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["SET", "up:k", "v1"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["GET", "up:k"]).await[..], b"$2\r\nv1\r\n");
    // A dedicated connection (a transaction) goes over TLS too.
    c.send(&["MULTI"]).await;
    assert_eq!(&c.read_raw().await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["INCR", "up:n"]).await[..], b"+QUEUED\r\n");
    assert_eq!(&c.cmd(&["EXEC"]).await[..], b"*1\r\n:1\r\n");
    // Reads are cached ...
    let mut direct = pki.connect(&redis.addr(), true).await.unwrap();
    eventually(CONVERGE, "GET up:k served from the cache", async || {
        let before = calls_over(&mut direct, "get").await;
        assert_eq!(&c.cmd(&["GET", "up:k"]).await[..], b"$2\r\nv1\r\n");
        calls_over(&mut direct, "get").await == before
    })
    .await;
    // ... and a write made directly to Redis reaches the cache over the TLS invalidation
    // connection.
    let set = direct.cmd(&[b"SET", b"up:k", b"v2"]).await.unwrap();
    assert_eq!(&set[..], b"+OK\r\n");
    eventually(
        CONVERGE,
        "the direct write to invalidate up:k",
        async || &c.cmd(&["GET", "up:k"]).await[..] == b"$2\r\nv2\r\n",
    )
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_with_an_untrusted_redis_certificate_fails_clearly() {
    let pki = Pki::new();
    let args = pki.redis_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let redis = RedisServer::start_tls(&args);
    let other = Pki::new();
    let config = Proxy::config(&format!("rediss://{}", redis.addr()))
        .with("upstream_tls_ca_cert_file", &other.file("ca.crt"))
        .with("upstream_tls_cert_file", &pki.file("client.crt"))
        .with("upstream_tls_key_file", &pki.file("client.key"));
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let reply = c.cmd(&["GET", "k"]).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with('-') && text.contains("TLS handshake failed"),
        "{text}"
    );
    proxy.shutdown().await;
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = Pki::new();
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn_with(
        &redis.addr(),
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert-file",
            &pki.file("server.crt"),
            "--tls-key-file",
            &pki.file("server.key"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let tls = proxy
        .tls
        .expect("the ready line names the TLS listener")
        .to_string();
    let first = pki.der("server");
    rt.block_on(async {
        let mut old = pki.connect(&tls, false).await.unwrap();
        assert_eq!(old.server_cert(), first);
        assert_eq!(&old.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");

        // Renewed in place: new handshakes get the new certificate, the old client stays.
        let renewed = pki.issue("server", "nearcache renewed server", 7);
        proxy.signal("HUP");
        eventually(
            CONVERGE,
            "a new connection to see the renewed certificate",
            async || pki.connect(&tls, false).await.unwrap().server_cert() == renewed,
        )
        .await;
        assert_eq!(&old.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");
        assert_eq!(old.server_cert(), first);

        // A broken file on reload: logged, and the certificate in force stays.
        std::fs::write(pki.path("server.crt"), "not a certificate\n").unwrap();
        proxy.signal("HUP");
        poll_until(CONVERGE, "the reload failure in the log", || {
            proxy
                .logs()
                .contains("TLS certificates not reloaded")
                .then_some(())
        });
        let logs = proxy.logs();
        assert!(logs.contains(&pki.file("server.crt")), "{logs}");
        let mut after = pki.connect(&tls, false).await.unwrap();
        assert_eq!(after.server_cert(), renewed);
        assert_eq!(&after.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");
        assert_eq!(&old.cmd(&[b"PING"]).await.unwrap()[..], b"+PONG\r\n");
    });
}

#[test]
fn a_bad_certificate_file_stops_the_start_and_names_the_file() {
    let pki = Pki::new();
    std::fs::write(pki.path("bad.crt"), "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    let out = run_tool(
        env!("CARGO_BIN_EXE_nearcache"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert-file",
            &pki.file("bad.crt"),
            "--tls-key-file",
            &pki.file("server.key"),
            "--tls-auth-clients",
            "no",
        ],
        None,
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&pki.file("bad.crt")), "{out:?}");
    // A TLS listener without a certificate is refused before anything starts.
    let out = run_tool(
        env!("CARGO_BIN_EXE_nearcache"),
        &["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"],
        None,
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("tls_cert_file"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listen_can_stand_instead_of_listen() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let config = tls_config(&redis.addr(), &pki, "no").with("listen", "none");
    let running = nearcache::start(config).await.unwrap();
    assert_eq!(running.listen_addr, None);
    let tls = running.tls_addr.expect("tls_listen set").to_string();
    let mut c = pki.connect(&tls, false).await.unwrap();
    assert_eq!(&c.cmd(&[b"SET", b"k", b"v"]).await.unwrap()[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&[b"GET", b"k"]).await.unwrap()[..], b"$1\r\nv\r\n");
    running.shutdown().await;

    // With no listener of any kind the start is refused, naming the settings.
    let none = Proxy::config(&redis.addr()).with("listen", "none");
    let err = nearcache::start(none).await.err().expect("refused");
    assert!(err.to_string().contains("tls_listen"), "{err:#}");
}
