//! Read buffers that reuse their storage, gathered (vectored) writes, and writing whole on a
//! socket half that two tasks share.
//!
//! Frames are split off the read buffer as `Bytes` that may outlive the read (a request on its
//! way upstream, a reply waiting for a slow client), so the buffer's storage is often shared
//! when the next read needs room. [`ReadBuf`] then turns to the storage it read into before,
//! whose frames are usually gone by then, and allocates only when neither is free: a steady
//! stream of mid-sized frames takes turns between two storages and allocates nothing. Growing
//! by a fixed step would copy a large frame again at every read; growing by at least the bytes
//! already held keeps the copying linear. Owns the growth rule and the spare storage; never
//! shrinks a buffer.
//!
//! A batch of requests or replies leaves in one vectored write ([`Gather`]): short pieces are
//! copied together, longer ones written from their own buffers.
//!
//! A client's socket (its reader and writer tasks) and a dedicated upstream connection's (its
//! session and its connection task) are written through a shared write half, by `try_write`
//! while it is known the other side has nothing to write: [`write_all`] does the waiting.

use std::future::Future;
use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;

/// A socket half written without `&mut`: tokio's TCP half, and a client's TCP or Unix half
/// (`socket.rs`).
pub trait TryWrite {
    /// Writes what the socket takes now, without waiting.
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
    /// Waits until the socket takes more.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Writes what the socket takes now of `bufs`, in order, without waiting.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
}

impl TryWrite for OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        OwnedWriteHalf::try_write_vectored(self, bufs)
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

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        T::try_write_vectored(self, bufs)
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

/// The largest storage kept as a [`ReadBuf`]'s spare: mid-sized frames (a few KB, which fill a
/// buffer in a few reads) are where allocating per turn of the buffer costs the most per byte;
/// larger storages are let go, so a client that once sent a large value holds one buffer.
const SPARE_MAX: usize = 64 * 1024;

/// A read buffer (dereferences to its `BytesMut`) that keeps the storage it read into before as
/// a spare, and reads into it again once the frames split off it are gone.
pub struct ReadBuf {
    buf: BytesMut,
    /// Bytes of `buf`'s storage when it was allocated.
    storage: usize,
    /// The previous storage, empty, and its size; only one no larger than [`SPARE_MAX`].
    spare: Option<(BytesMut, usize)>,
    /// Storages allocated since the first.
    allocations: u64,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        ReadBuf {
            buf: BytesMut::with_capacity(capacity),
            storage: capacity,
            spare: None,
            allocations: 0,
        }
    }

    /// Ensures room for the next read.
    pub fn make_room(&mut self) {
        self.make_room_for(None)
    }

    /// [`ReadBuf::make_room`] for a buffer whose frame in progress needs `wanted` bytes from
    /// its start (its header said so): room for all of it at once when that is within
    /// [`MAX_AHEAD`] of what is held. Uses, in turn: the room left; the current storage, moving
    /// what it holds to its start, once nothing split off it is still alive; the spare, the
    /// same way; a new storage, growing by at least what is held (and [`MIN_GROWTH`]).
    pub fn make_room_for(&mut self, wanted: Option<usize>) {
        let held = self.buf.len();
        let need = wanted
            .map(|w| w.saturating_sub(held))
            .filter(|&n| n <= MAX_AHEAD)
            .unwrap_or(0)
            .max(MIN_SPARE);
        if self.buf.capacity() - held >= need || self.buf.try_reclaim(need) {
            return;
        }
        let spare = self.spare.take().and_then(|(mut spare, storage)| {
            spare.try_reclaim(held + need).then_some((spare, storage))
        });
        let (next, storage) = match spare {
            Some(spare) => spare,
            None => {
                let storage = held + MIN_GROWTH.max(held).max(need);
                self.allocations += 1;
                (BytesMut::with_capacity(storage), storage)
            }
        };
        let mut old = std::mem::replace(&mut self.buf, next);
        let old_storage = std::mem::replace(&mut self.storage, storage);
        self.buf.extend_from_slice(&old);
        old.clear();
        self.spare = (old_storage <= SPARE_MAX).then_some((old, old_storage));
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl std::ops::DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

/// Pieces at least this long are written from their own buffer, as a segment of a vectored
/// write, rather than copied into the batch: below it a copy costs less than keeping the
/// piece's buffer alive and giving the kernel one more segment.
const OWN_SEGMENT: usize = 1024;

/// Segments a [`Gather`] writes at most in one call (far below the kernel's `IOV_MAX`).
const MAX_SEGMENTS: usize = 64;

/// One segment of a [`Gather`]: bytes copied into its buffer (a range of it), or a piece's own.
enum Segment {
    Copied(usize, usize),
    Own(Bytes),
}

/// Pieces to write together, in order: short ones copied into one buffer, longer ones kept as
/// they are, all written in one vectored write (see [`OWN_SEGMENT`]). While no piece is kept,
/// the buffer is all there is: segments are listed only once one is.
pub struct Gather {
    buf: BytesMut,
    /// The segments before the buffer's bytes from `copied_from` on; empty while every piece
    /// gathered was copied.
    segments: Vec<Segment>,
    copied_from: usize,
    len: usize,
}

impl Gather {
    pub fn with_capacity(capacity: usize) -> Self {
        Gather {
            buf: BytesMut::with_capacity(capacity),
            segments: Vec::new(),
            copied_from: 0,
            len: 0,
        }
    }

    /// Bytes gathered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether to write before gathering more: `limit` bytes gathered, or as many segments as
    /// one write takes.
    pub fn is_full(&self, limit: usize) -> bool {
        self.len >= limit || self.segments.len() >= MAX_SEGMENTS
    }

    /// Adds a piece after those gathered.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.len() < OWN_SEGMENT {
            return self.push_slice(&bytes);
        }
        if self.buf.len() > self.copied_from {
            self.segments
                .push(Segment::Copied(self.copied_from, self.buf.len()));
            self.copied_from = self.buf.len();
        }
        self.len += bytes.len();
        self.segments.push(Segment::Own(bytes));
    }

    /// Adds bytes after those gathered, copying them.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Writes everything gathered, in order, waiting while the socket is full; empty after.
    pub async fn write_to(&mut self, wr: &impl TryWrite) -> std::io::Result<()> {
        let tail = self.buf.len() > self.copied_from;
        let written = match (self.segments.as_slice(), tail) {
            ([], false) => Ok(()),
            ([], true) => write_all(wr, &self.buf).await,
            ([Segment::Own(bytes)], false) => write_all(wr, bytes).await,
            (segments, _) => {
                let tail = tail.then(|| IoSlice::new(&self.buf[self.copied_from..]));
                let mut slices: smallvec::SmallVec<[IoSlice<'_>; 8]> = segments
                    .iter()
                    .map(|s| match s {
                        Segment::Copied(start, end) => IoSlice::new(&self.buf[*start..*end]),
                        Segment::Own(bytes) => IoSlice::new(bytes),
                    })
                    .chain(tail)
                    .collect();
                write_all_vectored(wr, &mut slices).await
            }
        };
        self.buf.clear();
        self.segments.clear();
        self.copied_from = 0;
        self.len = 0;
        written
    }
}

/// Writes all of `slices`, in order, waiting while the socket is full.
async fn write_all_vectored(
    wr: &impl TryWrite,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match wr.try_write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wr.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `bytes`, waiting while the socket is full.
pub async fn write_all(wr: &impl TryWrite, bytes: &[u8]) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < bytes.len() {
        match wr.try_write(&bytes[pos..]) {
            // A socket that takes nothing of a non-empty write will take nothing later either.
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
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

    fn filled(capacity: usize, len: usize) -> ReadBuf {
        let mut buf = ReadBuf::with_capacity(capacity);
        buf.extend_from_slice(&vec![b'v'; len]);
        buf
    }

    #[test]
    fn an_announced_frame_gets_its_room_at_once_within_the_bound() {
        let mut buf = filled(16 * 1024, 16 * 1024);
        buf.make_room_for(Some(100_000));
        assert!(buf.capacity() >= 100_000);
        // Beyond the bound: the doubling rule only.
        let mut buf = filled(16 * 1024, 16 * 1024);
        buf.make_room_for(Some(16 * 1024 + MAX_AHEAD + 1));
        assert!(buf.capacity() < 2 * MAX_AHEAD / 16, "{}", buf.capacity());
        assert!(buf.capacity() - buf.len() >= MIN_SPARE);
        // A small frame: the doubling rule, not a reservation of a few bytes.
        let mut buf = filled(16 * 1024, 16 * 1024 - 100);
        buf.make_room_for(Some(16 * 1024 + 100));
        assert!(
            buf.capacity() - buf.len() >= MIN_GROWTH,
            "{}",
            buf.capacity()
        );
    }

    /// Splits `n` frames of `size` bytes off `buf` as they would arrive, keeping them alive in
    /// `alive`, and returns where each frame's bytes are.
    fn read_frames(buf: &mut ReadBuf, n: usize, size: usize, alive: &mut Vec<Bytes>) {
        for _ in 0..n {
            buf.make_room();
            buf.extend_from_slice(&vec![b'f'; size]);
            alive.push(buf.split_to(size).freeze());
        }
    }

    #[test]
    fn storage_whose_frames_are_gone_is_read_into_again() {
        let mut buf = ReadBuf::with_capacity(16 * 1024);
        let mut alive = Vec::new();
        // Frames kept alive: every turn of the buffer needs a new storage.
        read_frames(&mut buf, 40, 4096, &mut alive);
        assert!(buf.allocations >= 3, "{}", buf.allocations);
        // Frames dropped a few reads later, as a forwarded request is once written upstream:
        // the current storage and the spare take turns, and nothing more is allocated.
        alive.clear();
        let mut recent = Vec::new();
        let mut settled = None;
        for i in 0..200 {
            read_frames(&mut buf, 1, 4096, &mut recent);
            if recent.len() > 2 {
                let frame = recent.remove(0);
                assert!(frame.iter().all(|&c| c == b'f'), "a frame's bytes kept");
            }
            if i == 20 {
                settled = Some(buf.allocations);
            }
        }
        assert_eq!(Some(buf.allocations), settled);
        assert!(buf.spare.is_some());
    }

    #[test]
    fn a_partial_frame_moves_with_the_buffer() {
        let mut buf = ReadBuf::with_capacity(64);
        let mut alive = Vec::new();
        read_frames(&mut buf, 1, 40, &mut alive);
        buf.extend_from_slice(b"partial");
        buf.make_room();
        assert_eq!(&buf[..], b"partial");
        assert!(buf.capacity() - buf.len() >= MIN_SPARE);
        assert_eq!(&alive[0][..], &[b'f'; 40][..]);
    }

    /// A socket that takes at most `step` bytes per call, and refuses every third call.
    struct Trickle {
        got: std::sync::Mutex<(Vec<u8>, usize)>,
        step: usize,
    }

    impl TryWrite for Trickle {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            self.try_write_vectored(&[IoSlice::new(buf)])
        }

        fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
            std::future::ready(Ok(()))
        }

        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            got.1 += 1;
            // A writer still calling after this many calls would call for ever.
            assert!(got.1 < 1_000_000, "{} calls", got.1);
            if got.1.is_multiple_of(3) {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.step - n);
                got.0.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            Ok(n)
        }
    }

    #[tokio::test]
    async fn gathered_pieces_are_written_whole_and_in_order() {
        let pieces: Vec<Bytes> = (0..40u8)
            .map(|i| Bytes::from(vec![b'a' + i % 26; [3, 5000, 700, 1024, 1][i as usize % 5]]))
            .collect();
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        for step in [1, 7, 1000, 1 << 20] {
            let wr = Trickle {
                got: Default::default(),
                step,
            };
            let mut out = Gather::with_capacity(64);
            for (n, p) in pieces.iter().enumerate() {
                out.push(p.clone());
                if out.is_full(16 * 1024) || n == 20 {
                    out.write_to(&wr).await.unwrap();
                }
            }
            out.write_to(&wr).await.unwrap();
            assert!(wr.got.lock().unwrap().0 == want, "step {step}");
            assert!(out.segments.is_empty() && out.buf.is_empty());
        }
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_is_an_error_not_a_hang() {
        // Copied pieces alone, one piece of its own, and both: the three ways a batch leaves.
        for sizes in [&[10usize][..], &[5000], &[10, 5000]] {
            let wr = Trickle {
                got: Default::default(),
                step: 0,
            };
            let mut out = Gather::with_capacity(64);
            for &n in sizes {
                out.push(Bytes::from(vec![b'x'; n]));
            }
            let err = out.write_to(&wr).await.expect_err("nothing was written");
            assert_eq!(err.kind(), std::io::ErrorKind::WriteZero, "{sizes:?}");
        }
    }
}
