//! The capture pipeline: TCP segments in, requests out. Keeps the connection table (each
//! connection to a Redis port: both directions reassembled by [`tcp`](super::tcp), one
//! decoder from [`decode`](super::decode)) and the order of events between them: an
//! acknowledgment in one direction closes holes in the other before that direction's bytes.
//!
//! Shared by every source of segments (a pcap file, a live interface, the fuzz target): it
//! never knows where packets came from, never does I/O, and never stops on bad input.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::decode::{Conn, DecodeCounts};
use super::pcap::Segment;
use super::tcp::{Event, Stream, StreamCounts};
use super::trace::Request;

/// What the pipeline counted, once finished.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub connections: u64,
    pub decode: DecodeCounts,
    pub client_stream: StreamCounts,
    pub server_stream: StreamCounts,
    /// Segments of neither direction of a Redis port.
    pub other_ports: u64,
}

/// Both directions of one connection and its decoder.
struct Flow {
    up: Stream,
    down: Stream,
    conn: Option<Conn>,
    id: u32,
}

/// The packets-to-requests pipeline: every Redis connection's two streams and decoder.
/// Feed it segments in capture order ([`Pipeline::segment`]), take the requests it completes
/// ([`Pipeline::requests`]), and [`Pipeline::finish`] it at the end of the capture.
pub struct Pipeline {
    ports: Vec<u16>,
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    next_id: u32,
    decode: DecodeCounts,
    up: StreamCounts,
    down: StreamCounts,
    other_ports: u64,
    out: Vec<Request>,
}

impl Pipeline {
    /// A pipeline that picks the traffic to and from `ports`.
    pub fn new(ports: Vec<u16>) -> Pipeline {
        Pipeline {
            ports,
            flows: HashMap::new(),
            next_id: 0,
            decode: DecodeCounts::default(),
            up: StreamCounts::default(),
            down: StreamCounts::default(),
            other_ports: 0,
            out: Vec::new(),
        }
    }

    /// The requests completed so far (paired, or known to get no reply), in order.
    pub fn requests(&mut self) -> std::vec::Drain<'_, Request> {
        self.out.drain(..)
    }

    /// The end of the capture: every connection is closed (what waits behind a hole is
    /// delivered, commands still waiting are recorded without a reply; take them with
    /// [`Pipeline::requests`]) and the counts are returned.
    pub fn finish(&mut self) -> Totals {
        let mut flows: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.id);
        for f in flows {
            self.close(f);
        }
        Totals {
            connections: u64::from(self.next_id),
            decode: self.decode,
            client_stream: self.up,
            server_stream: self.down,
            other_ports: self.other_ports,
        }
    }

    /// One captured TCP segment, of any connection.
    pub fn segment(&mut self, s: &Segment) {
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
