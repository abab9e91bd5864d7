//! Trace replay: hit ratios of every policy on the shared traces, fixed synthetic traces and
//! generated workload families (`families.rs`), with the bar the default policy is held to.
//!
//! Drives the policies directly (one handle per distinct object; unit weights, or the family's
//! weights for sized families) the way a simulator does: a request for a resident object is a
//! hit, anything else a miss followed by an insert. Prints a markdown table: one row per trace
//! and capacity, and for each family at each capacity a row for the whole run and one for its
//! final phase (`… final`); each row says which half it is in (`dev`: policies are chosen and
//! tuned on these; `held-out`: reported untouched). Then a summary per policy of the rows where
//! it is more than 1 point below the best of LRU, W-TinyLFU, S3-FIFO and SIEVE, or below LRU.
//! `--export DIR` writes every trace as plain text (one dense id per line) plus `manifest.txt`
//! for `scripts/libcachesim_ref.py`. `--samples N` makes adaptive's shadows simulate at most N
//! keys instead of 1,024, as a shard whose byte budget affords only N would (docs/cache.md).
//! Must never change a policy: it only reads hit counts.
//!
//! Usage: `cargo run --release -p nearcache-cache --example replay -- [--traces DIR]
//! [--export DIR] [--only SUBSTRING] [--capacity N] [--samples N] [--set dev|held]
//! [--no-traces] [--no-families]` (`--capacity N` replays the traces at N objects instead of the
//! usual capacities; families keep theirs)

mod families;
mod traces;

use cache::policy::{Adaptive, Handle, Policy};
use cache::PolicyKind;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use traces::{Set, Trace};

fn hash(id: u32) -> u64 {
    let x = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

/// Hit ratios (percent) of one replay: over the whole run and over the final phase (the
/// whole run again if the trace has no phases).
#[derive(Clone, Copy, Debug)]
struct Ratios {
    whole: f64,
    last: f64,
}

/// Replay `trace` through `kind` at `capacity` weight units; `samples` bounds adaptive's
/// shadows.
fn simulate(kind: PolicyKind, capacity: u64, samples: Option<usize>, trace: &Trace) -> Ratios {
    let mut policy: Box<dyn Policy> = match (kind, samples) {
        (PolicyKind::Adaptive, Some(n)) => Box::new(Adaptive::with_shadows(capacity, 0, n)),
        _ => kind.build_counted(capacity),
    };
    let mut resident = vec![false; trace.distinct];
    let mut evicted: Vec<Handle> = Vec::new();
    let final_from = trace.final_from.unwrap_or(0);
    let (mut hits, mut final_hits) = (0u64, 0u64);
    for (i, &id) in trace.ids.iter().enumerate() {
        if resident[id as usize] {
            hits += 1;
            final_hits += u64::from(i >= final_from);
            policy.on_hit(id);
        } else {
            let weight = trace.weights.as_ref().map_or(1, |w| w[id as usize]);
            evicted.clear();
            policy.insert(id, hash(id), weight, &mut evicted);
            resident[id as usize] = true;
            for &v in &evicted {
                resident[v as usize] = false;
            }
        }
    }
    let n = trace.ids.len() as f64;
    Ratios {
        whole: 100.0 * hits as f64 / n,
        last: 100.0 * final_hits as f64 / (n - final_from as f64),
    }
}

fn capacities(t: &Trace) -> Vec<u64> {
    let mut caps = t.caps.clone();
    if t.final_from.is_some() {
        // A family is generated for its capacity.
        return caps;
    }
    for pct in [1, 10] {
        let c = ((t.distinct * pct) as f64 / 100.0).round().max(1.0) as u64;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.sort_unstable();
    caps
}

fn export(dir: &Path, traces: &[Trace]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = File::create(dir.join("manifest.txt"))?;
    for t in traces {
        let path = dir.join(format!("{}.txt", t.name));
        let mut w = io::BufWriter::new(File::create(&path)?);
        for id in &t.ids {
            writeln!(w, "{}", u64::from(*id) + 1)?;
        }
        w.flush()?;
        let caps: Vec<String> = capacities(t).iter().map(|c| c.to_string()).collect();
        writeln!(
            manifest,
            "{}\t{}\t{}",
            t.name,
            path.display(),
            caps.join(",")
        )?;
    }
    Ok(())
}

/// The policies the bar compares against: the default must be within [`BAR`] points of the
/// best of these on every row, and never more than [`BAR`] below LRU.
const REFERENCE: [PolicyKind; 4] = [
    PolicyKind::Lru,
    PolicyKind::WTinyLfu,
    PolicyKind::S3Fifo,
    PolicyKind::Sieve,
];
/// Points a policy may trail the best reference policy (or LRU) on a row.
const BAR: f64 = 1.0;

/// One printed row: what was replayed, and every policy's hit ratio on it.
struct Row {
    label: String,
    set: Set,
    ratios: Vec<f64>,
}

impl Row {
    fn ratio(&self, k: PolicyKind) -> f64 {
        self.ratios[PolicyKind::ALL.iter().position(|&x| x == k).unwrap_or(0)]
    }
    fn best(&self) -> f64 {
        REFERENCE.iter().map(|&k| self.ratio(k)).fold(0.0, f64::max)
    }
}

struct Args {
    dir: PathBuf,
    export: Option<PathBuf>,
    only: Option<String>,
    samples: Option<usize>,
    capacity: Option<u64>,
    set: Option<Set>,
    traces: bool,
    families: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("/work/shared/traces"),
        export: None,
        only: None,
        samples: None,
        capacity: None,
        set: None,
        traces: true,
        families: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--traces" => a.dir = args.next().map(PathBuf::from).unwrap_or(a.dir),
            "--export" => a.export = args.next().map(PathBuf::from),
            "--only" => a.only = args.next(),
            "--samples" => a.samples = args.next().and_then(|n| n.parse().ok()),
            "--capacity" => a.capacity = args.next().and_then(|n| n.parse().ok()),
            "--set" => {
                a.set = match args.next().as_deref() {
                    Some("dev") => Some(Set::Dev),
                    Some("held") | Some("held-out") => Some(Set::Held),
                    _ => None,
                }
            }
            "--no-traces" => a.traces = false,
            "--no-families" => a.families = false,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn print_row(row: &Row) {
    print!("| {} | {} |", row.label, row.set.name());
    for r in &row.ratios {
        print!(" {r:.2} |");
    }
    let d = row.ratio(PolicyKind::default());
    println!(
        " {:.2} | {:+.2} | {:+.2} |",
        row.best(),
        d - row.best(),
        d - row.ratio(PolicyKind::Lru)
    );
}

/// Replays `t` at each of its capacities through every policy, printing and collecting rows.
fn replay(t: &Trace, caps: &[u64], samples: Option<usize>, rows: &mut Vec<Row>) {
    for &cap in caps {
        let all: Vec<Ratios> = PolicyKind::ALL
            .iter()
            .map(|&k| simulate(k, cap, samples, t))
            .collect();
        let mut out = vec![Row {
            label: format!("{} @ {}", t.name, cap),
            set: t.set,
            ratios: all.iter().map(|r| r.whole).collect(),
        }];
        if t.final_from.is_some() {
            out.push(Row {
                label: format!("{} @ {} final", t.name, cap),
                set: t.set,
                ratios: all.iter().map(|r| r.last).collect(),
            });
        }
        for row in out {
            print_row(&row);
            rows.push(row);
        }
    }
}

/// Per policy and half: rows within the bar, the worst shortfall against the best reference
/// policy and against LRU, and the rows that miss the bar.
fn summary(rows: &[Row]) {
    println!();
    println!("| policy | set | rows | within bar | worst vs best | worst vs LRU | sum below best | misses |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for k in PolicyKind::ALL {
        if REFERENCE.contains(&k) {
            continue;
        }
        for set in [Set::Dev, Set::Held] {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.set == set).collect();
            if mine.is_empty() {
                continue;
            }
            let gap = |r: &Row| r.ratio(k) - r.best();
            let lru = |r: &Row| r.ratio(k) - r.ratio(PolicyKind::Lru);
            let misses: Vec<String> = mine
                .iter()
                .filter(|r| gap(r) < -BAR || lru(r) < -BAR)
                .map(|r| format!("{} ({:+.2})", r.label, gap(r).min(lru(r))))
                .collect();
            let worst = mine.iter().map(|r| gap(r)).fold(f64::MAX, f64::min);
            let worst_lru = mine.iter().map(|r| lru(r)).fold(f64::MAX, f64::min);
            let sum: f64 = mine.iter().map(|r| gap(r).min(0.0)).sum();
            println!(
                "| {} | {} | {} | {} | {worst:+.2} | {worst_lru:+.2} | {sum:.2} | {} |",
                k.name(),
                set.name(),
                mine.len(),
                mine.len() - misses.len(),
                misses.join(", ")
            );
        }
    }
}

fn main() -> io::Result<()> {
    let args = parse_args();
    let mut traces = Vec::new();
    if args.traces {
        traces = traces::load_dir(&args.dir)?;
        traces.extend(traces::synthetic());
    }
    let keep = |name: &str, set: Set| {
        args.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
            && args.set.is_none_or(|s| s == set)
    };
    traces.retain(|t| keep(&t.name, t.set));
    if let Some(d) = &args.export {
        export(d, &traces)?;
    }
    print!("| trace @ capacity | set |");
    for k in PolicyKind::ALL {
        print!(" {} |", k.name());
    }
    println!(" best of 4 | default − best | default − LRU |");
    print!("|---|---|");
    for _ in PolicyKind::ALL {
        print!("---:|");
    }
    println!("---:|---:|---:|");
    let mut rows = Vec::new();
    for t in &traces {
        let caps = args.capacity.map_or_else(|| capacities(t), |c| vec![c]);
        replay(t, &caps, args.samples, &mut rows);
    }
    if args.families {
        for spec in families::all() {
            if !keep(&spec.name(), spec.set) {
                continue;
            }
            for &c in families::capacities(spec.set) {
                let t = spec.generate(c);
                replay(&t, &t.caps.clone(), args.samples, &mut rows);
            }
        }
    }
    summary(&rows);
    Ok(())
}
