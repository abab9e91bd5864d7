//! Which commands the cache may answer, and which keys a forwarded command may change.
//!
//! Synchronous and pure, like [`crate::command`]. A command the cache answers depends on one
//! Redis key, always its first argument. A command not known to be read-only is treated as a
//! write to every one of its arguments, unless it is a known single-key write (`SET k v` changes
//! `k` only, and the value, which may be large, is neither hashed nor kept): over-invalidating
//! costs a few misses, missing a key would cost a stale read.

use bytes::Bytes;

use crate::command::name_upper;

/// Single-key read commands whose reply depends only on that key's value.
const CACHEABLE: &[&[u8]] = &[
    b"GET",
    b"GETRANGE",
    b"STRLEN",
    b"HGET",
    b"HMGET",
    b"HGETALL",
    b"HLEN",
    b"HEXISTS",
    b"HSTRLEN",
    b"LRANGE",
    b"LINDEX",
    b"LLEN",
    b"SMEMBERS",
    b"SISMEMBER",
    b"SMISMEMBER",
    b"SCARD",
    b"ZRANGE",
    b"ZRANGEBYSCORE",
    b"ZRANGEBYLEX",
    b"ZREVRANGE",
    b"ZREVRANGEBYSCORE",
    b"ZREVRANGEBYLEX",
    b"ZSCORE",
    b"ZMSCORE",
    b"ZCARD",
    b"ZRANK",
    b"ZREVRANK",
    b"TYPE",
];

/// Commands that change no key (beyond the cacheable ones above).
const READ_ONLY: &[&[u8]] = &[
    b"PING",
    b"ECHO",
    b"MGET",
    b"EXISTS",
    b"TTL",
    b"PTTL",
    b"EXPIRETIME",
    b"PEXPIRETIME",
    b"SCAN",
    b"SSCAN",
    b"HSCAN",
    b"ZSCAN",
    b"KEYS",
    b"DBSIZE",
    b"INFO",
    b"TIME",
    b"RANDOMKEY",
    b"HKEYS",
    b"HVALS",
    b"HRANDFIELD",
    b"SRANDMEMBER",
    b"SINTER",
    b"SINTERCARD",
    b"SUNION",
    b"SDIFF",
    b"ZCOUNT",
    b"ZLEXCOUNT",
    b"ZRANDMEMBER",
    b"ZINTER",
    b"ZUNION",
    b"ZDIFF",
    b"ZINTERCARD",
    b"LPOS",
    b"GETBIT",
    b"BITCOUNT",
    b"BITPOS",
    b"SUBSTR",
    b"LCS",
    b"OBJECT",
    b"MEMORY",
    b"DUMP",
    b"XRANGE",
    b"XREVRANGE",
    b"XLEN",
    b"XINFO",
    b"GEOPOS",
    b"GEODIST",
    b"GEOHASH",
    b"GEOSEARCH",
    b"GEORADIUS_RO",
    b"GEORADIUSBYMEMBER_RO",
    b"COMMAND",
    b"HELLO",
    b"SELECT",
    b"AUTH",
    b"WATCH",
    b"UNWATCH",
    b"MULTI",
    b"DISCARD",
    b"QUIT",
    b"RESET",
    b"PUBLISH",
    b"SPUBLISH",
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"PUBSUB",
    b"LASTSAVE",
    b"ROLE",
    b"LOLWUT",
    b"EVAL_RO",
    b"EVALSHA_RO",
    b"FCALL_RO",
    b"SORT_RO",
    b"CLIENT",
    b"CONFIG",
    b"SLOWLOG",
    b"LATENCY",
    b"WAIT",
    b"WAITAOF",
    b"READONLY",
    b"READWRITE",
    b"ASKING",
    b"MONITOR",
    b"SCRIPT",
    b"FUNCTION",
    b"ACL",
];

/// A one-byte code (1..=29) for a command the cache answers, case-insensitively: its position
/// among the cacheable reads, MGET last. Compact entry keys use it instead of the name.
pub fn read_code(name: &[u8]) -> Option<u8> {
    let (buf, n) = name_upper(name);
    if n == 0 {
        return None;
    }
    CACHEABLE
        .iter()
        .copied()
        .chain(std::iter::once(&b"MGET"[..]))
        .position(|c| c == &buf[..n])
        .map(|i| i as u8 + 1)
}

/// What a command means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn contains(table: &[&[u8]], name: &[u8]) -> bool {
    table.contains(&name)
}

/// Classifies a command for the cache.
pub fn cache_use(args: &[Bytes]) -> CacheUse {
    let Some(first) = args.first() else {
        return CacheUse::Neutral;
    };
    let (buf, n) = name_upper(first);
    let name = &buf[..n];
    if n == 0 {
        // Longer than any known command: unknown, so assume it writes.
        return CacheUse::Write;
    }
    if contains(CACHEABLE, name) {
        return if args.len() >= 2 {
            CacheUse::Read
        } else {
            CacheUse::Neutral
        };
    }
    match name {
        b"MGET" if args.len() >= 2 => CacheUse::MultiRead,
        b"MGET" => CacheUse::Neutral,
        b"FLUSHALL" | b"FLUSHDB" | b"SWAPDB" => CacheUse::WriteAll,
        // EXEC runs what was queued; the session supplies those keys.
        b"EXEC" => CacheUse::Neutral,
        _ if contains(READ_ONLY, name) => CacheUse::Neutral,
        _ => CacheUse::Write,
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
        if !matches!(used, CacheUse::Read | CacheUse::MultiRead) {
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
    b"SET",
    b"SETNX",
    b"SETEX",
    b"PSETEX",
    b"GETSET",
    b"GETDEL",
    b"GETEX",
    b"APPEND",
    b"SETRANGE",
    b"INCR",
    b"DECR",
    b"INCRBY",
    b"DECRBY",
    b"INCRBYFLOAT",
    b"SETBIT",
    b"HSET",
    b"HSETNX",
    b"HMSET",
    b"HDEL",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"LPUSH",
    b"RPUSH",
    b"LPUSHX",
    b"RPUSHX",
    b"LPOP",
    b"RPOP",
    b"LSET",
    b"LREM",
    b"LTRIM",
    b"LINSERT",
    b"SADD",
    b"SREM",
    b"SPOP",
    b"ZADD",
    b"ZREM",
    b"ZINCRBY",
    b"ZREMRANGEBYSCORE",
    b"ZREMRANGEBYRANK",
    b"ZREMRANGEBYLEX",
    b"ZPOPMIN",
    b"ZPOPMAX",
    b"EXPIRE",
    b"PEXPIRE",
    b"EXPIREAT",
    b"PEXPIREAT",
    b"PERSIST",
    b"PFADD",
    b"XADD",
    b"XDEL",
    b"XTRIM",
    b"GEOADD",
];

/// The keys a write may touch: its first argument for a known single-key write, else every
/// argument after the name (values and options included, which only costs spurious
/// invalidations of keys that happen to share their names).
pub fn write_keys(args: &[Bytes]) -> &[Bytes] {
    if let (Some(first), Some(key)) = (args.first(), args.get(1..2)) {
        let (buf, n) = name_upper(first);
        if n > 0 && contains(SINGLE_KEY_WRITES, &buf[..n]) {
            return key;
        }
    }
    args.get(1..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
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
