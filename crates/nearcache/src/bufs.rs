//! Read-buffer growth, and writing a buffer whole on a socket half that two tasks share.
//!
//! Frames are split off the read buffer as `Bytes` that may outlive the read (a cached reply, a
//! reply waiting for a slow client), so the buffer's storage is often shared and `reserve` must
//! move the unparsed tail to a new allocation. Growing by a fixed step would copy a large frame
//! again at every read; growing by at least the bytes already held keeps the copying linear.
//! Owns the growth rule only; never shrinks a buffer or copies what it holds itself.
//!
//! A client's socket (its reader and writer tasks) and a dedicated upstream connection's (its
//! session and its connection task) are written through `&OwnedWriteHalf`, by `try_write`
//! while it is known the other side has nothing to write: [`write_all`] does the waiting.

use bytes::BytesMut;
use tokio::net::tcp::OwnedWriteHalf;

const MIN_SPARE: usize = 8 * 1024;
const MIN_GROWTH: usize = 32 * 1024;

/// Ensures room for the next read.
pub fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(MIN_GROWTH.max(buf.len()));
    }
}

/// Writes all of `bytes`, waiting while the socket is full.
pub async fn write_all(wr: &OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < bytes.len() {
        match wr.try_write(&bytes[pos..]) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wr.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
