//! Live capture through libpcap (the `pcap` crate): opens an interface with a BPF filter for
//! the Redis ports, hands every packet to [`pcap::packet`](super::pcap::packet) exactly as the
//! file reader does, and stops after a duration or on SIGINT/SIGTERM, then reads what the
//! kernel still holds and takes libpcap's counters (received, dropped, dropped by the
//! interface) for the summary.
//!
//! Owns the capture handle and the stop signal only: never decodes a packet, and never hides
//! a failure to open (a missing interface, a missing capability) behind an empty capture.

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Device};
use pcap_file::DataLink;

use super::pcap::{packet, LibpcapCounts, PacketCounts, Segment};

/// Bytes kept of each packet: whole packets, as `tcpdump -s 0` (loopback's MTU is 65,536, so
/// a smaller snap length would cut its largest packets; those would be counted as truncated).
const SNAPLEN: i32 = 262_144;

/// The kernel buffer libpcap asks for: a burst of pipelined traffic must not outrun the reader
/// on a busy machine. Larger costs memory while capturing, smaller drops packets sooner. (Not
/// in immediate mode: there each packet takes a whole snap-length slot of the buffer, while
/// blocks pack small packets tightly; blocks wait at most [`POLL_MS`].)
const BUFFER_BYTES: i32 = 32 << 20;

/// How often a blocked read wakes up to check the deadline and the stop signal, and how long
/// the kernel holds a partly filled block of packets before handing it over.
const POLL_MS: i32 = 100;

/// Empty reads in a row that end the capture after the stop: the last block has been handed
/// over by then. More makes stopping slower, fewer risks the last packets.
const DRAIN_TIMEOUTS: u32 = 3;

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// An open live capture.
pub struct Live {
    cap: Capture<Active>,
    link: DataLink,
    pub interface: String,
}

/// The BPF filter for Redis's ports: their traffic both ways.
pub fn filter(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("tcp port {p}")).collect();
    ports.join(" or ")
}

/// Opens `interface` for capture of `ports`. The errors say what is wrong: no such interface
/// (with the ones there are), or the capability libpcap needs.
pub fn open(interface: &str, ports: &[u16]) -> anyhow::Result<Live> {
    let devices = Device::list().map_err(|e| anyhow::anyhow!("listing interfaces: {e}"))?;
    if !devices.iter().any(|d| d.name == interface) {
        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        anyhow::bail!(
            "no interface named {interface:?} to capture on (libpcap lists: {})",
            names.join(", ")
        );
    }
    let opened = Capture::from_device(interface)
        .map(|c| {
            c.snaplen(SNAPLEN)
                .promisc(false)
                .buffer_size(BUFFER_BYTES)
                .timeout(POLL_MS)
        })
        .and_then(|c| c.open());
    let mut cap = match opened {
        Ok(c) => c,
        Err(e) if !has_net_raw() || e.to_string().contains("ermission") => anyhow::bail!(
            "cannot capture on {interface}: live capture needs the CAP_NET_RAW capability \
             (run as root, or `setcap cap_net_raw+ep` on the nearcache binary), or capture \
             with tcpdump and pass --read FILE; libpcap said: {e}"
        ),
        Err(e) => anyhow::bail!("cannot capture on {interface}: {e}"),
    };
    cap.filter(&filter(ports), true)
        .map_err(|e| anyhow::anyhow!("BPF filter {:?}: {e}", filter(ports)))?;
    let link = DataLink::from(cap.get_datalink().0 as u32);
    Ok(Live {
        cap,
        link,
        interface: interface.to_string(),
    })
}

/// Whether this process has CAP_NET_RAW in effect (bit 13 of CapEff in /proc/self/status).
fn has_net_raw() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 13) != 0)
}

impl Live {
    /// Captures until `duration` has passed (forever if `None`) or SIGINT/SIGTERM arrives,
    /// handing every TCP segment to `f`; then reads the packets the kernel already holds.
    pub fn run(
        self,
        duration: Option<Duration>,
        f: &mut impl FnMut(&Segment),
    ) -> anyhow::Result<PacketCounts> {
        let deadline = duration.map(|d| Instant::now() + d);
        STOP.store(false, Ordering::SeqCst);
        let handler = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let old = unsafe {
            [
                libc::signal(libc::SIGINT, handler),
                libc::signal(libc::SIGTERM, handler),
            ]
        };
        let result = self.read_all(deadline, f);
        // SAFETY: puts back the dispositions found above.
        unsafe {
            libc::signal(libc::SIGINT, old[0]);
            libc::signal(libc::SIGTERM, old[1]);
        }
        result
    }

    fn read_all(
        self,
        deadline: Option<Instant>,
        f: &mut impl FnMut(&Segment),
    ) -> anyhow::Result<PacketCounts> {
        let mut counts = PacketCounts::default();
        // Non-blocking reads and our own wait: a blocking read of libpcap's block ring waits
        // for a packet however long that takes, past the deadline and the stop signal.
        let mut cap = self.cap.setnonblock()?;
        let fd = cap.as_raw_fd();
        while !STOP.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
            if !read_one(&mut cap, self.link, &mut counts, f)? {
                wait_readable(fd);
            }
        }
        // What arrived before the stop is in the kernel's buffer, some of it in a block the
        // kernel hands over only when its timer ([`POLL_MS`]) expires: read until
        // [`DRAIN_TIMEOUTS`] waits in a row bring nothing.
        let mut idle = 0;
        while idle < DRAIN_TIMEOUTS {
            if read_one(&mut cap, self.link, &mut counts, f)? {
                idle = 0;
            } else {
                idle += 1;
                wait_readable(fd);
            }
        }
        let stat = cap.stats()?;
        counts.libpcap = Some(LibpcapCounts {
            received: u64::from(stat.received),
            dropped: u64::from(stat.dropped),
            interface_dropped: u64::from(stat.if_dropped),
        });
        Ok(counts)
    }
}

/// Waits up to [`POLL_MS`] for the capture's descriptor to have packets (a signal ends the
/// wait early; the caller checks why).
fn wait_readable(fd: std::os::unix::io::RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut p, 1, POLL_MS) };
}

/// Reads one packet if one is waiting (false when none is).
fn read_one(
    cap: &mut Capture<Active>,
    link: DataLink,
    counts: &mut PacketCounts,
    f: &mut impl FnMut(&Segment),
) -> anyhow::Result<bool> {
    match cap.next_packet() {
        Ok(p) => {
            let ts = &p.header.ts;
            let ts_us = (ts.tv_sec as u64) * 1_000_000 + ts.tv_usec as u64;
            packet(link, ts_us, p.data, p.header.len, counts, f);
            Ok(true)
        }
        Err(pcap::Error::TimeoutExpired) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("reading packets: {e}")),
    }
}
