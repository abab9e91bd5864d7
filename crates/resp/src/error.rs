//! Typed parse errors: what was wrong, and at which byte offset of the input.
//!
//! An error is a `Copy` value: it never allocates and never holds a slice of the input, so
//! returning one costs nothing and carries no more of a peer's bytes than the one it names.

use std::fmt;

/// What made input unparseable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The first byte of a frame is not a RESP type byte.
    InvalidTypeByte(u8),
    /// A length or count is not a valid decimal number, or negative where that is not allowed.
    InvalidLength,
    /// An integer frame (`:`) does not hold a signed 64-bit decimal.
    InvalidInteger,
    /// A double frame (`,`) does not hold a number, `inf`, `-inf` or `nan`.
    InvalidDouble,
    /// A big number frame (`(`) does not hold an optionally signed run of digits.
    InvalidBigNumber,
    /// A boolean frame (`#`) is neither `t` nor `f`.
    InvalidBoolean,
    /// A null frame (`_`) carries content.
    InvalidNull,
    /// A verbatim string is shorter than its `xxx:` format prefix.
    InvalidVerbatim,
    /// A bulk payload is not followed by CRLF.
    MissingCrlf,
    /// A simple string or line carries a bare CR.
    InvalidLine,
    /// A bulk length exceeds the configured maximum.
    BulkTooLarge { len: u64, max: usize },
    /// An aggregate holds more elements than the configured maximum.
    TooManyElements { len: u64, max: usize },
    /// Aggregates nest deeper than the configured maximum.
    TooDeep { max: usize },
    /// An inline command line is longer than the configured maximum.
    InlineTooLong { max: usize },
    /// A command's `*N` line has not ended within the inline maximum.
    MultibulkCountTooLong { max: usize },
    /// A command argument's `$N` line has not ended within the inline maximum.
    BulkCountTooLong { max: usize },
    /// An inline command has an unterminated quote.
    UnbalancedQuotes,
    /// A command frame element is not a bulk string.
    ExpectedBulk(u8),
    /// RESP3 streamed strings and aggregates (`$?`, `*?`) are not supported.
    Streamed,
}

/// A parse failure: what was wrong and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Offset of the offending byte from the start of the frame being parsed.
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        ParseError { kind, offset }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::InvalidTypeByte(b) => write!(f, "invalid type byte {:?}", b as char),
            ErrorKind::InvalidLength => f.write_str("invalid length"),
            ErrorKind::InvalidInteger => f.write_str("invalid integer"),
            ErrorKind::InvalidDouble => f.write_str("invalid double"),
            ErrorKind::InvalidBigNumber => f.write_str("invalid big number"),
            ErrorKind::InvalidBoolean => f.write_str("invalid boolean"),
            ErrorKind::InvalidNull => f.write_str("null with content"),
            ErrorKind::InvalidVerbatim => f.write_str("verbatim string without format"),
            ErrorKind::MissingCrlf => f.write_str("missing CRLF after bulk payload"),
            ErrorKind::InvalidLine => f.write_str("bare CR inside a line"),
            ErrorKind::BulkTooLarge { len, max } => {
                write!(f, "invalid bulk length {len} (max {max})")
            }
            ErrorKind::TooManyElements { len, max } => {
                write!(f, "invalid multibulk length {len} (max {max})")
            }
            ErrorKind::TooDeep { max } => write!(f, "nesting deeper than {max}"),
            ErrorKind::InlineTooLong { max } => write!(f, "too big inline request (max {max})"),
            ErrorKind::MultibulkCountTooLong { max } => {
                write!(f, "too big mbulk count string (max {max})")
            }
            ErrorKind::BulkCountTooLong { max } => {
                write!(f, "too big bulk count string (max {max})")
            }
            ErrorKind::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ErrorKind::ExpectedBulk(b) => write!(f, "expected '$', got '{}'", b as char),
            ErrorKind::Streamed => f.write_str("streamed RESP3 types are not supported"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for ParseError {}
