//! One consistency run of the proxy in front of a real Redis Cluster (3 masters, 3 replicas;
//! issue 18): writers straight to the cluster with redis-rs's cluster client, readers through
//! the proxy in RESP2 and RESP3 (`GET`s, and `MGET`s of keys in one slot), while 1,000 slots move
//! from one master to another (`redis-cli --cluster reshard`), then the master that received
//! them is SIGKILLed and its replica promoted, then 500 of them move on to the third master.
//!
//! The check, per read: its value is never older than the newest value acknowledged
//! [`DELIVERY`] before the read was *sent*. Redis writes a write's invalidation to the proxy in
//! the same pass of its event loop as the write's reply, so by the time a writer holds an
//! acknowledgement the invalidation is on its way; `DELIVERY` only covers the proxy taking it
//! in. A read that breaks the check saw an entry outlive its invalidation (lost, ignored, or
//! filled around it), which stays wrong however long one waits: `DELIVERY` is a bound on
//! correctness, hundreds of times the delay the run itself measures and prints, not a claim on
//! speed. Errors are allowed between the kill and the proxy serving the promoted replica
//! (counted), never before; stale values never. Afterwards every key reads its last written
//! value through the proxy, and the readers must have had cache hits both before the kill and
//! after the failover, or the run would prove nothing about the cache.
//!
//! An acknowledged write is one that survives the fault the run injects: before the kill a `SET`
//! counts once `WAIT 1` on the same node says its replica has it (Redis replication is
//! asynchronous: a write the dying master had not passed on is lost by Redis, not the proxy);
//! after the kill, once the `SET` is answered. Each key has one writer, so its values rise in
//! the order they are acknowledged.
//!
//! The recovery time (kill to the first write through the proxy answered, and to the first
//! read of it) is printed (`-- --nocapture`), never asserted. Never here: a timed assertion.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster, SlotsView};
use common::{cache_hits as hits, eventually, Proxy, RawConn, With as _};
use nearcache::cluster::slot::key_slot;
use resp::Frame;

/// How long after a write is acknowledged a read sent through the proxy may still miss it.
const DELIVERY: Duration = Duration::from_secs(5);
/// How long the proxy may take to converge once the run stops.
const CONVERGE: Duration = Duration::from_secs(10);
/// How long the cluster's failover and the proxy's following it may take.
const FAILOVER: Duration = Duration::from_secs(40);
/// Slots moved by the first reshard, and by the second (after the failover).
const MOVED: u16 = 1000;
const MOVED_AGAIN: u16 = 500;
const WRITERS: usize = 3;
/// Readers; the even ones speak RESP2, the odd ones RESP3.
const READERS: usize = 4;

/// The writes of one key acknowledged so far: (when the reply arrived, the value), rising.
type Acks = Mutex<Vec<(Instant, u64)>>;

/// What the writers, the readers and the test share.
struct Run {
    keys: Vec<String>,
    /// Indices into `keys`: each group's keys share a hash tag, so one `MGET` reads them.
    groups: Vec<Vec<usize>>,
    acks: Vec<Acks>,
    stop: AtomicBool,
    /// Set once the killed node is reaped: no write sent after it can reach that node.
    killed: OnceLock<Instant>,
    /// Rounds (every key and every group read once) finished, per reader.
    rounds: Vec<AtomicU64>,
}

/// What a reader saw.
#[derive(Default)]
struct Seen {
    reads: u64,
    /// Reads older than an acknowledged write sent before them, but within `DELIVERY`.
    behind: u64,
    /// The longest a read was behind: from the acknowledgement it missed to its sending.
    max_behind: Duration,
    /// Error replies and failed connections: (when the command was sent, when it failed, what).
    errors: Vec<(Instant, Instant, String)>,
    /// Reads that broke the check, each told in full.
    stale: Vec<String>,
}

/// The four places a key can be: the slots that move (then die with their new master), the
/// first master's slots that stay, the second master's own (they die with it), the third's.
fn places(view: &SlotsView) -> [Box<dyn Fn(u16) -> bool>; 4] {
    let (a, b, c) = (view[0].clone(), view[1].clone(), view[2].clone());
    let a0 = a.0;
    let stay = a.0 + MOVED..=a.1;
    [
        Box::new(move |s| (a0..a0 + MOVED).contains(&s)),
        Box::new(move |s| stay.contains(&s)),
        Box::new(move |s| (b.0..=b.1).contains(&s)),
        Box::new(move |s| (c.0..=c.1).contains(&s)),
    ]
}

/// In each place 4 plain keys and a group of 3 keys under one hash tag.
fn key_set(view: &SlotsView) -> (Vec<String>, Vec<Vec<usize>>) {
    let mut keys = Vec::new();
    let mut groups = Vec::new();
    for (p, inside) in places(view).iter().enumerate() {
        let plain = (0..).map(|i| format!("k{p}:{i}"));
        keys.extend(plain.filter(|k| inside(key_slot(k.as_bytes()))).take(4));
        let tag = (0..)
            .map(|i| format!("{{g{p}:{i}}}"))
            .find(|t| inside(key_slot(t.as_bytes())))
            .unwrap();
        groups.push((keys.len()..keys.len() + 3).collect());
        keys.extend((0..3).map(|j| format!("{tag}:{j}")));
    }
    (keys, groups)
}

/// Judges one value read by a command sent at `sent` against its key's acknowledgements.
fn judge(acks: &[(Instant, u64)], sent: Instant, value: Option<u64>, seen: &mut Seen, what: &str) {
    let before = acks.partition_point(|(t, _)| *t <= sent);
    let newer = acks[..before].partition_point(|(_, v)| Some(*v) <= value);
    if newer == before {
        return;
    }
    let (at, missed) = acks[newer];
    let behind = sent - at;
    if behind > DELIVERY {
        seen.stale.push(format!(
            "{what} read {value:?}, sent {behind:?} after {missed} was acknowledged"
        ));
    } else {
        seen.behind += 1;
        seen.max_behind = seen.max_behind.max(behind);
    }
}

/// The value of a `GET` reply, or of one element of an `MGET` reply.
fn value(f: &Frame) -> Result<Option<u64>, String> {
    match f {
        Frame::Bulk(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("not a number: {f:?}")),
        Frame::Null | Frame::NullBulk => Ok(None),
        other => Err(format!("{other:?}")),
    }
}

async fn connect(addr: &str, resp3: bool) -> std::io::Result<RawConn> {
    let mut c = RawConn::try_connect(addr).await?;
    if resp3 {
        let r = c.hello3().await;
        assert!(r.starts_with(b"%"), "HELLO 3: {}", common::show(&r));
    }
    Ok(c)
}

/// Sends `args` on `conn`, connecting first if it has none: the reply, or what went wrong (an
/// error reply; a failed connection, then dropped: it may be out of step with its replies).
async fn ask(
    conn: &mut Option<RawConn>,
    addr: &str,
    resp3: bool,
    args: &[String],
) -> Result<Frame, String> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            connect(addr, resp3)
                .await
                .map_err(|e| format!("connect: {e}"))?,
        ),
    };
    match c.try_cmd(args).await {
        Ok(r) => match common::to_frame(&r) {
            Frame::Error(e) | Frame::BulkError(e) => Err(String::from_utf8_lossy(&e).into_owned()),
            f => Ok(f),
        },
        Err(e) => {
            *conn = None;
            Err(format!("{e:?}"))
        }
    }
}

/// One reader: rounds of a `GET` of every key and an `MGET` of every group, each value judged.
async fn reader(run: Arc<Run>, id: usize, addr: String) -> Seen {
    let resp3 = id % 2 == 1;
    let mut seen = Seen::default();
    let mut conn = None;
    let mut cmds: Vec<(Vec<String>, Vec<usize>)> = run
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (vec!["GET".to_string(), k.clone()], vec![i]))
        .collect();
    for g in &run.groups {
        let mut args = vec!["MGET".to_string()];
        args.extend(g.iter().map(|&i| run.keys[i].clone()));
        cmds.push((args, g.clone()));
    }
    while !run.stop.load(Ordering::Acquire) {
        for (args, keys) in &cmds {
            let sent = Instant::now();
            let reply = match ask(&mut conn, &addr, resp3, args).await {
                Ok(f) => f,
                Err(e) => {
                    seen.errors.push((sent, Instant::now(), e));
                    // A dead node's errors come fast: no need to collect every one.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let values: Vec<&Frame> = match &reply {
                Frame::Array(items) if args[0] == "MGET" && items.len() == keys.len() => {
                    items.iter().collect()
                }
                single if args[0] == "GET" => vec![single],
                other => {
                    seen.stale
                        .push(format!("{args:?}: unexpected reply {other:?}"));
                    continue;
                }
            };
            for (&k, f) in keys.iter().zip(values) {
                let what = format!(
                    "{} {} (reader {id}, RESP{})",
                    args[0],
                    run.keys[k],
                    2 + id % 2
                );
                match value(f) {
                    Ok(v) => {
                        let acks = run.acks[k].lock().unwrap();
                        judge(&acks, sent, v, &mut seen, &what);
                    }
                    Err(e) => seen.stale.push(format!("{what}: {e}")),
                }
                seen.reads += 1;
            }
        }
        run.rounds[id].fetch_add(1, Ordering::Release);
    }
    seen
}

/// What a writer did.
#[derive(Debug, Default)]
struct Wrote {
    acked: u64,
    /// `SET`s answered, but not passed to the replica within `WAIT`'s timeout (before the kill).
    unreplicated: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One writer, straight to the cluster: keys `id`, `id + WRITERS`, ... in turn, each `SET` to
/// one more than the key's last; when stopped, one last `SET` of each key, repeated until
/// answered, so that its last acknowledged value is the last one written.
async fn writer(run: Arc<Run>, id: usize, client: redis::cluster::ClusterClient) -> Wrote {
    let mut conn = client.get_async_connection().await.unwrap();
    let mine: Vec<usize> = (id..run.keys.len()).step_by(WRITERS).collect();
    let mut next = 1u64;
    let mut wrote = Wrote::default();
    let mut last_round = false;
    let mut final_tries = 0;
    loop {
        last_round |= run.stop.load(Ordering::Acquire);
        for &k in &mine {
            loop {
                let key = &run.keys[k];
                let after_kill = run.killed.get().is_some();
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(key).arg(next).ignore();
                if !after_kill {
                    pipe.cmd("WAIT").arg(1).arg(1000);
                }
                let replicas: Result<Vec<i64>, _> = pipe.query_async(&mut conn).await;
                match replicas {
                    Ok(r) if after_kill || r.first().is_some_and(|&n| n >= 1) => {
                        run.acks[k].lock().unwrap().push((Instant::now(), next));
                        wrote.acked += 1;
                    }
                    Ok(_) => wrote.unreplicated += 1,
                    Err(e) => {
                        wrote.errors += 1;
                        wrote.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                next += 1;
                let done = run.acks[k].lock().unwrap().last().map(|a| a.1) == Some(next - 1);
                if !last_round || done {
                    break;
                }
                final_tries += 1;
                assert!(
                    final_tries < 100,
                    "{key}: no last write answered: {wrote:?}"
                );
            }
        }
        if last_round {
            return wrote;
        }
    }
}
/// Polls until `cache_hits` is above `than`.
async fn hits_above(c: &mut RawConn, than: u64, what: &str) -> u64 {
    let mut now = 0;
    eventually(CONVERGE, what, async || {
        now = hits(c).await;
        now > than
    })
    .await;
    now
}

/// After the kill: a `SET` of `probe` through the proxy every 20 ms until one is answered `OK`,
/// then `GET`s until one answers it. Returns both times, from the kill.
async fn probe(addr: &str, key: &str, killed: Instant) -> (Duration, Duration) {
    let mut c = RawConn::connect(addr).await;
    let mut n = 0u64;
    loop {
        n += 1;
        match c.try_cmd(&["SET", key, &n.to_string()]).await {
            Ok(r) if &r[..] == b"+OK\r\n" => break,
            Ok(_) => {}
            Err(_) => c = RawConn::connect(addr).await,
        }
        assert!(killed.elapsed() < FAILOVER, "no write through the proxy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wrote = killed.elapsed();
    let want = format!("${}\r\n{n}\r\n", n.to_string().len());
    eventually(CONVERGE, "the probe read back", async || {
        c.cmd(&["GET", key]).await == want.as_bytes()
    })
    .await;
    (wrote, killed.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_never_older_than_acknowledged_writes_through_reshard_and_failover() {
    let mut cluster = Cluster::start();
    let seeds = cluster.addrs()[..2].join(",");
    let config = Proxy::config(&seeds)
        .with("cluster", "true")
        .with("client_auth", "none");
    let proxy = Proxy::start_config(config).await;
    let view = cluster::slots_view(&cluster.addrs()[0]);
    let (from, to) = (view[0].2 .2.clone(), view[1].2 .2.clone());
    let victim = format!("{}:{}", view[1].2 .0, view[1].2 .1);
    let (keys, groups) = key_set(&view);
    let places = places(&view);
    let b = &places[2];
    let probe_key = (0..)
        .map(|i| format!("probe:{i}"))
        .find(|k| b(key_slot(k.as_bytes())))
        .unwrap();

    let urls = cluster.urls();
    let client = redis::cluster::ClusterClientBuilder::new(urls)
        .retries(12)
        .min_retry_wait(10)
        .max_retry_wait(500)
        .connection_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // Every key starts at 0, on the replicas too.
    let mut w = client.get_async_connection().await.unwrap();
    let mut acks = Vec::new();
    for k in &keys {
        let (_, n): ((), i64) = redis::pipe()
            .cmd("SET")
            .arg(k)
            .arg(0)
            .cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut w)
            .await
            .unwrap();
        assert_eq!(n, 1, "{k} replicated");
        acks.push(Mutex::new(vec![(Instant::now(), 0)]));
    }
    let run = Arc::new(Run {
        keys,
        groups,
        acks,
        stop: AtomicBool::new(false),
        killed: OnceLock::new(),
        rounds: (0..READERS).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut admin = RawConn::connect(&proxy.addr()).await;
    let hits_at_start = hits(&mut admin).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(writer(run.clone(), i, client.clone())))
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|i| tokio::spawn(reader(run.clone(), i, proxy.addr())))
        .collect();
    let hits_warm = hits_above(&mut admin, hits_at_start, "cache hits before the reshard").await;

    // (a) 1,000 slots move from the first master to the second, under the writers and readers.
    let started = Instant::now();
    let seed = cluster.addrs()[0].clone();
    let (f, t) = (from.clone(), to.clone());
    tokio::task::spawn_blocking(move || cluster::reshard(&seed, &f, &t, MOVED.into()))
        .await
        .unwrap();
    let addrs = cluster.addrs();
    tokio::task::spawn_blocking(move || cluster::wait_agreed(&addrs, CONVERGE))
        .await
        .unwrap();
    let resharded = started.elapsed();
    assert_eq!(
        cluster::slots_view(&cluster.addrs()[0])[0].2 .2,
        to,
        "the first slots moved to the second master"
    );
    let hits_resharded = hits_above(&mut admin, hits_warm, "cache hits after the reshard").await;

    // (b) The master that received them is killed; its replica takes over.
    // Errors may come from the SIGKILL on; writes skip WAIT once the node is reaped.
    let killed = Instant::now();
    cluster.kill_node(&victim);
    run.killed.set(Instant::now()).unwrap();
    let (wrote, read) = probe(&proxy.addr(), &probe_key, killed).await;
    let live: Vec<String> = cluster
        .addrs()
        .into_iter()
        .filter(|a| *a != victim)
        .collect();
    let survivors = live.clone();
    let after = tokio::task::spawn_blocking(move || cluster::wait_agreed(&survivors, FAILOVER))
        .await
        .unwrap();
    assert!(after
        .iter()
        .all(|r| format!("{}:{}", r.2 .0, r.2 .1) != victim));
    let recovered = Instant::now();
    let hits_recovered = hits(&mut admin).await;

    // (c) Slots move again, from the promoted replica to the third master: the first 500 of
    // those that moved in (a), now on their third owner.
    let first = view[0].0;
    let owner_of = |v: &SlotsView, slot: u16| {
        let r = v.iter().find(|r| (r.0..=r.1).contains(&slot)).unwrap();
        (format!("{}:{}", r.2 .0, r.2 .1), r.2 .2.clone())
    };
    let (promoted, promoted_id) = owner_of(&after, first);
    let third = view[2].2 .2.clone();
    let (seed, t) = (promoted.clone(), third.clone());
    tokio::task::spawn_blocking(move || {
        cluster::reshard(&seed, &promoted_id, &t, MOVED_AGAIN.into())
    })
    .await
    .unwrap();
    let last = tokio::task::spawn_blocking(move || cluster::wait_agreed(&live, CONVERGE))
        .await
        .unwrap();
    assert_eq!(
        owner_of(&last, first).1,
        third,
        "slot {first} on its third owner"
    );
    let moved_again = Instant::now();

    // The run goes on until every reader has read every key twice more, from DELIVERY after the
    // last move on: an entry left stale by the failover or the moves would be caught there.
    tokio::time::sleep_until((moved_again + DELIVERY).into()).await;
    let marks: Vec<u64> = run
        .rounds
        .iter()
        .map(|r| r.load(Ordering::Acquire))
        .collect();
    eventually(CONVERGE, "two more rounds of every reader", async || {
        (run.rounds.iter().zip(&marks)).all(|(r, m)| r.load(Ordering::Acquire) >= m + 2)
    })
    .await;
    let hits_end = hits_above(&mut admin, hits_recovered, "cache hits after the failover").await;
    run.stop.store(true, Ordering::Release);
    let mut wrote_all = Vec::new();
    for w in writers {
        wrote_all.push(w.await.unwrap());
    }
    let mut seen = Vec::new();
    for r in readers {
        seen.push(r.await.unwrap());
    }

    // No read older than an acknowledged write beyond DELIVERY; errors only in the failover.
    let stale: Vec<&String> = seen.iter().flat_map(|s| &s.stale).collect();
    let first: Vec<_> = stale.iter().take(20).collect();
    assert!(
        stale.is_empty(),
        "{} stale reads, first: {first:#?}",
        stale.len()
    );
    let errors: Vec<_> = seen.iter().flat_map(|s| &s.errors).collect();
    let early: Vec<_> = (errors.iter().filter(|(_, got, _)| *got < killed))
        .map(|(_, got, e)| format!("{:?} before the kill: {e}", killed - *got))
        .take(10)
        .collect();
    assert!(early.is_empty(), "errors before the kill: {early:#?}");
    let late: Vec<_> = (errors.iter().filter(|(sent, _, _)| *sent > recovered))
        .map(|(sent, _, e)| format!("sent {:?} after the recovery: {e}", *sent - recovered))
        .take(10)
        .collect();
    assert!(late.is_empty(), "errors after the recovery: {late:#?}");
    assert!(hits_end > hits_recovered && hits_warm > hits_at_start);

    // Once the writes stop, every key reads its last written value, in both protocols.
    for resp3 in [false, true] {
        let mut c = connect(&proxy.addr(), resp3).await.unwrap();
        for (k, acks) in run.keys.iter().zip(&run.acks) {
            let last = acks.lock().unwrap().last().unwrap().1.to_string();
            let want = format!("${}\r\n{last}\r\n", last.len());
            eventually(CONVERGE, "the last write seen", async || {
                c.cmd(&["GET", k]).await == want.as_bytes()
            })
            .await;
        }
    }

    let reads: u64 = seen.iter().map(|s| s.reads).sum();
    let behind: u64 = seen.iter().map(|s| s.behind).sum();
    let max_behind = seen.iter().map(|s| s.max_behind).max().unwrap();
    let acked: u64 = wrote_all.iter().map(|w| w.acked).sum();
    let w_errors: u64 = wrote_all.iter().map(|w| w.errors).sum();
    let unrepl: u64 = wrote_all.iter().map(|w| w.unreplicated).sum();
    let first_w_error = wrote_all.iter().find_map(|w| w.first_error.clone());
    eprintln!(
        "{reads} values read through the proxy, {} cache hits ({} from the reshard to the kill, {} from \
         the recovery on); {behind} behind an acknowledged write by at most {max_behind:?} \
         (bound {DELIVERY:?}); {} errors, all between the kill and the recovery",
        hits_end - hits_at_start,
        hits_resharded - hits_warm,
        hits_end - hits_recovered,
        errors.len()
    );
    eprintln!(
        "{acked} writes acknowledged, {w_errors} failed (first: {first_w_error:?}), \
         {unrepl} not replicated in time; reshard of {MOVED} slots took {resharded:?}, of \
         {MOVED_AGAIN} after the failover {:?}",
        moved_again - recovered
    );
    eprintln!(
        "master {victim} SIGKILLed (cluster-node-timeout 5 s): first write through the proxy \
         answered after {wrote:?}, read back after {read:?}; every live node agreed after {:?}",
        recovered - killed
    );
    proxy.shutdown().await;
}

/// The check itself, on made-up acknowledgements: it must be able to fail.
#[test]
fn a_read_behind_an_acknowledgement_older_than_the_bound_is_stale() {
    let t0 = Instant::now();
    let acks = [
        (t0, 0),
        (t0 + Duration::from_secs(1), 1),
        (t0 + DELIVERY * 2, 2),
    ];
    let judged = |sent: Instant, value: Option<u64>| {
        let mut seen = Seen::default();
        judge(&acks, sent, value, &mut seen, "GET k");
        (seen.stale.len(), seen.behind, seen.max_behind)
    };
    let ms = Duration::from_millis;
    // Current, or newer than anything acknowledged when it was sent: fine.
    assert_eq!(judged(t0 + DELIVERY * 3, Some(2)), (0, 0, ms(0)));
    assert_eq!(judged(t0 + ms(500), Some(1)), (0, 0, ms(0)));
    // Behind within the bound: counted, allowed.
    assert_eq!(judged(t0 + ms(1200), Some(0)), (0, 1, ms(200)));
    assert_eq!(judged(t0 + ms(1), None), (0, 1, ms(1)));
    // Behind beyond it: stale; a missing key is older than every value.
    let late = t0 + Duration::from_secs(1) + DELIVERY + ms(1);
    assert_eq!(judged(late, Some(0)).0, 1);
    assert_eq!(judged(late, None).0, 1);
    assert_eq!(judged(t0 + DELIVERY * 3 + ms(1), Some(1)).0, 1);
}
