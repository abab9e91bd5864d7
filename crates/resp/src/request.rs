//! Client requests: a multibulk array of bulk strings, or an inline command line, read the way
//! Redis 7.0's `processMultibulkBuffer` and `processInlineBuffer` read them.
//!
//! Accepts what Redis accepts from a client and nothing more, and refuses it under the same
//! condition with the same words ([`protocol_error_reply`]): the proxy forwards a client's
//! bytes, so it must not read them any other way than Redis will. An incomplete command
//! consumes nothing and allocates nothing. A [`CommandReader`] remembers how far it got, so a
//! command trickling in over many reads is examined once, not once per read; its memory is a
//! few words whatever the command announces. A multibulk's arguments are `Bytes` views of the
//! read buffer, never copies (an inline command's are built, as quotes and escapes rewrite
//! them).

use bytes::{Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError};
use crate::inline::split_inline;
use crate::scan::{bulk_end, parse_i64, Limits};

/// Splits one command off the front of `buf` and returns its arguments.
///
/// Accepts what Redis accepts from clients: `*N` followed by N bulk strings, or an inline line
/// (`PING\r\n`, `set k "a b"\n`). `Ok(Some(vec![]))` is an empty command (a blank line, `*0`,
/// `*-5`), which Redis ignores. `Ok(None)` leaves `buf` untouched until more bytes arrive.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ParseError> {
    let mut args = Vec::new();
    Ok(parse_command_into(buf, limits, &mut args)?.map(|_| args))
}

/// [`parse_command`] into a caller's vector; see [`CommandReader::read`]. A connection should
/// keep a [`CommandReader`] instead, so that an incomplete command is not examined again from
/// its start on the next read.
pub fn parse_command_into(
    buf: &mut BytesMut,
    limits: &Limits,
    args: &mut Vec<Bytes>,
) -> Result<Option<Option<Bytes>>, ParseError> {
    CommandReader::new().read(buf, limits, args)
}

/// How many argument spans a reader keeps, so that a short command is located only once.
const SPANS: usize = 16;

/// Reads commands off the front of one connection's buffer, resuming an incomplete command
/// where the last call stopped (Redis keeps the same state in its client: `multibulklen`,
/// `bulklen`, `qb_pos`).
///
/// The reader assumes that only it consumes the buffer's front: bytes may be appended between
/// calls, but if anything else splits the buffer, call [`CommandReader::reset`].
#[derive(Debug, Clone)]
pub struct CommandReader {
    /// Arguments the `*N` line announced; 0 while that line has not been read.
    argc: usize,
    /// Arguments located so far.
    located: usize,
    /// Where the next argument's header starts.
    pos: usize,
    /// The payload span of the argument whose header was read but whose payload is incomplete.
    bulk: Option<(usize, usize)>,
    /// How far the search for the end of the line at `pos` has looked.
    searched: usize,
    /// That search met a NUL: like Redis's `strchr`, it will never find the line's end.
    stuck: bool,
    /// Payload spans of the first [`SPANS`] arguments.
    spans: [(usize, usize); SPANS],
    /// Bytes examined since the reader was made: searched for a line end, parsed as a number
    /// or split as an inline line. Payloads are skipped, not examined.
    scanned: u64,
}

impl Default for CommandReader {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandReader {
    pub fn new() -> Self {
        CommandReader {
            argc: 0,
            located: 0,
            pos: 0,
            bulk: None,
            searched: 0,
            stuck: false,
            spans: [(0, 0); SPANS],
            scanned: 0,
        }
    }

    /// Forgets the command in progress (the buffer's front was consumed by someone else).
    pub fn reset(&mut self) {
        self.argc = 0;
        self.located = 0;
        self.pos = 0;
        self.bulk = None;
        self.searched = 0;
        self.stuck = false;
    }

    /// Bytes examined so far, over every call: a measure of work that tests hold against the
    /// bytes received.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Splits one command off the front of `buf` into `args` (cleared first).
    ///
    /// `Ok(Some(_))` with `args` empty is an empty command, which Redis ignores.
    /// `Ok(Some(Some(frame)))` also hands back the command's own bytes when it came as a
    /// multibulk (what a proxy can pass on without encoding it again); an inline command has
    /// none. `Ok(None)` consumes nothing and remembers how far it got. After an error the
    /// connection should be closed, as Redis closes it.
    pub fn read(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        args: &mut Vec<Bytes>,
    ) -> Result<Option<Option<Bytes>>, ParseError> {
        args.clear();
        if self.pos > buf.len() || self.searched > buf.len() {
            self.reset();
        }
        let result = match buf.first() {
            None => return Ok(None),
            Some(b'*') => self.multibulk(buf, limits, args),
            Some(_) => self.inline(buf, limits, args),
        };
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    fn multibulk(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        args: &mut Vec<Bytes>,
    ) -> Result<Option<Option<Bytes>>, ParseError> {
        if self.argc == 0 {
            let too_long = ErrorKind::MultibulkCountTooLong {
                max: limits.max_inline_len,
            };
            let Some(cr) = self.line_end(buf, 0, b'\r', limits, too_long)? else {
                return Ok(None);
            };
            self.scanned += cr as u64;
            let n = match parse_i64(&buf[1..cr]) {
                None => return Err(ParseError::new(ErrorKind::InvalidLength, 1)),
                // Redis ignores a command of no arguments, negative counts included.
                Some(n) if n <= 0 => {
                    let _ = buf.split_to(cr + 2);
                    return Ok(Some(None));
                }
                Some(n) if n as u64 > limits.max_elements as u64 => {
                    let (len, max) = (n as u64, limits.max_elements);
                    return Err(ParseError::new(ErrorKind::TooManyElements { len, max }, 1));
                }
                Some(n) => n as usize,
            };
            self.argc = n;
            self.pos = cr + 2;
            self.searched = self.pos;
        }
        while self.located < self.argc {
            let (start, end) = match self.bulk {
                Some(span) => span,
                None => {
                    let Some(span) = self.bulk_header(buf, limits)? else {
                        return Ok(None);
                    };
                    self.bulk = Some(span);
                    span
                }
            };
            // Redis skips the two bytes after a payload without looking at them.
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if let Some(slot) = self.spans.get_mut(self.located) {
                *slot = (start, end);
            }
            self.located += 1;
            self.pos = end + 2;
            self.searched = self.pos;
            self.stuck = false;
            self.bulk = None;
        }
        let data = buf.split_to(self.pos).freeze();
        self.collect(&data, args);
        Ok(Some(Some(data)))
    }

    /// Reads the header of the argument at `pos`: its payload span, `None` if incomplete.
    fn bulk_header(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(usize, usize)>, ParseError> {
        let pos = self.pos;
        // The short path only for a header not searched before: one that trickles in is
        // searched on from where the last call stopped instead.
        let fresh = self.searched == pos;
        let short = if fresh {
            canonical_length(buf, pos)
        } else {
            None
        };
        let (len, start) = match short {
            Some(found) => {
                self.scanned += (found.1 - pos) as u64;
                found
            }
            None => {
                if fresh {
                    // What the short path looked at before it gave up.
                    self.scanned += (buf.len() - pos).min(21) as u64;
                }
                let too_long = ErrorKind::BulkCountTooLong {
                    max: limits.max_inline_len,
                };
                let Some(cr) = self.line_end(buf, pos, b'\r', limits, too_long)? else {
                    return Ok(None);
                };
                self.scanned += (cr - pos) as u64;
                if buf[pos] != b'$' {
                    return Err(ParseError::new(ErrorKind::ExpectedBulk(buf[pos]), pos));
                }
                let len = match parse_i64(&buf[pos + 1..cr]) {
                    Some(n) if n >= 0 => n as u64,
                    _ => return Err(ParseError::new(ErrorKind::InvalidLength, pos + 1)),
                };
                (len, cr + 2)
            }
        };
        let end = bulk_end(start, len, limits, pos + 1)?;
        Ok(Some((start, end)))
    }

    /// Finds the end of the line that starts at `pos` as Redis's `strchr` does: the first
    /// `needle` before any NUL. Searches on from where the last call stopped. With no end in
    /// sight, more than `max_inline_len` bytes after `pos` are `too_long`; so is an end found
    /// further than that, which a client sending at Redis's pace would have been refused for.
    /// A CR ends a count line only once one more byte (Redis skips two) has arrived.
    fn line_end(
        &mut self,
        buf: &[u8],
        pos: usize,
        needle: u8,
        limits: &Limits,
        too_long: ErrorKind,
    ) -> Result<Option<usize>, ParseError> {
        let max = limits.max_inline_len;
        let window = buf.len().min(pos.saturating_add(max).saturating_add(1));
        let from = self.searched.max(pos);
        if !self.stuck && from < window {
            let hay = &buf[from..window];
            match memchr::memchr2(needle, 0, hay) {
                Some(i) if hay[i] == needle => {
                    self.scanned += i as u64 + 1;
                    self.searched = from + i;
                    let end = from + i;
                    let more = if needle == b'\r' { 2 } else { 1 };
                    return Ok((end + more <= buf.len()).then_some(end));
                }
                Some(i) => {
                    self.scanned += i as u64 + 1;
                    self.stuck = true;
                }
                None => {
                    self.scanned += hay.len() as u64;
                    self.searched = window;
                }
            }
        }
        if buf.len() - pos > max {
            return Err(ParseError::new(too_long, pos + max));
        }
        Ok(None)
    }

    /// Builds the arguments of a complete multibulk: the first few from the kept spans, the
    /// rest by locating them again (each once more, so a command costs at most twice its
    /// header bytes however many reads it took).
    fn collect(&mut self, data: &Bytes, args: &mut Vec<Bytes>) {
        // All `argc` arguments are in `data`, at least four bytes each: reserving for them
        // costs memory in proportion to the bytes received.
        args.reserve(self.argc);
        let kept = self.argc.min(SPANS);
        for &(start, end) in &self.spans[..kept] {
            args.push(data.slice(start..end));
        }
        let mut pos = self.spans[kept - 1].1 + 2;
        for _ in kept..self.argc {
            let (start, end) = locate_again(data, pos, &mut self.scanned);
            args.push(data.slice(start..end));
            pos = end + 2;
        }
    }

    fn inline(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        args: &mut Vec<Bytes>,
    ) -> Result<Option<Option<Bytes>>, ParseError> {
        let too_long = ErrorKind::InlineTooLong {
            max: limits.max_inline_len,
        };
        let Some(lf) = self.line_end(buf, 0, b'\n', limits, too_long)? else {
            return Ok(None);
        };
        let line = buf.split_to(lf + 1);
        self.scanned += line.len() as u64;
        let line = &line[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut split =
            split_inline(line).ok_or(ParseError::new(ErrorKind::UnbalancedQuotes, 0))?;
        args.append(&mut split);
        Ok(Some(None))
    }
}

/// Locates the argument at `pos` of a command already read in full: its payload span.
fn locate_again(data: &[u8], pos: usize, scanned: &mut u64) -> (usize, usize) {
    let (len, start) = canonical_length(data, pos).unwrap_or_else(|| {
        // The reader accepted this header: a `$`, a length, then a CR before any NUL.
        let cr = memchr::memchr(b'\r', &data[pos..]).map_or(data.len(), |i| pos + i);
        let len = parse_i64(&data[pos + 1..cr]).unwrap_or(0) as u64;
        (len, cr + 2)
    });
    *scanned += (start - pos) as u64;
    (start, start + len as usize)
}

/// The common case of a bulk header at `at`, read without searching for its end: `$`,
/// canonical decimal digits (no sign, no leading zero, at most 18 of them), then CRLF. Returns
/// the length and where the payload starts; `None` for anything else, incomplete lines
/// included, which the general path then judges, so this changes no outcome, only its cost.
#[inline]
fn canonical_length(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let (b'$', digits) = buf.get(at..)?.split_first()? else {
        return None;
    };
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
    (canonical && digits.get(i..i + 2) == Some(b"\r\n")).then_some((n, at + 1 + i + 2))
}

/// Redis's reply to a request this module refused: `-ERR Protocol error: ...\r\n`, worded as
/// `networking.c` words it, CR and LF turned into spaces as Redis's `addReplyErrorFormat`
/// turns them. A non-ASCII byte after `got` is sent as the raw byte, as Redis sends it.
pub fn protocol_error_reply(e: &ParseError) -> Vec<u8> {
    let mut out = b"-ERR Protocol error: ".to_vec();
    match e.kind {
        // The count line is the only one that starts at offset 0, so its number is at 1.
        ErrorKind::InvalidLength if e.offset == 1 => {
            out.extend_from_slice(b"invalid multibulk length")
        }
        ErrorKind::TooManyElements { .. } => out.extend_from_slice(b"invalid multibulk length"),
        ErrorKind::InvalidLength | ErrorKind::BulkTooLarge { .. } => {
            out.extend_from_slice(b"invalid bulk length")
        }
        ErrorKind::ExpectedBulk(b) => {
            let b = if b == b'\r' || b == b'\n' { b' ' } else { b };
            out.extend_from_slice(b"expected '$', got '");
            out.extend_from_slice(&[b, b'\'']);
        }
        ErrorKind::MultibulkCountTooLong { .. } => {
            out.extend_from_slice(b"too big mbulk count string")
        }
        ErrorKind::BulkCountTooLong { .. } => out.extend_from_slice(b"too big bulk count string"),
        ErrorKind::InlineTooLong { .. } => out.extend_from_slice(b"too big inline request"),
        ErrorKind::UnbalancedQuotes => out.extend_from_slice(b"unbalanced quotes in request"),
        other => {
            let text = other.to_string().replace(['\r', '\n'], " ");
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_lengths_take_the_short_path_and_nothing_else_does() {
        assert_eq!(canonical_length(b"$3\r\nabc", 0), Some((3, 4)));
        assert_eq!(canonical_length(b"$0\r\n", 0), Some((0, 4)));
        assert_eq!(canonical_length(b"$1234\r\n", 0), Some((1234, 7)));
        let long = b"$999999999999999999\r\n";
        assert_eq!(
            canonical_length(long, 0),
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
            b"$12\rx",
            b"$1x\r\n",
            b"$1234567890123456789\r\n",
            b":12\r\n",
        ] {
            assert_eq!(canonical_length(odd, 0), None, "{odd:?}");
        }
    }
}
