//! Sampled request tracing, captured on demand as a Chrome trace-event file.
//!
//! While no capture runs, a request costs one relaxed atomic load ([`sample`]) and creates no
//! span. During a capture one request in `K` (`--trace-sample`) gets `tracing` spans for its
//! phases, target `nearcache::req`; [`CaptureLayer`], installed in the binary's subscriber,
//! turns each closed span into a Chrome "complete" event. Perfetto and chrome://tracing open
//! the file; each sampled request is one track (`tid`), its phases nested under `request`.
//!
//! Never does: keep events outside a capture, or hold more than [`MAX_EVENTS`] of them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target of request-phase spans.
pub const TARGET: &str = "nearcache::req";
/// Events kept by one capture at most; later ones are counted as dropped.
pub const MAX_EVENTS: usize = 200_000;

static CAPTURING: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static SAMPLE_EVERY: AtomicU64 = AtomicU64::new(100);
static SEEN: AtomicU64 = AtomicU64::new(0);
static NEXT_REQ: AtomicU64 = AtomicU64::new(1);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicBool = AtomicBool::new(false);
static EVENTS: Mutex<Option<Capture>> = Mutex::new(None);

struct Capture {
    epoch: Instant,
    events: Vec<Event>,
}

struct Event {
    name: &'static str,
    tid: u64,
    start: Instant,
    end: Instant,
    command: Option<&'static str>,
}

/// Sets `K`: one request in `K` is traced while a capture runs (0 is taken as 1).
pub fn set_sample_every(k: u64) {
    SAMPLE_EVERY.store(k.max(1), Ordering::Relaxed);
}

/// The current `K`.
pub fn sample_every() -> u64 {
    SAMPLE_EVERY.load(Ordering::Relaxed)
}

/// Whether this request should be traced: false at the cost of one load unless capturing.
#[inline]
pub fn sample() -> bool {
    if !CAPTURING.load(Ordering::Relaxed) {
        return false;
    }
    SEEN.fetch_add(1, Ordering::Relaxed)
        .checked_rem(sample_every())
        == Some(0)
}

/// Whether a capture runs now (the session notes read times only then).
#[inline]
pub fn capturing() -> bool {
    CAPTURING.load(Ordering::Relaxed)
}

/// The spans of one sampled request, closed when it is dropped (after its reply is written).
#[derive(Debug)]
pub struct RequestTrace {
    pub request: Span,
    /// The wait for Redis's reply: from dispatch to the writer receiving it.
    pub upstream: Option<Span>,
    /// From the reply being queued to its bytes being written.
    pub reply: Option<Span>,
}

impl RequestTrace {
    /// Opens a sampled request's root span; `read_at` is when its bytes arrived, if known.
    pub fn start(command: &'static str, read_at: Option<Instant>) -> Box<RequestTrace> {
        let req = NEXT_REQ.fetch_add(1, Ordering::Relaxed);
        // Spans for time already spent: the layer starts them `back_us` before their creation,
        // so the request begins when its bytes arrived, with the read and parse inside it.
        let back_us = read_at.map_or(0, |at| at.elapsed().as_micros() as u64);
        let request = tracing::info_span!(target: TARGET, "request", req, command, back_us);
        if back_us > 0 {
            let read =
                tracing::info_span!(target: TARGET, parent: &request, "client_read_parse", back_us);
            drop(read);
        }
        Box::new(RequestTrace {
            request,
            upstream: None,
            reply: None,
        })
    }

    /// A child span for a phase, to enter or hold.
    pub fn phase(&self, name: &'static str) -> Span {
        match name {
            "cache_lookup" => {
                tracing::info_span!(target: TARGET, parent: &self.request, "cache_lookup")
            }
            "upstream" => tracing::info_span!(target: TARGET, parent: &self.request, "upstream"),
            _ => tracing::info_span!(target: TARGET, parent: &self.request, "reply"),
        }
    }
}

/// What the layer keeps per span.
struct SpanData {
    tid: u64,
    start: Instant,
    command: Option<&'static str>,
}

#[derive(Default)]
struct Fields {
    req: Option<u64>,
    back_us: u64,
    command: Option<&'static str>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "req" => self.req = Some(value),
            "back_us" => self.back_us = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "command" {
            // Command names come from a fixed table; anything else is not kept.
            let id = crate::command::lookup(value.as_bytes()).id;
            self.command = Some(crate::command::name_of(id));
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// The `tracing` layer that records request-phase spans during a capture.
pub struct CaptureLayer;

impl CaptureLayer {
    /// The layer, filtered to request-phase spans. Installing it makes captures non-empty.
    pub fn filtered<S>() -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        INSTALLED.store(true, Ordering::Relaxed);
        use tracing_subscriber::Layer as _;
        CaptureLayer.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() == TARGET
        }))
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut f = Fields::default();
        attrs.record(&mut f);
        let tid = f.req.or_else(|| {
            span.parent()
                .and_then(|p| p.extensions().get::<SpanData>().map(|d| d.tid))
        });
        let Some(tid) = tid else { return };
        let now = Instant::now();
        let start = now
            .checked_sub(Duration::from_micros(f.back_us))
            .unwrap_or(now);
        span.extensions_mut().insert(SpanData {
            tid,
            start,
            command: f.command,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let Some(d) = ext.get::<SpanData>() else {
            return;
        };
        let end = Instant::now();
        let mut guard = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cap) = guard.as_mut() else { return };
        if cap.events.len() >= MAX_EVENTS {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        cap.events.push(Event {
            name: span.name(),
            tid: d.tid,
            start: d.start,
            end,
            command: d.command,
        });
    }
}

/// Why a capture could not run.
#[derive(Debug, PartialEq, Eq)]
pub enum CaptureError {
    /// Another capture is running.
    Busy,
}

/// Captures for `length`, then returns the Chrome trace-event JSON.
pub async fn capture(length: Duration) -> Result<String, CaptureError> {
    if BUSY.swap(true, Ordering::AcqRel) {
        return Err(CaptureError::Busy);
    }
    // Cleared when this future ends or is dropped (client gone mid-capture).
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            CAPTURING.store(false, Ordering::Relaxed);
            EVENTS.lock().unwrap_or_else(|p| p.into_inner()).take();
            BUSY.store(false, Ordering::Release);
        }
    }
    let _done = Done;
    DROPPED.store(0, Ordering::Relaxed);
    *EVENTS.lock().unwrap_or_else(|p| p.into_inner()) = Some(Capture {
        epoch: Instant::now(),
        events: Vec::new(),
    });
    CAPTURING.store(true, Ordering::Relaxed);
    tokio::time::sleep(length).await;
    CAPTURING.store(false, Ordering::Relaxed);
    // Requests sampled near the end close their spans once their replies are written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cap = EVENTS.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(render(cap))
}

fn render(cap: Option<Capture>) -> String {
    let mut out = String::from("{\"traceEvents\":[");
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
    };
    sep(&mut out);
    out.push_str(
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"nearcache\"}}",
    );
    let mut count = 0usize;
    if let Some(cap) = &cap {
        for e in &cap.events {
            let ts = e.start.saturating_duration_since(cap.epoch).as_nanos() as f64 / 1000.0;
            let dur = e.end.saturating_duration_since(e.start).as_nanos() as f64 / 1000.0;
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"name\":\"{}\",\"cat\":\"request\",\"ph\":\"X\",\"pid\":1,\"tid\":{},\"ts\":{ts:.3},\"dur\":{dur:.3}",
                e.name, e.tid
            );
            if let Some(c) = e.command {
                let _ = write!(out, ",\"args\":{{\"command\":\"{c}\"}}");
            }
            out.push('}');
            count += 1;
        }
    }
    let _ = write!(
        out,
        "],\"displayTimeUnit\":\"ms\",\"otherData\":{{\"events\":{count},\"dropped\":{},\"sample_every\":{},\"layer_installed\":{}}}}}",
        DROPPED.load(Ordering::Relaxed),
        sample_every(),
        INSTALLED.load(Ordering::Relaxed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sampled_outside_a_capture() {
        assert!(!capturing());
        assert!((0..1000).all(|_| !sample()));
    }

    #[test]
    fn an_empty_capture_renders_valid_json_shape() {
        let s = render(None);
        assert!(s.starts_with("{\"traceEvents\":["));
        assert!(s.contains("\"events\":0"));
        assert!(s.ends_with("}}"));
    }
}
