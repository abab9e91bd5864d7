//! The request trace (`.nctrace`): one record per request a capture decoded, what `nearcache
//! simulate` replays. The record type, [`Request`], and its binary form: a magic line, then
//! records of LEB128 varints and length-prefixed byte strings.
//!
//! Plain data and its encoding. Never decides what a command means (the decoder fills
//! [`Class`] from the command table) and never panics on a damaged file: a record cut short is
//! an error naming its byte offset.

use std::io::{self, BufRead, Write};

use bytes::Bytes;

pub use super::ttl::TtlChange;

/// The first bytes of every trace file (the last byte is the format's version: 2 added
/// [`Request::ttl`]; version 1 files are still read, their requests with [`TtlChange::Keep`]).
pub const MAGIC: &[u8; 8] = b"NCTRACE\x02";
const MAGIC_V1: &[u8; 8] = b"NCTRACE\x01";

/// What a request means for a near cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A read the cache could answer, of one key (`keys[0]`; `extra` are its other arguments).
    Read = 0,
    /// MGET: each key is its own entry.
    MultiRead = 1,
    /// Changes `keys`: a cache drops their entries.
    Write = 2,
    /// Changes every key (FLUSHALL, FLUSHDB, SWAPDB).
    WriteAll = 3,
    /// Neither.
    Neutral = 4,
    /// Pub/sub or MONITOR: its replies are a stream, not paired; left out of the simulation.
    Relay = 5,
}

impl Class {
    fn from_u8(b: u8) -> Option<Class> {
        Some(match b {
            0 => Class::Read,
            1 => Class::MultiRead,
            2 => Class::Write,
            3 => Class::WriteAll,
            4 => Class::Neutral,
            5 => Class::Relay,
            _ => return None,
        })
    }
}

/// `Request::flags`: a write of the same connection was still waiting for its reply when
/// this read was sent (the proxy reads through the cache then, to read its own writes).
pub const AFTER_WRITE: u8 = 1;
/// `Request::flags`: the reply is Redis's error reply.
pub const REPLY_ERROR: u8 = 2;

/// One request as the capture saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Capture time of the packet that completed the command, in microseconds since the epoch.
    pub time_us: u64,
    /// The connection, numbered from 1 in the order the capture met them.
    pub conn: u32,
    /// The database the connection had selected (0 when the capture did not see a SELECT).
    pub db: u32,
    /// The protocol the connection spoke (2 or 3; 2 until a HELLO 3 was seen).
    pub proto: u8,
    /// Lower case, `name|subcommand` for subcommands, as `INFO commandstats` names them.
    pub name: String,
    pub class: Class,
    /// The keys: the read's key, MGET's keys, a write's written keys; empty otherwise.
    pub keys: Vec<Bytes>,
    /// A [`Class::Read`]'s arguments after its key (they are part of its cache entry).
    pub extra: Vec<Bytes>,
    /// The command's size on the wire.
    pub req_bytes: u32,
    /// The reply's size on the wire; `None` when no reply was paired with it.
    pub reply_bytes: Option<u32>,
    /// For reads, per key: the bytes the proxy's cache would store for it; `None` when it
    /// would not cache it (error, unknown reply).
    pub values: Vec<Option<u32>>,
    pub flags: u8,
    /// What the command did to its keys' time to live.
    pub ttl: TtlChange,
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes requests to a trace file.
pub struct TraceWriter<W: Write> {
    out: W,
    last_us: u64,
    buf: Vec<u8>,
    pub written: u64,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(TraceWriter {
            out,
            last_us: 0,
            buf: Vec::with_capacity(256),
            written: 0,
        })
    }

    pub fn write(&mut self, r: &Request) -> io::Result<()> {
        let b = &mut self.buf;
        b.clear();
        // Times are nearly ordered; the zigzag delta keeps a step back small.
        let delta = r.time_us.wrapping_sub(self.last_us) as i64;
        put_varint(b, ((delta << 1) ^ (delta >> 63)) as u64);
        self.last_us = r.time_us;
        put_varint(b, u64::from(r.conn));
        put_varint(b, u64::from(r.db));
        b.extend_from_slice(&[r.proto, r.class as u8, r.flags]);
        put_bytes(b, r.name.as_bytes());
        for list in [&r.keys, &r.extra] {
            put_varint(b, list.len() as u64);
            for k in list {
                put_bytes(b, k);
            }
        }
        put_varint(b, u64::from(r.req_bytes));
        put_varint(b, r.reply_bytes.map_or(0, |n| u64::from(n) + 1));
        put_varint(b, r.values.len() as u64);
        for v in &r.values {
            put_varint(b, v.map_or(0, |n| u64::from(n) + 1));
        }
        put_varint(
            b,
            match r.ttl {
                TtlChange::Keep => 0,
                TtlChange::Clear => 1,
                TtlChange::Set(ms) => ms.saturating_add(2),
            },
        );
        self.written += 1;
        self.out.write_all(b)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads requests back from a trace file, in order.
pub struct TraceReader<R: BufRead> {
    input: R,
    offset: u64,
    last_us: u64,
    version: u8,
}

fn damaged(offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("trace damaged at byte {offset}: {what}"),
    )
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC && &magic != MAGIC_V1 {
            return Err(damaged(0, "not a nearcache trace (bad magic)"));
        }
        Ok(TraceReader {
            input,
            offset: 8,
            last_us: 0,
            version: magic[7],
        })
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|_| damaged(self.offset, "cut short"))?;
        self.offset += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(damaged(self.offset, "varint too long"))
    }

    fn small(&mut self) -> io::Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| damaged(self.offset, "number too large"))
    }

    fn bytes(&mut self) -> io::Result<Bytes> {
        let len = self.varint()?;
        // A length past what any request carries is damage, not a reason to allocate.
        if len > 1 << 30 {
            return Err(damaged(self.offset, "length too large"));
        }
        let mut v = vec![0u8; len as usize];
        self.input
            .read_exact(&mut v)
            .map_err(|_| damaged(self.offset, "cut short"))?;
        self.offset += len;
        Ok(Bytes::from(v))
    }

    fn list(&mut self) -> io::Result<Vec<Bytes>> {
        let n = self.varint()?;
        (0..n).map(|_| self.bytes()).collect()
    }

    fn record(&mut self) -> io::Result<Request> {
        let z = self.varint()?;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let time_us = self.last_us.wrapping_add(delta as u64);
        self.last_us = time_us;
        let conn = self.small()?;
        let db = self.small()?;
        let proto = self.byte()?;
        let class = Class::from_u8(self.byte()?).ok_or_else(|| damaged(self.offset, "class"))?;
        let flags = self.byte()?;
        let name = String::from_utf8_lossy(&self.bytes()?).into_owned();
        let keys = self.list()?;
        let extra = self.list()?;
        let req_bytes = self.small()?;
        let reply_bytes = self.small()?.checked_sub(1);
        let n = self.varint()?;
        let values = (0..n)
            .map(|_| Ok(self.small()?.checked_sub(1)))
            .collect::<io::Result<_>>()?;
        let ttl = match self.version {
            1 => TtlChange::Keep,
            _ => match self.varint()? {
                0 => TtlChange::Keep,
                1 => TtlChange::Clear,
                n => TtlChange::Set(n - 2),
            },
        };
        Ok(Request {
            time_us,
            conn,
            db,
            proto,
            name,
            class,
            keys,
            extra,
            req_bytes,
            reply_bytes,
            values,
            flags,
            ttl,
        })
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = io::Result<Request>;

    fn next(&mut self) -> Option<io::Result<Request>> {
        match self.input.fill_buf() {
            Ok([]) => None,
            Ok(_) => Some(self.record()),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Request {
        Request {
            time_us: 1_700_000_000_000_000 + i * 7 - (i % 3) * 5,
            conn: i as u32 % 4 + 1,
            db: (i % 2) as u32,
            proto: 2 + (i % 2) as u8,
            name: ["get", "set", "config|get", "mget"][i as usize % 4].into(),
            class: [Class::Read, Class::Write, Class::Neutral, Class::MultiRead][i as usize % 4],
            keys: vec![
                Bytes::from(format!("user:{i}")),
                Bytes::from_static(b"\x00\xff"),
            ],
            extra: vec![],
            req_bytes: 30 + i as u32,
            reply_bytes: (!i.is_multiple_of(5)).then_some(i as u32 * 100),
            values: vec![Some(7), None],
            flags: (i % 4) as u8,
            ttl: [TtlChange::Keep, TtlChange::Clear, TtlChange::Set(i * 1000)][i as usize % 3],
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let all: Vec<Request> = (0..50).map(sample).collect();
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        for r in &all {
            w.write(r).unwrap();
        }
        let bytes = w.finish().unwrap();
        let back: Vec<Request> = TraceReader::new(&bytes[..])
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(back, all);
        // Every cut inside a record is reported, never a panic or a silent end.
        for cut in 9..bytes.len() {
            let out: Vec<io::Result<Request>> = TraceReader::new(&bytes[..cut]).unwrap().collect();
            let complete = out.iter().filter(|r| r.is_ok()).count();
            let boundary = out.iter().all(|r| r.is_ok());
            assert!(complete < all.len());
            if !boundary {
                assert!(out.last().unwrap().is_err());
            }
        }
        assert!(TraceReader::new(&b"NOTATRACE"[..]).is_err());
    }
}
