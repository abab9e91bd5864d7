//! The threads that run client sessions: one single-threaded tokio runtime per thread, and a
//! client stays on the thread that took it for its whole life (thread per core).
//!
//! Why not tokio's work-stealing scheduler: it runs the task woken *last* first (its LIFO
//! slot), so when two clients' commands become readable in one poll of the reactor, the later
//! one can reach Redis first. A client that sends `UNSUBSCRIBE` and then, on another
//! connection, `PUBLISH`, expects Redis to see them in that order, as it does without a
//! proxy. A single-threaded runtime runs woken tasks in the order they were woken, and clients
//! on different threads are each read as soon as their own thread's reactor sees them. It also
//! spares every wake-up the work-stealing machinery (shared run queues, waking idle workers).
//!
//! The calling runtime (the one that runs the accept loop) is one of the threads; the others
//! are started here. Never blocks a runtime thread, and never drops a runtime from inside an
//! async context (each thread owns its runtime and drops it on its way out).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tracing::warn;

/// The session threads. Dropping this ends them, dropping whatever still runs on them.
pub struct Workers {
    /// The started threads' runtimes; the calling runtime is slot `handles.len()`.
    handles: Vec<Handle>,
    next: AtomicUsize,
    exit: Arc<Notify>,
}

impl Workers {
    /// Starts `threads - 1` session threads beside the calling runtime (`threads` 0 or 1: none).
    pub fn start(threads: usize) -> std::io::Result<Workers> {
        let exit = Arc::new(Notify::new());
        let mut handles = Vec::new();
        for i in 1..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let exit = exit.clone();
            std::thread::Builder::new()
                .name(format!("nearcache-{i}"))
                .spawn(move || {
                    rt.block_on(exit.notified());
                    // Wake the next thread's wait too (one permit per notify_one).
                    exit.notify_one();
                })?;
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            exit,
        })
    }

    /// How many threads run sessions, the calling runtime's included.
    pub fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs `serve(stream)` on the next thread in turn. A stream moving to another thread is
    /// re-registered with that thread's reactor; if that fails the client is dropped (logged).
    pub fn spawn<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.threads();
        let Some(handle) = self.handles.get(turn) else {
            tokio::spawn(serve(stream));
            return;
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot hand a client to its thread");
                return;
            }
        };
        handle.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => warn!(error = %e, "cannot hand a client to its thread"),
            }
        });
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.exit.notify_one();
        }
    }
}
