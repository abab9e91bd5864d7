//! The command table's unit tests: routes, cache uses, keys, and the policy's consistency with
//! Redis's own metadata. (`tests/command_table.rs` checks the metadata against a live server.)
//! Never starts a server: these run on the compiled-in table alone.

use super::*;

fn route(line: &str) -> Route {
    let args = cmd(line);
    lookup(&args[0]).resolve(&args).route(&args)
}

fn cache_use(line: &str) -> CacheUse {
    let args = cmd(line);
    lookup(&args[0]).resolve(&args).cache_use(args.len())
}

fn write_keys(line: &str) -> Vec<Bytes> {
    let args = cmd(line);
    lookup(&args[0]).resolve(&args).write_keys(&args).into_vec()
}

#[test]
fn routes_stateless_commands_to_shared_connections() {
    for c in [
        "GET k",
        "set k v",
        "MGET a b",
        "EVAL x 0",
        "client nosuchsub",
        "HELLO 3",
        "EXEC",
        "SOMEFUTURECOMMAND k",
    ] {
        assert_eq!(route(c), Route::Shared, "{c}");
    }
}

#[test]
fn pins_transactions_and_blocking_calls() {
    for c in [
        "multi",
        "WATCH k",
        "BLPOP l 0",
        "bzpopmin z 1",
        "WAIT 1 0",
        "WAITAOF 1 1 0",
    ] {
        assert_eq!(route(c), Route::Transient, "{c}");
    }
    assert_eq!(route("XREAD COUNT 1 BLOCK 0 STREAMS s $"), Route::Transient);
    // "block" as a stream name after STREAMS is not the option.
    assert_eq!(route("XREAD STREAMS block 0"), Route::Shared);
    let blocks = |line: &str| {
        let args = cmd(line);
        lookup(&args[0]).resolve(&args).blocks(&args)
    };
    assert!(blocks("brpoplpush a b 0") && blocks("WAIT 0 0"));
    assert!(blocks("xreadgroup GROUP g c BLOCK 10 STREAMS s >"));
    assert!(!blocks("XREADGROUP GROUP g c STREAMS s >") && !blocks("GET k"));
}

#[test]
fn pins_session_state_and_relays_out_of_band_replies() {
    assert_eq!(route("SELECT 2"), Route::Session);
    assert_eq!(route("SELECT 0"), Route::Local(Local::SelectZero));
    assert_eq!(route("AUTH u p"), Route::Session);
    assert_eq!(route("HELLO 3 AUTH u p"), Route::Session);
    assert_eq!(route("client caching yes"), Route::Session);
    assert_eq!(route("CLIENT NO-TOUCH on"), Route::Session);
    assert_eq!(route("SUBSCRIBE a b"), Route::Relay);
    assert_eq!(route("unsubscribe"), Route::Relay);
    assert_eq!(route("CLIENT TRACKING on"), Route::Relay);
    assert_eq!(route("MONITOR"), Route::Relay);
    assert_eq!(route("quit"), Route::Local(Local::Quit));
    assert_eq!(route("reset"), Route::Local(Local::Reset));
    assert_eq!(route("nearcache info"), Route::Local(Local::Nearcache));
    assert_eq!(route("SYNC"), Route::Replicate);
    assert_eq!(route("psync ? -1"), Route::Replicate);
}

#[test]
fn answers_client_table_commands_itself() {
    for c in [
        "CLIENT ID",
        "client setname x",
        "client list type pubsub",
        "CLIENT KILL ID 3",
        "client getredir",
        "client trackinginfo",
        "client unblock 3",
    ] {
        assert_eq!(route(c), Route::Local(Local::Client), "{c}");
    }
    let code = |line: &str| {
        let args = cmd(line);
        lookup(&args[0]).resolve(&args).code()
    };
    assert_eq!(
        full_name_of(code("client list")).as_deref(),
        Some("CLIENT|LIST")
    );
    assert_eq!(full_name_of(code("GET k")).as_deref(), Some("GET"));
    assert_eq!(full_name_of(code("NOSUCHCOMMAND")), None);
}

#[test]
fn long_names_do_not_match_by_prefix() {
    assert_eq!(route("SUBSCRIBEXXXXXXXXXXXXXXXX a"), Route::Shared);
    assert_eq!(
        cache_use("GETXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX k"),
        CacheUse::Write
    );
}

#[test]
fn knows_transactions_and_special_commands() {
    let spec = |name: &str| lookup(name.as_bytes());
    assert_eq!(spec("multi").tx, TxEffect::Multi);
    assert_eq!(spec("EXEC").tx, TxEffect::Exec);
    assert_eq!(spec("discard").tx, TxEffect::Discard);
    assert_eq!(spec("GET").tx, TxEffect::None);
    assert_eq!(spec("hello").special, Special::Hello);
    assert_eq!(spec("RESET").special, Special::Reset);
    assert_eq!(spec("GET").special, Special::None);
}

#[test]
fn classifies_reads_writes_and_flushes() {
    assert_eq!(cache_use("get k"), CacheUse::Read);
    assert_eq!(cache_use("ZRANGE z 0 -1 WITHSCORES"), CacheUse::Read);
    assert_eq!(cache_use("GET"), CacheUse::Neutral);
    assert_eq!(cache_use("TTL k"), CacheUse::Neutral);
    assert_eq!(cache_use("mget a b"), CacheUse::MultiRead);
    assert_eq!(cache_use("set k v"), CacheUse::Write);
    assert_eq!(cache_use("GETDEL k"), CacheUse::Write);
    assert_eq!(cache_use("EVAL s 1 k"), CacheUse::Write);
    assert_eq!(cache_use("PFCOUNT h"), CacheUse::Write);
    assert_eq!(cache_use("XGROUP CREATE s g $"), CacheUse::Write);
    assert_eq!(cache_use("XGROUP HELP"), CacheUse::Neutral);
    assert_eq!(cache_use("SOMEFUTURECOMMAND k"), CacheUse::Write);
    assert_eq!(cache_use("flushall"), CacheUse::WriteAll);
    assert_eq!(cache_use("SWAPDB 0 1"), CacheUse::WriteAll);
    assert_eq!(cache_use("PUBLISH ch m"), CacheUse::Neutral);
    assert_eq!(cache_use("EXEC"), CacheUse::Neutral);
}

#[test]
fn a_write_changes_the_keys_its_specs_mark_written() {
    assert_eq!(write_keys("set k value EX 10"), cmd("k"));
    assert_eq!(write_keys("HSET h f v g w"), cmd("h"));
    assert_eq!(write_keys("MSET a 1 b 2"), cmd("a b"));
    assert_eq!(write_keys("DEL a b c"), cmd("a b c"));
    assert_eq!(write_keys("RENAME a b"), cmd("a b"));
    assert_eq!(write_keys("LMOVE a b LEFT RIGHT"), cmd("a b"));
    // Keys only read are not changed.
    assert_eq!(write_keys("SINTERSTORE d a b"), cmd("d"));
    assert_eq!(write_keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), cmd("d"));
    assert_eq!(write_keys("BITOP AND d a b"), cmd("d"));
    assert_eq!(write_keys("COPY a b"), cmd("b"));
    // Specifications Redis cannot resolve, scripts and unknown commands: every argument.
    assert_eq!(write_keys("SORT k STORE d"), cmd("k STORE d"));
    assert_eq!(write_keys("EVAL s 1 k"), cmd("s 1 k"));
    assert_eq!(write_keys("SOMEFUTURECOMMAND k"), cmd("k"));
    assert_eq!(write_keys("PFCOUNT a b"), cmd("a b"));
    // Arguments that do not fit the specification: every argument.
    assert_eq!(write_keys("ZUNIONSTORE d 5 a"), cmd("d 5 a"));
    assert!(write_keys("SET").is_empty());
}

#[test]
fn written_keys_are_exact_only_where_the_specs_find_every_key() {
    let exact = |line: &str| {
        let args = cmd(line);
        lookup(&args[0]).resolve(&args).written_keys(&args).exact
    };
    for line in [
        "SET k v",
        "DEL a b c",
        "MSET a 1 b 2",
        "RENAME a b",
        "INCR n",
        "HSET h f v",
        "EXPIRE k 10",
        "SINTERSTORE d a b",
        "PFCOUNT a b",
        "XGROUP CREATE s g $",
    ] {
        assert!(exact(line), "{line}");
    }
    // Scripts may touch keys they do not declare; unknown commands and specifications Redis
    // cannot resolve give every argument, which may still miss a key the command computes.
    for line in [
        "EVAL s 1 k",
        "EVALSHA f 1 k",
        "FCALL f 1 k",
        "SOMEFUTURECOMMAND k",
        "SORT k STORE d",
        "MIGRATE h 6379 \"\" 0 5000 KEYS a b",
        "ZUNIONSTORE d 5 a",
        "SET",
        "FLUSHDB",
    ] {
        assert!(!exact(line), "{line}");
    }
}

#[test]
fn read_codes_are_distinct_and_case_insensitive() {
    let mut codes: Vec<u8> = policy::CACHEABLE
        .iter()
        .map(|n| lookup(n.as_bytes()).read_code().unwrap())
        .collect();
    codes.push(lookup(b"mget").read_code().unwrap());
    assert_eq!(lookup(b"MGET").read_code(), Some(MGET_CODE));
    assert_eq!(lookup(b"get").read_code(), lookup(b"GET").read_code());
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), policy::CACHEABLE.len() + 1);
    assert!(codes[0] >= 1);
    assert_eq!(lookup(b"SET").read_code(), None);
    assert!(is_cacheable("hgetall") && !is_cacheable("SET") && !is_cacheable("MGETX"));
}

#[test]
fn cacheable_reads_are_what_redis_says_they_are() {
    for name in policy::CACHEABLE {
        let spec = lookup(name.as_bytes());
        let redis = spec
            .redis
            .unwrap_or_else(|| panic!("{name} unknown to Redis"));
        assert!(redis.flags & flag::READONLY != 0, "{name} is not read-only");
        // (An output whose order alone may differ between servers, as HGETALL's, is the same
        // for the same value on one server: a change of order needs a write, which invalidates.)
        assert!(
            !redis.tips.contains(&"nondeterministic_output"),
            "{name}'s output is not deterministic"
        );
        // One key, read only, at argument 1: the entry's group.
        let args = cmd(&format!("{name} k"));
        let keys = spec.keys(&args).unwrap();
        assert_eq!(keys.len(), 1, "{name}");
        assert_eq!(keys[0].0, 1, "{name}");
        assert_eq!(keys[0].1 & !key_flag::ACCESS, key_flag::RO, "{name}");
    }
}

#[test]
fn every_name_in_the_policy_is_a_command() {
    let known = |full: &str| match full.split_once('|') {
        None => lookup(full.as_bytes()).id != CommandSpec::OTHER,
        Some((p, s)) => {
            let args = cmd(&format!("{p} {s}"));
            lookup(p.as_bytes()).resolve(&args).name == s
        }
    };
    let names = policy::CACHEABLE
        .iter()
        .chain(policy::BLOCKING)
        .chain(policy::BLOCK_OPTION)
        .chain(policy::EFFECTS.iter().map(|(n, _)| n))
        .chain(policy::ROUTES.iter().map(|(n, _)| n))
        .chain(policy::TX.iter().map(|(n, _)| n))
        .chain(policy::SPECIAL.iter().map(|(n, _)| n));
    for name in names {
        assert!(known(name), "{name} is not in the command table");
    }
}

#[test]
fn ids_name_top_level_commands_and_subcommands_share_them() {
    assert!(count() > 200);
    let client = lookup(b"CLIENT");
    let setname = client.resolve(&cmd("CLIENT SETNAME x"));
    assert_eq!(setname.full_name(), "CLIENT|SETNAME");
    assert_eq!(setname.id, client.id);
    assert_eq!(name_of(client.id), "CLIENT");
    assert_eq!(name_of(CommandSpec::OTHER), "OTHER");
    assert_eq!(name_of(lookup(b"nearcache").id), "NEARCACHE");
    assert!(lookup(b"SET").has_flag(flag::WRITE) && !lookup(b"GET").has_flag(flag::WRITE));
}
