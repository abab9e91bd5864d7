//! A client that sends `SYNC` or `PSYNC` becomes a replica: what Redis sends it from then on is
//! the replication stream (an RDB payload framed as a bulk without its trailing CRLF, then the
//! commands it propagates, and newlines as keep-alives), and what it sends are `REPLCONF ACK`s.
//! None of that is request and reply, so the session stops being one: it opens a connection of
//! its own to Redis (as the pool's user), sends the command and whatever the client sent after
//! it, and copies bytes both ways until either side closes.
//!
//! Never parses the stream and never hands the connection to the pool.

use crate::socket::OwnedReadHalf;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::state::Session;
use crate::bufs::write_all;

const CHUNK: usize = 64 * 1024;

impl Session {
    /// Turns the session into a byte relay for the replication `command`; `pending` is what
    /// the client sent after it. Returns when either side closes.
    pub(super) async fn replicate(
        &mut self,
        command: Bytes,
        pending: BytesMut,
        mut rd: OwnedReadHalf,
    ) {
        self.output.spill();
        self.output.link.flushed().await;
        self.finish();
        let Some(wr) = self.output.take_socket() else {
            return;
        };
        let mut upstream = match self.ctx.pool.connect_raw().await {
            Ok(s) => s,
            Err(e) => {
                let _ = write_all(&wr, &e.to_frame()).await;
                return;
            }
        };
        self.ctx.metrics.pinned.inc();
        let mut first = BytesMut::with_capacity(command.len() + pending.len());
        first.extend_from_slice(&command);
        first.extend_from_slice(&pending);
        if upstream.write_all(&first).await.is_ok() {
            let (mut up_rd, mut up_wr) = upstream.into_split();
            let to_client = async {
                let mut buf = BytesMut::with_capacity(CHUNK);
                loop {
                    buf.clear();
                    match up_rd.read_buf(&mut buf).await {
                        Ok(n) if n > 0 => {
                            self.ctx.metrics.bytes_out.inc_by(n as u64);
                            if write_all(&wr, &buf).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            };
            let to_redis = async {
                let mut buf = BytesMut::with_capacity(CHUNK);
                loop {
                    buf.clear();
                    match rd.read_buf(&mut buf).await {
                        Ok(n) if n > 0 => {
                            self.ctx.metrics.bytes_in.inc_by(n as u64);
                            if up_wr.write_all(&buf).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            };
            tokio::select! {
                () = to_client => {}
                () = to_redis => {}
            }
        }
        debug!("replication relay ended");
        self.ctx.metrics.pinned.dec();
    }
}
