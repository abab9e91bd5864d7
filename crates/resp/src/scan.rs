//! Measuring a frame without building it: the check half of check-then-parse.
//!
//! `scan` walks one frame iteratively (an explicit stack of remaining element counts, so deep or
//! wide input cannot blow the call stack) and allocates nothing. It never copies payloads: a bulk
//! string is checked by its length and trailing CRLF alone.

use crate::error::{ErrorKind, ParseError};

/// Input limits, like Redis's own `proto-max-bulk-len` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string payload (Redis default: 512 MB).
    pub max_bulk_len: usize,
    /// Most elements in one aggregate (a map counts its pairs).
    pub max_elements: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
    /// Longest inline command line (Redis: 64 KB).
    pub max_inline_len: usize,
    /// Take any content on a simple line (integer, double, big number, boolean, null) as it
    /// comes: for replies from Redis, which a script can shape (a big number `123  123`), and
    /// which are forwarded as they came.
    pub any_line: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: i32::MAX as usize,
            max_depth: 128,
            max_inline_len: 64 * 1024,
            any_line: false,
        }
    }
}

impl Limits {
    /// No limit at all, for replies from Redis: whatever Redis sends, the proxy forwards, bound
    /// only by memory and output-buffer settings. [`scan`] stays iterative at any depth (open
    /// aggregates past [`INLINE_DEPTH`] cost 8 bytes each on the heap, and each took at least
    /// 4 bytes of input); building a [`crate::Frame`] tree is recursive, so never
    /// [`crate::parse_frame`] with these.
    pub const UNBOUNDED: Limits = Limits {
        max_bulk_len: usize::MAX,
        max_elements: usize::MAX,
        max_depth: usize::MAX,
        max_inline_len: usize::MAX,
        any_line: true,
    };
}

/// Finds the CRLF ending the line that starts at `from`; returns the index of the CR.
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rel = memchr_lf(&buf[from.min(buf.len())..])?;
    let lf = from + rel;
    if lf > from && buf[lf - 1] == b'\r' {
        Some(lf - 1)
    } else {
        // A bare LF ends the line too early: report it as the line's end so the caller
        // rejects the frame rather than waiting for bytes that will never come.
        Some(lf)
    }
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// The longest valid integer or length line: `-9223372036854775808`.
pub(crate) const MAX_NUMBER_LINE: usize = 20;

/// Parses a decimal i64 the way Redis's `string2ll` does, so that every accepted text is the
/// one [`crate::encode`] writes back: an optional `-`, then `0` alone or digits without a
/// leading zero. `+5`, `007` and `-0` are rejected.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub((d - b'0') as i64)?
        } else {
            v.checked_add((d - b'0') as i64)?
        };
    }
    Some(v)
}

pub(crate) fn valid_double(s: &[u8]) -> bool {
    let unsigned = match s.first() {
        Some(b'-') | Some(b'+') => &s[1..],
        _ => s,
    };
    // Rust also accepts "infinity"; RESP3 spells it inf. Checked without allocating.
    if unsigned.eq_ignore_ascii_case(b"infinity") {
        return false;
    }
    match std::str::from_utf8(s) {
        Ok(t) => !t.is_empty() && t.parse::<f64>().is_ok(),
        Err(_) => false,
    }
}

pub(crate) fn valid_big_number(s: &[u8]) -> bool {
    let digits = match s.first() {
        Some(b'-') | Some(b'+') => &s[1..],
        _ => s,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A frame header: the type byte and the line after it.
pub(crate) struct Header<'a> {
    pub kind: u8,
    pub line: &'a [u8],
    /// Offset just past the header's CRLF.
    pub next: usize,
}

/// Reads the header line at `pos`; `Ok(None)` when the line is not complete yet.
pub(crate) fn header(buf: &[u8], pos: usize) -> Result<Option<Header<'_>>, ParseError> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some(cr) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    if buf[cr] != b'\r' {
        return Err(ParseError::new(ErrorKind::InvalidLine, cr));
    }
    let line = &buf[pos + 1..cr];
    if let Some(i) = line.iter().position(|&b| b == b'\r') {
        return Err(ParseError::new(ErrorKind::InvalidLine, pos + 1 + i));
    }
    Ok(Some(Header {
        kind: buf[pos],
        line,
        next: cr + 2,
    }))
}

/// True for the bytes that start a RESP2 or RESP3 frame.
pub(crate) fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'|'
            | b'>'
    )
}

/// Checks the incomplete header line at `pos` (no LF yet) for what can already be told wrong:
/// a line that can only hold a number but is longer than any number, a boolean or null with
/// content. This stops a peer from making us buffer an endless header.
pub(crate) fn check_partial_header(buf: &[u8], pos: usize) -> Result<(), ParseError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(());
    };
    let line = &buf[pos + 1..];
    // A trailing CR may be the start of the CRLF.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(i) = memchr::memchr(b'\r', line) {
        return Err(ParseError::new(ErrorKind::InvalidLine, pos + 1 + i));
    }
    let (max, kind) = match kind {
        b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'|' | b'>' => {
            (MAX_NUMBER_LINE, ErrorKind::InvalidLength)
        }
        b':' => (MAX_NUMBER_LINE, ErrorKind::InvalidInteger),
        b'#' => (1, ErrorKind::InvalidBoolean),
        b'_' => (0, ErrorKind::InvalidNull),
        _ => return Ok(()),
    };
    if line.len() > max {
        return Err(ParseError::new(kind, pos + 1));
    }
    Ok(())
}

/// Parses an aggregate or bulk length line: `-1` gives `None` (a RESP2 null).
pub(crate) fn length(line: &[u8], at: usize) -> Result<Option<u64>, ParseError> {
    if line == b"?" {
        return Err(ParseError::new(ErrorKind::Streamed, at));
    }
    match parse_i64(line) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err(ParseError::new(ErrorKind::InvalidLength, at)),
    }
}

/// Checks a simple (line-only) frame's content.
pub(crate) fn check_line(kind: u8, line: &[u8], at: usize) -> Result<(), ParseError> {
    let bad = |k| Err(ParseError::new(k, at));
    match kind {
        b'+' | b'-' => Ok(()),
        b':' if parse_i64(line).is_none() => bad(ErrorKind::InvalidInteger),
        b',' if !valid_double(line) => bad(ErrorKind::InvalidDouble),
        b'(' if !valid_big_number(line) => bad(ErrorKind::InvalidBigNumber),
        b'#' if line != b"t" && line != b"f" => bad(ErrorKind::InvalidBoolean),
        b'_' if !line.is_empty() => bad(ErrorKind::InvalidNull),
        _ => Ok(()),
    }
}

/// The length of the frame at the start of `buf` when its header alone says it: a bulk,
/// blob-error or verbatim string whose length line is complete. `None` for anything else (an
/// aggregate, a simple type, a header still arriving, a null or a malformed length).
pub fn announced(buf: &[u8]) -> Option<usize> {
    if !matches!(buf.first(), Some(b'$' | b'!' | b'=')) {
        return None;
    }
    let cr = buf.iter().take(22).position(|&c| c == b'\r')?;
    let n = usize::try_from(parse_i64(&buf[1..cr])?).ok()?;
    (cr + 2).checked_add(n)?.checked_add(2)
}

/// Measures the frame at the start of `buf`.
///
/// Returns `Ok(Some(len))` when `buf[..len]` is one complete, valid frame, `Ok(None)` when more
/// bytes are needed, and an error (offset relative to `buf`) for malformed or over-limit input.
/// Allocates nothing while the nesting stays within [`INLINE_DEPTH`] (32) levels; deeper
/// frames, up to `max_depth`, cost one small heap allocation.
pub fn scan(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    // Remaining element counts of the open aggregates, innermost last. Capped by max_depth.
    let mut stack = Stack::new();
    let mut pos = 0;
    loop {
        // Reject a wrong type byte at once rather than when its line is complete.
        if let Some(&b) = buf.get(pos) {
            if !is_type_byte(b) {
                return Err(ParseError::new(ErrorKind::InvalidTypeByte(b), pos));
            }
        }
        let Some(h) = header(buf, pos)? else {
            check_partial_header(buf, pos)?;
            return Ok(None);
        };
        let at = pos;
        pos = h.next;
        match h.kind {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' if limits.any_line => {}
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => check_line(h.kind, h.line, at + 1)?,
            b'$' | b'!' | b'=' => {
                let Some(len) = length(h.line, at + 1)? else {
                    if h.kind != b'$' {
                        return Err(ParseError::new(ErrorKind::InvalidLength, at + 1));
                    }
                    if stack.complete_item() {
                        return Ok(Some(pos));
                    }
                    continue;
                };
                let end = bulk_end(pos, len, limits, at + 1)?;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ParseError::new(ErrorKind::MissingCrlf, end));
                }
                if h.kind == b'=' && (len < 4 || buf[pos + 3] != b':') {
                    return Err(ParseError::new(ErrorKind::InvalidVerbatim, pos));
                }
                pos = end + 2;
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(n) = length(h.line, at + 1)? else {
                    if h.kind != b'*' {
                        return Err(ParseError::new(ErrorKind::InvalidLength, at + 1));
                    }
                    if stack.complete_item() {
                        return Ok(Some(pos));
                    }
                    continue;
                };
                if n > limits.max_elements as u64 {
                    let max = limits.max_elements;
                    return Err(ParseError::new(
                        ErrorKind::TooManyElements { len: n, max },
                        at + 1,
                    ));
                }
                if stack.len() >= limits.max_depth {
                    let max = limits.max_depth;
                    return Err(ParseError::new(ErrorKind::TooDeep { max }, at));
                }
                // Maps and attributes hold pairs; an attribute also annotates the next frame.
                // `n` is at most i64::MAX, so `2n + 1` fits in a u64.
                let items = match h.kind {
                    b'%' => n * 2,
                    b'|' => n * 2 + 1,
                    _ => n,
                };
                if items > 0 {
                    stack.push(items);
                    continue;
                }
            }
            other => return Err(ParseError::new(ErrorKind::InvalidTypeByte(other), at)),
        }
        if stack.complete_item() {
            return Ok(Some(pos));
        }
    }
}

/// Checks a bulk length against the limit and returns where its payload ends (`start + len`),
/// without overflowing on 32-bit targets or with a limit of `usize::MAX`.
pub(crate) fn bulk_end(
    start: usize,
    len: u64,
    limits: &Limits,
    at: usize,
) -> Result<usize, ParseError> {
    let max = limits.max_bulk_len;
    let too_large = ParseError::new(ErrorKind::BulkTooLarge { len, max }, at);
    if len > max as u64 {
        return Err(too_large);
    }
    // `len <= max_bulk_len`, a usize, so the cast is exact; the payload, its CRLF and the
    // bytes before it must be addressable.
    start
        .checked_add(len as usize)
        .filter(|end| end.checked_add(2).is_some())
        .ok_or(too_large)
}

/// How many open aggregates [`scan`] tracks without allocating.
pub const INLINE_DEPTH: usize = 32;

/// The open aggregates' remaining counts: on the call stack up to [`INLINE_DEPTH`], then on the
/// heap.
struct Stack {
    inline: [u64; INLINE_DEPTH],
    len: usize,
    spill: Vec<u64>,
}

impl Stack {
    fn new() -> Self {
        Stack {
            inline: [0; INLINE_DEPTH],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, items: u64) {
        if self.len < INLINE_DEPTH {
            self.inline[self.len] = items;
        } else {
            self.spill.push(items);
        }
        self.len += 1;
    }

    fn top(&mut self) -> &mut u64 {
        if self.len > INLINE_DEPTH {
            self.spill.last_mut().expect("spilled stack is non-empty")
        } else {
            &mut self.inline[self.len - 1]
        }
    }

    /// Records that one item ended, closing every aggregate it completes; true when the
    /// outermost frame is complete.
    fn complete_item(&mut self) -> bool {
        while self.len > 0 {
            let top = self.top();
            *top -= 1;
            if *top > 0 {
                return false;
            }
            if self.len > INLINE_DEPTH {
                self.spill.pop();
            }
            self.len -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_string_frame_announces_its_length_and_nothing_else_does() {
        assert_eq!(announced(b"$5\r\nhel"), Some(11));
        assert_eq!(announced(b"$0\r\n"), Some(6));
        assert_eq!(announced(b"!3\r\nERR\r\n"), Some(9));
        assert_eq!(announced(b"=100000\r\ntxt:"), Some(100_011));
        for other in [
            &b"$5"[..],
            b"$-1\r\n",
            b"$x\r\n",
            b"*2\r\n$1\r\na\r\n",
            b"+OK\r\n",
            b":12\r\n",
            b"",
            b"$99999999999999999999999\r\n",
        ] {
            assert_eq!(announced(other), None, "{other:?}");
        }
    }

    use super::*;

    #[test]
    fn lines_from_redis_are_taken_as_they_come() {
        let odd = b"(123  123\r\n";
        assert!(scan(odd, &Limits::default()).is_err());
        assert_eq!(scan(odd, &Limits::UNBOUNDED), Ok(Some(odd.len())));
    }

    #[test]
    fn bulk_end_does_not_overflow() {
        let unlimited = Limits {
            max_bulk_len: usize::MAX,
            ..Limits::default()
        };
        // On a 32-bit target a header near the end of a large buffer can announce a length
        // whose end is past usize::MAX; that must be an error, not a wrapped offset.
        let at_end = usize::MAX - 10;
        assert_eq!(
            bulk_end(at_end, 100, &unlimited, 7),
            Err(ParseError::new(
                ErrorKind::BulkTooLarge {
                    len: 100,
                    max: usize::MAX
                },
                7
            ))
        );
        assert!(bulk_end(at_end, 9, &unlimited, 7).is_err());
        assert_eq!(bulk_end(at_end, 8, &unlimited, 7), Ok(usize::MAX - 2));
        assert_eq!(bulk_end(4, 3, &Limits::default(), 1), Ok(7));
    }

    #[test]
    fn parse_i64_matches_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b"-01",
            b" 1",
            b"1 ",
            b"1e3",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stack_spills_and_unwinds() {
        let mut s = Stack::new();
        for _ in 0..INLINE_DEPTH + 10 {
            s.push(1);
        }
        assert_eq!(s.len(), INLINE_DEPTH + 10);
        assert!(s.complete_item());
        assert_eq!(s.len(), 0);
        s.push(2);
        assert!(!s.complete_item());
        assert!(s.complete_item());
    }
}
