//! Building a [`Frame`] tree from a frame that [`scan`] has measured.
//!
//! The frame's bytes are split off the read buffer and frozen once; every string in the tree is a
//! `Bytes::slice` of them, so payloads are never copied.

use bytes::{Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError};
use crate::frame::Frame;
use crate::scan::{header, length, parse_i64, scan, Limits};

/// Splits one complete frame off the front of `buf` and parses it.
///
/// `Ok(None)` leaves `buf` untouched when the frame is not complete yet.
pub fn parse_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ParseError> {
    let Some(len) = scan(buf, limits)? else {
        return Ok(None);
    };
    let data = buf.split_to(len).freeze();
    let (frame, _) = build(&data, 0)?;
    Ok(Some(frame))
}

/// Builds the frame at `pos` of an already scanned buffer; returns it and the offset after it.
fn build(data: &Bytes, pos: usize) -> Result<(Frame, usize), ParseError> {
    let h = header(data, pos)?.ok_or(ParseError::new(ErrorKind::InvalidLength, pos))?;
    let next = h.next;
    let line = || data.slice(pos + 1..next - 2);
    let frame = match h.kind {
        b'+' => Frame::Simple(line()),
        b'-' => Frame::Error(line()),
        b':' => Frame::Integer(
            parse_i64(h.line).ok_or(ParseError::new(ErrorKind::InvalidInteger, pos + 1))?,
        ),
        b',' => Frame::Double(line()),
        b'(' => Frame::BigNumber(line()),
        b'#' => Frame::Boolean(h.line == b"t"),
        b'_' => Frame::Null,
        b'$' | b'!' | b'=' => {
            let Some(len) = length(h.line, pos + 1)? else {
                return Ok((Frame::NullBulk, next));
            };
            let end = next + len as usize;
            let payload = data.slice(next..end);
            let frame = match h.kind {
                b'$' => Frame::Bulk(payload),
                b'!' => Frame::BulkError(payload),
                _ => Frame::Verbatim(payload),
            };
            return Ok((frame, end + 2));
        }
        b'*' | b'~' | b'>' => {
            let Some(n) = length(h.line, pos + 1)? else {
                return Ok((Frame::NullArray, next));
            };
            let (items, end) = build_seq(data, next, n)?;
            let frame = match h.kind {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                _ => Frame::Push(items),
            };
            return Ok((frame, end));
        }
        b'%' | b'|' => {
            let n = length(h.line, pos + 1)?.unwrap_or(0);
            let (pairs, end) = build_pairs(data, next, n)?;
            if h.kind == b'%' {
                return Ok((Frame::Map(pairs), end));
            }
            let (inner, end) = build(data, end)?;
            return Ok((Frame::Attribute(pairs, Box::new(inner)), end));
        }
        other => return Err(ParseError::new(ErrorKind::InvalidTypeByte(other), pos)),
    };
    Ok((frame, next))
}

fn build_seq(data: &Bytes, mut pos: usize, n: u64) -> Result<(Vec<Frame>, usize), ParseError> {
    // `n` was checked against the buffer by `scan`: each element takes at least 3 bytes.
    let mut items = Vec::with_capacity((n as usize).min(data.len() / 3));
    for _ in 0..n {
        let (f, next) = build(data, pos)?;
        items.push(f);
        pos = next;
    }
    Ok((items, pos))
}

type Pairs = Vec<(Frame, Frame)>;

fn build_pairs(data: &Bytes, mut pos: usize, n: u64) -> Result<(Pairs, usize), ParseError> {
    let mut pairs = Vec::with_capacity((n as usize).min(data.len() / 6));
    for _ in 0..n {
        let (k, next) = build(data, pos)?;
        let (v, next) = build(data, next)?;
        pairs.push((k, v));
        pos = next;
    }
    Ok((pairs, pos))
}
