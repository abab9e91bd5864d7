//! Who may use the admin HTTP port, and secrets kept out of argv and the environment: the
//! bearer token (`admin_token`) every path but `/healthz` asks for, the refusal to expose the
//! port beyond loopback without one, and secrets read from files (`*_file`, `NEARCACHE_*_FILE`).

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP GET with an optional `Authorization` header: the status code and the whole response.
async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin connect");
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    let mut raw = String::new();
    tokio::time::timeout(READ_TIMEOUT, s.read_to_string(&mut raw))
        .await
        .expect("admin reply timed out")
        .expect("admin read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, raw)
}

/// The admin address to connect to: a wildcard listener is reached on loopback.
fn reach(admin: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], admin.port()))
}

const GUARDED: [&str; 5] = [
    "/metrics",
    "/readyz",
    "/",
    "/api/stats",
    "/debug/pprof/heap",
];

#[tokio::test]
async fn with_a_token_every_path_but_healthz_needs_it() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn_admin(&redis.addr(), &["--admin-token", "s3cret-t0ken"]);
    let admin = proxy.admin.expect("admin port");
    let (status, _) = get(admin, "/healthz", None).await;
    assert_eq!(status, 200, "/healthz is for liveness probes: no token");
    for path in GUARDED {
        let (status, raw) = get(admin, path, None).await;
        assert_eq!(status, 401, "{path} without a token: {raw}");
        assert!(
            raw.contains("WWW-Authenticate: Bearer") || raw.contains("www-authenticate: Bearer")
        );
        for wrong in [
            "Bearer s3cret-t0kem",
            "Bearer s3cret-t0ken2",
            "Basic s3cret-t0ken",
            "s3cret-t0ken",
        ] {
            let (status, _) = get(admin, path, Some(wrong)).await;
            assert_eq!(status, 401, "{path} with {wrong:?}");
        }
    }
    let (status, raw) = get(admin, "/metrics", Some("Bearer s3cret-t0ken")).await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("nearcache_"), "{raw}");
    let (status, _) = get(admin, "/", Some("Bearer s3cret-t0ken")).await;
    assert_eq!(status, 200);
    assert!(
        !proxy.logs().contains("s3cret-t0ken"),
        "the token is logged"
    );
}

#[tokio::test]
async fn without_a_token_a_loopback_admin_port_stays_open() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    let (status, _) = get(proxy.admin.unwrap(), "/metrics", None).await;
    assert_eq!(status, 200);
}

#[test]
fn an_admin_port_beyond_loopback_without_a_token_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .args(["--check-config", "--admin-listen", "0.0.0.0:8380"])
        .env_remove("NEARCACHE_ADMIN_TOKEN")
        .output()
        .expect("run nearcache");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin_listen") && stderr.contains("admin_token"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secrets_come_from_files_named_by_flag_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-a-file\n").unwrap();
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "upstream-pw\r\n").unwrap();
    let redis = RedisServer::start_with(&["--requirepass", "upstream-pw"]);

    // The admin token from NEARCACHE_ADMIN_TOKEN_FILE, on a port open beyond loopback; the
    // upstream password from --upstream-password-file: the proxy becomes ready only if the
    // invalidation connection authenticated with it.
    let proxy = ProxyProcess::spawn_env(
        &[("NEARCACHE_ADMIN_TOKEN_FILE", token_file.to_str().unwrap())],
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &redis.addr(),
            "--admin-listen",
            "0.0.0.0:0",
            "--upstream-password-file",
            pass_file.to_str().unwrap(),
        ],
    );
    let admin = reach(proxy.admin.unwrap());
    let (status, _) = get(admin, "/readyz", None).await;
    assert_eq!(status, 401);
    eventually(
        START_TIMEOUT,
        "ready with the password from the file",
        async || get(admin, "/readyz", Some("Bearer from-a-file")).await.0 == 200,
    )
    .await;
    let logs = proxy.logs();
    assert!(
        !logs.contains("from-a-file") && !logs.contains("upstream-pw"),
        "{logs}"
    );
}

#[test]
fn an_unreadable_secret_file_names_the_file_and_nothing_else() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .args([
            "--check-config",
            "--upstream-password-file",
            "/nonexistent/pw",
        ])
        .output()
        .expect("run nearcache");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--upstream-password-file") && stderr.contains("/nonexistent/pw"),
        "{stderr}"
    );
}
