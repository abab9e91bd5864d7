//! The frame tree: one variant per RESP2/RESP3 type, strings held as `Bytes` views.
//!
//! Data only: a frame never says what it means to Redis and never drops wire detail (a double
//! keeps its text, RESP2's two nulls stay distinct variants), so encoding it is lossless.

use bytes::Bytes;

/// One RESP value. Every variant round-trips through [`crate::encode`] byte for byte, which is
/// why doubles and big numbers keep their text and RESP2's two nulls are distinct variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-ERR text`
    Error(Bytes),
    /// `:123`
    Integer(i64),
    /// `$len` payload
    Bulk(Bytes),
    /// RESP2 `$-1`
    NullBulk,
    /// RESP2 `*-1`
    NullArray,
    /// RESP3 `_`
    Null,
    /// `*len`
    Array(Vec<Frame>),
    /// RESP3 `#t` / `#f`
    Boolean(bool),
    /// RESP3 `,` with the number's exact text (`1.5`, `inf`, `-inf`, `nan`, `1e300`).
    Double(Bytes),
    /// RESP3 `(` with the digits as text.
    BigNumber(Bytes),
    /// RESP3 `!len` payload
    BulkError(Bytes),
    /// RESP3 `=len` payload: the whole payload, `txt:` format prefix included.
    Verbatim(Bytes),
    /// RESP3 `%len` key/value pairs, in wire order.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~len`
    Set(Vec<Frame>),
    /// RESP3 `|len` attributes and the frame they annotate.
    Attribute(Vec<(Frame, Frame)>, Box<Frame>),
    /// RESP3 `>len` out-of-band data (pub/sub messages, invalidations).
    Push(Vec<Frame>),
}

impl Frame {
    /// A bulk string from anything byte-like.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// A simple string from a static text.
    pub fn simple(s: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(s.as_bytes()))
    }

    /// An error reply; `msg` should start with an error code such as `ERR`.
    pub fn error(msg: impl Into<String>) -> Frame {
        let mut s: String = msg.into();
        s.retain(|c| c != '\r' && c != '\n');
        Frame::Error(Bytes::from(s))
    }

    /// True for the error types (`-` and `!`).
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BulkError(_))
    }

    /// The verbatim string's format (`txt`, `mkd`) and text.
    pub fn verbatim_parts(payload: &Bytes) -> (Bytes, Bytes) {
        if payload.len() >= 4 {
            (payload.slice(..3), payload.slice(4..))
        } else {
            (Bytes::new(), payload.clone())
        }
    }

    /// The value of a double frame as `f64` (`None` for other variants).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Frame::Double(t) => std::str::from_utf8(t).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The bytes of a simple string, bulk string or verbatim text.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) => Some(b),
            Frame::Verbatim(b) if b.len() >= 4 => Some(&b[4..]),
            _ => None,
        }
    }
}
