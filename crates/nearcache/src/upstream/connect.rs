//! Opening an upstream connection: TCP connect, then the handshake (`HELLO 3` for RESP3,
//! `AUTH` with the proxy's credentials, and whatever commands the caller needs done before
//! the connection serves, such as pointing its tracking at the invalidation connection).
//!
//! Owns everything said to Redis before a connection is handed to its task, the TLS handshake
//! (`upstream_tls`) first; per-user authentication belongs here too. Never keeps a connection:
//! it returns the stream or the error.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::Stream;

use super::env::Settings;
use crate::reply::UpstreamError;

/// `CLIENT TRACKING on REDIRECT <id>`: invalidations for what this connection reads go to the
/// connection whose client id is `client_id`.
pub fn tracking_command(client_id: i64) -> Bytes {
    let mut out = BytesMut::new();
    let id = client_id.to_string();
    resp::encode_command(
        &["CLIENT", "TRACKING", "on", "REDIRECT", id.as_str()],
        &mut out,
    );
    out.freeze()
}

/// Opens a TCP connection (with TLS when configured) and performs the handshake: `HELLO 3` for
/// RESP3, `AUTH` when the proxy has upstream credentials, `READONLY` for a cluster replica
/// ([`Settings::readonly`]), then any `extra` commands, whose
/// replies are returned (an error reply among them is the caller's to judge: a user may be
/// allowed to read but not to turn on tracking). With none of these a `PING` is sent, so that
/// a server refusing us (maxclients) is noticed here and not by the first client request.
pub async fn connect(
    cfg: &Settings,
    proto: u8,
    extra: &[Bytes],
) -> Result<(Stream, Vec<Bytes>), UpstreamError> {
    open(cfg, proto, extra, true).await
}

/// [`connect`] for a client's own connection: no `PING` when there is nothing else to say.
/// What the client sends first is then the first thing Redis (and `MONITOR`) sees, and a
/// server refusing the connection answers that first command, as it would answer the client.
pub async fn connect_quietly(cfg: &Settings, proto: u8) -> Result<Stream, UpstreamError> {
    Ok(open(cfg, proto, &[], false).await?.0)
}

/// Asks Redis `commands` on a connection of their own, opened with no handshake (as a new
/// client, unauthenticated), and returns one reply each: checking a client's `AUTH` with its
/// own words, and what an unauthenticated client may do.
pub async fn ask_anonymously(
    cfg: &Settings,
    commands: &[Bytes],
) -> Result<Vec<Bytes>, UpstreamError> {
    let bare = Settings {
        username: None,
        password: None,
        ..cfg.clone()
    };
    let (stream, _) = open(&bare, 2, &[], false).await?;
    exchange(stream, cfg, commands).await
}

async fn open(
    cfg: &Settings,
    proto: u8,
    extra: &[Bytes],
    probe: bool,
) -> Result<(Stream, Vec<Bytes>), UpstreamError> {
    let unavailable = |cause: String| UpstreamError::Unavailable {
        addr: cfg.addr.clone(),
        cause,
    };
    let tcp = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| unavailable("connect timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if let Some(idle) = cfg.tcp_keepalive {
        // As redis-server probes its clients: after `idle`, then every idle/3, 3 times.
        let probes = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval((idle / 3).max(std::time::Duration::from_secs(1)))
            .with_retries(3);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&probes);
    }
    let mut stream = match &cfg.tls {
        None => Stream::Tcp(tcp),
        Some(tls) => {
            let (r, w) = tokio::time::timeout(cfg.connect_timeout, tls.connect(tcp))
                .await
                .map_err(|_| unavailable("TLS handshake timed out".into()))?
                .map_err(|e| unavailable(format!("TLS handshake failed: {e}")))?;
            Stream::Tls(r, w)
        }
    };
    let mut hello: Vec<Bytes> = Vec::new();
    if proto == 3 {
        hello.extend([b"HELLO".as_slice(), b"3"].map(Bytes::from_static));
        if let Some(pass) = &cfg.password {
            let user = cfg.username.clone().unwrap_or_else(|| "default".into());
            hello.extend([
                Bytes::from_static(b"AUTH"),
                user.into(),
                pass.clone().into(),
            ]);
        }
    } else if let Some(pass) = &cfg.password {
        hello.push(Bytes::from_static(b"AUTH"));
        if let Some(user) = &cfg.username {
            hello.push(user.clone().into());
        }
        hello.push(pass.clone().into());
    }
    if hello.is_empty() && extra.is_empty() && !cfg.readonly {
        if !probe {
            return Ok((stream, Vec::new()));
        }
        hello.push(Bytes::from_static(b"PING"));
    }
    let mut out = BytesMut::new();
    let mut expected = extra.len();
    if !hello.is_empty() {
        resp::encode_command(&hello, &mut out);
        expected += 1;
    }
    if cfg.readonly {
        resp::encode_command(&[Bytes::from_static(b"READONLY")], &mut out);
        expected += 1;
    }
    for cmd in extra {
        out.extend_from_slice(cmd);
    }
    let mut replies =
        tokio::time::timeout(cfg.connect_timeout, handshake(&mut stream, &out, expected))
            .await
            .map_err(|_| unavailable("handshake timed out".into()))?
            .map_err(|e| unavailable(format!("handshake failed: {e}")))?;
    let extra_replies = replies.split_off(replies.len() - extra.len());
    if let Some(reply) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
        return Err(unavailable(format!("handshake rejected: {text}")));
    }
    Ok((stream, extra_replies))
}

/// Writes `out` and reads `n` replies (push frames are skipped).
pub async fn handshake(stream: &mut Stream, out: &[u8], n: usize) -> std::io::Result<Vec<Bytes>> {
    stream.write_all(out).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut replies = Vec::with_capacity(n);
    while replies.len() < n {
        match resp::scan(&buf, &resp::Limits::UNBOUNDED)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            Some(len) => {
                let frame = buf.split_to(len).freeze();
                if frame.first() != Some(&b'>') {
                    replies.push(frame);
                }
            }
            None => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    Ok(replies)
}

/// Opens a connection as [`connect`] does (handshake included), sends `commands` (each
/// encoded), reads one reply per command, and closes it. For one-off questions outside the
/// pool, such as a cluster node's `CLUSTER SHARDS`: error replies are returned as replies.
pub async fn ask(
    cfg: &Settings,
    proto: u8,
    commands: &[Bytes],
) -> Result<Vec<Bytes>, UpstreamError> {
    let (stream, _) = open(cfg, proto, &[], true).await?;
    exchange(stream, cfg, commands).await
}

/// Sends `commands` on `stream` and reads one reply each, within the connect timeout.
async fn exchange(
    mut stream: Stream,
    cfg: &Settings,
    commands: &[Bytes],
) -> Result<Vec<Bytes>, UpstreamError> {
    let out: Vec<u8> = commands.concat();
    tokio::time::timeout(
        cfg.connect_timeout,
        handshake(&mut stream, &out, commands.len()),
    )
    .await
    .map_err(|_| UpstreamError::Unavailable {
        addr: cfg.addr.clone(),
        cause: "no reply in time".into(),
    })?
    .map_err(|e| UpstreamError::Unavailable {
        addr: cfg.addr.clone(),
        cause: e.to_string(),
    })
}
