//! RESP3 to RESP2 conversion, as Redis performs it when it replies to a RESP2 client.
//!
//! It never fails and never copies a payload: strings move into their RESP2 variant as the same
//! `Bytes`, except a bulk error holding CR or LF, which a simple error cannot carry.

use bytes::Bytes;

use crate::frame::Frame;

/// Which RESP2 null a RESP3 null stands for. Redis picks per command: `GET` of a missing key is
/// a null bulk (`$-1`), a timed-out `BLPOP` or an aborted `EXEC` a null array (`*-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullKind {
    #[default]
    Bulk,
    Array,
}

impl Frame {
    /// Converts a reply for a RESP2 client; a top-level null becomes a null bulk.
    pub fn into_resp2(self) -> Frame {
        self.into_resp2_with(NullKind::Bulk)
    }

    /// Converts a reply for a RESP2 client, mapping a top-level null as `null` says.
    ///
    /// Maps become flat arrays of keys and values, sets and pushes arrays, doubles, big numbers and
    /// verbatim strings bulk strings (verbatim without its `txt:` prefix), booleans the integers
    /// 1 and 0, bulk errors simple errors; attributes are dropped. Nested nulls become null bulks.
    pub fn into_resp2_with(self, null: NullKind) -> Frame {
        match self {
            Frame::Null => match null {
                NullKind::Bulk => Frame::NullBulk,
                NullKind::Array => Frame::NullArray,
            },
            Frame::Boolean(b) => Frame::Integer(b as i64),
            Frame::Double(t) | Frame::BigNumber(t) => Frame::Bulk(t),
            Frame::Verbatim(p) => Frame::Bulk(Frame::verbatim_parts(&p).1),
            Frame::BulkError(e) => Frame::Error(one_line(e)),
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                Frame::Array(v.into_iter().map(Frame::into_resp2).collect())
            }
            Frame::Map(pairs) => Frame::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [k.into_resp2(), v.into_resp2()])
                    .collect(),
            ),
            Frame::Attribute(_, inner) => inner.into_resp2_with(null),
            other => other,
        }
    }
}

/// A simple error cannot hold CR or LF.
fn one_line(e: Bytes) -> Bytes {
    if e.iter().any(|&b| b == b'\r' || b == b'\n') {
        let v: Vec<u8> = e
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        Bytes::from(v)
    } else {
        e
    }
}
