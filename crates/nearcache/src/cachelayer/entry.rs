//! Entry keys and stored replies: how a cacheable read is named inside its group (the Redis
//! key), and how a reply is stored and given back byte for byte.
//!
//! Owns the encodings. Never lets two different reads share an entry: protocol, the user's
//! partition, command and every argument are part of the key, and the cache compares keys in
//! full.

use bytes::{BufMut, BytesMut};

use crate::command;

/// How a read is named in its compact entry key: the client's protocol and the command's
/// [`command::CommandSpec::read_code`], worked out once per command name rather than once per
/// lookup (an MGET looks up each of its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub proto: u8,
    pub code: Option<u8>,
    /// The ACL user's partition (0: the proxy's own upstream user): one user's reads are never
    /// served to another (docs/security.md).
    pub part: u32,
}

impl Form {
    /// The form of a read named `name` (any case).
    pub fn of(proto: u8, name: &[u8]) -> Form {
        Form {
            proto,
            code: command::lookup(name).read_code(),
            part: 0,
        }
    }

    /// [`put_entry_key`], with the command's code known.
    #[inline]
    pub(super) fn put_key<A: AsRef<[u8]>>(self, args: &[A], out: &mut impl BufMut) {
        debug_assert_eq!(self.code, command::lookup(args[0].as_ref()).read_code());
        put_key_coded(self.proto, self.part, self.code, args, out);
    }
}

/// The first bytes of every key: the protocol version, then, for a partition other than 0, the
/// partition (LEB128) with the protocol byte's top bit set to say it follows.
#[inline]
fn put_head(out: &mut impl BufMut, proto: u8, part: u32) {
    if part == 0 {
        out.put_u8(proto);
    } else {
        out.put_u8(proto | 0x80);
        put_len(out, part as usize);
    }
}

#[inline]
fn put_len(out: &mut impl BufMut, mut n: usize) {
    while n >= 0x80 {
        out.put_u8(n as u8 | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

/// Appends the compact entry key of a read, which the cache stores within the read's group
/// (`args[1]`, the Redis key): protocol version, the command's one-byte code
/// ([`command::CommandSpec::read_code`], or 0 followed by the name's length and the name), then every argument
/// after the Redis key preceded by its length (LEB128). Together with the group it determines
/// (protocol, command, every argument) exactly; the cache compares group and key in full.
pub fn put_entry_key<A: AsRef<[u8]>>(proto: u8, args: &[A], out: &mut impl BufMut) {
    put_key_coded(
        proto,
        0,
        command::lookup(args[0].as_ref()).read_code(),
        args,
        out,
    );
}

#[inline]
fn put_key_coded<A: AsRef<[u8]>>(
    proto: u8,
    part: u32,
    code: Option<u8>,
    args: &[A],
    out: &mut impl BufMut,
) {
    put_head(out, proto, part);
    let name = args[0].as_ref();
    match code {
        Some(code) => out.put_u8(code),
        None => {
            out.put_u8(0);
            put_len(out, name.len());
            out.put_slice(name);
        }
    }
    for a in args.iter().skip(2) {
        let a = a.as_ref();
        put_len(out, a.len());
        out.put_slice(a);
    }
}

/// The payload of a bulk string reply (`$<n>\r\n<n bytes>\r\n`, length written as Redis
/// writes it), which the cache stores as a 0 byte and the payload: 6 to 10 bytes less per
/// entry. RESP replies never start with a 0 byte, so anything else is stored as it is.
pub(super) fn bulk_payload(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let end = rest.iter().position(|&c| c == b'\r')?;
    // Digits only, no sign, no leading zero (a null's `-1` is not a length).
    let n = usize::try_from(resp::parse_i64(&rest[..end])?).ok()?;
    let body = rest[end..].strip_prefix(b"\r\n")?;
    (body.len() == n.checked_add(2)? && body.ends_with(b"\r\n")).then(|| &body[..n])
}

/// Appends a reply as the client gets it, from its stored form (see [`bulk_payload`]).
#[inline]
pub(super) fn put_reply(out: &mut BytesMut, stored: &[u8]) {
    match stored.split_first() {
        Some((0, payload)) => {
            out.reserve(payload.len() + 24);
            resp::header(out, b'$', payload.len());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(stored),
    }
}

/// Bytes of a compact key kept inline (a fill's, until it completes) rather than allocated:
/// the key's arguments after the Redis key, so a GET's 2 bytes, an HGET's field and more.
const INLINE_KEY: usize = 48;

/// A compact entry key, inline up to [`INLINE_KEY`] bytes.
pub(super) type CompactKey = smallvec::SmallVec<[u8; INLINE_KEY]>;

/// `PTTL` reply: `Some(Some(ms))` for a TTL, `Some(None)` for none (-1) or a missing key (-2),
/// `None` when the reply is not an integer (then nothing is cached).
pub(super) fn parse_pttl(reply: &[u8]) -> Option<Pttl> {
    let ms = resp::parse_i64(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?)?;
    Some(match ms {
        -2 => Pttl::Missing,
        ms if ms < 0 => Pttl::Forever,
        ms => Pttl::Ms(ms as u64),
    })
}

/// What `PTTL` said of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pttl {
    Ms(u64),
    /// No TTL (-1).
    Forever,
    /// No such key (-2).
    Missing,
}

/// A null reply (RESP2 null bulk or array, RESP3 null).
pub(super) fn is_null(reply: &[u8]) -> bool {
    matches!(reply, b"$-1\r\n" | b"*-1\r\n" | b"_\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachelayer::CacheLayer;

    #[test]
    fn reads_pttl_replies() {
        assert_eq!(parse_pttl(b":1500\r\n"), Some(Pttl::Ms(1500)));
        assert_eq!(parse_pttl(b":-1\r\n"), Some(Pttl::Forever));
        assert_eq!(parse_pttl(b":-2\r\n"), Some(Pttl::Missing));
        assert_eq!(parse_pttl(b"-ERR x\r\n"), None);
    }

    fn compact(proto: u8, args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        put_entry_key(proto, args, &mut out);
        out
    }

    #[test]
    fn compact_keys_match_entry_keys_and_tell_reads_apart() {
        let reads: [&[&[u8]]; 8] = [
            &[b"GET", b"k"],
            &[b"get", b"k"],
            &[b"MGET", b"k"],
            &[b"HGET", b"k", b"ab"],
            &[b"HGET", b"k", b"a", b"b"],
            &[b"HMGET", b"k", b"a", b"b"],
            &[b"LRANGE", b"k", b"0", b"-1"],
            &[b"NOSUCHREAD", b"k", &[0x80; 200]],
        ];
        let mut seen = std::collections::HashSet::new();
        for args in reads {
            for proto in [2, 3] {
                let key = CacheLayer::entry_key(proto, args, &mut BytesMut::new());
                let c = compact(proto, args);
                assert_eq!(&key[..], &c[..], "{args:?}");
                seen.insert(c);
            }
        }
        // GET and get share their entries; everything else is told apart.
        assert_eq!(seen.len(), 14);
        assert_eq!(compact(2, &[b"GET", b"a-long-redis-key"]), [2, 1]);
    }

    #[test]
    fn bulk_replies_are_stored_without_their_framing() {
        for (reply, payload) in [
            (&b"$3\r\nabc\r\n"[..], Some(&b"abc"[..])),
            (b"$0\r\n\r\n", Some(b"")),
            (b"$12\r\nhello\r\nworld\r\n", Some(b"hello\r\nworld")),
            (b"$-1\r\n", None),
            (b"$03\r\nabc\r\n", None),
            (b"$+3\r\nabc\r\n", None),
            (b"$3\r\nabcd\r\n", None),
            (b"$3\r\nabc\r\n+OK\r\n", None),
            (b":5\r\n", None),
            (b"*1\r\n$1\r\na\r\n", None),
        ] {
            assert_eq!(bulk_payload(reply), payload, "{reply:?}");
            let stored = match payload {
                Some(p) => [&[0][..], p].concat(),
                None => reply.to_vec(),
            };
            let mut out = BytesMut::new();
            put_reply(&mut out, &stored);
            assert_eq!(&out[..], reply);
        }
    }
}
