//! Read-buffer growth.
//!
//! Frames are split off the read buffer as `Bytes` that may outlive the read (a cached reply, a
//! reply waiting for a slow client), so the buffer's storage is often shared and `reserve` must
//! move the unparsed tail to a new allocation. Growing by a fixed step would copy a large frame
//! again at every read; growing by at least the bytes already held keeps the copying linear.
//! Owns the growth rule only; never shrinks a buffer or copies what it holds itself.

use bytes::BytesMut;

const MIN_SPARE: usize = 8 * 1024;
const MIN_GROWTH: usize = 32 * 1024;

/// Ensures room for the next read.
pub fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(MIN_GROWTH.max(buf.len()));
    }
}
