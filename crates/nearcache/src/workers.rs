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
//! Across threads there is no such order, so by default a host's connections share a thread
//! (`thread_placement = host`): an application that sends `UNSUBSCRIBE` or a blocking pop on
//! one connection and then acts on another gets Redis's order. Clients of different hosts
//! never had one (their packets take different paths).
//!
//! The calling runtime (the one that runs the accept loop) is one of the threads; the others
//! are started here. Never blocks a runtime thread, and never drops a runtime from inside an
//! async context (each thread owns its runtime and drops it on its way out).

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tracing::warn;

use crate::config::values::Placement;
use crate::socket::ClientStream;
use crate::upstream::Homes;

/// The session threads. Dropping this ends them, dropping whatever still runs on them.
pub struct Workers {
    /// The started threads' runtimes; the calling runtime is slot `handles.len()`.
    handles: Vec<Handle>,
    placement: Placement,
    next: AtomicUsize,
    hosts: RandomState,
    exit: Arc<Notify>,
}

impl Workers {
    /// Starts `threads - 1` session threads beside the calling runtime (`threads` 0 or 1: none).
    pub fn start(threads: usize, placement: Placement) -> std::io::Result<Workers> {
        let exit = Arc::new(Notify::new());
        let mut handles = Vec::new();
        for i in 1..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let home = handles.len();
            handles.push(rt.handle().clone());
            let exit = exit.clone();
            std::thread::Builder::new()
                .name(format!("nearcache-{i}"))
                .spawn(move || {
                    Homes::mark_thread(home);
                    rt.block_on(exit.notified());
                    // Wake the next thread's wait too (one permit per notify_one).
                    exit.notify_one();
                })?;
        }
        Homes::mark_thread(handles.len());
        Ok(Workers {
            handles,
            placement,
            next: AtomicUsize::new(0),
            hosts: RandomState::new(),
            exit,
        })
    }

    /// How many threads run sessions, the calling runtime's included.
    pub fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// The threads' runtimes, in the places [`Homes::here`] gives them (the calling runtime
    /// last): where the shared upstream connections are spread.
    pub fn homes(&self) -> Homes {
        let mut all = self.handles.clone();
        all.push(Handle::current());
        Homes(all)
    }

    /// The thread for a client from `peer`.
    fn thread_for(&self, peer: IpAddr) -> usize {
        let n = self.threads();
        if n == 1 {
            return 0;
        }
        match self.placement {
            Placement::Host => (self.hosts.hash_one(peer) % n as u64) as usize,
            Placement::Connection => self.next.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Runs `serve(stream)` on the client's thread. A stream moving to another thread is
    /// re-registered with that thread's reactor; if that fails the client is dropped (logged).
    pub fn spawn<F, Fut>(&self, stream: ClientStream, serve: F)
    where
        F: FnOnce(ClientStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(handle) = self.handles.get(self.thread_for(stream.host())) else {
            tokio::spawn(serve(stream));
            return;
        };
        let stream = match stream.detach() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot hand a client to its thread");
                return;
            }
        };
        handle.spawn(async move {
            match stream.attach() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_keeps_its_thread_and_connections_take_turns() {
        let host = Workers::start(3, Placement::Host).unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let first = host.thread_for(ip);
        assert!((0..20).all(|_| host.thread_for(ip) == first));
        // Many hosts spread over every thread.
        let used: std::collections::HashSet<usize> = (0..=255u8)
            .map(|i| host.thread_for(IpAddr::from([10, 0, 1, i])))
            .collect();
        assert_eq!(used.len(), 3);

        let turns = Workers::start(3, Placement::Connection).unwrap();
        let got: Vec<usize> = (0..6).map(|_| turns.thread_for(ip)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            Workers::start(1, Placement::Connection).unwrap().threads(),
            1
        );
    }
}
