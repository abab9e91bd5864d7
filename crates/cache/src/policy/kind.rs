//! The names of the policies: [`PolicyKind`], its display names and parsing ([`UnknownPolicy`]).
//!
//! Plain data, imported by every policy (each reports its kind) and by the cache's
//! configuration. Must never build a policy or import one: `PolicyKind::build` lives in
//! `policy/mod.rs`, above the policies.

use std::fmt;
use std::str::FromStr;

/// The available policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// Least frequently used (exact in-cache counts, O(1) frequency buckets, LRU tie-break).
    Lfu,
    /// Window-TinyLFU with a fixed 1% window.
    WTinyLfu,
    /// S3-FIFO (small/main/ghost FIFO queues).
    S3Fifo,
    /// SIEVE (FIFO with a visited bit and a moving hand).
    Sieve,
    /// W-TinyLFU whose window share adapts per request from two ghost lists, and which runs
    /// as LRU while sampled shadows say LRU wins (the previous default).
    Adaptive,
    /// W-TinyLFU whose window adapts from two ghost lists and which also admits a candidate
    /// reused sooner than the victim has gone unused (the default).
    #[default]
    ReuseTinyLfu,
}

impl PolicyKind {
    /// All policies, in display order.
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Lru,
        PolicyKind::Lfu,
        PolicyKind::WTinyLfu,
        PolicyKind::S3Fifo,
        PolicyKind::Sieve,
        PolicyKind::Adaptive,
        PolicyKind::ReuseTinyLfu,
    ];

    /// The name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Lfu => "lfu",
            PolicyKind::WTinyLfu => "w-tinylfu",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Sieve => "sieve",
            PolicyKind::Adaptive => "adaptive",
            PolicyKind::ReuseTinyLfu => "reuse-tinylfu",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown policy name; its message lists the valid names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown eviction policy {:?}; valid: ", self.0)?;
        for (i, k) in PolicyKind::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(k.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    /// Case-insensitive; also accepts `wtinylfu`, `tinylfu`, `s3-fifo`, `reuse`, and
    /// `default` (whichever kind is the default).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "lru" => PolicyKind::Lru,
            "lfu" => PolicyKind::Lfu,
            "w-tinylfu" | "wtinylfu" | "tinylfu" => PolicyKind::WTinyLfu,
            "s3fifo" | "s3-fifo" => PolicyKind::S3Fifo,
            "sieve" => PolicyKind::Sieve,
            "adaptive" => PolicyKind::Adaptive,
            "reuse-tinylfu" | "reuse" => PolicyKind::ReuseTinyLfu,
            "default" => PolicyKind::default(),
            _ => return Err(UnknownPolicy(s.to_string())),
        })
    }
}
