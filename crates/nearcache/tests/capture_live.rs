//! `nearcache capture --interface`: live capture through libpcap on loopback, against a real
//! redis-server the test starts; its command counts must equal Redis's `INFO commandstats`
//! when libpcap dropped nothing. And the errors: a missing interface, a missing capability.
//! (File captures are tests/capture.rs.)

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::traffic::{benchmark_traffic, captured_and_served};
use common::{commandstats, poll_until, RedisServer};
use nearcache::capture::trace::{Request, TraceReader};

/// `nearcache capture` with `args`, its stderr in `dir/capture.err`.
fn spawn_capture(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("capture.err")).unwrap())
        .spawn()
        .expect("spawn nearcache capture")
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("capture.err")).unwrap_or_default()
}

/// Waits until the capture says it is capturing, or has exited; the exit's output if it did.
fn wait_capturing(child: &mut Child, dir: &Path) -> Option<Output> {
    let exited = poll_until(Duration::from_secs(20), "the capture to start", || {
        if stderr_of(dir).contains("capturing on") {
            return Some(false);
        }
        child.try_wait().unwrap().map(|_| true)
    });
    exited.then(|| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        Output {
            status: child.wait().unwrap(),
            stdout: out,
            stderr: stderr_of(dir).into_bytes(),
        }
    })
}

#[test]
fn a_live_capture_on_loopback_counts_what_redis_counts() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("live.nctrace");
    let before = commandstats(&redis.addr());
    let port = redis.port().to_string();
    let mut child = spawn_capture(
        dir.path(),
        &[
            "--interface",
            "lo",
            "--port",
            &port,
            "--out",
            trace_path.to_str().unwrap(),
            "--json",
        ],
    );
    if let Some(out) = wait_capturing(&mut child, dir.path()) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the capture ended by itself: {err}");
        if err.contains("CAP_NET_RAW") {
            eprintln!("SKIPPED: this user may not capture on lo: {err}");
            return;
        }
        panic!("the live capture failed: {err}");
    }
    benchmark_traffic(redis.port());
    // SIGTERM: the capture reads what the kernel holds, then writes the trace and summary.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "capture: {}", stderr_of(dir.path()));
    let after = commandstats(&redis.addr());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = std::io::BufReader::new(std::fs::File::open(&trace_path).unwrap());
    let trace: Vec<Request> = TraceReader::new(file)
        .unwrap()
        .collect::<std::io::Result<_>>()
        .unwrap();
    // The INFO that read `after` ran after the capture ended, and is not in `after`.
    let (captured, served) = captured_and_served(&trace, &before, &after);
    let pcap = &s["packets"]["libpcap"];
    let received = pcap["received"]
        .as_u64()
        .expect("libpcap counters in the summary");
    assert!(received >= s["packets"]["packets"].as_u64().unwrap(), "{s}");
    let dropped = pcap["dropped"].as_u64().unwrap() + pcap["interface_dropped"].as_u64().unwrap();
    eprintln!("libpcap: {pcap}; {} requests captured", trace.len());
    if dropped > 0 {
        // Counts cannot be exact then, but nothing may be invented.
        for (name, n) in &captured {
            assert!(*n <= served.get(name).copied().unwrap_or(0), "{name}: {s}");
        }
        return;
    }
    assert_eq!(captured, served, "summary: {s}");
    assert_eq!(s["packets"]["truncated"], 0);
    assert_eq!(s["decode"]["unpaired_commands"], 0, "{s}");
    assert_eq!(s["decode"]["unpaired_replies"], 0, "{s}");
    assert!(captured["get"] >= 2000 && captured["mset"] >= 2000);
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("t.nctrace");
    let child = spawn_capture(
        dir.path(),
        &[
            "--interface",
            "nosuch0",
            "--duration",
            "1s",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(dir.path());
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no interface named \"nosuch0\"") && err.contains("lo"),
        "{err}"
    );
    assert!(
        !out_path.exists(),
        "no trace is written when nothing was captured"
    );
}

#[test]
fn without_cap_net_raw_the_error_names_the_capability() {
    // setpriv (util-linux) drops the capability from what the capture can hold, root or not.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("setpriv")
        .args(["--inh-caps=-net_raw", "--bounding-set=-net_raw", "--"])
        .arg(env!("CARGO_BIN_EXE_nearcache"))
        .args(["capture", "--interface", "lo", "--duration", "1s"])
        .stderr(std::fs::File::create(dir.path().join("capture.err")).unwrap())
        .output()
        .expect("setpriv (util-linux) runs");
    let err = stderr_of(dir.path());
    assert!(!out.status.success(), "captured without CAP_NET_RAW: {err}");
    assert!(err.contains("needs the CAP_NET_RAW capability"), "{err}");
}
