//! Read-buffer growth, and writing a buffer whole on a socket half that two tasks share.
//!
//! Frames are split off the read buffer as `Bytes` that may outlive the read (a cached reply, a
//! reply waiting for a slow client), so the buffer's storage is often shared and `reserve` must
//! move the unparsed tail to a new allocation. Growing by a fixed step would copy a large frame
//! again at every read; growing by at least the bytes already held keeps the copying linear.
//! Owns the growth rule only; never shrinks a buffer or copies what it holds itself.
//!
//! A client's socket (its reader and writer tasks) and a dedicated upstream connection's (its
//! session and its connection task) are written through a shared write half, by `try_write`
//! while it is known the other side has nothing to write: [`write_all`] does the waiting.

use std::future::Future;

use bytes::BytesMut;
use tokio::net::tcp::OwnedWriteHalf;

/// A socket half written without `&mut`: tokio's TCP half, and a client's TCP or Unix half
/// (`socket.rs`).
pub trait TryWrite {
    /// Writes what the socket takes now, without waiting.
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
    /// Waits until the socket takes more.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl TryWrite for OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        OwnedWriteHalf::writable(self)
    }
}

const MIN_SPARE: usize = 8 * 1024;
const MIN_GROWTH: usize = 32 * 1024;

/// A half shared between the tasks that write it.
impl<T: TryWrite> TryWrite for std::sync::Arc<T> {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        T::try_write(self, buf)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        T::writable(self)
    }
}

/// The most a frame's announced length makes a buffer reserve beyond the bytes it holds: a
/// peer cannot make the proxy allocate much more than it has sent (a longer frame grows by the
/// doubling rule as it arrives), while frames up to this size are read into storage of their
/// final size, with no step that moves what has arrived.
const MAX_AHEAD: usize = 1 << 20;

/// Ensures room for the next read.
pub fn make_room(buf: &mut BytesMut) {
    make_room_for(buf, None)
}

/// [`make_room`] for a buffer whose frame in progress needs `wanted` bytes from its start (its
/// header said so): room for all of it at once when that is within [`MAX_AHEAD`] of what is
/// held, and never less than the doubling rule gives.
pub fn make_room_for(buf: &mut BytesMut, wanted: Option<usize>) {
    let held = buf.len();
    let need = wanted
        .map(|w| w.saturating_sub(held))
        .filter(|&n| n <= MAX_AHEAD)
        .unwrap_or(0);
    if buf.capacity() - held < MIN_SPARE.max(need) {
        buf.reserve(MIN_GROWTH.max(held).max(need));
    }
}

/// Writes all of `bytes`, waiting while the socket is full.
pub async fn write_all(wr: &impl TryWrite, bytes: &[u8]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_frame_gets_its_room_at_once_within_the_bound() {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(&[b'v'; 16 * 1024]);
        make_room_for(&mut buf, Some(100_000));
        assert!(buf.capacity() >= 100_000);
        // Beyond the bound: the doubling rule only.
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(&[b'v'; 16 * 1024]);
        make_room_for(&mut buf, Some(16 * 1024 + MAX_AHEAD + 1));
        assert!(buf.capacity() < 2 * MAX_AHEAD / 16, "{}", buf.capacity());
        assert!(buf.capacity() - buf.len() >= MIN_SPARE);
        // A small frame: the doubling rule, not a reservation of a few bytes.
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(&[b'v'; 16 * 1024 - 100]);
        make_room_for(&mut buf, Some(16 * 1024 + 100));
        assert!(
            buf.capacity() - buf.len() >= MIN_GROWTH,
            "{}",
            buf.capacity()
        );
    }
}
