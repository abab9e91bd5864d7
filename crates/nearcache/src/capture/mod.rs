//! `nearcache capture`: from packets to a request trace, without touching Redis. Packets come
//! from a pcap or pcapng file ([`pcap`]) or a live interface ([`live`], libpcap), the same
//! way: each is taken apart by [`pcap::packet`] and its TCP segment handed to the
//! [`pipeline`], which reassembles each connection to a Redis port both ways ([`tcp`]),
//! decodes and pairs ([`decode`]); the requests are written as a trace ([`trace`], with what
//! each command does to its keys' TTL from [`ttl`]) and summarised ([`summary`]).
//!
//! This module picks the source and wires the parts. It never talks to Redis, and never stops
//! on bad input: what it cannot decode is counted and reported in the summary.

pub mod check;
pub mod decode;
pub mod live;
pub mod pcap;
pub mod pipeline;
pub mod summary;
pub mod tcp;
pub mod trace;
pub mod ttl;

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use pipeline::Pipeline;
use summary::Summary;
use trace::TraceWriter;

/// `nearcache capture`: decode captured Redis traffic into a request trace and a summary.
#[derive(Debug, Parser)]
#[command(name = "nearcache capture")]
pub struct CaptureArgs {
    /// A pcap or pcapng file (tcpdump -w, Wireshark).
    #[arg(long)]
    pub read: Option<PathBuf>,
    /// Live capture from this interface, through libpcap (needs CAP_NET_RAW).
    #[arg(long)]
    pub interface: Option<String>,
    /// With --interface: stop after this long (`60s`, `5m`); without it, at SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Redis's port; repeat for several.
    #[arg(long = "port", default_value = "6379")]
    pub ports: Vec<u16>,
    /// Write the request trace here (for `nearcache simulate`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many hot keys and prefixes to list.
    #[arg(long, default_value = "10")]
    pub top: usize,
}

/// Where the packets come from.
enum Source<'a> {
    File(&'a std::path::Path),
    Live(live::Live),
}

/// Runs `nearcache capture` and returns what it prints.
pub fn run(args: &CaptureArgs) -> anyhow::Result<String> {
    // The source is opened first: a missing interface or capability fails before any file
    // is created.
    let source = match (&args.read, &args.interface) {
        (Some(_), Some(_)) => anyhow::bail!("pass either --read FILE or --interface NAME"),
        (None, None) => {
            anyhow::bail!("nothing to capture: pass --read FILE.pcap or --interface NAME")
        }
        (Some(_), None) if args.duration.is_some() => {
            anyhow::bail!("--duration is for a live capture (--interface)")
        }
        (None, Some(name)) => Source::Live(live::open(name, &args.ports)?),
        (Some(path), None) => Source::File(path),
    };
    let mut writer = match &args.out {
        Some(p) => Some(TraceWriter::new(BufWriter::new(std::fs::File::create(p)?))?),
        None => None,
    };
    let mut pipe = Pipeline::new(args.ports.clone());
    let mut summary = Summary::default();
    let mut io_error = None;
    let mut emit = |pipe: &mut Pipeline, summary: &mut Summary| {
        for r in pipe.requests() {
            summary.add(&r);
            if let Some(w) = &mut writer {
                if let Err(e) = w.write(&r) {
                    io_error.get_or_insert(e);
                }
            }
        }
    };
    let mut on_segment = |s: &pcap::Segment| {
        pipe.segment(s);
        emit(&mut pipe, &mut summary);
    };
    let packets = match source {
        Source::Live(l) => {
            let until = args.duration.map_or("SIGINT or SIGTERM".to_string(), |d| {
                format!("{}", humantime::format_duration(d))
            });
            eprintln!(
                "capturing on {} ({}) until {until}",
                l.interface,
                live::filter(&args.ports)
            );
            l.run(args.duration, &mut on_segment)?
        }
        Source::File(path) => pcap::read_file(path, &mut on_segment)?,
    };
    let totals = pipe.finish();
    emit(&mut pipe, &mut summary);
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    summary.packets = packets;
    summary.connections = totals.connections;
    summary.decode = totals.decode;
    summary.client_stream = totals.client_stream;
    summary.server_stream = totals.server_stream;
    summary.finish(args.top);
    Ok(if args.json {
        serde_json::to_string_pretty(&summary)? + "\n"
    } else {
        summary.text()
    })
}
