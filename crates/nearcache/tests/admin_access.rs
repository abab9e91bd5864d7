//! Who may use the admin HTTP port, and secrets kept out of argv and the environment: the
//! bearer token (`admin_token`) every path but `/healthz` asks for, the refusal to expose the
//! port beyond loopback without one, and secrets read from files (`*_file`, `NEARCACHE_*_FILE`).

mod common;

use std::net::SocketAddr;

use common::*;

/// An HTTP GET with an optional `Authorization` header: the status code and the whole response.
async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let reply = get_bytes(addr, path, auth, READ_TIMEOUT).await;
    (
        reply.status,
        format!("{}\r\n\r\n{}", reply.head, reply.text()),
    )
}

/// [`get`], waiting up to `limit` for the response.
async fn get_bytes(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    limit: std::time::Duration,
) -> HttpReply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    http_request(addr, path, &headers, limit).await
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

/// Whether `body` holds `needle`, also inside the gzip stream (a pprof profile) it may be.
fn shows(body: &[u8], needle: &str) -> bool {
    use std::io::Read as _;
    let found = |h: &[u8]| h.windows(needle.len()).any(|w| w == needle.as_bytes());
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .expect("a readable gzip body");
        return found(&plain) || found(body);
    }
    found(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_page_profile_trace_log_or_config_shows_a_key_a_value_or_a_secret() {
    const KEY: &str = "leakcheck-key-7f3a";
    const VALUE: &str = "leakcheck-value-91c2";
    const UPSTREAM_PW: &str = "leakcheck-upstream-55e1";
    const CLIENT_PW: &str = "leakcheck-client-2b8d";
    const WRONG_PW: &str = "leakcheck-wrong-6d0f";
    const TOKEN: &str = "leakcheck-token-c04e";
    const ALL: [&str; 6] = [KEY, VALUE, UPSTREAM_PW, CLIENT_PW, WRONG_PW, TOKEN];
    let redis = RedisServer::start_with(&["--requirepass", UPSTREAM_PW]);
    let proxy = ProxyProcess::spawn_args(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &redis.addr(),
        "--upstream-password",
        UPSTREAM_PW,
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
        "--client-auth",
        "password",
        "--requirepass",
        CLIENT_PW,
        "--trace-sample",
        "1",
    ]);
    let admin = proxy.admin.expect("admin port");
    let bearer = format!("Bearer {TOKEN}");
    let addr = proxy.addr();
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let traffic = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let mut c = RawConn::connect(&addr).await;
            let refused = c.cmd(&["AUTH", WRONG_PW]).await;
            assert!(refused.starts_with(b"-WRONGPASS"), "{}", show(&refused));
            assert_eq!(&c.cmd(&["AUTH", CLIENT_PW]).await[..], b"+OK\r\n");
            c.cmd(&["SET", KEY, VALUE]).await;
            for _ in 0..20 {
                c.cmd(&["GET", KEY]).await;
            }
            c.cmd(&["HGET", KEY, VALUE]).await; // a WRONGTYPE error
            n += 1;
            if *stop.borrow_and_update() {
                return n;
            }
        }
    });
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let limit = std::time::Duration::from_secs(30);
    let trace = get_bytes(admin, "/debug/trace?seconds=1", Some(&bearer), limit).await;
    assert_eq!(trace.status, 200, "{}", trace.text());
    assert!(trace.text().contains("\"name\":\"request\""));
    seen.push(("/debug/trace".into(), trace.body));
    stop_tx.send(true).unwrap();
    assert!(traffic.await.unwrap() > 0);
    for path in [
        "/metrics",
        "/api/stats",
        "/",
        "/readyz",
        "/debug/pprof/heap",
    ] {
        let reply = get_bytes(admin, path, Some(&bearer), limit).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        seen.push((path.into(), reply.body));
    }
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["AUTH", CLIENT_PW]).await[..], b"+OK\r\n");
    for cmd in [
        &["NEARCACHE", "CONFIG", "GET", "*"][..],
        &["NEARCACHE", "INFO"],
        &["CLIENT", "LIST"],
        &["INFO", "clients"],
    ] {
        seen.push((show_cmd(cmd), c.cmd(cmd).await.to_vec()));
    }
    seen.push(("the log".into(), proxy.logs().into_bytes()));
    for (what, body) in &seen {
        for marker in ALL {
            assert!(!shows(body, marker), "{what} shows {marker}");
        }
    }
}
