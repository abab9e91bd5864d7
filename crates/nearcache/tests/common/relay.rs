//! A relay between the proxy and Redis that the test steers while it runs: it remembers what
//! each connection's client sent first (so a test can pick the invalidation connection by its
//! `SUBSCRIBE __redis__:invalidate`, or the RESP3 data connections by their `HELLO 3`), and on
//! command black-holes chosen connections (both directions stop; nothing is closed, as with a
//! firewall that drops packets or a frozen host) or slips bytes into what they receive.
//!
//! Everything ends when the relay is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How many of a connection's first bytes from the client are kept for [`SteeredRelay`]'s
/// choices: enough for the handshake.
const SEEN: usize = 4096;

/// One relayed connection, as the test sees it.
struct Link {
    /// The first bytes the client (the proxy) sent.
    seen: Arc<Mutex<Vec<u8>>>,
    /// Set once: from then on every byte either way is read and dropped.
    holed: Arc<AtomicBool>,
    /// Bytes to hand the client between two chunks from Redis, and who to tell once written.
    inject: mpsc::UnboundedSender<(Vec<u8>, oneshot::Sender<()>)>,
}

/// A relay on 127.0.0.1:0 forwarding every connection to `upstream` until told otherwise.
pub struct SteeredRelay {
    pub addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl SteeredRelay {
    pub async fn start(upstream: &str) -> SteeredRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_string();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let registry = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let link = Link {
                    seen: Arc::default(),
                    holed: Arc::default(),
                    inject: tx,
                };
                let (seen, holed) = (link.seen.clone(), link.holed.clone());
                registry.lock().unwrap().push(link);
                tokio::spawn(relay(client, server, seen, holed, rx));
            }
        });
        SteeredRelay {
            addr,
            links,
            accept,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections, black holes aside, sent first bytes containing every marker.
    pub fn count(&self, markers: &[&[u8]]) -> usize {
        self.matching(markers, |_| ())
    }

    /// Black-holes every connection whose first bytes contain every marker: from now on
    /// nothing passes either way and nothing is closed. Returns how many.
    pub fn black_hole(&self, markers: &[&[u8]]) -> usize {
        self.matching(markers, |l| l.holed.store(true, Ordering::SeqCst))
    }

    /// Hands `bytes` to the client of every connection whose first bytes contain every
    /// marker, as if Redis had sent them, and returns how many once all are written. They go
    /// between two of Redis's chunks, so use it while nothing is in flight; whatever Redis
    /// sends afterwards reaches the client after them.
    pub async fn inject(&self, markers: &[&[u8]], bytes: &[u8]) -> usize {
        let mut written = Vec::new();
        self.matching(markers, |l| {
            let (tx, rx) = oneshot::channel();
            if l.inject.send((bytes.to_vec(), tx)).is_ok() {
                written.push(rx);
            }
        });
        let n = written.len();
        for rx in written {
            let _ = rx.await;
        }
        n
    }

    fn matching(&self, markers: &[&[u8]], mut f: impl FnMut(&Link)) -> usize {
        let links = self.links.lock().unwrap();
        let mut n = 0;
        for link in links.iter().filter(|l| !l.holed.load(Ordering::SeqCst)) {
            let seen = link.seen.lock().unwrap();
            let has = |m: &[u8]| seen.windows(m.len()).any(|w| w == m);
            if markers.iter().all(|m| has(m)) {
                f(link);
                n += 1;
            }
        }
        n
    }
}

impl Drop for SteeredRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
    holed: Arc<AtomicBool>,
    mut inject: mpsc::UnboundedReceiver<(Vec<u8>, oneshot::Sender<()>)>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut crd, mut cwr) = client.into_split();
    let (mut srd, mut swr) = server.into_split();
    let up_holed = holed.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match crd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            {
                let mut seen = seen.lock().unwrap();
                let room = SEEN.saturating_sub(seen.len()).min(n);
                seen.extend_from_slice(&buf[..room]);
            }
            if up_holed.load(Ordering::SeqCst) {
                continue;
            }
            if swr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                r = srd.read(&mut buf) => {
                    let n = match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if holed.load(Ordering::SeqCst) {
                        continue;
                    }
                    if cwr.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Some((bytes, written)) = inject.recv() => {
                    if cwr.write_all(&bytes).await.is_err() {
                        return;
                    }
                    let _ = written.send(());
                }
            }
        }
    };
    // Either direction ending closes both sockets (their halves drop with the futures). A
    // black-holed connection ends only when the proxy closes it.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
