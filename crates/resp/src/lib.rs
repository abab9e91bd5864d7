//! `resp`: a lossless, zero-copy codec for the Redis serialization protocol, RESP2 and RESP3.
//!
//! The crate knows bytes and frames, nothing else: no sockets, no Redis command semantics.
//! Two layers:
//!
//! * [`scan`] measures one complete frame in a buffer without allocating or copying. A partial
//!   frame yields `Ok(None)` ("not yet"), malformed or over-limit input a [`ParseError`] with the
//!   byte offset ("wrong"). A proxy can forward a reply as the raw slice it measured.
//! * [`parse_frame`] and [`parse_command`] split a complete frame off a `BytesMut` and build a
//!   [`Frame`] tree (or a command's argument list) whose strings are `Bytes` views into the read
//!   buffer.
//!
//! [`encode`] writes frames back; [`Frame::into_resp2`] converts a RESP3 reply the way Redis does
//! for a RESP2 client.
//!
//! Never panics on input, never allocates before a frame is known to be complete, and never
//! accepts more than its [`Limits`] allow.

mod convert;
mod encode;
mod error;
mod frame;
mod inline;
mod parse;
mod request;
mod scan;

pub use convert::NullKind;
pub use encode::{encode, encode_command, encode_command_len, header};
pub use error::{ErrorKind, ParseError};
pub use frame::Frame;
pub use inline::split_inline;
pub use parse::parse_frame;
pub use request::{parse_command, parse_command_into, protocol_error_reply, CommandReader};
pub use scan::{announced, parse_i64, scan, Limits, INLINE_DEPTH};
