//! Writing frames and commands to a buffer.
//!
//! Encoding never fails and never normalises: a frame is written with the text it holds (a
//! double's digits, a verbatim string's prefix), so every frame the parser accepts encodes back
//! to the bytes it came from. It only appends to the caller's buffer and allocates nothing else.

use bytes::{BufMut, BytesMut};

use crate::frame::Frame;

/// Appends a length line: `kind`, the decimal `n`, CRLF (`$5\r\n`, `*10\r\n`). Lengths under
/// 10,000 (nearly every one: a hit's value, an MGET's array) are written as one fixed-size
/// slice each, which compiles to a few stores; longer ones go through `itoa`.
#[inline]
pub fn header(out: &mut BytesMut, kind: u8, n: usize) {
    let d = |n: usize| b'0' + (n % 10) as u8;
    match n {
        0..10 => out.put_slice(&[kind, d(n), b'\r', b'\n']),
        10..100 => out.put_slice(&[kind, d(n / 10), d(n), b'\r', b'\n']),
        100..1000 => out.put_slice(&[kind, d(n / 100), d(n / 10), d(n), b'\r', b'\n']),
        1000..10000 => {
            out.put_slice(&[kind, d(n / 1000), d(n / 100), d(n / 10), d(n), b'\r', b'\n'])
        }
        _ => long_header(out, kind, n),
    }
}

#[inline(never)]
fn long_header(out: &mut BytesMut, kind: u8, n: usize) {
    let mut num = itoa::Buffer::new();
    let s = num.format(n);
    out.reserve(s.len() + 3);
    out.put_u8(kind);
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

fn line(out: &mut BytesMut, kind: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(kind);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, kind: u8, s: &[u8]) {
    header(out, kind, s.len());
    out.reserve(s.len() + 2);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// Appends the wire form of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => line(out, b'+', s),
        Frame::Error(s) => line(out, b'-', s),
        Frame::Integer(n) => {
            let mut num = itoa::Buffer::new();
            line(out, b':', num.format(*n).as_bytes())
        }
        Frame::Bulk(s) => bulk(out, b'$', s),
        Frame::NullBulk => out.put_slice(b"$-1\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Null => out.put_slice(b"_\r\n"),
        Frame::Boolean(b) => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Double(s) => line(out, b',', s),
        Frame::BigNumber(s) => line(out, b'(', s),
        Frame::BulkError(s) => bulk(out, b'!', s),
        Frame::Verbatim(s) => bulk(out, b'=', s),
        Frame::Array(items) => seq(out, b'*', items),
        Frame::Set(items) => seq(out, b'~', items),
        Frame::Push(items) => seq(out, b'>', items),
        Frame::Map(pairs) => pairs_to(out, b'%', pairs),
        Frame::Attribute(pairs, inner) => {
            pairs_to(out, b'|', pairs);
            encode(inner, out);
        }
    }
}

fn seq(out: &mut BytesMut, kind: u8, items: &[Frame]) {
    header(out, kind, items.len());
    for f in items {
        encode(f, out);
    }
}

fn pairs_to(out: &mut BytesMut, kind: u8, pairs: &[(Frame, Frame)]) {
    header(out, kind, pairs.len());
    for (k, v) in pairs {
        encode(k, out);
        encode(v, out);
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    out.reserve(encode_command_len(args));
    header(out, b'*', args.len());
    for a in args {
        bulk(out, b'$', a.as_ref());
    }
}

/// The exact number of bytes [`encode_command`] writes for `args`.
pub fn encode_command_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    fn digits(mut n: usize) -> usize {
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    }
    3 + digits(args.len())
        + args
            .iter()
            .map(|a| {
                let l = a.as_ref().len();
                5 + digits(l) + l
            })
            .sum::<usize>()
}
