//! Which exposition format a scrape gets, and the Prometheus text format 0.0.4 made from the
//! OpenMetrics text the registry writes.
//!
//! `prometheus-client` writes OpenMetrics only. Prometheus asks for OpenMetrics in its `Accept`
//! header; other scrapers (older Prometheus, curl, many agents) read the 0.0.4 text format,
//! which differs in three ways for the metrics the proxy has: a counter's `# HELP`/`# TYPE`
//! lines name the sample (`x_total`), not the family (`x`); there is no `# UNIT` or `# EOF`
//! line; and there is no `info` type (an info family is a gauge named `x_info`). Owns the
//! negotiation and that rewrite; never changes a sample's name, labels or value.

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, as the registry writes it.
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    Text004,
}

impl Format {
    /// The `Content-Type` that declares this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it is acceptable (quality
    /// above 0) and preferred at least as much as plain text; the 0.0.4 text otherwise,
    /// including when there is no header or it cannot be read.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// The 0.0.4 text format of `openmetrics` (the registry's output).
pub fn text004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family of the last `# TYPE` line, and what its samples' name ends with in 0.0.4.
    let mut renames: Vec<(String, &'static str)> = Vec::new();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "stateset" | "gaugehistogram" | "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if !suffix.is_empty() {
                renames.push((name.to_string(), suffix));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if renames.is_empty() {
        return out;
    }
    // `# HELP` comes before `# TYPE`: rename it in a second pass, now that the types are known.
    let mut fixed = String::with_capacity(out.len() + 16 * renames.len());
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((_, suffix)) = renames.iter().find(|(n, _)| n == name) {
                fixed.push_str(&format!("# HELP {name}{suffix} {help}\n"));
                continue;
            }
        }
        fixed.push_str(line);
        fixed.push('\n');
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_others_the_text_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text004);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text004);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text004);
        let refused = "application/openmetrics-text;q=0, text/plain";
        assert_eq!(Format::negotiate(Some(refused)), Format::Text004);
        let lower = "text/plain;q=0.9, application/openmetrics-text;q=0.5";
        assert_eq!(Format::negotiate(Some(lower)), Format::Text004);
        let bad_q = "application/openmetrics-text;q=abc";
        assert_eq!(Format::negotiate(Some(bad_q)), Format::Text004);
    }

    #[test]
    fn counters_are_named_by_their_samples_and_the_end_marker_goes() {
        let om = "# HELP a_b Things done.\n# TYPE a_b counter\na_b_total 3\n\
                  # HELP g A gauge.\n# TYPE g gauge\n# UNIT g bytes\ng 1\n\
                  # HELP v Build.\n# TYPE v info\nv_info{version=\"1\"} 1\n# EOF\n";
        let text = text004(om);
        assert_eq!(
            text,
            "# HELP a_b_total Things done.\n# TYPE a_b_total counter\na_b_total 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n\
             # HELP v_info Build.\n# TYPE v_info gauge\nv_info{version=\"1\"} 1\n"
        );
    }
}
