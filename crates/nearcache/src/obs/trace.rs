//! Sampled request tracing, captured on demand as a Chrome trace-event file.
//!
//! Each proxy has its own [`Tracer`]. While no capture runs, a request costs one relaxed atomic
//! load ([`Tracer::sample`]) and records nothing. During a capture one request in `K`
//! (`--trace-sample`) gets a [`RequestTrace`]: its phases are timed as they happen and each
//! becomes a Chrome "complete" event when it ends. Perfetto and chrome://tracing open the file;
//! each sampled request is one track (`tid`), its phases (`client_read_parse`, `cache_lookup`,
//! `upstream`, `reply`) inside its `request`.
//!
//! Never does: keep events outside a capture, hold more than [`MAX_EVENTS`] of them, or record
//! a key or a value (events carry command names from the command table only).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Events kept by one capture at most; later ones are counted as dropped.
pub const MAX_EVENTS: usize = 200_000;

/// One proxy's tracing state: the sampling rate, and the capture in progress, if any.
pub struct Tracer {
    capturing: AtomicBool,
    sample_every: AtomicU64,
    seen: AtomicU64,
    next_req: AtomicU64,
    dropped: AtomicU64,
    busy: AtomicBool,
    events: Mutex<Option<Capture>>,
}

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

/// Why a capture could not run.
#[derive(Debug, PartialEq, Eq)]
pub enum CaptureError {
    /// Another capture is running.
    Busy,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            capturing: AtomicBool::new(false),
            sample_every: AtomicU64::new(100),
            seen: AtomicU64::new(0),
            next_req: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            events: Mutex::new(None),
        }
    }
}

impl Tracer {
    /// Sets `K`: one request in `K` is traced while a capture runs (0 is taken as 1).
    pub fn set_sample_every(&self, k: u64) {
        self.sample_every.store(k.max(1), Ordering::Relaxed);
    }

    /// The current `K`.
    pub fn sample_every(&self) -> u64 {
        self.sample_every.load(Ordering::Relaxed)
    }

    /// Whether this request should be traced: false at the cost of one load unless capturing.
    #[inline]
    pub fn sample(&self) -> bool {
        if !self.capturing() {
            return false;
        }
        self.seen
            .fetch_add(1, Ordering::Relaxed)
            .checked_rem(self.sample_every())
            == Some(0)
    }

    /// Whether a capture runs now (sessions note read times only then).
    #[inline]
    pub fn capturing(&self) -> bool {
        self.capturing.load(Ordering::Relaxed)
    }

    /// Captures for `length`, then returns the Chrome trace-event JSON.
    pub async fn capture(&self, length: Duration) -> Result<String, CaptureError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(CaptureError::Busy);
        }
        // Cleared when this future ends or is dropped (client gone mid-capture).
        struct Done<'a>(&'a Tracer);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.capturing.store(false, Ordering::Relaxed);
                self.0.lock().take();
                self.0.busy.store(false, Ordering::Release);
            }
        }
        let _done = Done(self);
        self.dropped.store(0, Ordering::Relaxed);
        *self.lock() = Some(Capture {
            epoch: Instant::now(),
            events: Vec::new(),
        });
        self.capturing.store(true, Ordering::Relaxed);
        tokio::time::sleep(length).await;
        self.capturing.store(false, Ordering::Relaxed);
        // Requests sampled near the end close their phases once their replies are written.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let cap = self.lock().take();
        Ok(self.render(cap))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Capture>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, event: Event) {
        let mut guard = self.lock();
        let Some(cap) = guard.as_mut() else { return };
        if cap.events.len() >= MAX_EVENTS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        cap.events.push(event);
    }

    fn render(&self, cap: Option<Capture>) -> String {
        let mut out = String::from("{\"traceEvents\":[");
        out.push_str(
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"nearcache\"}}",
        );
        let mut count = 0usize;
        if let Some(cap) = &cap {
            for e in &cap.events {
                let ts = e.start.saturating_duration_since(cap.epoch).as_nanos() as f64 / 1000.0;
                let dur = e.end.saturating_duration_since(e.start).as_nanos() as f64 / 1000.0;
                let _ = write!(
                    out,
                    ",{{\"name\":\"{}\",\"cat\":\"request\",\"ph\":\"X\",\"pid\":1,\"tid\":{},\"ts\":{ts:.3},\"dur\":{dur:.3}",
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
            "],\"displayTimeUnit\":\"ms\",\"otherData\":{{\"events\":{count},\"dropped\":{},\"sample_every\":{}}}}}",
            self.dropped.load(Ordering::Relaxed),
            self.sample_every()
        );
        out
    }
}

/// The phases of one sampled request: the request itself is recorded when this is dropped,
/// after its reply is written.
pub struct RequestTrace {
    tracer: Arc<Tracer>,
    tid: u64,
    command: &'static str,
    start: Instant,
    /// The wait for Redis's reply: from dispatch to the writer receiving it.
    pub upstream: Option<Phase>,
    /// From the reply being queued to its bytes being written.
    pub reply: Option<Phase>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("tid", &self.tid)
            .field("command", &self.command)
            .finish()
    }
}

impl RequestTrace {
    /// Opens a sampled request; `read_at` is when its bytes arrived, if known: the request
    /// starts then, and the read and parse are its first phase.
    pub fn start(
        tracer: &Arc<Tracer>,
        command: &'static str,
        read_at: Option<Instant>,
    ) -> Box<RequestTrace> {
        let tid = tracer.next_req.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let start = read_at.unwrap_or(now);
        if read_at.is_some() {
            tracer.record(Event {
                name: "client_read_parse",
                tid,
                start,
                end: now,
                command: None,
            });
        }
        Box::new(RequestTrace {
            tracer: tracer.clone(),
            tid,
            command,
            start,
            upstream: None,
            reply: None,
        })
    }

    /// A phase that starts now and ends when the returned value is dropped.
    pub fn phase(&self, name: &'static str) -> Phase {
        Phase {
            tracer: self.tracer.clone(),
            name,
            tid: self.tid,
            start: Instant::now(),
        }
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        self.tracer.record(Event {
            name: "request",
            tid: self.tid,
            start: self.start,
            end: Instant::now(),
            command: Some(self.command),
        });
    }
}

/// One phase of a sampled request, recorded when dropped.
pub struct Phase {
    tracer: Arc<Tracer>,
    name: &'static str,
    tid: u64,
    start: Instant,
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.tracer.record(Event {
            name: self.name,
            tid: self.tid,
            start: self.start,
            end: Instant::now(),
            command: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sampled_outside_a_capture() {
        let t = Tracer::default();
        assert!(!t.capturing());
        assert!((0..1000).all(|_| !t.sample()));
    }

    #[test]
    fn an_empty_capture_renders_valid_json_shape() {
        let s = Tracer::default().render(None);
        assert!(s.starts_with("{\"traceEvents\":["));
        assert!(s.contains("\"events\":0"));
        assert!(s.ends_with("}}"));
    }

    #[tokio::test]
    async fn two_tracers_capture_apart() {
        let a = Arc::new(Tracer::default());
        let b = Arc::new(Tracer::default());
        a.set_sample_every(1);
        b.set_sample_every(7);
        let capture = {
            let a = a.clone();
            tokio::spawn(async move { a.capture(Duration::from_millis(200)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(a.capturing() && !b.capturing());
        assert!(a.sample() && !b.sample());
        let req = RequestTrace::start(&a, "GET", Some(Instant::now()));
        drop(req.phase("cache_lookup"));
        drop(req);
        let json = capture.await.unwrap().unwrap();
        assert!(json.contains("\"name\":\"request\""), "{json}");
        assert!(json.contains("\"command\":\"GET\""), "{json}");
        assert!(json.contains("\"name\":\"cache_lookup\""), "{json}");
        assert!(json.contains("\"sample_every\":1"), "{json}");
        assert_eq!(b.sample_every(), 7);
    }
}
