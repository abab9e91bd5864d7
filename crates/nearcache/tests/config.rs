//! Configuration as a user meets it: every setting given a bad value through the config file,
//! the command-line flag and `NEARCACHE CONFIG SET` is refused with an error naming the
//! setting as it was spelled there; live settings change through `NEARCACHE CONFIG SET`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nearcache::config::SETTINGS;

/// Runs the binary with `args` and returns whether it failed at start, and its stderr. A
/// configuration error ends it before it listens; one still running after a few seconds
/// accepted its configuration, and is killed.
fn run_refused(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nearcache");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nearcache") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.is_some_and(|s| !s.success()), err)
}

#[test]
fn a_bad_value_in_the_file_or_a_flag_stops_the_binary_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for s in SETTINGS {
        let flag = format!("--{}={}", s.dashed(), s.bad);
        // Should the value be accepted, the proxy must not take a port in use.
        let mut args = vec![flag.as_str()];
        for (name, quiet) in [
            ("listen", "--listen=127.0.0.1:0"),
            ("admin_listen", "--no-admin"),
        ] {
            if s.name != name {
                args.push(quiet);
            }
        }
        let (refused, err) = run_refused(&args);
        assert!(refused, "{flag} was accepted");
        assert!(
            err.contains(&format!("--{}: ", s.dashed())),
            "{flag}: {err}"
        );

        let path = dir.path().join(format!("{}.toml", s.name));
        std::fs::write(&path, format!("{} = {:?}\n", s.name, s.bad)).unwrap();
        let path = path.to_str().unwrap();
        let args = [
            "--listen=127.0.0.1:0",
            "--admin-listen=none",
            "--config",
            path,
        ];
        let (refused, err) = run_refused(&args);
        assert!(refused, "{} = {:?} was accepted", s.name, s.bad);
        assert!(err.contains(&format!("{}: ", s.name)), "{}: {err}", s.name);
    }
}

#[test]
fn the_help_lists_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .arg("--help")
        .output()
        .expect("run nearcache --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for s in SETTINGS {
        assert!(
            help.contains(&format!("--{} ", s.dashed())),
            "--{} missing:\n{help}",
            s.dashed()
        );
    }
}

#[tokio::test]
async fn config_set_refuses_bad_values_naming_the_setting_and_changes_live_ones() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    for s in SETTINGS {
        let r = c
            .cmd(&["NEARCACHE", "CONFIG", "SET", &s.dashed(), s.bad])
            .await;
        let text = show(&r);
        assert!(r.starts_with(b"-ERR"), "{}: {text}", s.dashed());
        assert!(
            text.contains(&format!("{}: ", s.dashed())),
            "{}: {text}",
            s.dashed()
        );
    }
    // A setting that needs a restart is refused even with a good value.
    let r = c
        .cmd(&["NEARCACHE", "CONFIG", "SET", "max-memory", "1gb"])
        .await;
    assert!(
        show(&r).contains("cannot change while the proxy runs"),
        "{}",
        show(&r)
    );
    // A live one takes effect: one client at most, and this one is connected.
    let r = c
        .cmd(&["NEARCACHE", "CONFIG", "SET", "max-clients", "1"])
        .await;
    assert_eq!(&r[..], b"+OK\r\n");
    let mut other = RawConn::connect(&proxy.addr()).await;
    let r = other.cmd(&["PING"]).await;
    assert_eq!(&r[..], b"-ERR max number of clients reached\r\n");
    let r = c.cmd(&["NEARCACHE", "CONFIG", "GET", "max-clients"]).await;
    assert_eq!(&r[..], b"*2\r\n$11\r\nmax-clients\r\n$1\r\n1\r\n");
    proxy.shutdown().await;
}
