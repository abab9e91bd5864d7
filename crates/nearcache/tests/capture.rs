//! `nearcache capture` on captures made two ways: by tcpdump on loopback in front of a real
//! redis-server (command counts must equal the server's own `INFO commandstats`), and by hand,
//! packet by packet, to exercise what real captures only sometimes contain: reordering,
//! retransmission, loss in either direction, a capture that starts mid-connection, TLS and
//! garbage on the port, a damaged file.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::traffic::{benchmark_traffic, captured_and_served};
use common::{commandstats, poll_until, redis_cmd_blocking, RedisServer};
use nearcache::capture::trace::{Class, Request, TraceReader, TtlChange};
use nearcache::capture::{self, CaptureArgs};
use pcap_file::pcap::{PcapPacket, PcapWriter};

// ---------------------------------------------------------------------------------------------
// Hand-made captures
// ---------------------------------------------------------------------------------------------

const SERVER_PORT: u16 = 6379;

/// One TCP connection between a client port and the server, packet by packet.
struct Conv {
    client_port: u16,
    cseq: u32,
    sseq: u32,
    t: u64,
}

impl Conv {
    fn new(client_port: u16, cseq: u32, sseq: u32) -> Conv {
        Conv {
            client_port,
            cseq,
            sseq,
            t: 1_000_000,
        }
    }

    fn packet(&mut self, to_server: bool, syn: bool, fin: bool, payload: &[u8]) -> Pkt {
        self.t += 100;
        let (sp, dp) = match to_server {
            true => (self.client_port, SERVER_PORT),
            false => (SERVER_PORT, self.client_port),
        };
        let (seq, ack) = match to_server {
            true => (self.cseq, self.sseq),
            false => (self.sseq, self.cseq),
        };
        let mut b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .tcp(sp, dp, seq, 65535);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if !(syn && to_server) {
            b = b.ack(ack);
        }
        let mut data = Vec::new();
        b.write(&mut data, payload).unwrap();
        let step = payload.len() as u32 + u32::from(syn) + u32::from(fin);
        if to_server {
            self.cseq = self.cseq.wrapping_add(step);
        } else {
            self.sseq = self.sseq.wrapping_add(step);
        }
        Pkt { t: self.t, data }
    }

    fn handshake(&mut self) -> Vec<Pkt> {
        vec![
            self.packet(true, true, false, b""),
            self.packet(false, true, false, b""),
            self.packet(true, false, false, b""),
        ]
    }

    fn client(&mut self, bytes: &[u8]) -> Pkt {
        self.packet(true, false, false, bytes)
    }

    fn server(&mut self, bytes: &[u8]) -> Pkt {
        self.packet(false, false, false, bytes)
    }
}

struct Pkt {
    t: u64,
    data: Vec<u8>,
}

fn write_pcap(path: &Path, packets: &[Pkt]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(file).unwrap();
    for p in packets {
        let ts = Duration::from_micros(p.t);
        w.write_packet(&PcapPacket::new(ts, p.data.len() as u32, &p.data))
            .unwrap();
    }
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    resp::encode_command(args, &mut out);
    out.to_vec()
}

/// Runs the capture on `packets` and returns the summary (JSON) and the trace.
fn capture(packets: &[Pkt]) -> (serde_json::Value, Vec<Request>) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    write_pcap(&pcap, packets);
    capture_file(&pcap, &[SERVER_PORT])
}

fn capture_file(pcap: &Path, ports: &[u16]) -> (serde_json::Value, Vec<Request>) {
    let out = pcap.with_extension("nctrace");
    let args = CaptureArgs {
        read: Some(pcap.to_path_buf()),
        interface: None,
        duration: None,
        ports: ports.to_vec(),
        out: Some(out.clone()),
        json: true,
        top: 5,
    };
    let text = capture::run(&args).expect("capture runs");
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let file = std::io::BufReader::new(std::fs::File::open(&out).unwrap());
    let trace = TraceReader::new(file)
        .unwrap()
        .collect::<std::io::Result<Vec<_>>>()
        .unwrap();
    (summary, trace)
}

/// A conversation of five SETs and GETs, each a packet, each answered by a packet.
fn conversation(conv: &mut Conv) -> Vec<(Pkt, Pkt)> {
    (0..5)
        .map(|i| {
            let (req, rep) = if i % 2 == 0 {
                (
                    cmd(&["SET", &format!("k{i}"), "value"]),
                    b"+OK\r\n".to_vec(),
                )
            } else {
                (
                    cmd(&["GET", &format!("k{}", i - 1)]),
                    b"$5\r\nvalue\r\n".to_vec(),
                )
            };
            (conv.client(&req), conv.server(&rep))
        })
        .collect()
}

fn names(trace: &[Request]) -> Vec<(String, Option<u32>)> {
    trace
        .iter()
        .map(|r| (r.name.clone(), r.reply_bytes))
        .collect()
}

fn counts(s: &serde_json::Value, section: &str, field: &str) -> u64 {
    s[section][field]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{field} in {s}"))
}

#[test]
fn an_orderly_capture_pairs_every_command_with_its_reply() {
    let mut conv = Conv::new(40000, 1000, 5000);
    let mut packets = conv.handshake();
    for (req, rep) in conversation(&mut conv) {
        packets.push(req);
        packets.push(rep);
    }
    let (s, trace) = capture(&packets);
    assert_eq!(
        names(&trace),
        [("set", 5), ("get", 11), ("set", 5), ("get", 11), ("set", 5)]
            .map(|(n, b)| (n.to_string(), Some(b)))
    );
    assert_eq!(trace[1].class, Class::Read);
    assert_eq!(trace[1].keys, vec![Bytes::from_static(b"k0")]);
    assert_eq!(
        trace[1].values,
        vec![Some(6)],
        "the cache stores the payload and a byte"
    );
    assert_eq!(trace[0].class, Class::Write);
    // A plain SET ends the key's TTL; a GET leaves it (capture/ttl.rs has every form).
    assert_eq!(trace[0].ttl, TtlChange::Clear);
    assert_eq!(trace[1].ttl, TtlChange::Keep);
    assert_eq!(counts(&s, "decode", "paired"), 5);
    assert_eq!(counts(&s, "decode", "resyncs"), 0);
}

#[test]
fn reordered_and_retransmitted_segments_are_put_back_in_order_once() {
    let mut conv = Conv::new(40001, u32::MAX - 40, 5000); // sequence numbers wrap
    let mut packets = conv.handshake();
    // A pipeline: three commands in three segments, captured out of order and repeated.
    let reqs: Vec<Pkt> = ["a", "b", "c"]
        .iter()
        .map(|k| conv.client(&cmd(&["GET", k])))
        .collect();
    let replies = conv.server(b"$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
    let dup = Pkt {
        t: reqs[0].t,
        data: reqs[0].data.clone(),
    };
    let mut reqs = reqs.into_iter();
    let (r0, r1, r2) = (
        reqs.next().unwrap(),
        reqs.next().unwrap(),
        reqs.next().unwrap(),
    );
    packets.extend([r2, r0, dup, r1, replies]);
    let (s, trace) = capture(&packets);
    let keys: Vec<&[u8]> = trace.iter().map(|r| &r.keys[0][..]).collect();
    assert_eq!(keys, [b"a", b"b", b"c"]);
    assert!(trace.iter().all(|r| r.reply_bytes == Some(7)));
    assert_eq!(counts(&s, "client_stream", "retransmitted_bytes"), 20);
    assert_eq!(counts(&s, "client_stream", "gaps"), 0);
}

#[test]
fn a_lost_command_costs_that_command_and_its_reply_only() {
    let mut conv = Conv::new(40002, 1000, 5000);
    let mut packets = conv.handshake();
    for (i, (req, rep)) in conversation(&mut conv).into_iter().enumerate() {
        if i != 1 {
            packets.push(req); // the second command (GET k0) was not captured
        }
        packets.push(rep);
    }
    let (s, trace) = capture(&packets);
    assert_eq!(
        names(&trace),
        [("set", 5), ("set", 5), ("get", 11), ("set", 5)].map(|(n, b)| (n.to_string(), Some(b)))
    );
    assert_eq!(counts(&s, "client_stream", "gaps"), 1);
    assert_eq!(counts(&s, "decode", "unpaired_replies"), 1);
}

#[test]
fn a_lost_reply_leaves_its_command_unanswered_and_the_rest_paired() {
    let mut conv = Conv::new(40003, 1000, 5000);
    let mut packets = conv.handshake();
    for (i, (req, rep)) in conversation(&mut conv).into_iter().enumerate() {
        packets.push(req);
        if i != 1 {
            packets.push(rep);
        }
    }
    // The client's next segment acknowledges the lost reply.
    packets.push(conv.client(&cmd(&["PING"])));
    packets.push(conv.server(b"+PONG\r\n"));
    let (s, trace) = capture(&packets);
    assert_eq!(
        names(&trace),
        [
            ("set", Some(5)),
            ("get", None),
            ("set", Some(5)),
            ("get", Some(11)),
            ("set", Some(5)),
            ("ping", Some(7))
        ]
        .map(|(n, b)| (n.to_string(), b))
    );
    assert_eq!(counts(&s, "server_stream", "gaps"), 1);
    assert_eq!(counts(&s, "decode", "unpaired_commands"), 1);
}

#[test]
fn a_capture_that_starts_mid_command_resynchronises_on_the_next_one() {
    let mut conv = Conv::new(40004, 1000, 5000);
    let _ = conv.handshake(); // not captured
    let big = cmd(&["SET", "big", &"x".repeat(3000)]);
    let (first, rest) = big.split_at(1500);
    let _ = conv.client(first); // not captured either
    let mut packets = vec![conv.client(rest), conv.server(b"+OK\r\n")];
    for (req, rep) in conversation(&mut conv) {
        packets.push(req);
        packets.push(rep);
    }
    let (s, trace) = capture(&packets);
    assert_eq!(trace.len(), 5, "{:?}", names(&trace));
    assert_eq!(trace[0].name, "set");
    assert_eq!(trace[0].keys, vec![Bytes::from_static(b"k0")]);
    assert!(trace.iter().all(|r| r.reply_bytes.is_some()));
    assert_eq!(counts(&s, "decode", "midstream_connections"), 1);
    assert!(counts(&s, "decode", "skipped_bytes") >= 1500);
}

#[test]
fn tls_and_garbage_on_the_port_are_counted_not_decoded() {
    let mut tls = Conv::new(40005, 1000, 5000);
    let mut packets = tls.handshake();
    packets.push(tls.client(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
    packets.push(tls.server(&[0x16, 0x03, 0x03, 0x00, 0x5a, 0x02]));
    let mut junk = Conv::new(40006, 1000, 5000);
    packets.extend(junk.handshake());
    let mut noise = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    noise[..4].copy_from_slice(b"*x\r\n"); // looks like RESP, is not
    packets.push(junk.client(&noise));
    packets.push(junk.server(b"-ERR Protocol error: invalid multibulk length\r\n"));
    let mut ok = Conv::new(40007, 1000, 5000);
    packets.extend(ok.handshake());
    packets.push(ok.client(&cmd(&["GET", "k"])));
    packets.push(ok.server(b"$-1\r\n"));
    let (s, trace) = capture(&packets);
    assert_eq!(counts(&s, "decode", "tls_connections"), 1);
    assert!(counts(&s, "decode", "malformed") >= 1);
    let gets: Vec<_> = trace.iter().filter(|r| r.name == "get").collect();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].values, vec![Some(5)], "a null is cached as it is");
}

#[test]
fn random_segments_never_panic_and_are_accounted_for() {
    // The fuzz loop in miniature: random splits, drops, duplicates and reorders of a
    // pipelined conversation, and random bytes, through the reassembler and decoder.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    for round in 0..40 {
        let mut conv = Conv::new(41000 + round as u16, rnd(u32::MAX as u64) as u32, 5000);
        let mut packets = conv.handshake();
        let mut stream = Vec::new();
        for i in 0..30 {
            stream.extend(cmd(&["GET", &format!("key{i}")]));
        }
        if round % 4 == 3 {
            stream = (0..2000).map(|_| rnd(256) as u8).collect();
        }
        let mut i = 0;
        while i < stream.len() {
            let n = 1 + rnd(200) as usize;
            let end = (i + n).min(stream.len());
            let p = conv.client(&stream[i..end]);
            match rnd(10) {
                0 => {} // lost
                1 => {
                    packets.push(Pkt {
                        t: p.t,
                        data: p.data.clone(),
                    });
                    packets.push(p);
                }
                2 if !packets.is_empty() => {
                    let at = packets.len() - 1;
                    packets.insert(at, p);
                }
                _ => packets.push(p),
            }
            if rnd(3) == 0 {
                packets.push(conv.server(b"$-1\r\n"));
            }
            i = end;
        }
        let (s, trace) = capture(&packets);
        let d = &s["decode"];
        assert_eq!(
            d["commands"].as_u64().unwrap(),
            trace.len() as u64,
            "round {round}: every decoded command is in the trace"
        );
    }
    // Arbitrary bytes read as segments, the cargo-fuzz target's body (crates/nearcache/fuzz):
    // every payload byte delivered or counted retransmitted, every command in the trace.
    let mut requests = 0;
    for _ in 0..400 {
        let data: Vec<u8> = (0..rnd(3000)).map(|_| rnd(256) as u8).collect();
        let c = capture::check::run_segments(&data).unwrap_or_else(|e| panic!("{e}"));
        requests += c.requests;
    }
    assert!(requests > 0, "random segments decoded no command at all");
}

#[test]
fn a_damaged_file_is_reported_and_garbage_refused() {
    let mut conv = Conv::new(40008, 1000, 5000);
    let mut packets = conv.handshake();
    for (req, rep) in conversation(&mut conv) {
        packets.push(req);
        packets.push(rep);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cut.pcap");
    write_pcap(&pcap, &packets);
    let bytes = std::fs::read(&pcap).unwrap();
    std::fs::write(&pcap, &bytes[..bytes.len() - 10]).unwrap();
    let (s, trace) = capture_file(&pcap, &[SERVER_PORT]);
    assert!(s["packets"]["file_error"].is_string(), "{s}");
    assert_eq!(trace.len(), 5, "the last reply is lost, not the commands");
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let args = CaptureArgs {
        read: Some(junk),
        interface: None,
        duration: None,
        ports: vec![SERVER_PORT],
        out: None,
        json: false,
        top: 5,
    };
    assert!(capture::run(&args).is_err());
}

// ---------------------------------------------------------------------------------------------
// tcpdump on loopback against a real redis-server
// ---------------------------------------------------------------------------------------------

/// tcpdump writing packets of one port to a file, stopped with SIGINT (so it flushes and
/// reports its drop counters) when dropped.
pub struct Tcpdump {
    _one: std::sync::MutexGuard<'static, ()>,
    child: Option<Child>,
    pub file: PathBuf,
    stderr: PathBuf,
}

/// One capture at a time: two at once compete for the same two cores and drop packets.
static ONE_CAPTURE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Tcpdump {
    pub fn start(dir: &Path, port: u16) -> Tcpdump {
        assert!(
            Command::new("tcpdump").arg("--version").output().is_ok(),
            "tcpdump is missing: run scripts/deps.sh"
        );
        let one = ONE_CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
        let file = dir.join("cap.pcap");
        let stderr = dir.join("tcpdump.err");
        let child = Command::new("tcpdump")
            // A 32 MiB kernel buffer: a burst of pipelined traffic on a busy machine must
            // not outrun tcpdump.
            .args(["-i", "lo", "-U", "-n", "-s", "0", "-B", "32768", "-w"])
            .arg(&file)
            .arg(format!("tcp port {port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn tcpdump");
        let t = Tcpdump {
            _one: one,
            child: Some(child),
            file,
            stderr,
        };
        poll_until(Duration::from_secs(10), "tcpdump to listen", || {
            std::fs::read_to_string(&t.stderr)
                .ok()
                .filter(|e| e.contains("listening on"))
        });
        t
    }

    /// Waits until `marker` has gone by twice (a command and its echo), then stops tcpdump
    /// and returns how many packets the kernel dropped.
    pub fn stop_after(mut self, marker: &[u8]) -> u64 {
        poll_until(Duration::from_secs(10), "the marker in the capture", || {
            let mut data = Vec::new();
            std::fs::File::open(&self.file)
                .ok()?
                .read_to_end(&mut data)
                .ok()?;
            let seen = data.windows(marker.len()).filter(|w| *w == marker).count();
            (seen >= 2).then_some(())
        });
        let child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() || out.status.code().is_none());
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        err.lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no drop counter in tcpdump's output: {err}"))
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn command_counts_match_redis_commandstats_exactly() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let before = commandstats(&redis.addr());
    let dump = Tcpdump::start(dir.path(), redis.port());
    benchmark_traffic(redis.port());
    let marker = b"capture-test-end-marker-20";
    redis_cmd_blocking(&redis.addr(), &[b"ECHO", marker]);
    let drops = dump.stop_after(marker);
    let after = commandstats(&redis.addr());
    let (s, trace) = capture_file(&dump_file(dir.path()), &[redis.port()]);
    let (captured, served) = captured_and_served(&trace, &before, &after);
    if drops > 0 {
        // Counts cannot be exact then, but the loss must show, and nothing be invented.
        let lost = s["client_stream"]["gap_bytes"].as_u64().unwrap()
            + s["server_stream"]["gap_bytes"].as_u64().unwrap();
        assert!(
            lost > 0,
            "{drops} packets dropped and no hole reported: {s}"
        );
        for (name, n) in &captured {
            assert!(*n <= served.get(name).copied().unwrap_or(0), "{name}: {s}");
        }
        return;
    }
    assert_eq!(captured, served, "summary: {s}");
    assert_eq!(s["decode"]["unpaired_commands"], 0);
    assert_eq!(s["decode"]["unpaired_replies"], 0);
    assert!(captured["get"] >= 2000 && captured["mset"] >= 2000);
    let mget = trace.iter().find(|r| r.name == "mget").unwrap();
    assert_eq!(mget.values.len(), 2);
}

fn dump_file(dir: &Path) -> PathBuf {
    dir.join("cap.pcap")
}

// ---------------------------------------------------------------------------------------------
// The simulator against a real proxy
// ---------------------------------------------------------------------------------------------

/// Sends one command on a blocking connection and returns the whole reply.
fn call(s: &mut std::net::TcpStream, args: &[&[u8]]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = bytes::BytesMut::new();
    resp::encode_command(args, &mut out);
    s.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Ok(Some(n)) = resp::scan(&buf, &resp::Limits::UNBOUNDED) {
            assert_eq!(n, buf.len(), "one reply per command");
            return buf;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn info_field(info: &[u8], name: &str) -> f64 {
    String::from_utf8_lossy(info)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {}", String::from_utf8_lossy(info)))
}

#[test]
fn the_simulated_hit_ratio_is_within_two_points_of_what_the_proxy_measured() {
    let redis = RedisServer::start();
    let flags = ["--max-memory", "2mb", "--eviction", "lru"];
    let proxy = common::ProxyProcess::spawn_with(&redis.addr(), &flags);
    let dir = tempfile::tempdir().unwrap();
    let dump = Tcpdump::start(dir.path(), proxy.port());
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    // Skewed reads over a working set about twice the cache, values of 100 B to 2 KB, one
    // write in ten: evictions, invalidations and null fills all happen.
    let mut x = 0x853c_49e6_748f_ea9b_u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..12_000 {
        let k = (3000.0 * rnd().powi(3)) as u64;
        let key = format!("user:{k}");
        if rnd() < 0.1 {
            let value = "v".repeat(100 + (k as usize * 7919) % 1900);
            call(&mut s, &[b"SET", key.as_bytes(), value.as_bytes()]);
        } else {
            call(&mut s, &[b"GET", key.as_bytes()]);
        }
    }
    let info = call(&mut s, &[b"NEARCACHE", b"INFO"]);
    let (hits, misses) = (
        info_field(&info, "cache_hits"),
        info_field(&info, "cache_misses"),
    );
    let measured = hits / (hits + misses);
    let marker = b"simulate-test-end-marker-20";
    call(&mut s, &[b"ECHO", marker]);
    assert_eq!(dump.stop_after(marker), 0, "the kernel dropped packets");
    let (summary, _) = capture_file(&dir.path().join("cap.pcap"), &[proxy.port()]);
    assert_eq!(summary["decode"]["unpaired_commands"], 0);
    let trace = dir.path().join("cap.nctrace");
    let simulate = |exact: bool| -> serde_json::Value {
        let mut args = nearcache::simulate::SimulateArgs::new(trace.clone());
        args.max_memory = vec!["2mb".into()];
        args.eviction = "lru".into();
        args.exact = exact;
        args.json = true;
        serde_json::from_str(&nearcache::simulate::run(&args).unwrap()).unwrap()
    };
    // LRU is simulated by stack distances; `--exact` replays through the cache.
    let report = simulate(false);
    assert_eq!(report["runs"][0]["method"], "stack");
    let simulated = report["runs"][0]["hit_ratio"].as_f64().unwrap();
    let lookups =
        report["runs"][0]["hits"].as_f64().unwrap() + report["runs"][0]["misses"].as_f64().unwrap();
    assert_eq!(lookups, hits + misses, "the same reads looked up");
    assert!(
        (simulated - measured).abs() <= 0.02,
        "simulated {simulated:.4}, the proxy measured {measured:.4} ({hits} hits, {misses} misses)"
    );
    let replayed = simulate(true)["runs"][0]["hit_ratio"].as_f64().unwrap();
    assert!(
        (replayed - measured).abs() <= 0.02,
        "replayed {replayed:.4}, the proxy measured {measured:.4}"
    );
    assert!(
        measured > 0.2 && measured < 0.95,
        "a size where eviction matters: {measured}"
    );
    eprintln!("hit ratio: proxy {measured:.4}, stack {simulated:.4}, replay {replayed:.4}");
}
