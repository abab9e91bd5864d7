//! A client's `CLIENT TRACKING` state as the proxy sees it: the options it turned on, the
//! client it redirects to (in the proxy's numbering), its BCAST prefixes. Redis does the
//! tracking on the client's dedicated connection; this view answers `CLIENT GETREDIR` and
//! `CLIENT TRACKINGINFO` in the proxy's terms, and `tracking_clients` in `INFO`.

use bytes::Bytes;

#[derive(Debug, Clone, Default)]
pub struct TrackingView {
    pub on: bool,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// `CLIENT CACHING yes|no` given for the next command.
    pub caching: Option<bool>,
    /// The proxy id invalidations go to, if redirected.
    pub redirect: Option<u64>,
    pub prefixes: Vec<Bytes>,
}

impl TrackingView {
    /// The view after `CLIENT TRACKING on|off [options]` (`args` from `on|off`), as Redis
    /// changes it: `on` replaces the options and adds BCAST prefixes, `off` clears all.
    /// `redirect` is the REDIRECT target already resolved to a proxy id.
    pub fn after(&self, args: &[Bytes], redirect: Option<u64>) -> TrackingView {
        let Some(switch) = args.first() else {
            return self.clone();
        };
        if !switch.eq_ignore_ascii_case(b"on") {
            return TrackingView::default();
        }
        let mut next = TrackingView {
            on: true,
            redirect,
            prefixes: self.prefixes.clone(),
            ..TrackingView::default()
        };
        let mut given = Vec::new();
        let mut i = 1;
        while i < args.len() {
            let opt = args[i].to_ascii_uppercase();
            match &opt[..] {
                b"BCAST" => next.bcast = true,
                b"OPTIN" => next.optin = true,
                b"OPTOUT" => next.optout = true,
                b"NOLOOP" => next.noloop = true,
                b"PREFIX" | b"REDIRECT" => {
                    if opt == b"PREFIX" {
                        if let Some(p) = args.get(i + 1) {
                            given.push(p.clone());
                        }
                    }
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        if next.bcast {
            if given.is_empty() {
                given.push(Bytes::new());
            }
            for p in given {
                if !next.prefixes.contains(&p) {
                    next.prefixes.push(p);
                }
            }
        } else {
            next.prefixes.clear();
        }
        next
    }

    /// `CLIENT GETREDIR` and `redir=`: -1 when off, 0 when on without a redirect.
    pub fn redirect_field(&self) -> i64 {
        match (self.on, self.redirect) {
            (false, _) => -1,
            (true, None) => 0,
            (true, Some(id)) => id as i64,
        }
    }

    /// `CLIENT TRACKINGINFO`'s flags, in Redis's order; `broken`: the redirect target is gone.
    pub fn flags(&self, broken: bool) -> Vec<&'static str> {
        if !self.on {
            return vec!["off"];
        }
        let mut flags = vec!["on"];
        for (set, name) in [
            (self.bcast, "bcast"),
            (self.optin, "optin"),
            (self.optout, "optout"),
            (self.caching == Some(true) && self.optin, "caching-yes"),
            (self.caching == Some(false) && self.optout, "caching-no"),
            (self.noloop, "noloop"),
            (broken, "broken_redirect"),
        ] {
            if set {
                flags.push(name);
            }
        }
        flags
    }
}

/// The value after `REDIRECT` in `CLIENT TRACKING` arguments (from `on|off`), and its index.
pub fn redirect_arg(args: &[Bytes]) -> Option<(usize, &Bytes)> {
    let mut i = 1;
    while i + 1 < args.len() {
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"REDIRECT") {
            return Some((i + 1, &args[i + 1]));
        }
        if opt.eq_ignore_ascii_case(b"PREFIX") {
            i += 1;
        }
        i += 1;
    }
    None
}
