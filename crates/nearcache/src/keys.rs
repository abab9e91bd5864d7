//! Which commands the cache may answer, and which keys a forwarded command may change.
//!
//! Synchronous and pure, like [`crate::command`]. A command the cache answers depends on one
//! Redis key, always its first argument. A command not known to be read-only is treated as a
//! write to every one of its arguments, unless it is a known single-key write (`SET k v` changes
//! `k` only, and the value, which may be large, is neither hashed nor kept): over-invalidating
//! costs a few misses, missing a key would cost a stale read.

use std::sync::LazyLock;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};

use crate::command::name_upper;

/// Single-key read commands whose reply depends only on that key's value.
const CACHEABLE: &[&[u8]] = &[
    b"GET",
    b"GETRANGE",
    b"HEXISTS",
    b"HGET",
    b"HGETALL",
    b"HLEN",
    b"HMGET",
    b"HSTRLEN",
    b"LINDEX",
    b"LLEN",
    b"LRANGE",
    b"SCARD",
    b"SISMEMBER",
    b"SMEMBERS",
    b"SMISMEMBER",
    b"STRLEN",
    b"TYPE",
    b"ZCARD",
    b"ZMSCORE",
    b"ZRANGE",
    b"ZRANGEBYLEX",
    b"ZRANGEBYSCORE",
    b"ZRANK",
    b"ZREVRANGE",
    b"ZREVRANGEBYLEX",
    b"ZREVRANGEBYSCORE",
    b"ZREVRANK",
    b"ZSCORE",
];

/// Commands that change no key (beyond the cacheable ones above).
const READ_ONLY: &[&[u8]] = &[
    b"ACL",
    b"ASKING",
    b"AUTH",
    b"BITCOUNT",
    b"BITPOS",
    b"CLIENT",
    b"COMMAND",
    b"CONFIG",
    b"DBSIZE",
    b"DISCARD",
    b"DUMP",
    b"ECHO",
    b"EVALSHA_RO",
    b"EVAL_RO",
    b"EXISTS",
    b"EXPIRETIME",
    b"FCALL_RO",
    b"FUNCTION",
    b"GEODIST",
    b"GEOHASH",
    b"GEOPOS",
    b"GEORADIUSBYMEMBER_RO",
    b"GEORADIUS_RO",
    b"GEOSEARCH",
    b"GETBIT",
    b"HELLO",
    b"HKEYS",
    b"HRANDFIELD",
    b"HSCAN",
    b"HVALS",
    b"INFO",
    b"KEYS",
    b"LASTSAVE",
    b"LATENCY",
    b"LCS",
    b"LOLWUT",
    b"LPOS",
    b"MEMORY",
    b"MGET",
    b"MONITOR",
    b"MULTI",
    b"OBJECT",
    b"PEXPIRETIME",
    b"PING",
    b"PSUBSCRIBE",
    b"PTTL",
    b"PUBLISH",
    b"PUBSUB",
    b"PUNSUBSCRIBE",
    b"QUIT",
    b"RANDOMKEY",
    b"READONLY",
    b"READWRITE",
    b"RESET",
    b"ROLE",
    b"SCAN",
    b"SCRIPT",
    b"SDIFF",
    b"SELECT",
    b"SINTER",
    b"SINTERCARD",
    b"SLOWLOG",
    b"SORT_RO",
    b"SPUBLISH",
    b"SRANDMEMBER",
    b"SSCAN",
    b"SSUBSCRIBE",
    b"SUBSCRIBE",
    b"SUBSTR",
    b"SUNION",
    b"SUNSUBSCRIBE",
    b"TIME",
    b"TTL",
    b"UNSUBSCRIBE",
    b"UNWATCH",
    b"WAIT",
    b"WAITAOF",
    b"WATCH",
    b"XINFO",
    b"XLEN",
    b"XRANGE",
    b"XREVRANGE",
    b"ZCOUNT",
    b"ZDIFF",
    b"ZINTER",
    b"ZINTERCARD",
    b"ZLEXCOUNT",
    b"ZRANDMEMBER",
    b"ZSCAN",
    b"ZUNION",
];

/// MGET's [`read_code`]: after every cacheable read's.
pub const MGET_CODE: u8 = CACHEABLE.len() as u8 + 1;

/// A one-byte code (1..=29) for a command the cache answers, case-insensitively: its position
/// among the cacheable reads, MGET last. Compact entry keys use it instead of the name.
pub fn read_code(name: &[u8]) -> Option<u8> {
    let (buf, n) = name_upper(name);
    if n == 0 {
        return None;
    }
    static CODES: LazyLock<HashMap<&'static [u8], u8, hashbrown::DefaultHashBuilder>> =
        LazyLock::new(|| {
            let reads = CACHEABLE.iter().copied().chain([&b"MGET"[..]]);
            reads.zip(1..).collect()
        });
    CODES.get(&buf[..n]).copied()
}

/// What a command means for the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Answerable from the cache; the entry belongs to this Redis key.
    Read,
    /// MGET: each key is its own entry, and a partial hit fetches only the missing keys.
    MultiRead,
    /// Changes nothing the cache holds.
    Neutral,
    /// May change these keys: drop their entries when it is sent and when its reply arrives.
    Write,
    /// May change any key (FLUSHALL, FLUSHDB, SWAPDB): empty the cache.
    WriteAll,
}

type NameSet = HashSet<&'static [u8], hashbrown::DefaultHashBuilder>;

/// A table as a hash set, built on first use: every command is looked up in two or three
/// tables, and the read-only one is long.
fn name_set(table: &'static [&'static [u8]]) -> NameSet {
    table.iter().copied().collect()
}

fn is_cacheable(name: &[u8]) -> bool {
    static SET: LazyLock<NameSet> = LazyLock::new(|| name_set(CACHEABLE));
    SET.contains(name)
}

fn is_read_only(name: &[u8]) -> bool {
    static SET: LazyLock<NameSet> = LazyLock::new(|| name_set(READ_ONLY));
    SET.contains(name)
}

fn is_single_key_write(name: &[u8]) -> bool {
    static SET: LazyLock<NameSet> = LazyLock::new(|| name_set(SINGLE_KEY_WRITES));
    SET.contains(name)
}

/// Classifies a command for the cache.
pub fn cache_use(args: &[Bytes]) -> CacheUse {
    match args.first() {
        Some(first) => name_use(first).for_args(args.len()),
        None => CacheUse::Neutral,
    }
}

/// What a command name (in any case) means for the cache when the command has arguments:
/// [`cache_use`] before [`CacheUse::for_args`], the same for every command of that name.
pub fn name_use(name: &[u8]) -> CacheUse {
    let (buf, n) = name_upper(name);
    let name = &buf[..n];
    if n == 0 {
        // Longer than any known command: unknown, so assume it writes.
        return CacheUse::Write;
    }
    if is_cacheable(name) {
        return CacheUse::Read;
    }
    match name {
        b"MGET" => CacheUse::MultiRead,
        b"FLUSHALL" | b"FLUSHDB" | b"SWAPDB" => CacheUse::WriteAll,
        // EXEC runs what was queued; the session supplies those keys.
        b"EXEC" => CacheUse::Neutral,
        _ if is_read_only(name) => CacheUse::Neutral,
        _ => CacheUse::Write,
    }
}

impl CacheUse {
    /// The use of a command of `nargs` words (name included) whose name means `self`: a read
    /// without a key is passed through.
    pub fn for_args(self, nargs: usize) -> CacheUse {
        match self {
            CacheUse::Read | CacheUse::MultiRead if nargs < 2 => CacheUse::Neutral,
            used => used,
        }
    }
}

/// The operator's narrowing of what is cached: commands allowed (empty: all cacheable ones) or
/// denied, and key prefixes included (empty: all keys) or excluded. It can only narrow the
/// built-in set; a command that is not safe to cache never becomes cacheable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheRules {
    allow: Vec<Vec<u8>>,
    deny: Vec<Vec<u8>>,
    include: Vec<Vec<u8>>,
    exclude: Vec<Vec<u8>>,
}

impl CacheRules {
    pub fn new(allow: &[String], deny: &[String], include: &[String], exclude: &[String]) -> Self {
        let upper = |v: &[String]| {
            v.iter()
                .map(|s| s.to_ascii_uppercase().into_bytes())
                .collect()
        };
        let raw = |v: &[String]| v.iter().map(|s| s.clone().into_bytes()).collect();
        CacheRules {
            allow: upper(allow),
            deny: upper(deny),
            include: raw(include),
            exclude: raw(exclude),
        }
    }

    /// No rules: every cacheable read is cached.
    fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.include.is_empty()
            && self.exclude.is_empty()
    }

    fn admits_command(&self, name: &[u8]) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|a| a == name))
            && !self.deny.iter().any(|d| d == name)
    }

    fn admits_key(&self, key: &[u8]) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| key.starts_with(p)))
            && !self.exclude.iter().any(|p| key.starts_with(p))
    }

    /// Applies the rules to a command's cache use: a read they do not admit is read through.
    pub fn apply(&self, args: &[Bytes], used: CacheUse) -> CacheUse {
        if !matches!(used, CacheUse::Read | CacheUse::MultiRead) || self.is_empty() {
            return used;
        }
        let (buf, n) = name_upper(&args[0]);
        let admitted = self.admits_command(&buf[..n])
            && args[1..]
                .iter()
                .take(match used {
                    CacheUse::Read => 1,
                    _ => usize::MAX,
                })
                .all(|k| self.admits_key(k));
        if admitted {
            used
        } else {
            CacheUse::Neutral
        }
    }
}

/// Writes whose one and only key is their first argument (Redis's key spec: first key 1, last
/// key 1). Only commands whose spec is certain belong here: a missing key would be stale reads.
const SINGLE_KEY_WRITES: &[&[u8]] = &[
    b"APPEND",
    b"DECR",
    b"DECRBY",
    b"EXPIRE",
    b"EXPIREAT",
    b"GEOADD",
    b"GETDEL",
    b"GETEX",
    b"GETSET",
    b"HDEL",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"HMSET",
    b"HSET",
    b"HSETNX",
    b"INCR",
    b"INCRBY",
    b"INCRBYFLOAT",
    b"LINSERT",
    b"LPOP",
    b"LPUSH",
    b"LPUSHX",
    b"LREM",
    b"LSET",
    b"LTRIM",
    b"PERSIST",
    b"PEXPIRE",
    b"PEXPIREAT",
    b"PFADD",
    b"PSETEX",
    b"RPOP",
    b"RPUSH",
    b"RPUSHX",
    b"SADD",
    b"SET",
    b"SETBIT",
    b"SETEX",
    b"SETNX",
    b"SETRANGE",
    b"SPOP",
    b"SREM",
    b"XADD",
    b"XDEL",
    b"XTRIM",
    b"ZADD",
    b"ZINCRBY",
    b"ZPOPMAX",
    b"ZPOPMIN",
    b"ZREM",
    b"ZREMRANGEBYLEX",
    b"ZREMRANGEBYRANK",
    b"ZREMRANGEBYSCORE",
];

/// The keys a write may touch: its first argument for a known single-key write, else every
/// argument after the name (values and options included, which only costs spurious
/// invalidations of keys that happen to share their names).
pub fn write_keys(args: &[Bytes]) -> &[Bytes] {
    if let (Some(first), Some(key)) = (args.first(), args.get(1..2)) {
        let (buf, n) = name_upper(first);
        if n > 0 && is_single_key_write(&buf[..n]) {
            return key;
        }
    }
    args.get(1..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_codes_are_distinct_and_case_insensitive() {
        let mut codes: Vec<u8> = CACHEABLE.iter().map(|n| read_code(n).unwrap()).collect();
        codes.push(read_code(b"mget").unwrap());
        assert_eq!(read_code(b"MGET"), Some(MGET_CODE));
        assert_eq!(read_code(b"get"), read_code(b"GET"));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CACHEABLE.len() + 1);
        assert!(codes[0] >= 1);
        assert_eq!(read_code(b"SET"), None);
        assert_eq!(read_code(b"GETXXXXXXXXXXXXXXXXXXXXXXX"), None);
    }

    #[test]
    fn command_tables_are_sorted_without_duplicates() {
        for table in [CACHEABLE, READ_ONLY, SINGLE_KEY_WRITES] {
            assert!(table.windows(2).all(|w| w[0] < w[1]), "{table:?}");
        }
        assert!(is_read_only(b"PING") && is_cacheable(b"GET") && is_single_key_write(b"SET"));
        assert!(!is_read_only(b"SET") && !is_cacheable(b"SET") && !is_single_key_write(b"GET"));
    }
    use crate::command::cmd;

    #[test]
    fn classifies_reads_writes_and_flushes() {
        assert_eq!(cache_use(&cmd("get k")), CacheUse::Read);
        assert_eq!(cache_use(&cmd("ZRANGE z 0 -1 WITHSCORES")), CacheUse::Read);
        assert_eq!(cache_use(&cmd("GET")), CacheUse::Neutral);
        assert_eq!(cache_use(&cmd("TTL k")), CacheUse::Neutral);
        assert_eq!(cache_use(&cmd("mget a b")), CacheUse::MultiRead);
        assert_eq!(cache_use(&cmd("set k v")), CacheUse::Write);
        assert_eq!(cache_use(&cmd("GETDEL k")), CacheUse::Write);
        assert_eq!(cache_use(&cmd("EVAL s 1 k")), CacheUse::Write);
        assert_eq!(cache_use(&cmd("SOMEFUTURECOMMAND k")), CacheUse::Write);
        assert_eq!(cache_use(&cmd("flushall")), CacheUse::WriteAll);
        assert_eq!(write_keys(&cmd("MSET a 1 b 2")).len(), 4);
        assert_eq!(write_keys(&cmd("set k value EX 10")), &cmd("k")[..]);
        assert_eq!(write_keys(&cmd("HSET h f v g w")), &cmd("h")[..]);
        assert_eq!(write_keys(&cmd("DEL a b c")), &cmd("a b c")[..]);
        assert_eq!(write_keys(&cmd("RENAME a b")), &cmd("a b")[..]);
        assert_eq!(write_keys(&cmd("LMOVE a b LEFT RIGHT")).len(), 4);
        assert!(write_keys(&cmd("SET")).is_empty());
    }

    #[test]
    fn rules_narrow_what_is_cached() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rules = CacheRules::new(
            &s(&[]),
            &s(&["hgetall"]),
            &s(&["user:", "item:"]),
            &s(&["user:secret"]),
        );
        let used = |c: &str| rules.apply(&cmd(c), cache_use(&cmd(c)));
        assert_eq!(used("GET user:1"), CacheUse::Read);
        assert_eq!(used("GET other"), CacheUse::Neutral);
        assert_eq!(used("GET user:secret:1"), CacheUse::Neutral);
        assert_eq!(used("HGETALL user:1"), CacheUse::Neutral);
        assert_eq!(used("MGET user:1 item:2"), CacheUse::MultiRead);
        assert_eq!(used("MGET user:1 other"), CacheUse::Neutral);
        assert_eq!(used("SET other v"), CacheUse::Write);
        let only_get = CacheRules::new(&s(&["get"]), &s(&[]), &s(&[]), &s(&[]));
        assert_eq!(
            only_get.apply(&cmd("HGET h f"), CacheUse::Read),
            CacheUse::Neutral
        );
        assert_eq!(
            only_get.apply(&cmd("GET k"), CacheUse::Read),
            CacheUse::Read
        );
    }
}
