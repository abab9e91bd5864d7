//! Client authentication and the ACL-aware cache against a real Redis with `requirepass` and
//! ACL users: through the proxy a client is refused, authenticated and limited exactly as Redis
//! does it directly (replies compared byte for byte), its reads are cached, and one user's
//! cached reads never reach another user who may not read them.

mod common;

use std::time::Duration;

use common::*;

/// Bound on how long an ACL change made on Redis directly takes to be seen through the proxy
/// (the tests check every 100 ms; this is the test's patience, not a speed claim).
const CONVERGE: Duration = Duration::from_secs(10);

/// A Redis with the proxy's own ACL user `proxy`, and the proxy's config in front of it.
async fn setup() -> (RedisServer, RawConn, nearcache::Config) {
    let server = RedisServer::start();
    let mut admin = RawConn::connect(&server.addr()).await;
    let ok = admin
        .cmd(&[
            "ACL", "SETUSER", "proxy", "on", ">proxypw", "~*", "&*", "+@all",
        ])
        .await;
    assert_eq!(&ok[..], b"+OK\r\n");
    let config = Proxy::config(&server.addr())
        .with("upstream_user", "proxy")
        .with("upstream_password", "proxypw")
        .with("acl_check_interval", "100ms");
    (server, admin, config)
}

async fn add_user(admin: &mut RawConn, rules: &[&str]) {
    let mut cmd = vec!["ACL", "SETUSER"];
    cmd.extend_from_slice(rules);
    assert_eq!(&admin.cmd(&cmd).await[..], b"+OK\r\n", "{rules:?}");
}

/// Sends `cmd` on a new connection to `addr`, after `before` (each of whose replies is
/// returned too).
async fn fresh(addr: &str, before: &[&[&str]], cmd: &[&str]) -> Vec<bytes::Bytes> {
    let mut c = RawConn::connect(addr).await;
    let mut out = Vec::new();
    for b in before {
        out.push(c.cmd(b).await);
    }
    out.push(c.cmd(cmd).await);
    out
}

#[tokio::test]
async fn requirepass_set_while_running_is_enforced_as_redis_does() {
    let (server, mut admin, config) = setup().await;
    let proxy = Proxy::start_config(config).await;
    // Before: the default user is nopass, and a client that never authenticates may write.
    let mut early = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&early.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");

    let set = admin.cmd(&["CONFIG", "SET", "requirepass", "pw"]).await;
    assert_eq!(&set[..], b"+OK\r\n");
    let direct = fresh(&server.addr(), &[], &["SET", "k", "v"]).await;
    assert!(direct[0].starts_with(b"-NOAUTH"), "{}", show(&direct[0]));
    // A new client through the proxy gets Redis's own refusal once the proxy has seen it.
    let mut refused = bytes::Bytes::new();
    eventually(CONVERGE, "the proxy refusing new clients", async || {
        refused = fresh(&proxy.addr(), &[], &["SET", "k", "v"])
            .await
            .remove(0);
        refused == direct[0]
    })
    .await;
    // As in Redis, a client connected before stays authenticated.
    assert_eq!(&early.cmd(&["SET", "k", "v2"]).await[..], b"+OK\r\n");

    // Each of these, on a new connection, answered exactly as Redis answers it.
    let cases: &[(&[&[&str]], &[&str])] = &[
        (&[], &["GET", "k"]),
        (&[], &["HELLO", "3"]),
        (&[], &["AUTH", "wrong"]),
        (&[], &["AUTH", "default", "wrong"]),
        (&[], &["HELLO", "3", "AUTH", "default", "wrong"]),
        (&[], &["AUTH", "pw"]),
        (&[&["AUTH", "pw"]], &["SET", "k", "v3"]),
        (&[&["AUTH", "pw"]], &["GET", "k"]),
        (&[&["AUTH", "wrong"]], &["GET", "k"]),
        (&[&["AUTH", "pw"], &["RESET"]], &["GET", "k"]),
        (&[], &["PING"]),
    ];
    for (before, cmd) in cases {
        let want = fresh(&server.addr(), before, cmd).await;
        let got = fresh(&proxy.addr(), before, cmd).await;
        let shown = |r: &[bytes::Bytes]| r.iter().map(|b| show(b)).collect::<Vec<_>>();
        assert_eq!(shown(&got), shown(&want), "{before:?} then {cmd:?}");
    }
    // HELLO 3 AUTH authenticates and switches to RESP3 at once.
    let mut c = RawConn::connect(&proxy.addr()).await;
    let hello = c.cmd(&["HELLO", "3", "AUTH", "default", "pw"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    // Its id is the one CLIENT ID gives, not that of the connection that checked the password.
    let id = c.cmd(&["CLIENT", "ID"]).await;
    let id = format!("$2\r\nid\r\n{}", String::from_utf8_lossy(&id));
    let found = hello.windows(id.len()).any(|w| w == id.as_bytes());
    assert!(found, "{} lacks {id:?}", show(&hello));
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$2\r\nv3\r\n");
    assert_eq!(&c.cmd(&["HGET", "nohash", "f"]).await[..], b"_\r\n");
    proxy.shutdown().await;
}

/// Waits until a read of `key` on `c` is answered from the cache: a second read does not
/// reach Redis.
async fn wait_until_cached(c: &mut RawConn, redis: &mut RawConn, key: &str) {
    eventually(CONVERGE, "a read served from the cache", async || {
        c.cmd(&["GET", key]).await;
        let before = command_calls(redis, "get").await;
        let second = c.cmd(&["GET", key]).await;
        assert_eq!(&second[..], b"$2\r\nv1\r\n");
        command_calls(redis, "get").await == before
    })
    .await;
}

#[tokio::test]
async fn one_users_cached_read_never_reaches_a_user_who_may_not_read_it() {
    let (server, mut admin, config) = setup().await;
    add_user(&mut admin, &["alice", "on", ">apw", "~app:*", "+@all"]).await;
    add_user(&mut admin, &["bob", "on", ">bpw", "~other:*", "+@all"]).await;
    admin.cmd(&["SET", "app:1", "v1"]).await;
    let proxy = Proxy::start_config(config).await;

    // alice's repeated read is a hit: Redis's GET count does not move.
    let mut alice = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&alice.cmd(&["AUTH", "alice", "apw"]).await[..], b"+OK\r\n");
    wait_until_cached(&mut alice, &mut admin, "app:1").await;

    // bob gets Redis's -NOPERM, byte for byte, though app:1 is cached.
    let direct = fresh(
        &server.addr(),
        &[&["AUTH", "bob", "bpw"]],
        &["GET", "app:1"],
    )
    .await;
    assert!(direct[1].starts_with(b"-NOPERM"), "{}", show(&direct[1]));
    let mut bob = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&bob.cmd(&["AUTH", "bob", "bpw"]).await[..], b"+OK\r\n");
    let got = bob.cmd(&["GET", "app:1"]).await;
    assert_eq!(show(&got), show(&direct[1]));
    let got = bob.cmd(&["MGET", "app:1"]).await;
    let want = fresh(
        &server.addr(),
        &[&["AUTH", "bob", "bpw"]],
        &["MGET", "app:1"],
    )
    .await;
    assert_eq!(show(&got), show(&want[1]));
    // Redis's ACL LOG has bob's refusal, as if he had asked Redis himself.
    let log = admin.cmd(&["ACL", "LOG", "1"]).await;
    assert!(
        String::from_utf8_lossy(&log).contains("bob"),
        "{}",
        show(&log)
    );

    // Allowed on Redis directly, bob reads it through the proxy (within the check interval).
    add_user(&mut admin, &["bob", "~app:*"]).await;
    eventually(CONVERGE, "bob allowed to read app:1", async || {
        &bob.cmd(&["GET", "app:1"]).await[..] == b"$2\r\nv1\r\n"
    })
    .await;
    // And his reads are cached too.
    wait_until_cached(&mut bob, &mut admin, "app:1").await;

    // Taken away again through the proxy (by a client acting as an ACL admin): bob is refused
    // at once, never served the value he cached.
    let mut op = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&op.cmd(&["AUTH", "proxy", "proxypw"]).await[..], b"+OK\r\n");
    let revoke = op
        .cmd(&["ACL", "SETUSER", "bob", "resetkeys", "~other:*"])
        .await;
    assert_eq!(&revoke[..], b"+OK\r\n");
    let got = bob.cmd(&["GET", "app:1"]).await;
    assert_eq!(show(&got), show(&direct[1]));
    proxy.shutdown().await;
}

#[tokio::test]
async fn auth_to_another_user_mid_connection_switches_identity() {
    let (_server, mut admin, config) = setup().await;
    add_user(&mut admin, &["alice", "on", ">apw", "~app:*", "+@all"]).await;
    add_user(&mut admin, &["bob", "on", ">bpw", "~other:*", "+@all"]).await;
    admin.cmd(&["SET", "app:1", "v1"]).await;
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["AUTH", "alice", "apw"]).await[..], b"+OK\r\n");
    wait_until_cached(&mut c, &mut admin, "app:1").await;
    let whoami = c.cmd(&["ACL", "WHOAMI"]).await;
    assert_eq!(&whoami[..], b"$5\r\nalice\r\n");

    // Pipelined: the switch happens between the two reads, never before the first.
    let replies = c
        .pipeline(&[
            &["GET", "app:1"][..],
            &["AUTH", "bob", "bpw"],
            &["GET", "app:1"],
            &["ACL", "WHOAMI"],
        ])
        .await;
    assert_eq!(&replies[0][..], b"$2\r\nv1\r\n");
    assert_eq!(&replies[1][..], b"+OK\r\n");
    assert!(replies[2].starts_with(b"-NOPERM"), "{}", show(&replies[2]));
    assert_eq!(&replies[3][..], b"$3\r\nbob\r\n");
    // A failed AUTH keeps the user the client had, as in Redis.
    assert!(c
        .cmd(&["AUTH", "alice", "nope"])
        .await
        .starts_with(b"-WRONGPASS"));
    assert_eq!(&c.cmd(&["ACL", "WHOAMI"]).await[..], b"$3\r\nbob\r\n");
    // A transaction runs as the client's user too.
    let tx = c
        .pipeline(&[&["MULTI"][..], &["ACL", "WHOAMI"], &["EXEC"]])
        .await;
    assert_eq!(&tx[2][..], b"*1\r\n$3\r\nbob\r\n");
    assert_eq!(&c.cmd(&["AUTH", "alice", "apw"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["GET", "app:1"]).await[..], b"$2\r\nv1\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn deleting_a_connected_user_closes_its_clients() {
    let (_server, mut admin, config) = setup().await;
    add_user(&mut admin, &["carol", "on", ">cpw", "~*", "+@all"]).await;
    let proxy = Proxy::start_config(config).await;
    let mut carol = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&carol.cmd(&["AUTH", "carol", "cpw"]).await[..], b"+OK\r\n");
    assert_eq!(&carol.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(
        &admin.cmd(&["ACL", "DELUSER", "carol"]).await[..],
        b":1\r\n"
    );
    // Redis closes carol's connections; the proxy closes carol's clients once it has seen it.
    eventually(CONVERGE, "carol's client closed", async || {
        carol.try_cmd(&["PING"]).await.is_err()
    })
    .await;
    // And carol can no longer authenticate.
    let again = fresh(&proxy.addr(), &[], &["AUTH", "carol", "cpw"]).await;
    assert!(again[0].starts_with(b"-WRONGPASS"), "{}", show(&again[0]));
    proxy.shutdown().await;
}

#[tokio::test]
async fn password_mode_checks_the_proxys_password_and_acts_as_the_upstream_user() {
    let (_server, _admin, config) = setup().await;
    let config = config
        .with("client_auth", "password")
        .with("requirepass", "secret");
    let proxy = Proxy::start_config(config).await;
    let noauth = fresh(&proxy.addr(), &[], &["GET", "k"]).await;
    assert_eq!(&noauth[0][..], b"-NOAUTH Authentication required.\r\n");
    let hello = fresh(&proxy.addr(), &[], &["HELLO", "3"]).await;
    assert!(hello[0].starts_with(b"-NOAUTH HELLO must be called"));
    let wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    for bad in [
        &["AUTH", "nope"][..],
        &["AUTH", "proxy", "secret"],
        &["AUTH", "proxy", "proxypw"],
        &["HELLO", "3", "AUTH", "default", "nope"],
    ] {
        let got = fresh(&proxy.addr(), &[], bad).await;
        assert_eq!(show(&got[0]), show(wrongpass), "{bad:?}");
    }
    let ok = fresh(&proxy.addr(), &[&["AUTH", "secret"]], &["ACL", "WHOAMI"]).await;
    assert_eq!(&ok[0][..], b"+OK\r\n");
    assert_eq!(&ok[1][..], b"$5\r\nproxy\r\n");
    let mut c = RawConn::connect(&proxy.addr()).await;
    let hello = c.cmd(&["HELLO", "3", "AUTH", "default", "secret"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    assert_eq!(&c.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn none_mode_lets_everyone_act_as_the_upstream_user() {
    let (_server, mut admin, config) = setup().await;
    admin.cmd(&["CONFIG", "SET", "requirepass", "pw"]).await;
    let proxy = Proxy::start_config(config.with("client_auth", "none")).await;
    let got = fresh(&proxy.addr(), &[], &["ACL", "WHOAMI"]).await;
    assert_eq!(&got[0][..], b"$5\r\nproxy\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn only_administrators_may_change_the_proxy() {
    let (_server, mut admin, config) = setup().await;
    add_user(&mut admin, &["ops", "on", ">opspw", "~*", "&*", "+@all"]).await;
    add_user(
        &mut admin,
        &["app", "on", ">apppw", "~app:*", "+@read", "+@write"],
    )
    .await;
    let proxy = Proxy::start_config(config).await;
    let as_app: &[&[&str]] = &[&["AUTH", "app", "apppw"]];
    let as_ops: &[&[&str]] = &[&["AUTH", "ops", "opspw"]];
    let flush = ["NEARCACHE", "FLUSH"];
    let set = ["NEARCACHE", "CONFIG", "SET", "slowlog-threshold", "20ms"];

    // A user Redis would not let run CONFIG SET may look, not change.
    let got = fresh(&proxy.addr(), as_app, &flush).await;
    assert_eq!(
        &got[1][..],
        b"-NOPERM this user has no permissions to run the 'nearcache|flush' command\r\n"
    );
    let got = fresh(&proxy.addr(), as_app, &set).await;
    assert!(got[1].starts_with(b"-NOPERM"), "{}", show(&got[1]));
    let got = fresh(
        &proxy.addr(),
        as_app,
        &["NEARCACHE", "CONFIG", "GET", "slowlog-threshold"],
    )
    .await;
    assert!(got[1].starts_with(b"*2\r\n"), "{}", show(&got[1]));
    let got = fresh(&proxy.addr(), as_app, &["NEARCACHE", "INFO"]).await;
    assert!(got[1].starts_with(b"$"), "{}", show(&got[1]));
    // Nobody before authenticating (the default user needs a password here).
    admin.cmd(&["CONFIG", "SET", "requirepass", "pw"]).await;
    eventually(CONVERGE, "new clients refused", async || {
        fresh(&proxy.addr(), &[], &flush).await[0].starts_with(b"-NOAUTH")
    })
    .await;

    // A user Redis lets run CONFIG SET may change it.
    let got = fresh(&proxy.addr(), as_ops, &flush).await;
    assert_eq!(&got[1][..], b"+OK\r\n");
    let got = fresh(&proxy.addr(), as_ops, &set).await;
    assert_eq!(&got[1][..], b"+OK\r\n");
    // And may name others in admin_users.
    let got = fresh(
        &proxy.addr(),
        as_ops,
        &["NEARCACHE", "CONFIG", "SET", "admin-users", "app"],
    )
    .await;
    assert_eq!(&got[1][..], b"+OK\r\n");
    let got = fresh(&proxy.addr(), as_app, &flush).await;
    assert_eq!(&got[1][..], b"+OK\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn in_password_mode_the_proxys_password_makes_an_administrator() {
    let (_server, _admin, config) = setup().await;
    let config = config
        .with("client_auth", "password")
        .with("requirepass", "secret");
    let proxy = Proxy::start_config(config).await;
    let got = fresh(&proxy.addr(), &[], &["NEARCACHE", "FLUSH"]).await;
    assert_eq!(&got[0][..], b"-NOAUTH Authentication required.\r\n");
    let got = fresh(
        &proxy.addr(),
        &[&["AUTH", "secret"]],
        &["NEARCACHE", "FLUSH"],
    )
    .await;
    assert_eq!(&got[1][..], b"+OK\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_user_who_may_not_turn_on_tracking_is_served_uncached() {
    let (server, mut admin, config) = setup().await;
    // Allowed to read and write, not to run CLIENT (so not CLIENT TRACKING).
    add_user(
        &mut admin,
        &["plain", "on", ">ppw", "~*", "+get", "+set", "+ping"],
    )
    .await;
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["AUTH", "plain", "ppw"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["SET", "u:1", "v1"]).await[..], b"+OK\r\n");
    for _ in 0..3 {
        assert_eq!(&c.cmd(&["GET", "u:1"]).await[..], b"$2\r\nv1\r\n");
    }
    // Nothing protects what it read, so nothing was cached: a change made directly is seen
    // at once.
    assert_eq!(&admin.cmd(&["SET", "u:1", "v2"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["GET", "u:1"]).await[..], b"$2\r\nv2\r\n");
    let direct = fresh(
        &server.addr(),
        &[&["AUTH", "plain", "ppw"]],
        &["DEL", "u:1"],
    )
    .await;
    let through = fresh(&proxy.addr(), &[&["AUTH", "plain", "ppw"]], &["DEL", "u:1"]).await;
    assert_eq!(show(&through[1]), show(&direct[1]));
    proxy.shutdown().await;
}

/// While a script keeps Redis busy, the proxy's ACL check gets `-BUSY`: that says nothing of
/// whether clients must authenticate, and new clients are not refused with `-NOAUTH` for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_redis_does_not_make_new_clients_authenticate() {
    let server = RedisServer::start_with(&["--busy-reply-threshold", "50"]);
    let config = Proxy::config(&server.addr()).with("acl_check_interval", "50ms");
    let proxy = Proxy::start_config(config).await;
    assert_eq!(
        &fresh(&proxy.addr(), &[], &["PING"]).await[0][..],
        b"+PONG\r\n"
    );
    let mut busy = RawConn::connect(&server.addr()).await;
    busy.send(&["EVAL", "while true do end", "0"]).await;
    let mut direct = RawConn::connect(&server.addr()).await;
    // Until Redis answers BUSY, then through a few of the proxy's checks.
    let mut busy_replies = 0;
    while busy_replies < 20 {
        let r = direct.cmd(&["PING"]).await;
        if r.starts_with(b"-BUSY") {
            busy_replies += 1;
            let through = fresh(&proxy.addr(), &[], &["PING"]).await.remove(0);
            assert!(!through.starts_with(b"-NOAUTH"), "{}", show(&through));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(direct.cmd(&["SCRIPT", "KILL"]).await.starts_with(b"+OK"));
    eventually(
        CONVERGE,
        "PONG through the proxy once the script is killed",
        async || fresh(&proxy.addr(), &[], &["PING"]).await[0][..] == b"+PONG\r\n"[..],
    )
    .await;
    proxy.shutdown().await;
}

/// The first paragraph of issue 17, as users met it: with `requirepass` set on Redis while
/// everything runs, `redis-cli -a` and redis-py (a password, a user and password, a
/// credential provider, RESP3) log in through the proxy, and a client without one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_py_log_in_through_the_proxy() {
    let (server, mut admin, config) = setup().await;
    add_user(&mut admin, &["alice", "on", ">apw", "~*", "+@all"]).await;
    let proxy = Proxy::start_config(config).await;
    let set = admin.cmd(&["CONFIG", "SET", "requirepass", "pw"]).await;
    assert_eq!(&set[..], b"+OK\r\n");
    let direct = fresh(&server.addr(), &[], &["SET", "k", "v"])
        .await
        .remove(0);
    eventually(CONVERGE, "the proxy refusing new clients", async || {
        fresh(&proxy.addr(), &[], &["SET", "k", "v"]).await[0] == direct
    })
    .await;
    let port = proxy.addr.port().to_string();
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_tool("redis-cli", &args, None, Duration::from_secs(30))
        })
    };
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let out = cli(words(&format!("-p {port} --no-auth-warning -a pw ping")))
        .await
        .unwrap();
    assert_eq!(out.stdout, "PONG\n", "{out:?}");
    let out = cli(words(&format!("-p {port} --user alice --pass apw ping")))
        .await
        .unwrap();
    assert_eq!(out.stdout, "PONG\n", "{out:?}");
    let out = cli(words(&format!("-p {port} ping"))).await.unwrap();
    assert!(out.stdout.contains("NOAUTH"), "{out:?}");

    if !has_redis_py() {
        return proxy.shutdown().await;
    }
    let script = format!(
        "import redis\n\
         from redis.credentials import UsernamePasswordCredentialProvider\n\
         r = redis.Redis(port={port}, password='pw', socket_timeout=5)\n\
         assert r.set('py:k', 'v')\n\
         assert r.get('py:k') == b'v'\n\
         assert redis.Redis(port={port}, username='alice', password='apw').get('py:k') == b'v'\n\
         cp = UsernamePasswordCredentialProvider('alice', 'apw')\n\
         assert redis.Redis(port={port}, credential_provider=cp).acl_whoami() == 'alice'\n\
         r3 = redis.Redis(port={port}, username='alice', password='apw', protocol=3)\n\
         assert r3.get('py:k') == b'v'\n\
         try:\n\
         \x20   redis.Redis(port={port}, password='wrong').ping()\n\
         \x20   raise SystemExit('a wrong password was let in')\n\
         except redis.AuthenticationError:\n\
         \x20   pass\n\
         print('ok')\n"
    );
    let out = tokio::task::spawn_blocking(move || {
        run_tool("python3", &["-c", &script], None, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(out.stdout, "ok\n", "{out:?}");
    proxy.shutdown().await;
}
