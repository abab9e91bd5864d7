//! An upstream connection's socket: plain TCP, or TLS over TCP (`upstream_tls`, `rediss://`),
//! and its read and write halves as the connection task, the invalidation connection and the
//! replication relay use them.
//!
//! One match on the kind per call, then tokio's TCP halves or [`crate::tls::halves`]: the plain
//! path costs no allocation or indirection. Never buffers or interprets bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, TcpStream};

use crate::tls::{TlsRead, TlsWrite};

/// A connection to Redis.
pub enum Stream {
    Tcp(TcpStream),
    /// After the TLS handshake.
    Tls(TlsRead, TlsWrite),
}

impl Stream {
    /// The TCP socket underneath (its addresses, its options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(r, _) => r.tcp(),
        }
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Tls(r, w) => (ReadHalf::Tls(r), WriteHalf::Tls(w)),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(r, _) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(_, w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(_, w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(_, w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// The reading half of a connection to Redis.
pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Tls(TlsRead),
}

impl ReadHalf {
    /// Takes what has arrived into `buf`, without waiting (`WouldBlock` when nothing has).
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(r) => r.try_read_buf(buf),
            ReadHalf::Tls(r) => {
                let mut chunk = [0u8; 4096];
                let n = r.try_read(&mut chunk)?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writing half of a connection to Redis, written through `&self` by the tasks that share
/// it (`bufs::write_all`).
pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Tls(TlsWrite),
}

impl WriteHalf {
    /// Writes what the socket takes now, without waiting.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write(buf),
            WriteHalf::Tls(w) => w.try_write(buf),
        }
    }

    /// Waits until the socket takes more.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(w) => w.writable().await,
            WriteHalf::Tls(w) => w.writable().await,
        }
    }
}

impl crate::bufs::TryWrite for WriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        WriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => w.try_write_vectored(bufs),
            WriteHalf::Tls(w) => w.try_write_vectored(bufs),
        }
    }

    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        WriteHalf::writable(self)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
