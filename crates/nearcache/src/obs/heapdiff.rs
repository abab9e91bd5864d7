//! `nearcache heap-diff OLD NEW`: which allocation sites grew between two heap profiles.
//!
//! Both files are pprof profiles (gzipped or plain protobuf), as `/debug/pprof/heap` serves
//! them. In-use bytes are summed per allocation site: by default the leaf-most frames of each
//! stack that are not the allocator's own (jemalloc, Rust's alloc shims, `RawVec` growth), or
//! the whole stack with `--full`. Sites are printed by growth, largest first.
//! Offline only: never runs inside the proxy, and never trusts a profile's contents (a bad
//! file is an error, not a panic).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Parser;
use pprof::protos::{Message as _, Profile};

/// Flags of `nearcache heap-diff`.
#[derive(Parser, Debug)]
#[command(
    name = "nearcache heap-diff",
    bin_name = "nearcache heap-diff",
    about = "Compare two heap profiles from /debug/pprof/heap: the allocation sites that grew most"
)]
pub struct HeapDiffArgs {
    /// The earlier profile.
    pub old: PathBuf,
    /// The later profile.
    pub new: PathBuf,
    /// How many sites to print.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Frames (leaf first, allocator frames skipped) that name a site.
    #[arg(long, default_value_t = 3)]
    pub frames: usize,
    /// Name sites by their whole stack.
    #[arg(long)]
    pub full: bool,
}

/// Frames that belong to the allocator or the standard collections rather than to the code
/// that allocated (matched at the start of the name, after any `<`).
const INTERNAL: &[&str] = &[
    "alloc::",
    "core::",
    "std::alloc",
    "std::collections::",
    "hashbrown::",
    "__rust",
    "__rdl_",
    "__rg_",
    "_rjem_",
    "je_",
    "tikv_jemalloc",
    "prof_",
    "imalloc",
    "ialloc",
    "iralloc",
    "irallocx",
    "do_rallocx",
    "mallocx",
    "rallocx",
    "arena_",
    "tcache_",
    "malloc",
    "calloc",
    "realloc",
];

/// Whether a frame is the allocator's or the standard library's allocation plumbing.
fn internal(frame: &str) -> bool {
    let name = frame.trim_start_matches('<');
    // `<T as alloc::...>` and `<u8 as alloc::...>`: trait impls inside alloc.
    let name = match name.split_once(" as ") {
        Some((ty, rest)) if !ty.contains("::") => rest,
        _ => name,
    };
    INTERNAL.iter().any(|p| name.starts_with(p))
}

/// Decodes a pprof profile, gzipped or not.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Profile> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context("not a valid gzip stream")?;
        out
    } else {
        bytes.to_vec()
    };
    Profile::decode(raw.as_slice()).context("not a pprof protobuf profile")
}

/// In-use bytes by site.
pub fn sites(p: &Profile, frames: usize, full: bool) -> anyhow::Result<HashMap<String, i64>> {
    let strings = &p.string_table;
    let text = |i: i64| strings.get(i as usize).map(String::as_str).unwrap_or("");
    // The value to sum: in-use bytes when the profile has them, else its first sample type.
    let index = p
        .sample_type
        .iter()
        .position(|t| text(t.ty) == "inuse_space")
        .unwrap_or(0);
    if p.sample_type.is_empty() {
        bail!("the profile declares no sample type");
    }
    let functions: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, text(f.name))).collect();
    let locations: HashMap<u64, Vec<String>> = p
        .location
        .iter()
        .map(|l| {
            let names = if l.line.is_empty() {
                vec![format!("{:#x}", l.address)]
            } else {
                // Inlined frames come innermost first, as in the stack.
                l.line
                    .iter()
                    .map(|ln| functions.get(&ln.function_id).unwrap_or(&"?").to_string())
                    .collect()
            };
            (l.id, names)
        })
        .collect();
    let mut out = HashMap::new();
    for s in &p.sample {
        let value = s.value.get(index).copied().unwrap_or(0);
        let stack = s
            .location_id
            .iter()
            .flat_map(|id| locations.get(id).into_iter().flatten())
            .map(String::as_str);
        let site: Vec<&str> = if full {
            stack.collect()
        } else {
            stack.filter(|f| !internal(f)).take(frames.max(1)).collect()
        };
        let key = if site.is_empty() {
            "<allocator only>".to_string()
        } else {
            site.join(" < ")
        };
        *out.entry(key).or_insert(0) += value;
    }
    Ok(out)
}

/// One site's in-use bytes in both profiles.
#[derive(Debug, PartialEq, Eq)]
pub struct Growth {
    pub site: String,
    pub old: i64,
    pub new: i64,
}

impl Growth {
    pub fn delta(&self) -> i64 {
        self.new - self.old
    }
}

/// Every site of either profile, largest growth first.
pub fn diff(old: &HashMap<String, i64>, new: &HashMap<String, i64>) -> Vec<Growth> {
    let mut all: Vec<Growth> = new
        .iter()
        .map(|(site, n)| Growth {
            site: site.clone(),
            old: old.get(site).copied().unwrap_or(0),
            new: *n,
        })
        .chain(
            old.iter()
                .filter(|(site, _)| !new.contains_key(*site))
                .map(|(site, o)| Growth {
                    site: site.clone(),
                    old: *o,
                    new: 0,
                }),
        )
        .collect();
    all.sort_by(|a, b| b.delta().cmp(&a.delta()).then(a.site.cmp(&b.site)));
    all
}

/// Runs the subcommand and returns its report.
pub fn run(args: &HeapDiffArgs) -> anyhow::Result<String> {
    let load = |path: &PathBuf| -> anyhow::Result<HashMap<String, i64>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let profile = decode(&bytes).with_context(|| format!("{}", path.display()))?;
        sites(&profile, args.frames, args.full)
    };
    let old = load(&args.old)?;
    let new = load(&args.new)?;
    let total = |m: &HashMap<String, i64>| m.values().sum::<i64>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "in-use bytes: old {} new {} delta {:+}  ({} sites)",
        human(total(&old)),
        human(total(&new)),
        total(&new) - total(&old),
        old.len().max(new.len())
    );
    let _ = writeln!(out, "{:>12} {:>12} {:>12}  site", "delta", "old", "new");
    for g in diff(&old, &new).iter().take(args.top) {
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:>12}  {}",
            format!("{:+}", g.delta()),
            g.old,
            g.new,
            g.site
        );
    }
    Ok(out)
}

fn human(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes.unsigned_abs() {
        n if n >= 1 << 30 => format!("{:.1}GiB", b / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}MiB", b / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KiB", b / 1024.0),
        _ => format!("{bytes}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::protos::{Function, Line, Location, Sample, ValueType};

    /// A profile with one sample per (stack of function names, bytes).
    fn profile(samples: &[(&[&str], i64)]) -> Profile {
        let mut p = Profile {
            string_table: vec![String::new(), "inuse_space".into(), "bytes".into()],
            sample_type: vec![ValueType { ty: 1, unit: 2 }],
            ..Default::default()
        };
        for (stack, bytes) in samples {
            let mut ids = Vec::new();
            for name in *stack {
                p.string_table.push(name.to_string());
                let id = p.function.len() as u64 + 1;
                p.function.push(Function {
                    id,
                    name: p.string_table.len() as i64 - 1,
                    ..Default::default()
                });
                p.location.push(Location {
                    id,
                    line: vec![Line {
                        function_id: id,
                        line: 0,
                    }],
                    ..Default::default()
                });
                ids.push(id);
            }
            p.sample.push(Sample {
                location_id: ids,
                value: vec![*bytes],
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn sums_by_site_skipping_allocator_frames() {
        let p = profile(&[
            (
                &["_rjem_malloc", "alloc::raw_vec::grow", "app::leak", "main"],
                100,
            ),
            (&["_rjem_malloc", "app::leak", "main"], 50),
            (&["_rjem_malloc", "app::other", "main"], 7),
        ]);
        let s = sites(&p, 1, false).unwrap();
        assert_eq!(s["app::leak"], 150);
        assert_eq!(s["app::other"], 7);
        let full = sites(&p, 1, true).unwrap();
        assert_eq!(full["_rjem_malloc < app::other < main"], 7);
    }

    #[test]
    fn diff_orders_by_growth_and_round_trips_gzip() {
        let old = profile(&[(&["a"], 10), (&["b"], 10), (&["gone"], 5)]);
        let new = profile(&[(&["a"], 1000), (&["b"], 20)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &new.encode_to_vec()).unwrap();
        let new = decode(&gz.finish().unwrap()).unwrap();
        let d = diff(
            &sites(&old, 1, false).unwrap(),
            &sites(&new, 1, false).unwrap(),
        );
        let order: Vec<(&str, i64)> = d.iter().map(|g| (g.site.as_str(), g.delta())).collect();
        assert_eq!(order, [("a", 990), ("b", 10), ("gone", -5)]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"\x1f\x8bnot gzip").is_err());
        assert!(decode(b"\xff\xff\xff\xff").is_err());
    }
}
