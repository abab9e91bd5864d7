//! The checked-in command table against a live redis-server: every command and subcommand
//! Redis knows, with its arity, flags, tips and key specifications, must be in the table as
//! the server describes it; and the keys the table finds in sample calls must be the keys
//! Redis itself finds (`COMMAND GETKEYSANDFLAGS`).
//!
//! When this fails after a Redis upgrade, regenerate the table with `scripts/command-table.sh`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{redis_cmd_blocking, RedisServer};
use nearcache::command::introspect::{parse_command_reply, CommandInfo};
use nearcache::command::{self, redis::Unresolved};
use resp::Frame;

fn ask(redis: &RedisServer, args: &[&[u8]]) -> Frame {
    let raw = redis_cmd_blocking(&redis.addr(), args);
    let mut buf = BytesMut::from(&raw[..]);
    resp::parse_frame(&mut buf, &resp::Limits::default())
        .expect("a valid reply")
        .expect("a whole reply")
}

fn version(redis: &RedisServer) -> String {
    let Frame::Bulk(info) = ask(redis, &[b"INFO", b"server"]) else {
        panic!("INFO is not a bulk string");
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version")
        .trim()
        .to_string()
}

#[test]
fn the_table_matches_the_live_servers_command_reply() {
    let redis = RedisServer::start();
    let live = parse_command_reply(&ask(&redis, &[b"COMMAND"])).expect("COMMAND parses");
    let ours: Vec<CommandInfo> = command::redis_commands()
        .iter()
        .map(CommandInfo::from)
        .collect();
    let mut problems = Vec::new();
    for c in &live {
        match ours.iter().find(|o| o.name == c.name) {
            None => problems.push(format!("{} is missing from the table", c.name)),
            Some(o) if o != c => problems.push(format!(
                "{} differs:\n  table: {o:?}\n  live:  {c:?}",
                c.name
            )),
            Some(_) => {}
        }
    }
    // The table is generated from Redis 7.0: a server of that version knows exactly its
    // commands; a newer one may know more, never fewer.
    for o in &ours {
        if !live.iter().any(|c| c.name == o.name) {
            problems.push(format!("{} is in the table but not on the server", o.name));
        }
    }
    assert!(
        problems.is_empty(),
        "the command table drifted from Redis {} (regenerate with scripts/command-table.sh):\n{}",
        version(&redis),
        problems.join("\n")
    );
    assert!(live.len() >= 200, "only {} commands", live.len());
}

/// Calls whose keys are found through each kind of key specification.
const CALLS: &[&str] = &[
    "GET k",
    "SET k v EX 10 GET",
    "MSET a 1 b 2 c 3",
    "DEL a b c",
    "RENAME a b",
    "LMOVE a b LEFT RIGHT",
    "SINTERSTORE d a b",
    "ZUNIONSTORE d 2 a b WEIGHTS 1 2",
    "ZINTER 3 a b c WITHSCORES",
    "LMPOP 2 a b LEFT COUNT 1",
    "BLMPOP 0 2 a b LEFT",
    "SINTERCARD 2 a b LIMIT 1",
    "EVAL_RO s 2 a b x y",
    "FCALL_RO f 1 a x",
    "XREAD COUNT 2 STREAMS a b 0 0",
    "XREADGROUP GROUP g c COUNT 1 STREAMS a b > >",
    "GEORADIUS k 0 0 1 km STORE dst",
    "GEORADIUS k 0 0 1 km STOREDIST dst",
    "GEOSEARCHSTORE d k FROMLONLAT 0 0 BYRADIUS 1 km",
    "BITOP AND d a b",
    "COPY a b",
    "OBJECT ENCODING k",
    "MEMORY USAGE k",
    "XINFO STREAM s",
    "XGROUP CREATE s g $",
    "PFCOUNT a b",
    "EXISTS a b c",
    "WATCH a b",
    "BLPOP a b 0",
    "BRPOPLPUSH a b 0",
    "HMGET h f g",
    "ZRANGESTORE d s 0 -1",
];

#[test]
fn the_table_finds_the_keys_redis_finds() {
    let redis = RedisServer::start();
    for line in CALLS {
        let args: Vec<Bytes> = line
            .split_whitespace()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = command::lookup(&args[0]).resolve(&args);
        let ours: Vec<Bytes> = match spec.keys(&args) {
            Ok(keys) => keys.into_iter().map(|(i, _)| args[i].clone()).collect(),
            Err(Unresolved::Incomplete) => continue,
            Err(e) => panic!("{line}: {e:?}"),
        };
        let mut cmd: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        cmd.extend(args.iter().map(|a| &a[..]));
        let theirs: Vec<Bytes> = match ask(&redis, &cmd) {
            Frame::Array(keys) => keys
                .into_iter()
                .map(|k| match k {
                    Frame::Bulk(b) => b,
                    other => panic!("{line}: key {other:?}"),
                })
                .collect(),
            other => panic!("{line}: COMMAND GETKEYS replied {other:?}"),
        };
        assert_eq!(ours, theirs, "{line}");
    }
}
