//! Client requests: a multibulk array of bulk strings, or an inline command line.
//!
//! Accepts what Redis accepts from a client and nothing more. An incomplete command consumes
//! nothing and, as a multibulk, allocates nothing; a multibulk's arguments are `Bytes` views of
//! the read buffer, never copies (an inline command's are built, as quotes and escapes rewrite
//! them).

use bytes::{Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError};
use crate::scan::{bulk_end, check_partial_header, header, length, Limits};

/// Splits one command off the front of `buf` and returns its arguments.
///
/// Accepts what Redis accepts from clients: `*N` followed by N bulk strings, or an inline line
/// (`PING\r\n`, `set k "a b"\n`). `Ok(Some(vec![]))` is an empty command (a blank line, `*0`),
/// which Redis ignores. `Ok(None)` leaves `buf` untouched until more bytes arrive.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ParseError> {
    let mut args = Vec::new();
    Ok(parse_command_into(buf, limits, &mut args)?.map(|_| args))
}

/// [`parse_command`] into a caller's vector, so that a connection reusing one allocates nothing
/// per command. `args` is cleared first; `Ok(Some(_))` with `args` empty is an empty command.
/// `Ok(Some(Some(frame)))` also hands back the command's own bytes when it came as a multibulk
/// (what a proxy can pass on without encoding it again); an inline command has none.
pub fn parse_command_into(
    buf: &mut BytesMut,
    limits: &Limits,
    args: &mut Vec<Bytes>,
) -> Result<Option<Option<Bytes>>, ParseError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, limits, args),
        Some(_) => {
            let parsed = inline(buf, limits)?;
            Ok(parsed.map(|mut a| {
                args.append(&mut a);
                None
            }))
        }
    }
}

/// How many argument spans the first pass of [`multibulk`] keeps for the second.
const SPANS: usize = 16;

fn multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
    args: &mut Vec<Bytes>,
) -> Result<Option<Option<Bytes>>, ParseError> {
    let Some(h) = header(buf, 0)? else {
        check_partial_header(buf, 0)?;
        return Ok(None);
    };
    let first = h.next;
    let n = match length(h.line, 1)? {
        None | Some(0) => {
            let _ = buf.split_to(first);
            return Ok(Some(None));
        }
        Some(n) if n > limits.max_elements as u64 => {
            let max = limits.max_elements;
            return Err(ParseError::new(
                ErrorKind::TooManyElements { len: n, max },
                1,
            ));
        }
        Some(n) => n as usize,
    };
    // First pass: measure, so that an incomplete command costs no allocation. The spans of
    // the first few arguments are kept, so a short command is not located twice.
    let mut spans = [(0usize, 0usize); SPANS];
    let mut pos = first;
    for i in 0..n {
        let Some((start, end)) = bulk_at(buf, pos, limits)? else {
            return Ok(None);
        };
        debug_assert!(start <= end);
        if let Some(span) = spans.get_mut(i) {
            *span = (start, end);
        }
        pos = end + 2;
    }
    let data = buf.split_to(pos).freeze();
    args.reserve(n);
    let mut pos = first;
    for i in 0..n {
        let (start, end) = match spans.get(i) {
            Some(&span) => span,
            None => bulk_at(&data, pos, limits)?
                .ok_or(ParseError::new(ErrorKind::InvalidLength, pos))?,
        };
        args.push(data.slice(start..end));
        pos = end + 2;
    }
    Ok(Some(Some(data)))
}

/// Locates the bulk string at `pos`: payload start and end, `None` if incomplete.
fn bulk_at(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<(usize, usize)>, ParseError> {
    match buf.get(pos) {
        None => return Ok(None),
        Some(b'$') => {}
        Some(&b) => return Err(ParseError::new(ErrorKind::ExpectedBulk(b), pos)),
    }
    let (len, start) = match canonical_length(buf, pos + 1) {
        Some(found) => found,
        None => {
            let Some(h) = header(buf, pos)? else {
                check_partial_header(buf, pos)?;
                return Ok(None);
            };
            let len = length(h.line, pos + 1)?
                .ok_or(ParseError::new(ErrorKind::InvalidLength, pos + 1))?;
            (len, h.next)
        }
    };
    let end = bulk_end(start, len, limits, pos + 1)?;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::new(ErrorKind::MissingCrlf, end));
    }
    Ok(Some((start, end)))
}

/// The common case of a length line, read without searching for its end: canonical decimal
/// digits (no sign, no leading zero, at most 18 of them) then CRLF. Returns the length and
/// where the payload starts; `None` for anything else, incomplete lines included, which the
/// general path then judges, so this changes no outcome, only its cost.
#[inline]
fn canonical_length(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let digits = buf.get(at..)?;
    let mut n: u64 = 0;
    let mut i = 0;
    while let Some(&b) = digits.get(i) {
        if !b.is_ascii_digit() || i == 18 {
            break;
        }
        n = n * 10 + u64::from(b - b'0');
        i += 1;
    }
    let canonical = i == 1 || (i > 1 && digits[0] != b'0');
    (canonical && digits.get(i..i + 2) == Some(b"\r\n")).then_some((n, at + i + 2))
}

fn inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ParseError> {
    let max = limits.max_inline_len;
    // Look no further than a line may reach: an LF at index `max` still ends a legal line.
    let window = &buf[..buf.len().min(max.saturating_add(1))];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        if buf.len() > max {
            return Err(ParseError::new(ErrorKind::InlineTooLong { max }, max));
        }
        return Ok(None);
    };
    let line = buf.split_to(lf + 1);
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    split_inline(line)
        .map(Some)
        .ok_or(ParseError::new(ErrorKind::UnbalancedQuotes, 0))
}

/// Splits an inline command line into arguments the way redis-cli and Redis do: whitespace
/// separates, `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`.
/// Returns `None` for unbalanced quotes or a closing quote not followed by a space.
pub fn split_inline(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        loop {
            match line.get(i) {
                None => break,
                Some(&c) if is_space(c) => break,
                Some(b'"') => i = quoted(line, i + 1, b'"', &mut cur)?,
                Some(b'\'') => i = quoted(line, i + 1, b'\'', &mut cur)?,
                Some(&c) => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(cur));
    }
}

/// Reads a quoted run starting after the opening quote; returns the index after the closing one.
fn quoted(line: &[u8], mut i: usize, q: u8, out: &mut Vec<u8>) -> Option<usize> {
    loop {
        let c = *line.get(i)?;
        if c == q {
            // The closing quote must end the argument.
            match line.get(i + 1) {
                None => return Some(i + 1),
                Some(&n) if is_space(n) => return Some(i + 1),
                Some(_) => return None,
            }
        }
        if c == b'\\' && i + 1 < line.len() {
            let n = line[i + 1];
            if q == b'\'' {
                if n == b'\'' {
                    out.push(b'\'');
                    i += 2;
                    continue;
                }
            } else if n == b'x' && i + 3 < line.len() && is_hex_pair(line[i + 2], line[i + 3]) {
                out.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                i += 4;
                continue;
            } else {
                out.push(match n {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
}

/// C's `isspace`, which Redis's `sdssplitargs` uses: unlike `u8::is_ascii_whitespace` it
/// includes the vertical tab.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn is_hex_pair(a: u8, b: u8) -> bool {
    a.is_ascii_hexdigit() && b.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_lengths_take_the_short_path_and_nothing_else_does() {
        assert_eq!(canonical_length(b"$3\r\nabc", 1), Some((3, 4)));
        assert_eq!(canonical_length(b"$0\r\n", 1), Some((0, 4)));
        assert_eq!(canonical_length(b"$1234\r\n", 1), Some((1234, 7)));
        let long = b"$999999999999999999\r\n";
        assert_eq!(
            canonical_length(long, 1),
            Some((999_999_999_999_999_999, 21))
        );
        // Left to the general path, which judges them as it would without the short path.
        for odd in [
            &b"$01\r\n"[..],
            b"$-1\r\n",
            b"$+1\r\n",
            b"$\r\n",
            b"$12",
            b"$12\r",
            b"$12\n",
            b"$1x\r\n",
            b"$1234567890123456789\r\n",
        ] {
            assert_eq!(canonical_length(odd, 1), None, "{odd:?}");
        }
    }
}
