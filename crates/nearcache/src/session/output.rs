//! A session's output, as the reader sees it: replies it has at hand (cache hits, local
//! replies) are written by the reader itself at the end of a read while the writer has nothing
//! queued, so a pipeline of hits costs one read and one write and no task wake-up; everything
//! else is queued for the writer, behind what is already queued.
//!
//! Owns the order of replies on the reader's side. Never lets a reply overtake one queued before
//! it: the reader writes only while the writer is idle (see [`Link::writer_idle`]).

use std::sync::Arc;

use crate::socket::OwnedWriteHalf;
use bytes::{Buf, Bytes, BytesMut};

use super::link::Link;
use crate::cachelayer;
use crate::obs::stats::Stamp;
use crate::reply::{After, Outbound, Outbox, ReplyRx, Settle};

pub(super) struct Output {
    /// The writer's queue.
    pub out: Outbox,
    pub link: Arc<Link>,
    /// The client socket, for replies written without the writer; `None` once relaying.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// Replies for the reader to write at the end of this read.
    direct: BytesMut,
    /// The command being handled was answered into `direct`, with an error or not: its figures
    /// are recorded by the reader.
    pub answered: Option<bool>,
}

impl Output {
    pub fn new(out: Outbox, link: Arc<Link>, wr: Arc<OwnedWriteHalf>) -> Self {
        Output {
            out,
            link,
            wr: Some(wr),
            direct: BytesMut::new(),
            answered: None,
        }
    }

    /// The bytes the reader writes at the end of this read, if a reply may go there now (the
    /// reader still writes, and the writer has nothing queued).
    #[inline]
    pub fn direct(&mut self) -> Option<&mut BytesMut> {
        (self.wr.is_some() && self.link.writer_idle()).then_some(&mut self.direct)
    }

    /// A reply the session has at hand: written by the reader at the end of this read if the
    /// writer has nothing queued, else queued behind what is.
    pub fn reply(&mut self, bytes: Bytes) {
        if let Some(direct) = self.direct() {
            direct.extend_from_slice(&bytes);
            self.answered = Some(matches!(bytes.first(), Some(b'-' | b'!')));
        } else {
            self.queue(Outbound::Frame(bytes));
        }
    }

    /// An array reply of cached elements (all present), assembled where it will be written.
    pub fn reply_array(&mut self, items: &[Option<Bytes>]) {
        if let Some(direct) = self.direct() {
            cachelayer::put_array(direct, items.len(), items.iter().flatten());
            self.answered = Some(false);
        } else {
            let mut out = BytesMut::new();
            cachelayer::put_array(&mut out, items.len(), items.iter().flatten());
            self.queue(Outbound::Frame(out.freeze()));
        }
    }

    /// Queues an item for the writer, behind any replies gathered for a direct write.
    pub fn queue(&mut self, item: Outbound) {
        self.spill();
        self.link.queuing();
        self.out.send(item);
    }

    /// Queues the reply to a command sent upstream, with its stamp: the writer records the
    /// command once the reply is in (one queue item per forwarded command, not two).
    pub fn queue_reply(
        &mut self,
        rx: ReplyRx,
        after: After,
        stamp: Option<Stamp>,
        settle: Option<Box<dyn Settle>>,
    ) {
        self.spill();
        self.link.queuing();
        self.out
            .send_pending(Outbound::Pending(rx, after, stamp, settle));
    }

    /// Hands the replies gathered for a direct write to the writer instead.
    pub fn spill(&mut self) {
        if !self.direct.is_empty() {
            let bytes = self.direct.split().freeze();
            self.link.queuing();
            self.out.send(Outbound::Frame(bytes));
        }
    }

    /// Writes the gathered replies; what the socket does not take now goes to the writer.
    pub fn write_direct(&mut self) {
        if self.direct.is_empty() {
            return;
        }
        if let Some(wr) = &self.wr {
            // An error other than "would block" is left for the writer to meet and report.
            let n = wr.try_write(&self.direct).unwrap_or(0);
            self.direct.advance(n);
        }
        if self.direct.is_empty() {
            // All written: keep the buffer's storage for the next read's replies.
            self.direct.clear();
        } else {
            self.spill();
        }
    }

    /// The client socket, taken from the writer's side: the caller must have waited for
    /// [`Link::flushed`] and queue nothing more. `None` once relaying.
    pub fn take_socket(&mut self) -> Option<Arc<OwnedWriteHalf>> {
        self.wr.take()
    }

    /// From now on every reply goes through the writer: relayed frames reach it uncounted, so
    /// the reader may never write beside it again.
    pub fn relaying(&mut self) {
        self.spill();
        self.wr = None;
    }
}
