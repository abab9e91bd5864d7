//! A TLS connection whose handshake is done, split into a read half and a write half that
//! behave as tokio's TCP halves do: the read half is `AsyncRead` with `peek`; the write half is
//! written through `&self` (`try_write` while the socket takes more, `writable` to wait), so
//! two tasks can share it as they share a TCP half (`bufs::write_all`).
//!
//! Both halves drive one rustls connection under a mutex, held only while bytes are copied in
//! or out of it, never across an await. rustls keeps what a write encrypted until the socket
//! takes it: when the socket is full, a short-lived task sends the rest once it drains, and the
//! next write waits for it, so records leave in order and nothing stays behind after the last
//! write. Owns the TLS records on one socket; never reads or writes a Redis frame.

use std::io::{self, Write as _};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long records left in rustls after the last write may wait for a full socket to drain;
/// after that the peer is taken for gone and the socket is shut down.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

struct Shared {
    tcp: TcpStream,
    tls: Mutex<State>,
}

struct State {
    conn: rustls::Connection,
    /// A task is sending what the socket did not take.
    draining: bool,
    /// The write half is gone: once drained, shut the socket's write side.
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The socket as rustls reads and writes it: without waiting (`WouldBlock` when it would).
struct Io<'a>(&'a TcpStream);

impl io::Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends what rustls holds for the socket; `Ok(false)` when the socket is full first.
fn send_records(conn: &mut rustls::Connection, tcp: &TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Io(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Sends what rustls holds; what the socket does not take now, a task sends when it drains.
fn send_or_drain(shared: &Arc<Shared>, state: &mut State) -> io::Result<()> {
    if !send_records(&mut state.conn, &shared.tcp)? && !state.draining {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            state.draining = true;
            rt.spawn(drain(shared.clone()));
        }
    }
    Ok(())
}

/// Sends the records left behind as the socket drains, then shuts the write side if the
/// write half is gone.
async fn drain(shared: Arc<Shared>) {
    let sent = tokio::time::timeout(DRAIN_LIMIT, async {
        loop {
            shared.tcp.writable().await?;
            let mut state = shared.lock();
            if send_records(&mut state.conn, &shared.tcp)? {
                state.draining = false;
                if state.closing {
                    let _ = socket2::SockRef::from(&shared.tcp).shutdown(Shutdown::Write);
                }
                return io::Result::Ok(());
            }
        }
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        // The peer stopped reading or the socket broke: the reader sees the end too.
        shared.lock().draining = false;
        let _ = socket2::SockRef::from(&shared.tcp).shutdown(Shutdown::Both);
    }
}

/// Splits a connection whose handshake is complete. `tcp` must be registered with the
/// calling runtime.
pub fn split(tcp: TcpStream, conn: rustls::Connection) -> (TlsRead, TlsWrite) {
    let shared = Arc::new(Shared {
        tcp,
        tls: Mutex::new(State {
            conn,
            draining: false,
            closing: false,
        }),
    });
    (
        TlsRead {
            shared: shared.clone(),
        },
        TlsWrite { shared },
    )
}

/// The reading half.
pub struct TlsRead {
    shared: Arc<Shared>,
}

impl TlsRead {
    /// The socket underneath (its addresses, its options).
    pub fn tcp(&self) -> &TcpStream {
        &self.shared.tcp
    }

    /// Hands `copy` the first chunk of plaintext (it returns how much it copied) and, with
    /// `consume`, takes that much; reads and decrypts what the socket holds when rustls has
    /// none. `WouldBlock` when the socket has nothing either; `Ok(0)`: the peer closed (with or
    /// without `close_notify`).
    fn read_plain(
        &mut self,
        copy: &mut dyn FnMut(&[u8]) -> usize,
        consume: bool,
    ) -> io::Result<usize> {
        use std::io::BufRead as _;
        let shared = &self.shared;
        let mut state = shared.lock();
        loop {
            {
                let mut reader = state.conn.reader();
                match reader.fill_buf().map(&mut *copy) {
                    Ok(n) => {
                        if consume {
                            reader.consume(n);
                        }
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // A TCP close without `close_notify`: what most Redis clients do.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            state.conn.read_tls(&mut Io(&shared.tcp))?;
            let processed = state.conn.process_new_packets();
            // An alert for a bad record, a key update, a session ticket: sent as written.
            let sent = send_or_drain(shared, &mut state);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            sent?;
        }
    }

    /// [`Self::read_plain`], waiting for the socket.
    fn poll_plain(
        &mut self,
        cx: &mut Context<'_>,
        copy: &mut dyn FnMut(&[u8]) -> usize,
        consume: bool,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.read_plain(copy, consume) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.shared.tcp.poll_read_ready(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    /// Takes the plaintext there is now, without waiting (`WouldBlock` when there is none).
    pub fn try_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_plain(&mut |chunk| copy_into(out, chunk), true)
    }

    /// Waits for input and copies it into `buf` without taking it; `Ok(0)` when the peer has
    /// closed its side.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_plain(cx, &mut |chunk| copy_into(buf, chunk), false))
            .await
    }
}

/// Copies what fits of `chunk` to the start of `out`.
fn copy_into(out: &mut [u8], chunk: &[u8]) -> usize {
    let n = chunk.len().min(out.len());
    out[..n].copy_from_slice(&chunk[..n]);
    n
}

impl AsyncRead for TlsRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Copied into the unfilled part as it is: no zeroing of a large spare buffer per read.
        let mut put = |chunk: &[u8]| {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            n
        };
        ready!(self.get_mut().poll_plain(cx, &mut put, true))?;
        Poll::Ready(Ok(()))
    }
}

/// The writing half; dropping it sends `close_notify` and shuts the write side down once
/// everything written has left.
pub struct TlsWrite {
    shared: Arc<Shared>,
}

impl TlsWrite {
    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.shared.tcp
    }

    /// Encrypts what rustls takes of `buf` now and sends what the socket takes; `WouldBlock`
    /// while records of an earlier write still wait for the socket.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[io::IoSlice::new(buf)])
    }

    /// [`TlsWrite::try_write`] of `bufs` in order, as one write.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let shared = &self.shared;
        let mut state = shared.lock();
        // Records of an earlier write go first (the drain task, if any, then finds none).
        if !send_records(&mut state.conn, &shared.tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let n = state.conn.writer().write_vectored(bufs)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        send_or_drain(shared, &mut state)?;
        Ok(n)
    }

    /// Waits until the socket takes more.
    pub async fn writable(&self) -> io::Result<()> {
        self.shared.tcp.writable().await
    }

    /// Sends every record rustls holds, waiting for the socket as needed.
    fn poll_send_all(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut state = self.shared.lock();
            if send_records(&mut state.conn, &self.shared.tcp)? {
                return Poll::Ready(Ok(()));
            }
            drop(state);
            ready!(self.shared.tcp.poll_write_ready(cx))?;
        }
    }
}

impl AsyncWrite for TlsWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.shared.tcp.poll_write_ready(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_all(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut state = self.shared.lock();
            if !state.closing {
                state.closing = true;
                state.conn.send_close_notify();
            }
        }
        ready!(self.poll_send_all(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.shared.tcp).shutdown(Shutdown::Write))
    }
}

impl Drop for TlsWrite {
    fn drop(&mut self) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if !state.closing {
            state.closing = true;
            state.conn.send_close_notify();
        }
        match send_or_drain(shared, &mut state) {
            // The drain task shuts the write side when it is done.
            Ok(()) if state.draining => {}
            _ => {
                let _ = socket2::SockRef::from(&shared.tcp).shutdown(Shutdown::Write);
            }
        }
    }
}
