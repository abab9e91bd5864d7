//! Packet files: pcap and pcapng as tcpdump and Wireshark write them (read with `pcap-file`),
//! and each packet's link, IP and TCP headers taken apart with `etherparse` ([`packet`], also
//! what the live capture calls), handed on as [`Segment`]s.
//!
//! Knows packets and headers only: never reassembles a stream or looks into a payload.
//! Whatever it cannot use (another protocol, a link type it does not know, a packet cut by
//! the snap length, a damaged file) is counted in [`PacketCounts`], never a panic.

use std::fs::File;
use std::io::{BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// One TCP segment, as captured.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Capture time, microseconds since the epoch.
    pub ts_us: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    /// The acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

/// What the file held, packet by packet.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PacketCounts {
    pub packets: u64,
    pub tcp_segments: u64,
    /// Packets that are not TCP over IP (ARP, UDP, ICMP ...).
    pub not_tcp: u64,
    /// Packets cut by the capture's snap length: their payload is missing, so their bytes
    /// count as lost in the stream.
    pub truncated: u64,
    /// Packets whose headers did not parse.
    pub malformed: u64,
    /// Packets of a link type this reader does not know.
    pub unknown_link: u64,
    /// Packets the capturing interface dropped, when the file records it (pcapng statistics).
    pub interface_drops: Option<u64>,
    /// Why the file ended early, if it did (a damaged or cut file).
    pub file_error: Option<String>,
    /// libpcap's own counters, for a live capture.
    pub libpcap: Option<LibpcapCounts>,
}

/// libpcap's counters at the end of a live capture (`pcap_stats`): what the filter passed,
/// what the kernel dropped because the buffer was full, and what the interface dropped.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct LibpcapCounts {
    pub received: u64,
    pub dropped: u64,
    pub interface_dropped: u64,
}

/// Reads `path` (pcap or pcapng, told apart by their magic numbers) and hands every TCP
/// segment to `f`. Errors only when the file cannot be opened or is neither format.
pub fn read_file(path: &Path, mut f: impl FnMut(&Segment)) -> anyhow::Result<PacketCounts> {
    let mut magic = [0u8; 4];
    File::open(path)?.read_exact(&mut magic)?;
    let input = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut counts = PacketCounts::default();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        read_pcapng(input, &mut counts, &mut f)?;
    } else {
        read_pcap(input, &mut counts, &mut f)?;
    }
    Ok(counts)
}

fn read_pcap(
    input: BufReader<File>,
    counts: &mut PacketCounts,
    f: &mut impl FnMut(&Segment),
) -> anyhow::Result<()> {
    let mut reader =
        PcapReader::new(input).map_err(|e| anyhow::anyhow!("not a pcap or pcapng file: {e}"))?;
    let link = reader.header().datalink;
    while let Some(next) = reader.next_packet() {
        match next {
            Ok(p) => {
                let ts = p.timestamp.as_micros() as u64;
                packet(link, ts, &p.data, p.orig_len, counts, f);
            }
            Err(e) => {
                counts.file_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(())
}

fn read_pcapng(
    input: BufReader<File>,
    counts: &mut PacketCounts,
    f: &mut impl FnMut(&Segment),
) -> anyhow::Result<()> {
    let mut reader =
        PcapNgReader::new(input).map_err(|e| anyhow::anyhow!("not a pcapng file: {e}"))?;
    // Each section's interfaces, in order: a packet names its interface by index.
    let mut links: Vec<DataLink> = Vec::new();
    while let Some(block) = reader.next_block() {
        let block = match block {
            Ok(b) => b,
            Err(e) => {
                counts.file_error = Some(e.to_string());
                break;
            }
        };
        match block {
            Block::EnhancedPacket(p) => {
                let link = links.get(p.interface_id as usize).copied();
                let ts = p.timestamp.as_micros() as u64;
                match link {
                    Some(link) => packet(link, ts, &p.data, p.original_len, counts, f),
                    None => {
                        counts.packets += 1;
                        counts.malformed += 1;
                    }
                }
            }
            Block::SimplePacket(p) => {
                let link = links.first().copied().unwrap_or(DataLink::ETHERNET);
                packet(link, 0, &p.data, p.original_len, counts, f);
            }
            Block::SectionHeader(_) => links.clear(),
            Block::InterfaceDescription(i) => links.push(i.linktype),
            Block::InterfaceStatistics(s) => {
                for o in &s.options {
                    if let pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption::IsbIfDrop(n) = o {
                        *counts.interface_drops.get_or_insert(0) += n;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One captured packet, from a file or a live interface: counted, and handed on if it is a
/// whole TCP segment. `orig_len` is the packet's length on the wire, `data` what was kept.
pub fn packet(
    link: DataLink,
    ts_us: u64,
    data: &[u8],
    orig_len: u32,
    counts: &mut PacketCounts,
    f: &mut impl FnMut(&Segment),
) {
    counts.packets += 1;
    if (data.len() as u64) < u64::from(orig_len) {
        // The payload is incomplete: its bytes are lost to the stream, which the reassembler
        // learns from the peer's acknowledgments.
        counts.truncated += 1;
        return;
    }
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        // SLL2: a 20-byte header whose first two bytes are the EtherType.
        DataLink::LINUX_SLL2 => match data.get(20..) {
            Some(ip) => SlicedPacket::from_ip(ip),
            None => {
                counts.malformed += 1;
                return;
            }
        },
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => match data.get(4..) {
            Some(ip) => SlicedPacket::from_ip(ip),
            None => {
                counts.malformed += 1;
                return;
            }
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
        _ => {
            counts.unknown_link += 1;
            return;
        }
    };
    let Ok(sliced) = sliced else {
        counts.malformed += 1;
        return;
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => {
            counts.not_tcp += 1;
            return;
        }
    };
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        counts.not_tcp += 1;
        return;
    };
    counts.tcp_segments += 1;
    f(&Segment {
        ts_us,
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: tcp.payload(),
    });
}
