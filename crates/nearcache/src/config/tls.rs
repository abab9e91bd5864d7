//! The types of the TLS settings: where Redis is (`host:port`, or `rediss://host:port` for
//! TLS), whether the TLS listener asks clients for a certificate, and the name Redis's
//! certificate must carry.
//!
//! Owns parsing and display only, as [`super::values`] does for the other types. Never reads a
//! certificate file (that is `crate::tls`, when the proxy starts or reloads).

use super::values::{Address, Value};

/// Where Redis is: `host:port`, `redis://host:port`, or `rediss://host:port`, which means the
/// same as `upstream_tls = true`; with `cluster = true`, a comma-separated list of seed nodes
/// (`host:port,host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    addr: Address,
    /// The seeds after the first, each `host:port` (a list is only for `cluster = true`).
    more: Vec<Address>,
    /// Written `rediss://`.
    tls: bool,
    /// Written `redis://` (shown back the same way).
    scheme: bool,
}

impl Upstream {
    /// `host:port`, whatever the scheme.
    pub fn as_str(&self) -> &str {
        self.addr.as_str()
    }

    /// Written `rediss://`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Every address given, `host:port`, the first one first (seed nodes of a cluster).
    pub fn seeds(&self) -> Vec<String> {
        std::iter::once(&self.addr)
            .chain(&self.more)
            .map(|a| a.as_str().to_string())
            .collect()
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.show())
    }
}

impl Value for Upstream {
    const KIND: &'static str = "HOST:PORT|rediss://HOST:PORT|HOST:PORT,HOST:PORT";
    const BAD: &'static str = "rediss://user:pw@host:6379/0";

    fn parse(text: &str) -> Result<Self, String> {
        let mut seeds = text.split(',');
        let first = Self::parse_one(seeds.next().unwrap_or_default())?;
        let mut more = Vec::new();
        for seed in seeds {
            let next = Self::parse_one(seed)?;
            if next.scheme {
                return Err(format!(
                    "a scheme (redis://, rediss://) goes on the first address of a list only, \
                     not {seed:?}"
                ));
            }
            more.push(next.addr);
        }
        Ok(Upstream { more, ..first })
    }

    fn show(&self) -> String {
        let first = match (self.scheme, self.tls) {
            (true, true) => format!("rediss://{}", self.addr),
            (true, false) => format!("redis://{}", self.addr),
            _ => self.addr.show(),
        };
        std::iter::once(first)
            .chain(self.more.iter().map(Address::show))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Upstream {
    /// One address of the list.
    fn parse_one(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (rest, tls, scheme) = if let Some(rest) = t.strip_prefix("rediss://") {
            (rest, true, true)
        } else if let Some(rest) = t.strip_prefix("redis://") {
            (rest, false, true)
        } else {
            (t, false, false)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') || rest.contains('/') {
            return Err(format!(
                "expected host:port or rediss://host:port, not {text:?} (credentials go in \
                 upstream_user/upstream_password, and there is no database number)"
            ));
        }
        let addr = Address::parse(rest)
            .map_err(|_| format!("expected host:port or rediss://host:port, not {text:?}"))?;
        Ok(Upstream {
            addr,
            more: Vec::new(),
            tls,
            scheme,
        })
    }
}

/// Whether TLS clients must present a certificate signed by `tls_ca_cert_file` (Redis's
/// `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAuthClients {
    /// A client without a valid certificate is refused.
    Yes,
    /// No certificate is asked for.
    No,
    /// A certificate is asked for; a client without one is served, one with an invalid one
    /// is refused.
    Optional,
}

impl Value for TlsAuthClients {
    const KIND: &'static str = "yes|no|optional";
    const BAD: &'static str = "maybe";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "yes" => Ok(TlsAuthClients::Yes),
            "no" => Ok(TlsAuthClients::No),
            "optional" => Ok(TlsAuthClients::Optional),
            _ => Err(format!("expected yes, no or optional, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        match self {
            TlsAuthClients::Yes => "yes".into(),
            TlsAuthClients::No => "no".into(),
            TlsAuthClients::Optional => "optional".into(),
        }
    }
}

/// A DNS name or IP address a server certificate is checked against. Empty is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName(pub String);

impl Value for Option<ServerName> {
    const KIND: &'static str = "NAME";
    const BAD: &'static str = "not a host";

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        rustls::pki_types::ServerName::try_from(t)
            .map_err(|_| format!("expected a DNS name or IP address, not {text:?}"))?;
        Ok(Some(ServerName(t.to_string())))
    }

    fn show(&self) -> String {
        self.as_ref().map_or_else(String::new, |n| n.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_takes_a_scheme_and_shows_it_back() {
        let plain = Upstream::parse("127.0.0.1:6379").unwrap();
        assert!(!plain.tls() && plain.as_str() == "127.0.0.1:6379");
        assert_eq!(plain.show(), "127.0.0.1:6379");
        let tls = Upstream::parse("rediss://cache.example:6380").unwrap();
        assert!(tls.tls());
        assert_eq!(tls.as_str(), "cache.example:6380");
        assert_eq!(tls.show(), "rediss://cache.example:6380");
        let redis = Upstream::parse("redis://h:1/").unwrap();
        assert!(!redis.tls() && redis.show() == "redis://h:1");
        let list = Upstream::parse("redis://a:1, b:2,c:3").unwrap();
        assert_eq!(list.as_str(), "a:1");
        assert_eq!(list.seeds(), ["a:1", "b:2", "c:3"]);
        assert_eq!(list.show(), "redis://a:1,b:2,c:3");
        assert_eq!(Upstream::parse(&list.show()), Ok(list));
        for bad in [
            "rediss://u:p@h:1",
            "redis://h:1/2",
            "rediss://h",
            "h",
            "a:1,",
            "a:1,rediss://b:2",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_clients_and_server_names_parse_and_refuse() {
        assert_eq!(
            TlsAuthClients::parse("Optional"),
            Ok(TlsAuthClients::Optional)
        );
        assert!(TlsAuthClients::parse("maybe").is_err());
        assert_eq!(<Option<ServerName>>::parse(""), Ok(None));
        assert!(<Option<ServerName>>::parse("redis.example").is_ok());
        assert!(<Option<ServerName>>::parse("127.0.0.1").is_ok());
        assert!(<Option<ServerName>>::parse("not a host").is_err());
    }
}
