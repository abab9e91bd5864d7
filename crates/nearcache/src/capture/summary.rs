//! What a capture says about the traffic before any simulation: requests and bytes per
//! command, the read/write ratio, the share of reads a near cache could serve, the hottest
//! keys and key prefixes, and how often hot keys are written between reads (the
//! invalidations a cache would see). Text for people, JSON for scripts.
//!
//! Aggregates [`Request`]s only: never reads packets, never decides what a command means.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;

use super::decode::{rw_kind, DecodeCounts};
use super::pcap::PacketCounts;
use super::tcp::StreamCounts;
use super::trace::{Class, Request};

#[derive(Debug, Default, Clone, Serialize)]
pub struct CommandStat {
    pub requests: u64,
    pub request_bytes: u64,
    pub reply_bytes: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct KeyStat {
    /// Cacheable reads of the key (an MGET counts once per key).
    pub reads: u64,
    pub writes: u64,
    /// Reply bytes its reads returned.
    pub read_bytes: u64,
    /// Writes that came after a read with no write between: each would drop a cached entry.
    pub invalidations: u64,
    #[serde(skip)]
    read_since_write: bool,
}

#[derive(Debug, Serialize)]
pub struct HotKey {
    pub key: String,
    #[serde(flatten)]
    pub stat: KeyStat,
}

/// The whole summary.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub packets: PacketCounts,
    pub client_stream: StreamCounts,
    pub server_stream: StreamCounts,
    pub decode: DecodeCounts,
    pub connections: u64,
    pub requests: u64,
    pub duration_s: f64,
    /// Commands Redis flags read-only, and those it flags as writes.
    pub reads: u64,
    pub writes: u64,
    /// Reads the proxy's cache could answer (cacheable commands, by request).
    pub cacheable_reads: u64,
    pub commands: BTreeMap<String, CommandStat>,
    pub hot_by_reads: Vec<HotKey>,
    pub hot_by_writes: Vec<HotKey>,
    pub hot_by_bytes: Vec<HotKey>,
    pub prefixes: Vec<HotKey>,
    #[serde(skip)]
    keys: HashMap<Bytes, KeyStat>,
    #[serde(skip)]
    first_us: Option<u64>,
    #[serde(skip)]
    last_us: u64,
}

impl Summary {
    /// Counts one request.
    pub fn add(&mut self, r: &Request) {
        self.requests += 1;
        self.first_us = Some(self.first_us.map_or(r.time_us, |t| t.min(r.time_us)));
        self.last_us = self.last_us.max(r.time_us);
        let c = self.commands.entry(r.name.clone()).or_default();
        c.requests += 1;
        c.request_bytes += u64::from(r.req_bytes);
        c.reply_bytes += u64::from(r.reply_bytes.unwrap_or(0));
        let (read, write) = rw_kind(&r.name);
        self.reads += u64::from(read);
        self.writes += u64::from(write);
        match r.class {
            Class::Read | Class::MultiRead => {
                self.cacheable_reads += 1;
                for (i, k) in r.keys.iter().enumerate() {
                    let s = self.keys.entry(k.clone()).or_default();
                    s.reads += 1;
                    s.read_since_write = true;
                    let value = match r.class {
                        Class::Read => r.reply_bytes,
                        _ => r.values.get(i).copied().flatten(),
                    };
                    s.read_bytes += u64::from(value.unwrap_or(0));
                }
            }
            Class::Write => {
                for k in &r.keys {
                    let s = self.keys.entry(k.clone()).or_default();
                    s.writes += 1;
                    if std::mem::take(&mut s.read_since_write) {
                        s.invalidations += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// Ranks the keys and prefixes, keeping `top` of each.
    pub fn finish(&mut self, top: usize) {
        self.duration_s = self
            .first_us
            .map_or(0.0, |f| (self.last_us - f) as f64 / 1e6);
        let rank = |keys: &HashMap<Bytes, KeyStat>, by: fn(&KeyStat) -> u64| {
            let mut v: Vec<(&Bytes, &KeyStat)> = keys.iter().filter(|(_, s)| by(s) > 0).collect();
            v.sort_by(|a, b| by(b.1).cmp(&by(a.1)).then_with(|| a.0.cmp(b.0)));
            v.into_iter()
                .take(top)
                .map(|(k, s)| HotKey {
                    key: printable(k),
                    stat: s.clone(),
                })
                .collect::<Vec<_>>()
        };
        self.hot_by_reads = rank(&self.keys, |s| s.reads);
        self.hot_by_writes = rank(&self.keys, |s| s.writes);
        self.hot_by_bytes = rank(&self.keys, |s| s.read_bytes);
        let mut groups: HashMap<Bytes, KeyStat> = HashMap::new();
        for (k, s) in &self.keys {
            let g = groups.entry(prefix(k)).or_default();
            g.reads += s.reads;
            g.writes += s.writes;
            g.read_bytes += s.read_bytes;
            g.invalidations += s.invalidations;
        }
        self.prefixes = rank(&groups, |s| s.reads + s.writes);
    }

    /// The summary for people.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let p = &self.packets;
        let d = &self.decode;
        let _ = writeln!(
            o,
            "packets {} (tcp {}, other {}, truncated by snaplen {}, malformed {}, unknown link {}){}",
            p.packets,
            p.tcp_segments,
            p.not_tcp,
            p.truncated,
            p.malformed,
            p.unknown_link,
            p.interface_drops
                .map_or(String::new(), |n| format!(", dropped by the interface {n}"))
        );
        if let Some(l) = &p.libpcap {
            let _ = writeln!(
                o,
                "libpcap: received {}, dropped {}, dropped by the interface {}",
                l.received, l.dropped, l.interface_dropped
            );
        }
        if let Some(e) = &p.file_error {
            let _ = writeln!(o, "file ended early: {e}");
        }
        for (name, s) in [
            ("client->server", &self.client_stream),
            ("server->client", &self.server_stream),
        ] {
            let _ = writeln!(
                o,
                "{name}: {} bytes, {} retransmitted, {} out of order segments, {} holes ({} bytes lost)",
                s.bytes, s.retransmitted_bytes, s.out_of_order_segments, s.gaps, s.gap_bytes
            );
        }
        let _ = writeln!(
            o,
            "connections {} ({} started before the capture, {} TLS); commands {}, replies {}, paired {}, \
             commands without reply {}, replies without command {}, pushes {}, pub/sub+monitor frames {}",
            self.connections, d.midstream_connections, d.tls_connections, d.commands, d.replies, d.paired,
            d.unpaired_commands, d.unpaired_replies, d.pushes, d.relay_frames
        );
        let _ = writeln!(
            o,
            "resynchronised {} times, {} bytes skipped, {} malformed frames",
            d.resyncs, d.skipped_bytes, d.malformed
        );
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let _ = writeln!(
            o,
            "\nrequests {} over {:.1} s; reads {} writes {} (read/write {:.2}); cacheable reads {} ({:.1}% of reads)",
            self.requests,
            self.duration_s,
            self.reads,
            self.writes,
            self.reads as f64 / self.writes.max(1) as f64,
            self.cacheable_reads,
            pct(self.cacheable_reads, self.reads)
        );
        let _ = writeln!(
            o,
            "\n{:<24} {:>10} {:>14} {:>14}",
            "command", "requests", "request bytes", "reply bytes"
        );
        let mut cmds: Vec<_> = self.commands.iter().collect();
        cmds.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        for (name, s) in cmds {
            let _ = writeln!(
                o,
                "{name:<24} {:>10} {:>14} {:>14}",
                s.requests, s.request_bytes, s.reply_bytes
            );
        }
        for (title, list) in [
            ("hottest keys by reads", &self.hot_by_reads),
            ("hottest keys by writes", &self.hot_by_writes),
            ("hottest keys by bytes read", &self.hot_by_bytes),
            ("key prefixes", &self.prefixes),
        ] {
            let _ = writeln!(
                o,
                "\n{title:<32} {:>10} {:>10} {:>14} {:>13} {:>10}",
                "reads", "writes", "bytes read", "invalidations", "inval/read"
            );
            for h in list {
                let s = &h.stat;
                let _ = writeln!(
                    o,
                    "{:<32} {:>10} {:>10} {:>14} {:>13} {:>10.3}",
                    h.key,
                    s.reads,
                    s.writes,
                    s.read_bytes,
                    s.invalidations,
                    s.invalidations as f64 / s.reads.max(1) as f64
                );
            }
        }
        o
    }
}

/// A key's group: up to and including its first ':' then `*` (`user:*`), or `(no prefix)`.
fn prefix(k: &[u8]) -> Bytes {
    match k.iter().position(|&b| b == b':') {
        Some(i) => Bytes::from([&k[..=i], b"*"].concat()),
        None => Bytes::from_static(b"(no prefix)"),
    }
}

/// A key as text: printable ASCII as it is, other bytes as `\xNN`; long keys shortened.
fn printable(k: &[u8]) -> String {
    let mut s = String::new();
    for &b in k.iter().take(60) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    if k.len() > 60 {
        s.push_str("...");
    }
    s
}
