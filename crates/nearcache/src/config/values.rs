//! The types of settings and how each is read from text (a flag, `NEARCACHE CONFIG SET`, an
//! environment variable) or from a TOML value, and written back.
//!
//! Owns parsing and display only: every value is checked where it enters, and a bad one is an
//! error that says what was expected. Never knows which setting a value belongs to (the caller
//! names it in the error) nor what the proxy does with it.

use std::time::Duration;

use cache::PolicyKind;

/// A setting's type.
pub trait Value: Sized {
    /// What the value is, for `--help` (`SIZE`, `DURATION`, ...).
    const KIND: &'static str;
    /// A text no value of this type accepts, for tests of the error path.
    const BAD: &'static str;
    /// Shown as `********` by `NEARCACHE CONFIG GET` and never logged.
    const SECRET: bool = false;
    /// Its flag may be given without a value, meaning `true`.
    const BARE_FLAG: bool = false;

    fn parse(text: &str) -> Result<Self, String>;

    /// The value as [`Value::parse`] reads it back.
    fn show(&self) -> String;

    /// From a TOML file: strings are parsed as text; numbers and booleans as their text.
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => Self::parse(s),
            toml::Value::Integer(i) => Self::parse(&i.to_string()),
            toml::Value::Boolean(b) => Self::parse(&b.to_string()),
            other => Err(format!("expected {}, not {}", Self::KIND, other.type_str())),
        }
    }
}

/// A whole number of type `$ty`; `$bad` is a text it refuses.
macro_rules! whole_number {
    ($ty:ty, $bad:literal) => {
        impl Value for $ty {
            const KIND: &'static str = "NUMBER";
            const BAD: &'static str = $bad;

            fn parse(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("expected a whole number, not {text:?}"))
            }

            fn show(&self) -> String {
                self.to_string()
            }
        }
    };
}

whole_number!(usize, "many");
whole_number!(u64, "-1");

impl Value for bool {
    const KIND: &'static str = "BOOL";
    const BAD: &'static str = "maybe";
    const BARE_FLAG: bool = true;

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

/// A size as Redis writes it in its config: a number of bytes, or with a unit, where
/// `k`/`m`/`g` are powers of 1000 and `kb`/`mb`/`gb` powers of 1024 (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Value for ByteSize {
    const KIND: &'static str = "SIZE";
    const BAD: &'static str = "12xb";

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected e.g. 64mb, 10gb or bytes"))?;
        let mul: u64 = match unit {
            "" | "b" => 1,
            "k" => 1000,
            "kb" => 1024,
            "m" => 1000 * 1000,
            "mb" => 1024 * 1024,
            "g" => 1000 * 1000 * 1000,
            "gb" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {unit:?} (use k, kb, m, mb, g, gb)"
                ))
            }
        };
        n.checked_mul(mul)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }

    fn show(&self) -> String {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "gb"), (1 << 20, "mb"), (1 << 10, "kb")];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return format!("{}{unit}", self.0 / size);
            }
        }
        self.0.to_string()
    }
}

impl ByteSize {
    /// As a `usize` (saturating on 32-bit targets).
    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// `250ms`, `90s`, `30m`, `1h` (humantime), or `0`. A bare number other than 0 is refused: its
/// unit would be a guess.
impl Value for Duration {
    const KIND: &'static str = "DURATION";
    const BAD: &'static str = "5 parsecs";

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "0" {
            return Ok(Duration::ZERO);
        }
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} has no unit: write e.g. {t}ms or {t}s"));
        }
        humantime::parse_duration(t)
            .map_err(|e| format!("invalid duration {text:?} ({e}): expected e.g. 500ms, 30s, 5m"))
    }

    fn show(&self) -> String {
        if self.is_zero() {
            "0".into()
        } else if !self.subsec_nanos().is_multiple_of(1_000_000) {
            humantime::format_duration(*self).to_string()
        } else if !self.as_millis().is_multiple_of(1000) {
            format!("{}ms", self.as_millis())
        } else {
            format!("{}s", self.as_secs())
        }
    }
}

/// A duration where `0` means none (never, no limit, off).
impl Value for Option<Duration> {
    const KIND: &'static str = "DURATION";
    const BAD: &'static str = "5 parsecs";

    fn parse(text: &str) -> Result<Self, String> {
        let d = Duration::parse(text)?;
        Ok((!d.is_zero()).then_some(d))
    }

    fn show(&self) -> String {
        self.unwrap_or_default().show()
    }
}

/// `host:port`, with a port number (0 asks the OS for a free one when listening).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether only this machine can reach the address: `localhost`, 127.0.0.0/8 or `[::1]`.
    /// Any other name might resolve to anything, so it counts as reachable from outside.
    pub fn is_loopback(&self) -> bool {
        let host = self.0.rsplit_once(':').map_or("", |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Value for Address {
    const KIND: &'static str = "HOST:PORT";
    const BAD: &'static str = "localhost";

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Address(t.to_string()))
            }
            _ => Err(format!("expected host:port, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        self.0.clone()
    }
}

/// An address, or `none` for nothing to listen on.
impl Value for Option<Address> {
    const KIND: &'static str = "HOST:PORT|none";
    const BAD: &'static str = "localhost";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "none" => Ok(None),
            t => Address::parse(t).map(Some),
        }
    }

    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "none".into(), Address::show)
    }
}

/// A file path (a Unix socket, a log file). Empty is unset; control characters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(pub std::path::PathBuf);

impl Value for Option<FilePath> {
    const KIND: &'static str = "PATH";
    const BAD: &'static str = "a\nb";

    fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(char::is_control) {
            return Err(format!(
                "invalid path {text:?}: contains a control character"
            ));
        }
        Ok((!text.is_empty()).then(|| FilePath(text.into())))
    }

    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(String::new, |p| p.0.display().to_string())
    }
}

/// Permission bits written in octal, as chmod and Redis's `unixsocketperm` take them (`700`,
/// `0770`); `0` means the umask decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Value for FileMode {
    const KIND: &'static str = "OCTAL";
    const BAD: &'static str = "789";

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match u32::from_str_radix(t, 8) {
            Ok(m) if m <= 0o777 => Ok(FileMode(m)),
            _ => Err(format!(
                "expected permission bits in octal from 0 to 777, not {text:?}"
            )),
        }
    }

    fn show(&self) -> String {
        format!("{:o}", self.0)
    }
}

/// An ACL user name: no spaces or control characters (Redis refuses those). Empty is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(pub String);

impl Value for Option<UserName> {
    const KIND: &'static str = "NAME";
    const BAD: &'static str = "two words";

    fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("expected a user name without spaces".into());
        }
        Ok((!text.is_empty()).then(|| UserName(text.to_string())))
    }

    fn show(&self) -> String {
        self.as_ref().map_or_else(String::new, |u| u.0.clone())
    }
}

/// A password: never shown, never logged. Empty is unset; control characters (a pasted line
/// break, say) are refused.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

/// Whether a password or token a client gave is `want`, compared without stopping at the first
/// difference (the time taken says nothing of where they differ).
pub fn same_secret(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0, |d, (a, b)| d | (a ^ b)) == 0
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("********")
    }
}

impl Value for Option<Secret> {
    const KIND: &'static str = "SECRET";
    const BAD: &'static str = "pass\nword";
    const SECRET: bool = true;

    fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(char::is_control) {
            return Err("contains a control character (a line break?)".into());
        }
        Ok((!text.is_empty()).then(|| Secret(text.to_string())))
    }

    fn show(&self) -> String {
        self.as_ref().map_or_else(String::new, |s| s.0.clone())
    }
}

/// A log filter as `RUST_LOG` takes it (`info`, `nearcache=debug,warn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

impl Value for LogFilter {
    const KIND: &'static str = "FILTER";
    const BAD: &'static str = "nearcache=loud";

    fn parse(text: &str) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::builder()
            .parse(text.trim())
            .map(|_| LogFilter(text.trim().to_string()))
            .map_err(|e| format!("invalid log filter {text:?}: {e}"))
    }

    fn show(&self) -> String {
        self.0.clone()
    }
}

impl Value for PolicyKind {
    const KIND: &'static str = "POLICY";
    const BAD: &'static str = "fifo-ish";

    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|e: cache::UnknownPolicy| e.to_string())
    }

    fn show(&self) -> String {
        self.name().to_string()
    }
}

/// How Redis tells the proxy what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingKind {
    /// Redis remembers the keys each shared connection reads.
    Default,
    /// Every change under the tracking prefixes is broadcast.
    Bcast,
}

impl Value for TrackingKind {
    const KIND: &'static str = "default|bcast";
    const BAD: &'static str = "broadcast";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(TrackingKind::Default),
            "bcast" => Ok(TrackingKind::Bcast),
            _ => Err(format!("expected default or bcast, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        match self {
            TrackingKind::Default => "default".into(),
            TrackingKind::Bcast => "bcast".into(),
        }
    }
}

/// Where a cluster's cacheable reads that miss are sent (docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The slot's master, as every other command.
    Master,
    /// One of the slot's replicas (its master when it has none up), tracked on the replica.
    Replica,
}

impl Value for ReadFrom {
    const KIND: &'static str = "master|replica";
    const BAD: &'static str = "slave";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "master" => Ok(ReadFrom::Master),
            "replica" => Ok(ReadFrom::Replica),
            _ => Err(format!("expected master or replica, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        match self {
            ReadFrom::Master => "master".into(),
            ReadFrom::Replica => "replica".into(),
        }
    }
}

/// How clients authenticate (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// As Redis would: `AUTH` is checked upstream, and a client acts as its own ACL user.
    Passthrough,
    /// With the proxy's `requirepass`; the proxy acts as its own upstream user for everyone.
    Password,
    /// Nobody authenticates: every client acts as the proxy's upstream user.
    None,
}

impl Value for ClientAuth {
    const KIND: &'static str = "passthrough|password|none";
    const BAD: &'static str = "open";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "passthrough" => Ok(ClientAuth::Passthrough),
            "password" => Ok(ClientAuth::Password),
            "none" => Ok(ClientAuth::None),
            _ => Err(format!(
                "expected passthrough, password or none, not {text:?}"
            )),
        }
    }

    fn show(&self) -> String {
        match self {
            ClientAuth::Passthrough => "passthrough".into(),
            ClientAuth::Password => "password".into(),
            ClientAuth::None => "none".into(),
        }
    }
}

/// Which session thread serves a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every connection from one address on the same thread.
    Host,
    /// Connections in turn.
    Connection,
}

impl Value for Placement {
    const KIND: &'static str = "host|connection";
    const BAD: &'static str = "random";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "host" => Ok(Placement::Host),
            "connection" => Ok(Placement::Connection),
            _ => Err(format!("expected host or connection, not {text:?}")),
        }
    }

    fn show(&self) -> String {
        match self {
            Placement::Host => "host".into(),
            Placement::Connection => "connection".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_redis_and_show_back() {
        let size = |t: &str| ByteSize::parse(t).map(|s| s.0);
        assert_eq!(size("64mb"), Ok(64 << 20));
        assert_eq!(size("10GB"), Ok(10 << 30));
        assert_eq!(size("1k"), Ok(1000));
        assert_eq!(size("12345"), Ok(12345));
        assert!(size("12xb").is_err() && size("mb").is_err() && size("99999999999gb").is_err());
        for t in ["64mb", "1gb", "12345", "0", "3kb"] {
            assert_eq!(ByteSize::parse(t).unwrap().show(), t);
        }
    }

    #[test]
    fn durations_need_a_unit_except_zero() {
        assert_eq!(Duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(Duration::parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(Duration::parse("0"), Ok(Duration::ZERO));
        assert!(Duration::parse("500").unwrap_err().contains("500ms"));
        assert!(Duration::parse("soon").is_err());
        assert_eq!(<Option<Duration>>::parse("0"), Ok(None));
        for t in ["250ms", "90s", "0", "1500ms"] {
            assert_eq!(Duration::parse(t).unwrap().show(), t);
        }
    }

    #[test]
    fn the_rest_parse_and_refuse() {
        assert_eq!(bool::parse("on"), Ok(true));
        assert!(bool::parse("maybe").is_err());
        assert!(Address::parse("127.0.0.1:0").is_ok() && Address::parse("localhost").is_err());
        assert_eq!(<Option<Address>>::parse("none"), Ok(None));
        assert!(LogFilter::parse("nearcache=debug,warn").is_ok());
        assert!(LogFilter::parse("nearcache=loud").is_err());
        assert_eq!(TrackingKind::parse("BCAST"), Ok(TrackingKind::Bcast));
        assert!(<Option<UserName>>::parse("two words").is_err());
        assert_eq!(<Option<Secret>>::parse(""), Ok(None));
        assert!(<Option<Secret>>::parse("a\nb").is_err());
        assert_eq!(format!("{:?}", Secret("pw".into())), "********");
    }
}
