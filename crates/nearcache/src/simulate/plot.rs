//! `nearcache simulate --plot`: the miss-ratio curves as an SVG file, one line per policy
//! (miss ratio against cache size, the size on a log scale), the miss ratio of a cache that
//! never evicts as a dashed floor. Hand-written SVG: a plotting crate would bring font
//! libraries for a few lines and labels.
//!
//! Presentation only: reads a finished [`Report`], never computes a figure of its own.

use std::fmt::Write as _;

use super::report::{Report, Run};
use crate::config::values::{ByteSize, Value};

const W: f64 = 720.0;
const H: f64 = 440.0;
/// The plot area's margins: left (miss-ratio labels), right (legend), top, bottom (sizes).
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;
const COLOURS: [&str; 7] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document for `report`'s runs.
pub fn svg(report: &Report) -> String {
    let mut policies: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    let mut sizes: Vec<u64> = report.runs.iter().map(|r| r.max_memory.max(1)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (lo, hi) = match (sizes.first(), sizes.last()) {
        (Some(&lo), Some(&hi)) if hi > lo => ((lo as f64).log2(), (hi as f64).log2()),
        (Some(&lo), _) => ((lo as f64).log2() - 1.0, (lo as f64).log2() + 1.0),
        _ => (0.0, 1.0),
    };
    let x = |size: u64| LEFT + (W - LEFT - RIGHT) * ((size.max(1) as f64).log2() - lo) / (hi - lo);
    let y = |miss: f64| TOP + (H - TOP - BOTTOM) * (1.0 - miss.clamp(0.0, 1.0));
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">miss ratio by cache size ({} requests)</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        report.requests
    );
    // Axes, grid and labels.
    for i in 0..=10 {
        let m = f64::from(i) / 10.0;
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{m:.1}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(m) + 4.0,
            y = y(m)
        );
    }
    for &s in &sizes {
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            ByteSize(s).show(),
            x = x(s)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">max_memory (log scale)</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">miss ratio</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0
    );
    let floor = y(1.0 - report.achievable_hit_ratio);
    let _ = writeln!(
        o,
        r##"<line class="floor" x1="{LEFT}" x2="{}" y1="{floor:.1}" y2="{floor:.1}" stroke="#888" stroke-dasharray="5,4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#666">never evicting</text>"##,
        W - RIGHT,
        W - RIGHT - 4.0,
        floor - 4.0
    );
    for (i, p) in policies.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut runs: Vec<&Run> = report.runs.iter().filter(|r| r.policy == *p).collect();
        runs.sort_by_key(|r| r.max_memory);
        let points: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.max_memory), y(1.0 - r.hit_ratio)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline class="curve" data-policy="{}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            escape(p),
            points.join(" ")
        );
        for pt in &points {
            let (px, py) = pt.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(o, r#"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"#);
        }
        let ly = TOP + 18.0 * i as f64 + 8.0;
        let lx = W - RIGHT + 16.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(p)
        );
    }
    o.push_str("</svg>\n");
    o
}
