//! A client's socket, TCP, TLS over TCP (`--tls-listen`) or Unix domain (`--unixsocket`): the
//! listeners, the stream they accept, its read and write halves as sessions use them, and the
//! address `CLIENT LIST` shows.
//!
//! The halves keep the names and the methods of tokio's TCP halves (`peek`, `try_write`,
//! `writable`, `AsyncRead`, `AsyncWrite`), so a session reads the same whatever the socket; each
//! call is one match on the kind and then tokio's own (or, for TLS, [`crate::tls::halves`]'s).
//! A TLS client's handshake is done by [`ClientStream::start_tls`] on the thread that serves
//! it, so the socket moves between threads as plain TCP. Never buffers, retries or interprets
//! bytes: that is the session's business.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{tcp, unix, TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use crate::tls::{ServerTls, TlsRead, TlsWrite};

/// How long a TLS client may take over its handshake before it is dropped.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Where a client is, as `CLIENT LIST` writes it: `ip:port`, or for a Unix socket the socket's
/// path and `:0`, as Redis writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddr {
    Tcp(SocketAddr),
    Unix(Arc<PathBuf>),
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Tcp(a) => a.fmt(f),
            ClientAddr::Unix(path) => write!(f, "{}:0", path.display()),
        }
    }
}

/// An accepted client connection.
pub enum ClientStream {
    Tcp(TcpStream),
    /// With the path it was accepted on (a Unix peer has no name of its own).
    Unix(UnixStream, Arc<PathBuf>),
    /// After its handshake; it stays on the thread that did it.
    Tls(TlsRead, TlsWrite),
}

impl ClientStream {
    /// Disables Nagle's algorithm on TCP (replies are written whole); nothing on a Unix socket.
    pub fn set_nodelay(&self) {
        if let Some(s) = self.tcp() {
            let _ = s.set_nodelay(true);
        }
    }

    /// The TCP socket, if it is one (under TLS or not).
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Tcp(s) => Some(s),
            ClientStream::Tls(r, _) => Some(r.tcp()),
            ClientStream::Unix(..) => None,
        }
    }

    /// The TLS server handshake, with the configuration `acceptor` holds, on a TCP client just
    /// accepted; the stream that carries plaintext after it.
    pub async fn start_tls(self, acceptor: TlsAcceptor) -> io::Result<ClientStream> {
        match self {
            ClientStream::Tcp(s) => {
                let (r, w) = crate::tls::accept(acceptor, s, TLS_HANDSHAKE_LIMIT).await?;
                Ok(ClientStream::Tls(r, w))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS starts on a plain TCP client only",
            )),
        }
    }

    /// The client's address and the one it connected to; `0.0.0.0:0` where the OS cannot say.
    pub fn addrs(&self) -> (ClientAddr, ClientAddr) {
        let tcp = match self {
            ClientStream::Tcp(s) => s,
            ClientStream::Tls(r, _) => r.tcp(),
            ClientStream::Unix(_, path) => {
                return (
                    ClientAddr::Unix(path.clone()),
                    ClientAddr::Unix(path.clone()),
                )
            }
        };
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let peer = tcp.peer_addr().unwrap_or(unknown);
        let local = tcp.local_addr().unwrap_or(unknown);
        (ClientAddr::Tcp(peer), ClientAddr::Tcp(local))
    }

    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        match self {
            ClientStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (OwnedReadHalf::Tcp(r), OwnedWriteHalf::Tcp(w))
            }
            ClientStream::Unix(s, _) => {
                let (r, w) = s.into_split();
                (OwnedReadHalf::Unix(r), OwnedWriteHalf::Unix(w))
            }
            ClientStream::Tls(r, w) => (OwnedReadHalf::Tls(r), OwnedWriteHalf::Tls(w)),
        }
    }
}

/// A client socket taken off its runtime's reactor ([`ClientStream::detach`]), to be served
/// by another thread's runtime ([`Detached::attach`]).
pub enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream, Arc<PathBuf>),
}

impl ClientStream {
    /// The host the client connects from; a Unix socket's clients are on this host.
    pub fn host(&self) -> IpAddr {
        match self.tcp() {
            Some(s) => s
                .peer_addr()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Deregisters the socket from this runtime's reactor. A TLS client cannot move once its
    /// handshake is done (its state is shared by its halves): move it before.
    pub fn detach(self) -> io::Result<Detached> {
        Ok(match self {
            ClientStream::Tcp(s) => Detached::Tcp(s.into_std()?),
            ClientStream::Unix(s, path) => Detached::Unix(s.into_std()?, path),
            ClientStream::Tls(..) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a TLS client moves to its thread before its handshake",
                ))
            }
        })
    }
}

impl Detached {
    /// Registers the socket with the calling runtime's reactor.
    pub fn attach(self) -> io::Result<ClientStream> {
        Ok(match self {
            Detached::Tcp(s) => ClientStream::Tcp(TcpStream::from_std(s)?),
            Detached::Unix(s, path) => ClientStream::Unix(UnixStream::from_std(s)?, path),
        })
    }
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            ClientStream::Tcp(s) => s.as_raw_fd(),
            ClientStream::Unix(s, _) => s.as_raw_fd(),
            ClientStream::Tls(r, _) => r.tcp().as_raw_fd(),
        }
    }
}

/// A listening socket clients connect to.
pub enum Listener {
    /// With the TCP keepalive idle time its clients get.
    Tcp(TcpListener, Option<Duration>),
    Unix(UnixListener, Arc<PathBuf>),
    /// TCP whose clients start TLS ([`ClientStream::start_tls`]) with the configuration in
    /// force when they are accepted.
    Tls(TcpListener, Option<Duration>, Arc<ServerTls>),
}

impl Listener {
    /// The TLS configuration a client accepted now must start with; `None`: plain.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        match self {
            Listener::Tls(_, _, tls) => Some(tls.acceptor()),
            _ => None,
        }
    }

    /// Binds a Unix socket at `path`, replacing a socket file a previous run left there (as
    /// redis-server does; anything else at `path` is an error), with permissions `mode` (octal
    /// bits; 0 keeps what the umask gave).
    pub fn bind_unix(path: &Path, mode: u32) -> io::Result<Listener> {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        if mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(Listener::Unix(listener, Arc::new(path.to_path_buf())))
    }

    pub async fn accept(&self) -> io::Result<ClientStream> {
        match self {
            Listener::Tcp(l, keepalive) | Listener::Tls(l, keepalive, _) => {
                let (s, _) = l.accept().await?;
                if let Some(idle) = keepalive {
                    keep_alive(&s, *idle);
                }
                Ok(ClientStream::Tcp(s))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok(ClientStream::Unix(s, path.clone()))
            }
        }
    }
}

/// TCP keepalive as redis-server sets it on its clients (`tcp-keepalive`): the first probe after
/// `idle` without traffic, then one every third of that, 3 in all; a peer that vanished
/// (a crashed host, a dropped NAT entry) is then closed instead of held for ever.
fn keep_alive(stream: &TcpStream, idle: Duration) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 3).max(Duration::from_secs(1)))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
        tracing::debug!(error = %e, "TCP keepalive not set on a client socket");
    }
}

/// The reading half of a client's socket.
pub enum OwnedReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
    Tls(TlsRead),
}

impl OwnedReadHalf {
    /// Waits for input and copies it into `buf` without taking it from the socket; `Ok(0)`
    /// when the client has closed its side.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            OwnedReadHalf::Tcp(r) => r.peek(buf).await,
            OwnedReadHalf::Tls(r) => r.peek(buf).await,
            OwnedReadHalf::Unix(r) => {
                // tokio has no peek for Unix sockets: recv(MSG_PEEK) once readable, through
                // `try_io` so that a spurious wake-up clears the readiness instead of spinning.
                let stream: &UnixStream = r.as_ref();
                let sock = socket2::SockRef::from(stream);
                loop {
                    stream.readable().await?;
                    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and recv only writes.
                    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
                    match stream.try_io(Interest::READABLE, || sock.peek(uninit)) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        result => return result,
                    }
                }
            }
        }
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OwnedReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            OwnedReadHalf::Unix(r) => Pin::new(r).poll_read(cx, buf),
            OwnedReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writing half of a client's socket; dropping it shuts the write side down.
pub enum OwnedWriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
    Tls(TlsWrite),
}

impl OwnedWriteHalf {
    /// Writes what the socket takes now, without waiting.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OwnedWriteHalf::Tcp(w) => w.try_write(buf),
            OwnedWriteHalf::Unix(w) => w.try_write(buf),
            OwnedWriteHalf::Tls(w) => w.try_write(buf),
        }
    }

    /// Waits until the socket takes more.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            OwnedWriteHalf::Tcp(w) => w.writable().await,
            OwnedWriteHalf::Unix(w) => w.writable().await,
            OwnedWriteHalf::Tls(w) => w.writable().await,
        }
    }
}

impl crate::bufs::TryWrite for OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            OwnedWriteHalf::Tcp(w) => w.try_write_vectored(bufs),
            OwnedWriteHalf::Unix(w) => w.try_write_vectored(bufs),
            OwnedWriteHalf::Tls(w) => w.try_write_vectored(bufs),
        }
    }

    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        OwnedWriteHalf::writable(self)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OwnedWriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            OwnedWriteHalf::Unix(w) => Pin::new(w).poll_write(cx, buf),
            OwnedWriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OwnedWriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            OwnedWriteHalf::Unix(w) => Pin::new(w).poll_flush(cx),
            OwnedWriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OwnedWriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            OwnedWriteHalf::Unix(w) => Pin::new(w).poll_shutdown(cx),
            OwnedWriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_redis_writes_them() {
        let tcp = ClientAddr::Tcp("127.0.0.1:5000".parse().unwrap());
        assert_eq!(tcp.to_string(), "127.0.0.1:5000");
        let unix = ClientAddr::Unix(Arc::new("/run/nearcache.sock".into()));
        assert_eq!(unix.to_string(), "/run/nearcache.sock:0");
    }

    #[tokio::test]
    async fn peek_on_a_unix_socket_leaves_the_bytes_and_sees_the_close() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = UnixStream::pair().unwrap();
        let (mut rd, _wr) = ClientStream::Unix(a, Arc::new("/x".into())).into_split();
        b.write_all(b"hi").await.unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(rd.peek(&mut byte).await.unwrap(), 1);
        let mut both = [0u8; 2];
        rd.read_exact(&mut both).await.unwrap();
        assert_eq!(&both, b"hi");
        drop(b);
        assert_eq!(rd.peek(&mut byte).await.unwrap(), 0);
    }
}
