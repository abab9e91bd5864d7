//! `nearcache capture`: from packets to a request trace, without touching Redis. A pcap or
//! pcapng file is read packet by packet ([`pcap`]), each connection to a Redis port is
//! reassembled both ways ([`tcp`]), decoded and paired ([`decode`]), written as a trace
//! ([`trace`], with what each command does to its keys' TTL from [`ttl`]) and summarised
//! ([`summary`]).
//!
//! This module drives them: it owns the connection table and the order of events. It never
//! talks to Redis, and never stops on bad input: what it cannot decode is counted and
//! reported in the summary.

pub mod decode;
pub mod pcap;
pub mod summary;
pub mod tcp;
pub mod trace;
pub mod ttl;

use std::collections::HashMap;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use decode::{Conn, DecodeCounts};
use summary::Summary;
use tcp::{Event, Stream};
use trace::{Request, TraceWriter};

/// `nearcache capture`: decode captured Redis traffic into a request trace and a summary.
#[derive(Debug, Parser)]
#[command(name = "nearcache capture")]
pub struct CaptureArgs {
    /// A pcap or pcapng file (tcpdump -w, Wireshark).
    #[arg(long)]
    pub read: Option<PathBuf>,
    /// Live capture from this interface (not in this build: use tcpdump -w and --read).
    #[arg(long)]
    pub interface: Option<String>,
    /// Redis's port; repeat for several.
    #[arg(long = "port", default_value = "6379")]
    pub ports: Vec<u16>,
    /// Write the request trace here (for `nearcache simulate`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many hot keys and prefixes to list.
    #[arg(long, default_value = "10")]
    pub top: usize,
}

/// Both directions of one connection and its decoder.
struct Flow {
    up: Stream,
    down: Stream,
    conn: Option<Conn>,
    id: u32,
}

/// Everything a capture run keeps.
struct Capture {
    ports: Vec<u16>,
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    next_id: u32,
    decode: DecodeCounts,
    up: tcp::StreamCounts,
    down: tcp::StreamCounts,
    other_ports: u64,
    out: Vec<Request>,
}

impl Capture {
    fn segment(&mut self, s: &pcap::Segment) {
        let (client, server, to_server) = if self.ports.contains(&s.dst.port()) {
            (s.src, s.dst, true)
        } else if self.ports.contains(&s.src.port()) {
            (s.dst, s.src, false)
        } else {
            self.other_ports += 1;
            return;
        };
        let key = (client, server);
        // A new SYN on a 4-tuple that carried data: the port was reused, a new connection.
        let reused = to_server
            && s.syn
            && s.ack.is_none()
            && self.flows.get(&key).is_some_and(|f| f.up.counts.bytes > 0);
        if reused {
            if let Some(f) = self.flows.remove(&key) {
                self.close(f);
            }
        }
        let next_id = &mut self.next_id;
        let flow = self.flows.entry(key).or_insert_with(|| {
            *next_id += 1;
            Flow {
                up: Stream::default(),
                down: Stream::default(),
                conn: None,
                id: *next_id,
            }
        });
        let (d, out) = (&mut self.decode, &mut self.out);
        let (id, conn) = (flow.id, &mut flow.conn);
        let from_start = flow.up.from_start || (to_server && s.syn);
        if to_server {
            if let Some(ack) = s.ack {
                flow.down
                    .acked(ack, &mut |e| server_event(conn, e, None, d, out));
            }
            flow.up.segment(s.seq, s.syn, s.fin, s.payload, &mut |e| {
                client_event(conn, id, from_start, e, s.ts_us, d, out)
            });
        } else {
            if let Some(ack) = s.ack {
                flow.up.acked(ack, &mut |e| {
                    client_event(conn, id, from_start, e, s.ts_us, d, out)
                });
            }
            let acked = s.ack.and_then(|a| flow.up.offset_of(a));
            flow.down.segment(s.seq, s.syn, s.fin, s.payload, &mut |e| {
                server_event(conn, e, acked, d, out)
            });
        }
    }

    fn close(&mut self, mut f: Flow) {
        let (d, out) = (&mut self.decode, &mut self.out);
        let conn = &mut f.conn;
        f.up.finish(&mut |e| client_event(conn, f.id, false, e, 0, d, out));
        f.down.finish(&mut |e| server_event(conn, e, None, d, out));
        if let Some(c) = &mut f.conn {
            c.finish(d, out);
        }
        self.up += f.up.counts;
        self.down += f.down.counts;
    }
}

/// Client bytes or a hole: the connection's decoder starts with its first event, in step
/// with the stream only if that event is the stream's first bytes after a captured SYN.
fn client_event(
    conn: &mut Option<Conn>,
    id: u32,
    from_start: bool,
    e: Event,
    ts: u64,
    d: &mut DecodeCounts,
    out: &mut Vec<Request>,
) {
    let fresh = match &e {
        Event::Data(b, end) => from_start && *end == b.len() as u64,
        Event::Gap(_) => false,
    };
    let c = conn.get_or_insert_with(|| Conn::new(id, fresh, d));
    match e {
        Event::Data(b, end) => c.client_data(b, end, ts, d, out),
        Event::Gap(_) => c.client_gap(d),
    }
}

fn server_event(
    conn: &mut Option<Conn>,
    e: Event,
    acked: Option<u64>,
    d: &mut DecodeCounts,
    out: &mut Vec<Request>,
) {
    match (conn, e) {
        (Some(c), Event::Data(b, _)) => c.server_data(b, acked, d, out),
        (Some(c), Event::Gap(_)) => c.server_gap(d, out),
        // Replies before any command was seen: their commands were not captured.
        (None, Event::Data(b, _)) => d.skipped_bytes += b.len() as u64,
        (None, Event::Gap(_)) => {}
    }
}

/// Runs `nearcache capture` and returns what it prints.
pub fn run(args: &CaptureArgs) -> anyhow::Result<String> {
    if args.interface.is_some() {
        anyhow::bail!(
            "live capture (--interface) is not in this build; capture with \
             `tcpdump -i IFACE -w FILE port 6379` and pass --read FILE"
        );
    }
    let Some(path) = &args.read else {
        anyhow::bail!("nothing to read: pass --read FILE.pcap");
    };
    let mut writer = match &args.out {
        Some(p) => Some(TraceWriter::new(BufWriter::new(std::fs::File::create(p)?))?),
        None => None,
    };
    let mut cap = Capture {
        ports: args.ports.clone(),
        flows: HashMap::new(),
        next_id: 0,
        decode: DecodeCounts::default(),
        up: Default::default(),
        down: Default::default(),
        other_ports: 0,
        out: Vec::new(),
    };
    let mut summary = Summary::default();
    let mut emit = |out: &mut Vec<Request>, summary: &mut Summary| -> std::io::Result<()> {
        for r in out.drain(..) {
            summary.add(&r);
            if let Some(w) = &mut writer {
                w.write(&r)?;
            }
        }
        Ok(())
    };
    let mut io_error = None;
    let packets = pcap::read_file(path, |s| {
        cap.segment(s);
        if let Err(e) = emit(&mut cap.out, &mut summary) {
            io_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let flows: Vec<Flow> = {
        let mut v: Vec<Flow> = cap.flows.drain().map(|(_, f)| f).collect();
        v.sort_by_key(|f| f.id);
        v
    };
    summary.connections = u64::from(cap.next_id);
    for f in flows {
        cap.close(f);
    }
    emit(&mut cap.out, &mut summary)?;
    if let Some(w) = writer {
        w.finish()?;
    }
    summary.packets = packets;
    summary.decode = cap.decode;
    summary.client_stream = cap.up;
    summary.server_stream = cap.down;
    summary.finish(args.top);
    Ok(if args.json {
        serde_json::to_string_pretty(&summary)? + "\n"
    } else {
        summary.text()
    })
}
