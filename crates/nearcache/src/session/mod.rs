//! One client connection: read commands, route each one, and let the writer reply in order.
//!
//! The reader never waits for a reply before sending the next command (pipelining is kept), but
//! it does wait for in-flight replies before moving the session to a different upstream
//! connection, so that Redis sees a client's commands in the order the client sent them.
//!
//! Replies the reader has at hand (cache hits, local replies) skip the writer while nothing is
//! queued ahead of them: they are gathered per read and written by the reader in one syscall,
//! so a pipeline of hits costs one read and one write and no task wake-up.

mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::cachelayer::{self, CacheLayer, Form, Join, Read};
use crate::command::{self, CacheUse, CommandSpec, Local, NameMemo, Route, TxEffect};
use crate::config::live::ClientLimits;
use crate::control::Control;
use crate::obs::metrics::{FlushReason, Metrics};
use crate::obs::stats::{Outcome, Stamp, StampExt as _};
use crate::reply::{self, After, Outbound, Outbox};
use crate::upstream::{ConnHandle, Pool};
use writer::Link;

/// Everything a session needs from the server.
pub struct Context {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub limits: resp::Limits,
    /// Limits on each client, changed by `control`.
    pub clients: Arc<ClientLimits>,
    /// The configuration in force (`NEARCACHE CONFIG`).
    pub control: Arc<Control>,
    /// The tracking cache; `None` when caching is off.
    pub cache: Option<Arc<CacheLayer>>,
    /// Raised when the server stops: sessions stop reading and deliver what is in flight.
    pub stop: crate::stop::StopSignal,
}

/// Where the session's commands currently go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Multiplexed shared connections.
    Shared,
    /// A dedicated connection, given back when the transaction or blocking call is over.
    Transient,
    /// A dedicated connection kept until the client leaves.
    Session,
    /// A dedicated connection whose every frame is relayed to the client.
    Relay,
}

/// Why the reader stopped.
enum Stop {
    /// QUIT, or a dedicated connection died: the writer finishes and closes.
    Closing,
}

struct Session {
    ctx: Arc<Context>,
    out: Outbox,
    link: Arc<Link>,
    proto: u8,
    mode: Mode,
    /// The connection the in-flight requests went to.
    conn: Option<ConnHandle>,
    in_multi: bool,
    watching: bool,
    /// Keys written by the commands queued in the current MULTI, invalidated at EXEC.
    tx_keys: Vec<Bytes>,
    /// A FLUSHALL, FLUSHDB or SWAPDB is queued in the current MULTI: EXEC empties the cache.
    tx_flush: bool,
    encode_buf: BytesMut,
    /// The command being handled, for metrics and sampled traces (see `obs`).
    stamp: Option<Stamp>,
    /// When the last read returned, noted only while a trace capture runs.
    read_at: Option<Instant>,
    /// When the last read returned: the arrival time of every command it brought.
    batch_at: Instant,
    /// When the replies answered from the proxy in this batch were at hand (read once).
    answered_at: Option<Instant>,
    names: NameMemo,
    /// The command being handled.
    spec: &'static CommandSpec,
    /// The client socket, for replies written without the writer; `None` once relaying.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// Replies for the reader to write at the end of this read (the writer is idle).
    direct: BytesMut,
    /// An MGET's cached elements, kept between commands for its storage.
    mget_items: Vec<Option<Bytes>>,
    /// The bytes of the command being handled as the client sent them (multibulk only).
    frame: Option<Bytes>,
    /// This command's reply went to `direct` (and whether it is an error): its figures are
    /// recorded by the reader.
    answered_direct: Option<bool>,
}

/// How an MGET's keys are named in entry keys: each is cached as `MGET key`.
fn mget_form(proto: u8) -> Form {
    Form {
        proto,
        code: Some(command::MGET_CODE),
    }
}

/// Answers a client that cannot be served with one error reply, then closes it.
pub async fn refuse(mut stream: TcpStream, msg: &str) {
    let _ = stream.write_all(&reply::error(msg)).await;
    let _ = stream.shutdown().await;
}

/// Serves one client until it disconnects, sends QUIT, or the server shuts down.
pub async fn serve_client(stream: TcpStream, ctx: Arc<Context>) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    let output_limit = ctx.clients.output_buffer();
    let (out, out_rx) = Outbox::new(output_limit);
    let link = Arc::new(Link::default());
    let writer_link = link.clone();
    let writer_cache = ctx.cache.clone();
    let meter = out.meter().clone();
    let writer_metrics = ctx.metrics.clone();
    let writer_wr = wr.clone();
    let mut writer = tokio::spawn(async move {
        let cache = writer_cache.as_deref();
        let result = writer::run(
            out_rx,
            writer_wr,
            &writer_link,
            cache,
            &meter,
            &writer_metrics,
        )
        .await;
        if meter.is_over() {
            info!(
                limit = output_limit,
                "client output buffer limit reached; client closed"
            );
        }
        result
    });
    let mut session = Session {
        ctx,
        out,
        link,
        proto: 2,
        mode: Mode::Shared,
        conn: None,
        in_multi: false,
        watching: false,
        tx_keys: Vec::new(),
        tx_flush: false,
        encode_buf: BytesMut::new(),
        stamp: None,
        read_at: None,
        batch_at: Instant::now(),
        answered_at: None,
        names: Default::default(),
        spec: command::lookup(b""),
        wr: Some(wr),
        direct: BytesMut::new(),
        mget_items: Vec::new(),
        frame: None,
        answered_direct: None,
    };
    let link = session.link.clone();
    let ctx = session.ctx.clone();
    // Biased: the read loop is what wakes the session nearly every time.
    let shutting_down = tokio::select! {
        biased;
        _ = session.read_loop(rd) => false,
        () = ctx.stop.stopped() => true,
        // The writer gave up (client unreachable, over its output limit): stop reading too.
        () = link.closed() => false,
    };
    session.spill();
    session.out.send(Outbound::Close);
    // On shutdown the client is still there: the replies to what it sent may arrive, on the
    // upstream connections the session holds, for up to the shutdown timeout. Otherwise the
    // client left or quit, and whatever it still waits for (a blocking pop, say) is of no use.
    let drain = if shutting_down {
        session.ctx.clients.shutdown_timeout()
    } else {
        Duration::ZERO
    };
    if tokio::time::timeout(drain, &mut writer).await.is_ok() {
        session.finish();
        return;
    }
    // Dropping the dedicated connection fails what it still waits for, ending the writer.
    session.finish();
    drop(session);
    let _ = writer.await;
}

impl Session {
    async fn read_loop(&mut self, mut rd: OwnedReadHalf) {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut args = Vec::new();
        loop {
            if self.link.is_closed() {
                return;
            }
            let n = match self.ctx.clients.idle_timeout() {
                None => rd.read_buf(&mut buf).await,
                Some(limit) => match tokio::time::timeout(limit, rd.read_buf(&mut buf)).await {
                    Ok(r) => r,
                    // Reading is cancel-safe: nothing is lost by starting over.
                    Err(_) if self.waits_for_redis() => continue,
                    Err(_) => {
                        debug!("closing idle client");
                        return;
                    }
                },
            };
            let n = match n {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            self.ctx.metrics.bytes_in.inc_by(n as u64);
            self.batch_at = Instant::now();
            self.answered_at = None;
            self.read_at = self.ctx.metrics.tracer.capturing().then_some(self.batch_at);
            loop {
                match resp::parse_command_into(&mut buf, &self.ctx.limits, &mut args) {
                    Ok(Some(_)) if args.is_empty() => continue,
                    // The client is gone: running the rest of its pipeline would only load
                    // Redis and the shared connections with replies nobody reads.
                    Ok(Some(_)) if self.link.is_closed() => return,
                    Ok(Some(frame)) => {
                        if self.link.inflight() >= writer::MAX_INFLIGHT {
                            self.link.below().await;
                        }
                        if self.out.meter().is_over() {
                            return;
                        }
                        self.frame = frame;
                        let handled = self.handle(&args, &mut rd).await;
                        // Let go of the read buffer's storage, so it can be reused.
                        args.clear();
                        self.frame = None;
                        if let Err(Stop::Closing) = handled {
                            return;
                        }
                    }
                    Ok(None) => {
                        self.write_direct();
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, "client protocol error");
                        self.reply(reply::error(&protocol_error_text(&e)));
                        return;
                    }
                }
            }
            if buf.len() > self.ctx.clients.query_buffer() {
                info!(
                    bytes = buf.len(),
                    "client query buffer limit reached; client closed"
                );
                self.reply(reply::error(
                    "ERR nearcache: client query buffer limit reached; closing",
                ));
                return;
            }
            crate::bufs::make_room(&mut buf);
        }
    }

    /// A client waiting on a reply (a blocking command) or subscribed is not idle, as in Redis.
    fn waits_for_redis(&self) -> bool {
        self.mode == Mode::Relay || self.link.inflight() > 0
    }

    /// A reply the session has at hand: written by the reader at the end of this read if the
    /// writer has nothing queued, else queued behind what is.
    fn reply(&mut self, bytes: Bytes) {
        if self.wr.is_some() && self.link.writer_idle() {
            self.answered_direct = Some(matches!(bytes.first(), Some(b'-' | b'!')));
            self.direct.extend_from_slice(&bytes);
        } else {
            self.queue(Outbound::Frame(bytes));
        }
    }

    /// An array reply of cached elements (all present), assembled where it will be written.
    fn reply_array(&mut self, items: &[Option<Bytes>]) {
        if self.wr.is_some() && self.link.writer_idle() {
            self.answered_direct = Some(false);
            cachelayer::put_array(&mut self.direct, items.len(), items.iter().flatten());
        } else {
            let mut out = BytesMut::new();
            cachelayer::put_array(&mut out, items.len(), items.iter().flatten());
            self.queue(Outbound::Frame(out.freeze()));
        }
    }

    /// Queues an item for the writer, behind any replies gathered for a direct write.
    fn queue(&mut self, item: Outbound) {
        self.spill();
        self.link.queuing();
        self.out.send(item);
    }

    /// Queues the reply to the command being handled, with its stamp: the writer records the
    /// command once the reply is in (one queue item per forwarded command, not two).
    fn queue_reply(&mut self, rx: oneshot::Receiver<reply::UpstreamResult>, after: After) {
        let stamp = self.stamp.take();
        self.spill();
        self.link.queuing();
        self.out.send_pending(Outbound::Pending(rx, after, stamp));
    }

    /// Hands the replies gathered for a direct write to the writer instead.
    fn spill(&mut self) {
        if !self.direct.is_empty() {
            let bytes = self.direct.split().freeze();
            self.link.queuing();
            self.out.send(Outbound::Frame(bytes));
        }
    }

    /// Writes the gathered replies; what the socket does not take now goes to the writer.
    fn write_direct(&mut self) {
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

    /// The command being handled, to send upstream: as the client sent it when it can be,
    /// sparing a copy (a large SET's value is not copied again).
    fn wire(&mut self, args: &[Bytes]) -> Bytes {
        self.frame.take().unwrap_or_else(|| self.encode(args))
    }

    fn encode(&mut self, args: &[Bytes]) -> Bytes {
        self.encode_buf.reserve(resp::encode_command_len(args));
        resp::encode_command(args, &mut self.encode_buf);
        self.encode_buf.split().freeze()
    }

    /// Handles one command, then records its figures: at once when its reply is at hand for a
    /// direct write, else through the writer once the reply is queued.
    async fn handle(&mut self, args: &[Bytes], rd: &mut OwnedReadHalf) -> Result<(), Stop> {
        let name = args.first().map_or(&b""[..], |a| &a[..]);
        self.spec = self.names.lookup(name).resolve(args);
        let id = self.spec.id;
        let tracer = &self.ctx.metrics.tracer;
        self.stamp = Some(crate::obs::begin(
            tracer,
            id,
            self.read_at.take(),
            self.batch_at,
        ));
        self.answered_direct = None;
        let result = self.dispatch(args, rd).await;
        if let Some(stamp) = self.stamp.take() {
            match self.answered_direct {
                Some(is_error) => {
                    let now = *self.answered_at.get_or_insert_with(Instant::now);
                    drop(writer::record(&self.ctx.metrics, stamp, is_error, now));
                }
                None => self.queue(Outbound::Done(stamp)),
            }
        }
        result
    }

    async fn dispatch(&mut self, args: &[Bytes], rd: &mut OwnedReadHalf) -> Result<(), Stop> {
        self.ctx.metrics.commands.inc();
        let route = self.spec.route(args);
        if route == Route::Local(Local::Nearcache) {
            self.stamp.mark(Outcome::Local);
            let cache = self.ctx.cache.as_deref();
            let answer = crate::admin::answer(args, self.proto, &self.ctx.control, cache).await;
            self.reply(answer);
            return Ok(());
        }
        if self.mode == Mode::Relay {
            return self.relay(args);
        }
        if self.mode == Mode::Transient && !self.in_multi && !self.watching {
            // The transaction or blocking call is over: keep the connection only if this
            // command needs one again.
            if route != Route::Transient {
                self.give_back().await;
            }
        }
        if self.mode == Mode::Shared {
            return self.handle_shared(route, args, rd).await;
        }
        match route {
            Route::Local(Local::Quit) => {
                self.reply(reply::simple("OK"));
                return Err(Stop::Closing);
            }
            Route::Relay => {
                self.mode = Mode::Relay;
                return self.relay(args);
            }
            Route::Session => self.mode = Mode::Session,
            _ => {}
        }
        if self.spec.is_reset(args) {
            self.proto = 2;
            self.in_multi = false;
            self.watching = false;
        } else if let Some(v) = self.spec.hello_version(args) {
            // The dedicated connection now speaks another protocol: never give it back.
            self.proto = v;
            self.mode = Mode::Session;
        }
        self.track_tx();
        self.send_dedicated(args)
    }

    async fn handle_shared(
        &mut self,
        route: Route,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        if let Route::Local(_) = route {
            self.stamp.mark(Outcome::Local);
        }
        match route {
            Route::Local(Local::Quit) => {
                self.reply(reply::simple("OK"));
                Err(Stop::Closing)
            }
            Route::Local(Local::Reset) => {
                self.proto = 2;
                self.reply(reply::simple("RESET"));
                Ok(())
            }
            Route::Local(Local::SelectZero) => {
                self.reply(reply::simple("OK"));
                Ok(())
            }
            // Answered in `dispatch`, in every mode.
            Route::Local(Local::Nearcache) => Ok(()),
            Route::Shared => {
                // A HELLO routed here asks for a protocol only.
                if let Some(v) = self.spec.hello_version(args) {
                    self.proto = v;
                }
                match self.cache_use(args) {
                    CacheUse::Read => self.cached_read(args).await,
                    CacheUse::MultiRead => self.cached_mget(args).await,
                    CacheUse::Neutral => self.send_shared(args, After::Nothing).await,
                    effect => {
                        let after = self.write_effect(effect, args);
                        self.send_shared(args, after).await;
                    }
                }
                Ok(())
            }
            Route::Transient | Route::Session | Route::Relay => {
                if !self.take_dedicated(rd).await? {
                    return Ok(());
                }
                self.mode = match route {
                    Route::Transient => Mode::Transient,
                    Route::Session => Mode::Session,
                    _ => Mode::Relay,
                };
                if self.mode == Mode::Relay {
                    return self.relay(args);
                }
                if let Some(v) = self.spec.hello_version(args) {
                    self.proto = v;
                }
                self.track_tx();
                self.send_dedicated(args)
            }
        }
    }

    fn track_tx(&mut self) {
        match self.spec.tx {
            TxEffect::Multi => self.in_multi = true,
            TxEffect::Watch if !self.in_multi => self.watching = true,
            TxEffect::Exec | TxEffect::Discard if self.in_multi => {
                self.in_multi = false;
                self.watching = false;
            }
            TxEffect::Unwatch if !self.in_multi => self.watching = false,
            _ => {}
        }
    }

    /// What the command being handled (`args`) means for the cache.
    fn cache_use(&self, args: &[Bytes]) -> CacheUse {
        match &self.ctx.cache {
            Some(c) => c
                .rules
                .apply(self.spec, args, self.spec.cache_use(args.len())),
            None => CacheUse::Neutral,
        }
    }

    /// How the command being handled, a cacheable read, is named in entry keys.
    fn form(&self) -> Form {
        Form {
            proto: self.proto,
            code: self.spec.read_code(),
        }
    }

    /// What a write means for the cache: its keys are invalidated now, and again when its reply
    /// arrives (a fill racing with it may have slipped in between).
    fn write_effect(&mut self, effect: CacheUse, args: &[Bytes]) -> After {
        if self.ctx.cache.is_none() {
            return After::Nothing;
        }
        match effect {
            CacheUse::WriteAll => self.changed(None),
            _ => self.changed(Some(self.spec.write_keys(args))),
        }
    }

    /// A write sent now may change these keys (`None`: every key).
    fn changed(&mut self, keys: Option<Vec<Bytes>>) -> After {
        let Some(cache) = &self.ctx.cache else {
            return After::Nothing;
        };
        self.link.write_sent();
        match keys {
            None => {
                cache.flush(FlushReason::Flushall);
                After::FlushAll
            }
            Some(keys) => {
                cache.invalidate_keys(&keys);
                After::Invalidate(keys)
            }
        }
    }

    /// A cacheable read on a shared connection: a hit is answered at once (in order, behind
    /// the replies still pending); a miss goes upstream after a `PTTL` of its key, and is cached
    /// when it returns.
    async fn cached_read(&mut self, args: &[Bytes]) {
        // While a write is in flight, Redis may not have applied it yet: read through, and
        // leave the cache alone (a pipeline of writes and reads would only churn it).
        let cache = match &self.ctx.cache {
            Some(c) if self.link.writes_inflight() == 0 => c,
            _ => return self.send_shared(args, After::Nothing).await,
        };
        let lookup = self.stamp.phase("cache_lookup");
        if self.wr.is_some() && self.link.writer_idle() {
            // The reply can go straight into the bytes the reader writes at the end of this read.
            let at = self.direct.len();
            let form = self.form();
            match cache.read_into(form, args, &mut self.encode_buf, &mut self.direct) {
                None => {
                    self.stamp.mark(Outcome::Hit);
                    self.answered_direct = Some(matches!(self.direct.get(at), Some(b'-' | b'!')));
                    return;
                }
                Some(key) => {
                    drop(lookup);
                    return self.cached_miss(cache.clone(), args, key).await;
                }
            }
        }
        let key = match cache.read(self.form(), args, &mut self.encode_buf) {
            Read::Hit(hit) => {
                self.stamp.mark(Outcome::Hit);
                return self.reply(hit);
            }
            Read::Miss(key) => key,
        };
        drop(lookup);
        self.cached_miss(cache.clone(), args, key).await
    }

    /// A cacheable read that missed (`key`, its entry key): joins the same read in flight, or
    /// sends it after a `PTTL` of its key and has the reply cached when it returns.
    async fn cached_miss(&mut self, cache: Arc<CacheLayer>, args: &[Bytes], key: Bytes) {
        let group = &args[1];
        self.stamp.mark(Outcome::Miss);
        self.stamp.sent_upstream();
        // The connection is picked before joining: a leader must be able to send at once.
        let conn = self.pick_shared().await;
        let landing = match cache.join(group, &key, Some(self.out.meter())) {
            Join::Follower(rx) => {
                self.link.dispatched();
                self.queue_reply(rx, After::Nothing);
                return;
            }
            Join::Leader(landing) => landing,
        };
        let wire = key.slice(1..);
        let fill = conn.fill_tag().map(|tag| {
            // PTTL goes first: its reply is in by the time the read's is, and a write
            // between the two invalidates the key (PTTL is tracked too), voiding the fill.
            let fill = cache.begin(group, tag, key);
            let pttl = conn.call(self.encode(&[Bytes::from_static(b"PTTL"), group.clone()]));
            (fill, pttl)
        });
        let (to_client, rx) = reply::reply_channel(Some(self.out.meter()));
        conn.call_then(wire, move |result| {
            cachelayer::complete_flight(&cache, landing, fill, result, to_client)
        });
        self.link.dispatched();
        self.queue_reply(rx, After::Nothing);
    }

    /// MGET: every key is looked up on its own; the keys that miss are fetched with one MGET
    /// (each after its PTTL), cached one by one, and merged with the hits in the asked order.
    async fn cached_mget(&mut self, args: &[Bytes]) {
        let cache = match &self.ctx.cache {
            Some(c) if self.link.writes_inflight() == 0 => c.clone(),
            _ => return self.send_shared(args, After::Nothing).await,
        };
        let keys = &args[1..];
        let mut items = std::mem::take(&mut self.mget_items);
        let mut misses = Vec::new();
        let mut looked_up = 0;
        if self.wr.is_some() && self.link.writer_idle() {
            match self.mget_into_direct(&cache, keys, &mut items, &mut misses) {
                None => {
                    self.stamp.mark(Outcome::Hit);
                    self.answered_direct = Some(false);
                    self.mget_items = items;
                    return;
                }
                Some(n) => looked_up = n,
            }
        }
        for (slot, key) in keys.iter().enumerate().skip(looked_up) {
            let entry = [&b"MGET"[..], &key[..]];
            match cache.read(mget_form(self.proto), &entry, &mut self.encode_buf) {
                Read::Hit(hit) => items.push(Some(hit)),
                Read::Miss(entry_key) => {
                    items.push(None);
                    misses.push((slot, entry_key));
                }
            }
        }
        if misses.is_empty() {
            self.stamp.mark(Outcome::Hit);
            self.reply_array(&items);
            items.clear();
            self.mget_items = items;
            return;
        }
        self.stamp.mark(Outcome::Miss);
        self.stamp.sent_upstream();
        let conn = self.pick_shared().await;
        let tag = conn.fill_tag();
        let mut missing = vec![Bytes::from_static(b"MGET")];
        let mut fills = Vec::new();
        for (slot, entry_key) in misses {
            let key = &keys[slot];
            let fill = tag.map(|tag| {
                let fill = cache.begin(key, tag, entry_key);
                let pttl = conn.call(self.encode(&[Bytes::from_static(b"PTTL"), key.clone()]));
                (fill, pttl)
            });
            fills.push((slot, fill));
            missing.push(key.clone());
        }
        let (to_client, rx) = reply::reply_channel(Some(self.out.meter()));
        conn.call_then(self.encode(&missing), move |result| {
            cachelayer::complete_mget(&cache, items, fills, result, to_client)
        });
        self.link.dispatched();
        self.queue_reply(rx, After::Nothing);
    }

    /// An MGET whose keys all hit, answered straight into the bytes the reader writes at the
    /// end of this read: `None`. If a key misses, nothing stays written: the keys looked up so
    /// far are in `items` and `misses` as the general path would have put them, and their count
    /// is returned, so that no key is looked up (and counted) twice.
    fn mget_into_direct(
        &mut self,
        cache: &CacheLayer,
        keys: &[Bytes],
        items: &mut Vec<Option<Bytes>>,
        misses: &mut Vec<(usize, Bytes)>,
    ) -> Option<usize> {
        let at = self.direct.len();
        resp::header(&mut self.direct, b'*', keys.len());
        let first = self.direct.len();
        let form = mget_form(self.proto);
        let mut ends: smallvec::SmallVec<[usize; 16]> = smallvec::SmallVec::new();
        for (slot, key) in keys.iter().enumerate() {
            let entry = [&b"MGET"[..], &key[..]];
            let Some(entry_key) =
                cache.read_into(form, &entry, &mut self.encode_buf, &mut self.direct)
            else {
                ends.push(self.direct.len());
                continue;
            };
            // A miss: hand the hits so far over as items, then take back what was written.
            let mut start = first;
            for end in ends {
                items.push(Some(Bytes::copy_from_slice(&self.direct[start..end])));
                start = end;
            }
            items.push(None);
            misses.push((slot, entry_key));
            self.direct.truncate(at);
            return Some(slot + 1);
        }
        None
    }

    /// The shared connection for the next command: the current one while replies are pending
    /// on it, else the least busy one (after waiting for in-flight replies if it changes).
    async fn pick_shared(&mut self) -> ConnHandle {
        if let Some(c) = &self.conn {
            if c.proto() == self.proto && self.link.inflight() > 0 && c.is_up() {
                return c.clone();
            }
        }
        self.link.drained().await;
        let conn = self.ctx.pool.shared(self.proto);
        self.conn = Some(conn.clone());
        conn
    }

    /// Sends a stateless command on the session's shared connection.
    async fn send_shared(&mut self, args: &[Bytes], after: After) {
        let conn = self.pick_shared().await;
        let bytes = self.wire(args);
        self.stamp.sent_upstream();
        self.link.dispatched();
        let rx = conn.call_for(bytes, true, Some(self.out.meter()));
        self.queue_reply(rx, after);
    }

    /// Moves the session onto a dedicated connection; on failure replies with the error. A
    /// client that leaves while waiting for one gives up its place in line.
    async fn take_dedicated(&mut self, rd: &mut OwnedReadHalf) -> Result<bool, Stop> {
        self.link.drained().await;
        let got = tokio::select! {
            got = self.ctx.pool.dedicated(self.proto) => got,
            () = client_gone(rd) => return Err(Stop::Closing),
        };
        Ok(match got {
            Ok(conn) => {
                self.ctx.metrics.pinned.inc();
                self.conn = Some(conn);
                true
            }
            Err(e) => {
                self.reply(e.to_frame());
                false
            }
        })
    }

    /// Gives a transient dedicated connection back once its last reply is in.
    async fn give_back(&mut self) {
        self.link.drained().await;
        if let Some(conn) = self.conn.take() {
            self.ctx.pool.release(conn);
        }
        self.ctx.metrics.pinned.dec();
        self.mode = Mode::Shared;
    }

    fn dedicated_conn(&mut self) -> Result<&ConnHandle, Stop> {
        if !self.conn.as_ref().is_some_and(ConnHandle::is_up) {
            // The state this session kept upstream (transaction, db, subscriptions) is gone.
            self.reply(reply::error(
                "ERR nearcache: dedicated upstream connection lost; closing the session",
            ));
            return Err(Stop::Closing);
        }
        self.conn.as_ref().ok_or(Stop::Closing)
    }

    fn send_dedicated(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        let after = self.dedicated_write_effect(args);
        let bytes = self.wire(args);
        let timed = !self.spec.blocks(args);
        let meter = self.out.meter().clone();
        let rx = self.dedicated_conn()?.call_for(bytes, timed, Some(&meter));
        self.stamp.sent_upstream();
        self.link.dispatched();
        self.queue_reply(rx, after);
        Ok(())
    }

    /// Writes on a dedicated connection: inside MULTI they run at EXEC, so their keys are
    /// collected and invalidated (again) when EXEC's reply arrives.
    fn dedicated_write_effect(&mut self, args: &[Bytes]) -> After {
        let effect = self.cache_use(args);
        if self.spec.tx == TxEffect::Discard {
            self.tx_keys.clear();
            self.tx_flush = false;
        }
        let is_exec = self.spec.tx == TxEffect::Exec;
        match effect {
            CacheUse::Write | CacheUse::WriteAll if self.in_multi && !is_exec => {
                if let Some(c) = &self.ctx.cache {
                    let keys = self.spec.write_keys(args);
                    c.invalidate_keys(&keys);
                    self.tx_keys.extend(keys);
                    if effect == CacheUse::WriteAll {
                        c.flush(FlushReason::Flushall);
                        self.tx_flush = true;
                    }
                }
                After::Nothing
            }
            CacheUse::Write | CacheUse::WriteAll => self.write_effect(effect, args),
            _ if is_exec && (self.tx_flush || !self.tx_keys.is_empty()) => {
                let keys = std::mem::take(&mut self.tx_keys);
                let flush = std::mem::take(&mut self.tx_flush);
                self.changed((!flush).then_some(keys))
            }
            _ => After::Nothing,
        }
    }

    fn relay(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        self.stamp.untimed();
        // No reply hook in relay mode: invalidate at dispatch only.
        if let (Some(c), CacheUse::Write) = (&self.ctx.cache, self.cache_use(args)) {
            c.invalidate_keys(&self.spec.write_keys(args));
        }
        if self.spec.is_reset(args) {
            self.proto = 2;
        } else if let Some(v) = self.spec.hello_version(args) {
            self.proto = v;
        }
        let bytes = self.encode(args);
        // Relayed frames reach the writer uncounted: from here on every reply goes through it.
        self.spill();
        self.wr = None;
        let out = self.out.clone();
        self.dedicated_conn()?.relay(bytes, out);
        Ok(())
    }

    /// Ends the session: a transient connection with nothing pending could be reused, but the
    /// client is gone mid-whatever, so every dedicated connection is simply dropped (closed).
    fn finish(&mut self) {
        if self.mode != Mode::Shared {
            self.ctx.metrics.pinned.dec();
            if let Some(conn) = self.conn.take() {
                self.ctx.pool.discard(conn);
            }
        }
        self.conn = None;
    }
}

/// Resolves when the client has closed its side with nothing left unread. With more input
/// queued nothing can be told, and it never resolves.
async fn client_gone(rd: &mut OwnedReadHalf) {
    let mut byte = [0u8; 1];
    match rd.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The reply to a malformed request, worded as Redis words it where Redis has a wording.
fn protocol_error_text(e: &resp::ParseError) -> String {
    use resp::ErrorKind as K;
    let what = match e.kind {
        K::TooManyElements { .. } => "invalid multibulk length".to_string(),
        K::InvalidLength if e.offset <= 1 => "invalid multibulk length".to_string(),
        K::InvalidLength | K::BulkTooLarge { .. } => "invalid bulk length".to_string(),
        K::ExpectedBulk(b) => format!("expected '$', got '{}'", b as char),
        K::InlineTooLong { .. } => "too big inline request".to_string(),
        K::UnbalancedQuotes => "unbalanced quotes in request".to_string(),
        other => other.to_string(),
    };
    format!("ERR Protocol error: {what}")
}
