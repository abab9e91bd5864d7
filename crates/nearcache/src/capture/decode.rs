//! RESP over one captured connection, both ways: the client's bytes into commands, the
//! server's into replies, each reply paired with the command it answers, and each pair into a
//! trace [`Request`] classified by the command table.
//!
//! Pairing is positional (Redis answers in order), with what breaks it handled: RESP3 pushes
//! are not replies, `CLIENT REPLY OFF|SKIP` suppresses replies, pub/sub and MONITOR turn the
//! connection into a stream (recorded as [`Class::Relay`], never paired). After a hole in
//! either direction, or a capture that starts mid-connection, each side resynchronises on the
//! next complete frame at a line start, the skipped bytes counted, and a reply is paired only
//! with a command its segment's acknowledgment proves the server had received.
//! Never panics on what a peer sent; never keeps an undecodable prefix beyond [`MAX_JUNK`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use resp::Limits;

use super::trace::{Class, Request, AFTER_WRITE, REPLY_ERROR};
use super::ttl::ttl_change;
use crate::cachelayer::{split_array, stored_len};
use crate::command::{self, redis::flag, CacheUse, Route, Special};

/// Most bytes searched for a resynchronisation point before they are dropped as junk.
pub const MAX_JUNK: usize = 1 << 20;

/// Decoding figures, summed over connections.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct DecodeCounts {
    pub commands: u64,
    pub replies: u64,
    pub paired: u64,
    /// Commands recorded without a reply (it was lost, or the capture ended first).
    pub unpaired_commands: u64,
    /// Replies no command could be found for (their command was lost).
    pub unpaired_replies: u64,
    pub pushes: u64,
    /// Frames of pub/sub and MONITOR streams.
    pub relay_frames: u64,
    /// Times a side lost its place (a hole, a malformed frame) and looked for the next frame.
    pub resyncs: u64,
    /// Bytes skipped while resynchronising: partial frames around holes, and junk.
    pub skipped_bytes: u64,
    /// Frames that broke the protocol.
    pub malformed: u64,
    /// Connections whose first client bytes were a TLS handshake (not decodable).
    pub tls_connections: u64,
    /// Connections whose start was not captured.
    pub midstream_connections: u64,
}

/// A command waiting for its reply.
struct Pending {
    req: Request,
    /// The client stream offset just past the command.
    end: u64,
}

/// How replies are being suppressed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    SkipNext,
}

/// One connection's decoder.
pub struct Conn {
    id: u32,
    req: BytesMut,
    rep: BytesMut,
    /// Whether each side's buffer starts at a frame boundary.
    req_sync: bool,
    rep_sync: bool,
    /// Whether pairing must be proven by acknowledgments (after a hole or a mid-stream start).
    unsure: bool,
    queue: VecDeque<Pending>,
    db: u32,
    proto: u8,
    relay: bool,
    reply_mode: ReplyMode,
    tls: bool,
    started: bool,
    args: Vec<Bytes>,
}

impl Conn {
    /// A connection numbered `id`; `from_start` when its first client bytes were captured.
    pub fn new(id: u32, from_start: bool, counts: &mut DecodeCounts) -> Conn {
        if !from_start {
            counts.midstream_connections += 1;
        }
        Conn {
            id,
            req: BytesMut::new(),
            rep: BytesMut::new(),
            req_sync: from_start,
            rep_sync: from_start,
            unsure: !from_start,
            queue: VecDeque::new(),
            db: 0,
            proto: 2,
            relay: false,
            reply_mode: ReplyMode::On,
            tls: false,
            started: false,
            args: Vec::new(),
        }
    }

    /// Client bytes ending at stream offset `end`, captured at `ts_us`.
    pub fn client_data(
        &mut self,
        bytes: &[u8],
        end: u64,
        ts_us: u64,
        c: &mut DecodeCounts,
        out: &mut Vec<Request>,
    ) {
        if !self.started {
            self.started = true;
            // A TLS ClientHello: a handshake record of TLS 1.x.
            if self.req_sync && bytes.len() >= 3 && bytes[0] == 0x16 && bytes[1] == 3 {
                self.tls = true;
                c.tls_connections += 1;
            }
        }
        if self.tls {
            c.skipped_bytes += bytes.len() as u64;
            return;
        }
        self.req.extend_from_slice(bytes);
        loop {
            if !self.req_sync && !resync(&mut self.req, c, command_at) {
                return;
            }
            self.req_sync = true;
            let before = self.req.len();
            match resp::parse_command_into(&mut self.req, &Limits::default(), &mut self.args) {
                Ok(Some(_)) => {
                    let size = (before - self.req.len()) as u32;
                    let cmd_end = end - self.req.len() as u64;
                    if !self.args.is_empty() {
                        let args = std::mem::take(&mut self.args);
                        self.command(&args, size, cmd_end, ts_us, c, out);
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    c.malformed += 1;
                    c.resyncs += 1;
                    self.req_sync = false;
                    // The parser may have consumed the bad frame's start already (the
                    // buffer can even be empty now); otherwise one byte is dropped.
                    let consumed = before - self.req.len();
                    if consumed == 0 && !self.req.is_empty() {
                        let _ = self.req.split_to(1);
                        c.skipped_bytes += 1;
                    }
                    c.skipped_bytes += consumed as u64;
                }
            }
        }
    }

    /// A hole in the client's bytes.
    pub fn client_gap(&mut self, c: &mut DecodeCounts) {
        c.skipped_bytes += self.req.len() as u64;
        self.req.clear();
        self.req_sync = false;
        self.unsure = true;
        c.resyncs += 1;
    }

    /// Server bytes; `acked` is how far the client stream the segment carrying them
    /// acknowledged (`None` when unknown).
    pub fn server_data(
        &mut self,
        bytes: &[u8],
        acked: Option<u64>,
        c: &mut DecodeCounts,
        out: &mut Vec<Request>,
    ) {
        if self.tls {
            c.skipped_bytes += bytes.len() as u64;
            return;
        }
        self.rep.extend_from_slice(bytes);
        loop {
            if !self.rep_sync && !resync(&mut self.rep, c, reply_at) {
                return;
            }
            self.rep_sync = true;
            match resp::scan(&self.rep, &Limits::UNBOUNDED) {
                Ok(Some(n)) => {
                    let frame = self.rep.split_to(n).freeze();
                    self.reply(frame, acked, c, out);
                }
                Ok(None) => return,
                Err(_) => {
                    c.malformed += 1;
                    c.resyncs += 1;
                    self.rep_sync = false;
                    if !self.rep.is_empty() {
                        let _ = self.rep.split_to(1);
                        c.skipped_bytes += 1;
                    }
                }
            }
        }
    }

    /// A hole in the server's bytes: the replies in it are lost, and with them the pairing of
    /// every command still waiting.
    pub fn server_gap(&mut self, c: &mut DecodeCounts, out: &mut Vec<Request>) {
        c.skipped_bytes += self.rep.len() as u64;
        self.rep.clear();
        self.rep_sync = false;
        self.unsure = true;
        c.resyncs += 1;
        self.flush(c, out);
    }

    /// The end of the connection or of the capture: commands still waiting are recorded
    /// without a reply.
    pub fn finish(&mut self, c: &mut DecodeCounts, out: &mut Vec<Request>) {
        // A frame the capture ended inside.
        c.skipped_bytes += (self.req.len() + self.rep.len()) as u64;
        self.flush(c, out);
    }

    fn flush(&mut self, c: &mut DecodeCounts, out: &mut Vec<Request>) {
        for p in self.queue.drain(..) {
            c.unpaired_commands += 1;
            out.push(p.req);
        }
    }

    fn command(
        &mut self,
        args: &[Bytes],
        size: u32,
        end: u64,
        ts_us: u64,
        c: &mut DecodeCounts,
        out: &mut Vec<Request>,
    ) {
        c.commands += 1;
        let spec = command::lookup(&args[0]).resolve(args);
        let name = if spec.id == command::CommandSpec::OTHER {
            String::from_utf8_lossy(&args[0]).to_lowercase()
        } else {
            spec.full_name().to_lowercase()
        };
        let relay = matches!(spec.route(args), Route::Relay)
            && (spec.special == Special::Subscribe || name == "monitor");
        let (class, keys, extra) = if relay || self.relay {
            (Class::Relay, Vec::new(), Vec::new())
        } else {
            match spec.cache_use(args.len()) {
                CacheUse::Read => (Class::Read, vec![args[1].clone()], args[2..].to_vec()),
                CacheUse::MultiRead => (Class::MultiRead, args[1..].to_vec(), Vec::new()),
                CacheUse::Write => (Class::Write, spec.write_keys(args).into_vec(), Vec::new()),
                CacheUse::WriteAll => (Class::WriteAll, Vec::new(), Vec::new()),
                CacheUse::Neutral => (Class::Neutral, Vec::new(), Vec::new()),
            }
        };
        let write_waiting = self
            .queue
            .iter()
            .any(|p| matches!(p.req.class, Class::Write | Class::WriteAll));
        let mut flags = 0;
        if write_waiting && matches!(class, Class::Read | Class::MultiRead) {
            flags |= AFTER_WRITE;
        }
        let ttl = ttl_change(&name, args, ts_us / 1000);
        let req = Request {
            time_us: ts_us,
            conn: self.id,
            db: self.db,
            proto: self.proto,
            name,
            class,
            keys,
            extra,
            req_bytes: size,
            reply_bytes: None,
            values: Vec::new(),
            flags,
            ttl,
        };
        self.track_state(spec, args);
        let answered = match self.reply_mode {
            _ if self.relay => false,
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                false
            }
        };
        if spec.full_name() == "CLIENT|REPLY" {
            self.client_reply(args);
        }
        if relay {
            // From here on the server streams messages: nothing is paired any more.
            self.relay = true;
            self.flush(c, out);
            out.push(req);
            return;
        }
        if !answered {
            out.push(req);
            return;
        }
        self.queue.push_back(Pending { req, end });
    }

    /// SELECT, HELLO and RESET change what later commands mean (their db and protocol).
    fn track_state(&mut self, spec: &command::CommandSpec, args: &[Bytes]) {
        if let Some(v) = spec.hello_version(args) {
            self.proto = v;
        }
        if spec.special == Special::Select {
            if let Some(db) = args
                .get(1)
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|s| s.parse().ok())
            {
                self.db = db;
            }
        }
        if spec.is_reset(args) {
            self.db = 0;
            self.proto = 2;
            self.relay = false;
            self.reply_mode = ReplyMode::On;
        }
    }

    fn client_reply(&mut self, args: &[Bytes]) {
        let word = args.get(2).map(|a| a.to_ascii_uppercase());
        self.reply_mode = match word.as_deref() {
            Some(b"OFF") => ReplyMode::Off,
            Some(b"SKIP") => ReplyMode::SkipNext,
            _ => ReplyMode::On,
        };
    }

    fn reply(
        &mut self,
        frame: Bytes,
        acked: Option<u64>,
        c: &mut DecodeCounts,
        out: &mut Vec<Request>,
    ) {
        if frame.first() == Some(&b'>') {
            c.pushes += 1;
            return;
        }
        if self.relay {
            c.relay_frames += 1;
            return;
        }
        c.replies += 1;
        if self.unsure {
            // Only a command the server provably had when it sent this can be its command.
            let proven = match (self.queue.front(), acked) {
                (Some(p), Some(a)) => p.end <= a,
                _ => false,
            };
            if !proven {
                c.unpaired_replies += 1;
                return;
            }
            self.unsure = false;
        }
        let Some(mut p) = self.queue.pop_front() else {
            c.unpaired_replies += 1;
            self.unsure = true;
            return;
        };
        c.paired += 1;
        p.req.reply_bytes = Some(frame.len() as u32);
        let error = matches!(frame.first(), Some(b'-' | b'!'));
        if error {
            p.req.flags |= REPLY_ERROR;
        }
        p.req.values = match p.req.class {
            Class::Read if !error => vec![Some(stored_len(&frame) as u32)],
            Class::Read => vec![None],
            Class::MultiRead => match split_array(&frame) {
                Some(items) if items.len() == p.req.keys.len() => items
                    .iter()
                    .map(|i| {
                        (!matches!(i.first(), Some(b'-' | b'!'))).then(|| stored_len(i) as u32)
                    })
                    .collect(),
                _ => vec![None; p.req.keys.len()],
            },
            _ => Vec::new(),
        };
        out.push(p.req);
    }
}

/// Finds the next place in `buf` where `at` sees a frame starting at a line start, drops
/// what comes before it, and says whether one was found. Without one, keeps only the tail
/// that could still begin a frame.
fn resync(buf: &mut BytesMut, c: &mut DecodeCounts, at: fn(&[u8]) -> Found) -> bool {
    // Candidates: the buffer's start (segments usually begin at a frame), then every line
    // start. A frame found must be complete, which makes a false start unlikely.
    let mut i = 0;
    while i < buf.len() {
        match at(&buf[i..]) {
            Found::Frame => {
                c.skipped_bytes += i as u64;
                let _ = buf.split_to(i);
                return true;
            }
            Found::NotYet if buf.len() - i <= MAX_JUNK => {
                c.skipped_bytes += i as u64;
                let _ = buf.split_to(i);
                return false;
            }
            _ => {}
        }
        match buf[i..].iter().position(|&b| b == b'\n') {
            Some(nl) => i += nl + 1,
            None => break,
        }
    }
    if buf.len() > MAX_JUNK {
        let drop = buf.len() - 64;
        c.skipped_bytes += drop as u64;
        let _ = buf.split_to(drop);
    }
    false
}

enum Found {
    Frame,
    NotYet,
    No,
}

/// A multibulk command (`*N\r\n$`) starts here.
fn command_at(b: &[u8]) -> Found {
    if b.first() != Some(&b'*') {
        return Found::No;
    }
    let mut buf = BytesMut::from(b);
    match resp::parse_command(&mut buf, &Limits::default()) {
        Ok(Some(args)) if !args.is_empty() && b.get(1) != Some(&b'-') => Found::Frame,
        Ok(None) => Found::NotYet,
        _ => Found::No,
    }
}

/// A reply frame starts here.
fn reply_at(b: &[u8]) -> Found {
    if !b.first().is_some_and(|c| b"+-:$*_,#!=(%~>|".contains(c)) {
        return Found::No;
    }
    match resp::scan(b, &Limits::default()) {
        Ok(Some(_)) => Found::Frame,
        Ok(None) => Found::NotYet,
        Err(_) => Found::No,
    }
}

/// Whether Redis counts a command as a read or a write (for the summary's ratio).
pub fn rw_kind(name: &str) -> (bool, bool) {
    let spec = command::lookup(name.split('|').next().unwrap_or("").as_bytes());
    (spec.has_flag(flag::READONLY), spec.has_flag(flag::WRITE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_inline_command_the_parser_consumed_is_skipped_without_a_panic() {
        // Redis consumes an inline line with unbalanced quotes before refusing it, which
        // leaves the buffer empty: there is no byte left to drop.
        let mut c = DecodeCounts::default();
        let mut out = Vec::new();
        let mut conn = Conn::new(1, true, &mut c);
        let bytes = b"SET \"a\r\n";
        conn.client_data(bytes, bytes.len() as u64, 0, &mut c, &mut out);
        let next = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let end = (bytes.len() + next.len()) as u64;
        conn.client_data(next, end, 0, &mut c, &mut out);
        conn.finish(&mut c, &mut out);
        assert_eq!(c.malformed, 1);
        assert_eq!(c.skipped_bytes, bytes.len() as u64);
        assert_eq!(out.len(), 1, "the next command is decoded");
        assert_eq!(out[0].name, "get");
    }
}
