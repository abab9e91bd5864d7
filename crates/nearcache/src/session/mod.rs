//! One client connection: a reader that takes each command through its phases, and a writer
//! that replies in order.
//!
//! The phases of a command, in the order the reader runs them ([`Session::handle`]):
//! 1. **read and parse**: one socket read, then every command it brought (`read_loop`);
//! 2. **resolve**: its [`CommandSpec`], looked up once per distinct name, and its stamp (figures,
//!    sampled trace);
//! 3. **route**: local (QUIT, RESET, `NEARCACHE`), shared, or a dedicated connection, and the
//!    mode change that takes ([`Session::transition`], `mode.rs`);
//! 4. **cache**: on shared connections, a read looks the cache up and a hit is answered at once;
//!    a miss or anything else goes upstream (`cached.rs`); a write invalidates its keys;
//! 5. **reply**: written by the reader itself while the writer is idle, else queued for the
//!    writer, which awaits each reply in order (`output.rs`, `writer.rs`).
//!
//! The reader never waits for a reply before sending the next command (pipelining is kept), but
//! it does wait for in-flight replies before moving the session to a different upstream
//! connection, so that Redis sees a client's commands in the order the client sent them.
//! Never holds a lock across an `.await`.

mod auth;
mod cached;
mod clients;
mod cluster;
mod cluster_mget;
mod link;
mod mode;
mod node_tx;
mod output;
mod replica;
mod state;
mod tx;
mod writer;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::socket::{ClientStream, OwnedReadHalf};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use crate::cachelayer::Form;
use crate::command::memo::NameMemo;
use crate::command::{self, CacheUse, KeyList, Local, Route, Special};
use crate::obs::metrics::{Bypass, FlushReason};
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, After, Outbound, Outbox};
use link::Link;
use mode::Send;
use output::Output;
use state::{hello_setname, Arrival, Mode, Session, Stop};
pub use state::{AuthGate, Context};
use tx::Tx;

/// Arguments a session's reused vector keeps room for between commands: past this, a command's
/// list is dropped with it rather than held (32 bytes an argument) for the connection's life.
const MAX_KEPT_ARGS: usize = 1024;

/// Answers a client that cannot be served with one error reply, then closes it.
pub async fn refuse(stream: ClientStream, msg: &str) {
    let (_rd, mut wr) = stream.into_split();
    let _ = wr.write_all(&reply::error(msg)).await;
    let _ = wr.shutdown().await;
}

/// Serves one client until it disconnects, sends QUIT, or the server shuts down.
pub async fn serve_client(stream: ClientStream, ctx: Arc<Context>) {
    stream.set_nodelay();
    let me = {
        use std::os::fd::AsRawFd;
        let (addr, laddr) = stream.addrs();
        let fd = stream.as_raw_fd();
        let user = ctx.pool.user().to_string();
        ctx.registry.register(addr, laddr, fd, &user)
    };
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    let output_limit = ctx.clients.output_buffer();
    let (out, out_rx) = Outbox::new(output_limit);
    let link = Arc::new(Link::default());
    {
        // `CLIENT KILL` from another client ends the session as a writer gone would.
        let link = link.clone();
        me.on_kill(Box::new(move || link.close()));
    }
    let mut writer = {
        let (link, cache, metrics, wr) = (
            link.clone(),
            ctx.cache.clone(),
            ctx.metrics.clone(),
            wr.clone(),
        );
        let meter = out.meter().clone();
        tokio::spawn(async move {
            let result = writer::run(out_rx, wr, &link, cache.as_deref(), &meter, &metrics).await;
            if meter.is_over() {
                info!(
                    limit = output_limit,
                    "client output buffer limit reached; client closed"
                );
            }
            result
        })
    };
    let now = Instant::now();
    let mut session = Session {
        ctx: ctx.clone(),
        output: Output::new(out, link.clone(), wr),
        proto: 2,
        mode: Mode::Shared,
        conn: None,
        tx: Tx::default(),
        names: NameMemo::default(),
        spec: command::lookup(b""),
        stamp: None,
        frame: None,
        arrival: Arrival {
            batch_at: now,
            read_at: None,
            answered_at: None,
        },
        encode_buf: BytesMut::new(),
        mget_items: Vec::new(),
        me,
        caching_noted: false,
        unasked: Default::default(),
        joined: Default::default(),
        who: None,
        target: None,
        again: None,
        home: None,
        node_tx: Default::default(),
    };
    session.who = session.first_identity();
    if let Some(id) = &session.who {
        session.me.client().set_user(&id.user);
    }
    // Biased: the read loop is what wakes the session nearly every time.
    let shutting_down = tokio::select! {
        biased;
        _ = session.read_loop(rd) => false,
        () = ctx.stop.stopped() => true,
        // The writer gave up (client unreachable, over its output limit): stop reading too.
        () = link.closed() => false,
    };
    session.output.spill();
    session.output.out.send(Outbound::Close);
    // On shutdown the client is still there: the replies to what it sent may arrive, on the
    // upstream connections the session holds, for up to the shutdown timeout. Otherwise the
    // client left or quit, and whatever it still waits for (a blocking pop, say) is of no use.
    let drain = if shutting_down {
        ctx.clients.shutdown_timeout()
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
    /// Phase 1: reads from the client and handles every command each read brings.
    async fn read_loop(&mut self, mut rd: OwnedReadHalf) {
        let mut buf = crate::bufs::ReadBuf::with_capacity(16 * 1024);
        // Remembers how far an incomplete command was read, so that one trickling in is
        // examined once rather than from its start on every read.
        let mut reader = resp::CommandReader::new();
        let mut args = Vec::new();
        loop {
            if self.output.link.is_closed() {
                return;
            }
            let n = match self.ctx.clients.idle_timeout() {
                None => rd.read_buf(&mut *buf).await,
                Some(limit) => match tokio::time::timeout(limit, rd.read_buf(&mut *buf)).await {
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
                // Killed (`CLIENT KILL`) while it waited: what it sends now is not run, as
                // Redis closes a client it kills before answering the killer.
                Ok(n) if n > 0 && !self.me.is_killed() => n,
                _ => return,
            };
            self.ctx.metrics.bytes_in.inc_by(n as u64);
            let now = Instant::now();
            self.me.active();
            self.arrival = Arrival {
                batch_at: now,
                read_at: self.ctx.metrics.tracer.capturing().then_some(now),
                answered_at: None,
            };
            loop {
                match reader.read(&mut buf, &self.ctx.limits, &mut args) {
                    Ok(Some(_)) if args.is_empty() => continue,
                    // The client is gone: running the rest of its pipeline would only load
                    // Redis and the shared connections with replies nobody reads.
                    Ok(Some(_)) if self.output.link.is_closed() => return,
                    Ok(Some(frame)) => {
                        if self.output.link.inflight() >= link::MAX_INFLIGHT {
                            self.output.link.below().await;
                        }
                        if self.output.out.meter().is_over() {
                            return;
                        }
                        self.frame = frame;
                        let handled = self.handle(&args, &mut rd).await;
                        // Let go of the read buffer's storage, so it can be reused, and of a
                        // huge command's argument list.
                        args.clear();
                        if args.capacity() > MAX_KEPT_ARGS {
                            args = Vec::new();
                        }
                        self.frame = None;
                        match handled {
                            Ok(()) => {}
                            Err(Stop::Closing) => return,
                            Err(Stop::Replicate(command)) => {
                                return self.replicate(command, buf.split(), rd).await;
                            }
                        }
                    }
                    Ok(None) => {
                        self.output.write_direct();
                        break;
                    }
                    // Redis's words, then the connection closes, as Redis closes it.
                    Err(e) => {
                        debug!(error = %e, "client protocol error");
                        self.output
                            .reply(Bytes::from(resp::protocol_error_reply(&e)));
                        return;
                    }
                }
            }
            if buf.len() > self.ctx.clients.query_buffer() {
                info!(
                    bytes = buf.len(),
                    "client query buffer limit reached; client closed"
                );
                self.output.reply(reply::error(
                    "ERR nearcache: client query buffer limit reached; closing",
                ));
                return;
            }
            buf.make_room();
        }
    }

    /// A client waiting on a reply (a blocking command) or subscribed is not idle, as in Redis.
    fn waits_for_redis(&self) -> bool {
        self.mode == Mode::Relay || self.output.link.inflight() > 0
    }

    /// Phases 2 to 5 for one command; then its figures are recorded: at once when its reply is
    /// at hand for a direct write, else by the writer once the reply is queued.
    async fn handle(&mut self, args: &[Bytes], rd: &mut OwnedReadHalf) -> Result<(), Stop> {
        let name = args.first().map_or(&b""[..], |a| &a[..]);
        self.spec = self.names.lookup(name).resolve(args);
        let (tracer, arrival) = (&self.ctx.metrics.tracer, &mut self.arrival);
        let stamp = crate::obs::begin(
            tracer,
            self.spec.id,
            arrival.read_at.take(),
            arrival.batch_at,
        );
        self.stamp = Some(stamp);
        self.output.answered = None;
        self.me.ran(self.spec.code());
        let result = self.dispatch(args, rd).await;
        if self.caching_noted && self.spec.special != Special::Caching {
            self.clear_caching();
        }
        if let Some(stamp) = self.stamp.take() {
            match self.output.answered {
                Some(is_error) => {
                    let now = *self.arrival.answered_at.get_or_insert_with(Instant::now);
                    drop(writer::record(&self.ctx.metrics, stamp, is_error, now));
                }
                None => self.output.queue(Outbound::Done(stamp)),
            }
        }
        result
    }

    /// Phases 3 to 5: routes the command, then answers or sends it.
    async fn dispatch(&mut self, args: &[Bytes], rd: &mut OwnedReadHalf) -> Result<(), Stop> {
        self.ctx.metrics.commands.inc();
        let authed;
        let args = match self.gate(args).await? {
            auth::Gated::Answered => return Ok(()),
            auth::Gated::Pass => args,
            auth::Gated::Rewritten(words) => {
                authed = words;
                self.spec = self.names.lookup(&authed[0]).resolve(&authed);
                &authed[..]
            }
        };
        let mut route = self.spec.route(args);
        if route == Route::Local(Local::Nearcache) {
            // The proxy's own command is answered in every mode, relaying included.
            return self.answer_local(Local::Nearcache, args).await;
        }
        if let Some(nodes) = &self.ctx.cluster {
            return self.cluster_dispatch(nodes.clone(), route, args, rd).await;
        }
        if self.mode == Mode::Relay {
            self.settle_relay().await;
        }
        if route == Route::Local(Local::Client) && self.answers_client_here(args) {
            return self.answer_client(args).await;
        }
        let rewritten;
        let mut args = args;
        match self.spec.special {
            Special::Tracking => {
                match self.tracking_args(args) {
                    Err(refused) => {
                        self.output.reply(refused);
                        return Ok(());
                    }
                    Ok(Some(v)) => {
                        self.frame = None;
                        rewritten = v;
                        args = &rewritten;
                    }
                    Ok(None) => {}
                }
                if self.proto == 2 {
                    // No pushes in RESP2: invalidations go to the REDIRECT target.
                    route = Route::Session;
                }
            }
            Special::Hello if self.spec.hello_version(args) == Some(3) => {
                let t = self.me.tracking();
                if t.on && t.redirect.is_none() {
                    // Invalidations now arrive as pushes between replies.
                    route = Route::Relay;
                }
            }
            Special::Caching => self.note_caching(args),
            Special::Reset => self.me.reset(),
            _ => {}
        }
        if self.spec.special == Special::Hello {
            if let Some(name) = hello_setname(args) {
                self.me.set_name(name.clone());
            }
        }
        match self.transition(route, args, rd).await? {
            Send::Local(local) => self.answer_local(local, args).await,
            Send::Shared => {
                self.send_through_cache(args).await;
                Ok(())
            }
            Send::Dedicated => {
                self.count_dedicated_read(args);
                self.send_dedicated(args)
            }
            Send::Relay => {
                self.count_dedicated_read(args);
                self.relay(args)
            }
            Send::Nowhere => Ok(()),
            Send::Replicate => Err(Stop::Replicate(self.wire(args))),
        }
    }

    /// Commands the proxy answers itself.
    async fn answer_local(&mut self, local: Local, args: &[Bytes]) -> Result<(), Stop> {
        self.stamp.mark(Outcome::Local);
        let answer = match local {
            Local::Quit => {
                self.output.reply(reply::simple("OK"));
                return Err(Stop::Closing);
            }
            Local::Reset => {
                self.proto = 2;
                reply::simple("RESET")
            }
            Local::SelectZero => reply::simple("OK"),
            // Answered in `dispatch`, or sent to Redis inside MULTI.
            Local::Client => return self.answer_client(args).await,
            Local::Nearcache => match crate::admin::changes_proxy(args) {
                Some(name) if !self.may_administer().await => reply::error(&format!(
                    "NOPERM this user has no permissions to run the '{name}' command"
                )),
                _ => {
                    let cache = self.ctx.cache.as_deref();
                    crate::admin::answer(args, self.proto, &self.ctx.control, cache).await
                }
            },
        };
        self.output.reply(answer);
        Ok(())
    }

    /// Phase 4 on a shared connection: a read goes through the cache, a write invalidates
    /// what it may change, anything else is forwarded.
    async fn send_through_cache(&mut self, args: &[Bytes]) {
        // A HELLO routed here asks for a protocol only.
        if let Some(v) = self.spec.hello_version(args) {
            self.proto = v;
            self.me.set_proto(v);
        }
        match self.cache_use(args) {
            CacheUse::Read => self.cached_read(args).await,
            CacheUse::MultiRead => self.cached_mget(args).await,
            CacheUse::Neutral => {
                if self.ctx.cache.is_some() {
                    // A read only the operator's rules keep out of the cache.
                    self.count_bypass(Bypass::NotCacheable, args);
                }
                let after = self
                    .acl_poke(args)
                    .unwrap_or_else(|| self.neutral_after(args));
                self.send_shared(args, after).await
            }
            CacheUse::WriteAll => {
                if self.joined.conflicts(None) {
                    self.after_joined_reads().await;
                }
                let after = self.changed(None, false);
                self.send_shared(args, after).await;
            }
            _ => {
                let written = self.spec.written_keys(args);
                if self
                    .joined
                    .conflicts(written.exact.then_some(&written.keys[..]))
                {
                    self.after_joined_reads().await;
                }
                let after = self.changed(Some(written.keys), written.exact);
                self.send_shared(args, after).await;
            }
        }
    }

    /// Before a write that may change a key whose read this session joined on another
    /// connection: waits for every reply outstanding, so that the write cannot reach Redis
    /// before that read does and answer it with the write's value.
    async fn after_joined_reads(&mut self) {
        self.output.link.drained().await;
        self.joined.clear();
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

    /// Counts the command being handled as reads that bypassed the cache for `reason`, if it
    /// is a cacheable read (by the command table, before the operator's rules): one per key
    /// looked up, as hits and misses are counted.
    pub(super) fn count_bypass(&self, reason: Bypass, args: &[Bytes]) {
        let reads = match self.spec.cache_use(args.len()) {
            CacheUse::Read => 1,
            CacheUse::MultiRead => args.len() as u64 - 1,
            _ => return,
        };
        self.ctx.metrics.bypass(reason, reads);
    }

    /// A command sent on the session's dedicated connection: a cacheable read there is a read
    /// the cache did not serve.
    fn count_dedicated_read(&self, args: &[Bytes]) {
        if self.ctx.cache.is_none() {
            return;
        }
        let reason = if self.cache_use(args) == CacheUse::Neutral {
            Bypass::NotCacheable
        } else if self.tx.is_open() {
            Bypass::Transaction
        } else {
            Bypass::Dedicated
        };
        self.count_bypass(reason, args);
    }

    /// How the command being handled, a cacheable read, is named in entry keys.
    fn form(&self) -> Form {
        Form {
            proto: self.proto,
            code: self.spec.read_code(),
            part: self.cache_part().unwrap_or(0),
        }
    }

    /// What a write means for the cache: its keys are invalidated now, and again when its reply
    /// arrives (a fill racing with it may have slipped in between).
    fn write_effect(&mut self, effect: CacheUse, args: &[Bytes]) -> After {
        if self.ctx.cache.is_none() {
            return After::Nothing;
        }
        match effect {
            CacheUse::WriteAll => self.changed(None, false),
            _ => {
                let written = self.spec.written_keys(args);
                self.changed(Some(written.keys), written.exact)
            }
        }
    }

    /// A write sent now may change these keys (`None`: every key); `exact` when it changes no
    /// other key, so that only reads of these keys wait for its reply (`writes.rs`).
    fn changed(&mut self, keys: Option<KeyList>, exact: bool) -> After {
        let Some(cache) = &self.ctx.cache else {
            return After::Nothing;
        };
        let mark = self
            .output
            .link
            .writes
            .sent(keys.as_deref().filter(|_| exact));
        match keys {
            None => {
                cache.flush(FlushReason::Flushall);
                After::FlushAll
            }
            Some(keys) => {
                cache.invalidate_keys(&keys);
                After::Invalidate(keys, mark)
            }
        }
    }
}
