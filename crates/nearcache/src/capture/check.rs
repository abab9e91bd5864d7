//! Arbitrary bytes read as TCP segments of a few connections to one Redis port (direction,
//! sequence and acknowledgment numbers, flags, payload), run through the capture
//! [`Pipeline`] and its trace writer, with the pipeline's accounting checked. This is the body
//! of the cargo-fuzz target (`crates/nearcache/fuzz`, `segments`), and tests run it on stable.
//!
//! Builds segments and compares counts only: never panics itself (a broken invariant is an
//! `Err` naming it; a panic can only come from the code under test).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::pcap::Segment;
use super::pipeline::Pipeline;
use super::trace::{TraceReader, TraceWriter};

/// The server port the segments use.
pub const PORT: u16 = 6379;

/// Pieces of real traffic a payload can be made of, so that random input reaches the
/// decoder's states (pairing, CLIENT REPLY, pub/sub, RESP3 pushes, HELLO, SELECT, TLS).
const PIECES: &[&[u8]] = &[
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
    b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n",
    b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n10\r\n",
    b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n",
    b"*1\r\n$7\r\nMONITOR\r\n",
    b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n",
    b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n",
    b"*1\r\n$5\r\nRESET\r\n",
    b"GET k\r\n",
    b"$1\r\nv\r\n",
    b"$-1\r\n",
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":1\r\n",
    b"*2\r\n$1\r\na\r\n$-1\r\n",
    b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
    b"%1\r\n+a\r\n:1\r\n",
    b"\x16\x03\x01\x00\x05hello",
];

/// What one run saw, for tests that want more than "no invariant broke".
#[derive(Debug, Default, Clone, Copy)]
pub struct Checked {
    pub segments: u64,
    pub requests: u64,
    /// Payload bytes given to the pipeline, client to server and back.
    pub client_bytes: u64,
    pub server_bytes: u64,
}

/// Little-endian reader over the input, zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Reads `data` as segments, feeds them to a pipeline, and checks that every payload byte
/// was delivered or counted as retransmitted, that every decoded command is a request in the
/// trace (and reads back from it), and that pairing counts agree with the requests.
pub fn run_segments(data: &[u8]) -> Result<Checked, String> {
    let mut input = Input(data);
    let mut pipe = Pipeline::new(vec![PORT]);
    let mut writer = TraceWriter::new(Vec::new()).map_err(|e| e.to_string())?;
    let mut checked = Checked::default();
    let mut requests = Vec::new();
    // Where each connection's two directions are, so deltas make near-in-order streams.
    let mut next = [[1000u32, 50_000u32]; 4];
    let mut payload = Vec::new();
    while !input.0.is_empty() {
        let flags = input.byte();
        let (to_server, conn) = (flags & 1 == 1, usize::from(flags >> 5 & 3));
        let dir = usize::from(!to_server);
        // Mostly in order; else a little before or after, or anywhere.
        let seq = match (flags & 0x80, input.byte()) {
            (0, d) if d < 128 => next[conn][dir],
            (0, d) => next[conn][dir].wrapping_add(u32::from(d)).wrapping_sub(192),
            _ => u32::from(input.u16()) << 16 | u32::from(input.u16()),
        };
        let ack = (flags & 16 != 0).then(|| {
            let back = u32::from(input.byte() >> 4);
            next[conn][1 - dir].wrapping_sub(back)
        });
        let len = input.byte();
        payload.clear();
        if len & 0x80 != 0 {
            for _ in 0..=(len & 3) {
                let piece = PIECES[usize::from(input.byte()) % PIECES.len()];
                payload.extend_from_slice(piece);
            }
            // Sometimes cut, so pieces also end mid-frame.
            let cut = input.byte();
            if cut >= 128 {
                payload.truncate(usize::from(cut - 128) % (payload.len() + 1));
            }
        } else {
            payload.extend_from_slice(input.take(usize::from(len)));
        }
        let syn = flags & 2 != 0;
        next[conn][dir] = seq
            .wrapping_add(u32::from(syn))
            .wrapping_add(payload.len() as u32);
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000 + conn as u16);
        let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT);
        let (src, dst) = if to_server {
            (client, server)
        } else {
            (server, client)
        };
        pipe.segment(&Segment {
            ts_us: 1_000_000 + checked.segments * 10,
            src,
            dst,
            seq,
            ack,
            syn,
            fin: flags & 4 != 0,
            rst: flags & 8 != 0,
            payload: &payload,
        });
        checked.segments += 1;
        if to_server {
            checked.client_bytes += payload.len() as u64;
        } else {
            checked.server_bytes += payload.len() as u64;
        }
        requests.extend(pipe.requests());
    }
    let totals = pipe.finish();
    requests.extend(pipe.requests());
    checked.requests = requests.len() as u64;
    for (name, given, s) in [
        ("client", checked.client_bytes, totals.client_stream),
        ("server", checked.server_bytes, totals.server_stream),
    ] {
        if s.bytes + s.retransmitted_bytes != given {
            return Err(format!(
                "{name} stream: {given} payload bytes given, {} delivered + {} retransmitted",
                s.bytes, s.retransmitted_bytes
            ));
        }
    }
    let d = totals.decode;
    if d.commands != checked.requests {
        return Err(format!(
            "{} commands but {} requests",
            d.commands, checked.requests
        ));
    }
    let answered = requests.iter().filter(|r| r.reply_bytes.is_some()).count() as u64;
    if answered != d.paired || d.paired > d.replies || d.paired + d.unpaired_commands > d.commands {
        return Err(format!(
            "pairing counts disagree: {answered} answered requests, {d:?}"
        ));
    }
    for r in &requests {
        writer.write(r).map_err(|e| e.to_string())?;
    }
    let bytes = writer.finish().map_err(|e| e.to_string())?;
    let back: Vec<_> = TraceReader::new(&bytes[..])
        .map_err(|e| e.to_string())?
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("the trace does not read back: {e}"))?;
    if back != requests {
        return Err("the trace reads back different requests".into());
    }
    Ok(checked)
}
