//! Which commands the cache may answer, and which keys a forwarded command may change.
//!
//! Synchronous and pure, like [`crate::command`]. A command the cache answers depends on one
//! Redis key, always its first argument. A command not known to be read-only is treated as a
//! write to every one of its arguments: over-invalidating costs a few misses, missing a key
//! would cost a stale read.

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

/// The keys a write may touch: every argument after the name. Values and options are included,
/// which only costs spurious invalidations of keys that happen to share their names.
pub fn write_keys(args: &[Bytes]) -> &[Bytes] {
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
    }
}
