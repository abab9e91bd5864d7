//! The proxy's policy per command: what it may cache, how it routes, what a transaction does.
//!
//! Owns the hand-written lists, each kept as short as Redis's own metadata allows: whatever
//! Redis's flags and key specifications already say (a `write` command changes its written
//! keys, a `blocking` command pins a connection) is derived in [`super::build`], and only the
//! exceptions are written here. Never lists key positions: those come from Redis.

use super::meaning::{CacheEffect, Local, Route, RouteRule, Special, TxEffect, Written};

/// Reads the cache answers: the reply depends only on the value of the one key at argument 1,
/// and is the same for every client of the same protocol. Their position here (from 1) is
/// their code in compact entry keys; MGET, cached key by key, comes after them.
pub(super) const CACHEABLE: &[&str] = &[
    "GET",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HLEN",
    "HMGET",
    "HSTRLEN",
    "LINDEX",
    "LLEN",
    "LRANGE",
    "SCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "STRLEN",
    "TYPE",
    "ZCARD",
    "ZMSCORE",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCORE",
];

/// What a command does to cached entries, where Redis's `write` flag and key specifications
/// alone would say otherwise.
pub(super) const EFFECTS: &[(&str, CacheEffect)] = &[
    // Each key is its own entry; a partial hit reads only the missing keys.
    ("MGET", CacheEffect::MultiRead),
    // Change every key (SWAPDB: every key of db 0).
    ("FLUSHALL", CacheEffect::WriteAll),
    ("FLUSHDB", CacheEffect::WriteAll),
    ("SWAPDB", CacheEffect::WriteAll),
    // Scripts may touch keys they do not declare, and carry no `write` flag.
    ("EVAL", CacheEffect::Write(Written::AllArgs)),
    ("EVALSHA", CacheEffect::Write(Written::AllArgs)),
    ("FCALL", CacheEffect::Write(Written::AllArgs)),
    // DEBUG can reload, populate and change objects in place.
    ("DEBUG", CacheEffect::Write(Written::AllArgs)),
    // Flagged read-only, but stores the cardinality it computed in its keys.
    ("PFCOUNT", CacheEffect::Write(Written::AllKeys)),
];

/// Where a command goes, when not to a shared connection (or, for blocking commands, to a
/// dedicated one): `NAME` or `NAME|SUBCOMMAND`.
const CLIENT_TABLE: RouteRule = RouteRule::Fixed(Route::Local(Local::Client));

pub(super) const ROUTES: &[(&str, RouteRule)] = &[
    ("QUIT", RouteRule::Fixed(Route::Local(Local::Quit))),
    (
        "NEARCACHE",
        RouteRule::Fixed(Route::Local(Local::Nearcache)),
    ),
    ("RESET", RouteRule::Fixed(Route::Local(Local::Reset))),
    ("SELECT", RouteRule::SelectDb),
    ("HELLO", RouteRule::Hello),
    // Connection state for the rest of the session.
    ("AUTH", RouteRule::Fixed(Route::Session)),
    ("READONLY", RouteRule::Fixed(Route::Session)),
    ("READWRITE", RouteRule::Fixed(Route::Session)),
    ("ASKING", RouteRule::Fixed(Route::Session)),
    ("CLIENT|CACHING", RouteRule::Fixed(Route::Session)),
    ("CLIENT|NO-TOUCH", RouteRule::Fixed(Route::Session)),
    // A dedicated connection until the transaction ends.
    ("MULTI", RouteRule::Fixed(Route::Transient)),
    ("WATCH", RouteRule::Fixed(Route::Transient)),
    // Replies not one-to-one with commands.
    ("SUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("PSUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("SSUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("UNSUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("PUNSUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("SUNSUBSCRIBE", RouteRule::Fixed(Route::Relay)),
    ("MONITOR", RouteRule::Fixed(Route::Relay)),
    // The replication stream, relayed as raw bytes.
    ("SYNC", RouteRule::Fixed(Route::Replicate)),
    ("PSYNC", RouteRule::Fixed(Route::Replicate)),
    ("CLIENT|TRACKING", RouteRule::Fixed(Route::Relay)),
    ("CLIENT|REPLY", RouteRule::Fixed(Route::Relay)),
    // The proxy's own client table.
    ("CLIENT|ID", CLIENT_TABLE),
    ("CLIENT|INFO", CLIENT_TABLE),
    ("CLIENT|LIST", CLIENT_TABLE),
    ("CLIENT|KILL", CLIENT_TABLE),
    ("CLIENT|SETNAME", CLIENT_TABLE),
    ("CLIENT|GETNAME", CLIENT_TABLE),
    ("CLIENT|NO-EVICT", CLIENT_TABLE),
    ("CLIENT|GETREDIR", CLIENT_TABLE),
    ("CLIENT|TRACKINGINFO", CLIENT_TABLE),
    ("CLIENT|UNBLOCK", CLIENT_TABLE),
];

/// Commands that wait on Redis's side without carrying Redis's `blocking` flag (which BLPOP and
/// the like do): no upstream timeout applies, and they pin a connection while they wait.
pub(super) const BLOCKING: &[&str] = &["WAIT", "WAITAOF"];

/// Commands that block only with their `BLOCK` option, given before `STREAMS`.
pub(super) const BLOCK_OPTION: &[&str] = &["XREAD", "XREADGROUP"];

/// Transaction bookkeeping.
pub(super) const TX: &[(&str, TxEffect)] = &[
    ("MULTI", TxEffect::Multi),
    ("WATCH", TxEffect::Watch),
    ("EXEC", TxEffect::Exec),
    ("DISCARD", TxEffect::Discard),
    ("UNWATCH", TxEffect::Unwatch),
];

/// Commands the session treats specially beyond their route.
pub(super) const SPECIAL: &[(&str, Special)] = &[
    ("HELLO", Special::Hello),
    ("RESET", Special::Reset),
    ("CLIENT|TRACKING", Special::Tracking),
    ("SELECT", Special::Select),
    ("CLIENT|CACHING", Special::Caching),
    ("INFO", Special::Info),
    ("SUBSCRIBE", Special::Subscribe),
    ("UNSUBSCRIBE", Special::Subscribe),
    ("PSUBSCRIBE", Special::Subscribe),
    ("PUNSUBSCRIBE", Special::Subscribe),
    ("SSUBSCRIBE", Special::Subscribe),
    ("SUNSUBSCRIBE", Special::Subscribe),
];

/// Names the generated table does not have: the proxy's own command, and commands newer than
/// the table's Redis that must be routed as they are. Without key specifications, their keys
/// are unknown; none of them writes.
pub(super) const EXTRA: &[&str] = &["NEARCACHE", "WAITAOF", "CLIENT|NO-TOUCH"];
