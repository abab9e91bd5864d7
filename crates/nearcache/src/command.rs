//! The command table: how a request must be routed, decided from its name and arguments alone.
//!
//! This is the synchronous half of the proxy: no I/O, no locks, unit-testable. It answers one
//! question for the session: can this command share a multiplexed upstream connection, or does it
//! need a connection of its own (and for how long)?

use bytes::Bytes;

/// How a command must be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No connection state involved: any upstream connection of the client's protocol will do.
    Shared,
    /// Needs a dedicated connection until the transaction or blocking call is over
    /// (MULTI, WATCH, BLPOP, ...). Replies are still one per command.
    Transient,
    /// Changes connection state for the rest of the session (SELECT n, AUTH, CLIENT SETNAME):
    /// a dedicated connection until the client disconnects.
    Session,
    /// Produces replies not matched one-to-one with commands (SUBSCRIBE, MONITOR,
    /// CLIENT TRACKING, CLIENT REPLY): a dedicated connection whose every frame is relayed.
    Relay,
    /// Answered by the proxy itself.
    Local(Local),
}

/// Commands the proxy answers without Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `QUIT`: `+OK`, then close.
    Quit,
    /// `RESET` on a session that holds no dedicated connection: `+RESET`, back to RESP2.
    Reset,
    /// `SELECT 0` on a session still in db 0: `+OK`.
    SelectZero,
    /// `NEARCACHE ...`: the proxy's own admin command, answered in every session mode.
    Nearcache,
}

/// What a command does to the session's transaction state, which decides when a
/// [`Route::Transient`] connection can be given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    Multi,
    Watch,
    /// EXEC or DISCARD: the transaction and every WATCH end.
    EndTx,
    Unwatch,
}

/// Upper-cases a command name into a small stack buffer for matching.
pub fn name_upper(arg: &[u8]) -> ([u8; 16], usize) {
    let mut buf = [0u8; 16];
    let n = arg.len().min(16);
    for (d, s) in buf.iter_mut().zip(&arg[..n]) {
        *d = s.to_ascii_uppercase();
    }
    // A name longer than any known command must not match one by truncation.
    (buf, if arg.len() > 16 { 0 } else { n })
}

fn eq_ic(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Classifies a command for a session that holds no dedicated connection.
pub fn classify(args: &[Bytes]) -> Route {
    let Some(first) = args.first() else {
        return Route::Shared;
    };
    let (buf, n) = name_upper(first);
    let name = &buf[..n];
    match name {
        b"QUIT" => Route::Local(Local::Quit),
        b"NEARCACHE" => Route::Local(Local::Nearcache),
        b"RESET" => Route::Local(Local::Reset),
        b"SELECT" if args.len() == 2 && args[1].as_ref() == b"0" => Route::Local(Local::SelectZero),
        b"SELECT" | b"AUTH" | b"READONLY" | b"READWRITE" | b"ASKING" => Route::Session,
        b"HELLO" if args.len() > 2 => Route::Session,
        b"MULTI" | b"WATCH" => Route::Transient,
        _ if blocks(name, args) => Route::Transient,
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" | b"MONITOR" | b"SYNC" | b"PSYNC" => Route::Relay,
        b"CLIENT" => classify_client(args),
        _ => Route::Shared,
    }
}

fn blocks(name: &[u8], args: &[Bytes]) -> bool {
    match name {
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => true,
        b"XREAD" | b"XREADGROUP" => has_block_option(args),
        _ => false,
    }
}

/// True for a command that may wait on Redis's side for as long as it says (BLPOP, WAIT, XREAD
/// BLOCK ...): no upstream timeout applies to it.
pub fn is_blocking(args: &[Bytes]) -> bool {
    args.first().is_some_and(|first| {
        let (buf, n) = name_upper(first);
        blocks(&buf[..n], args)
    })
}

fn classify_client(args: &[Bytes]) -> Route {
    let Some(sub) = args.get(1) else {
        return Route::Shared;
    };
    if ["TRACKING", "REPLY", "CACHING"]
        .iter()
        .any(|s| eq_ic(sub, s))
    {
        Route::Relay
    } else if ["SETNAME", "NO-EVICT", "NO-TOUCH"]
        .iter()
        .any(|s| eq_ic(sub, s))
    {
        Route::Session
    } else {
        Route::Shared
    }
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS ...`: options come before `STREAMS`.
fn has_block_option(args: &[Bytes]) -> bool {
    args[1..]
        .iter()
        .take_while(|a| !eq_ic(a, "STREAMS"))
        .any(|a| eq_ic(a, "BLOCK"))
}

/// The transaction effect of a command.
pub fn tx_effect(args: &[Bytes]) -> TxEffect {
    let Some(first) = args.first() else {
        return TxEffect::None;
    };
    let (buf, n) = name_upper(first);
    match &buf[..n] {
        b"MULTI" => TxEffect::Multi,
        b"WATCH" => TxEffect::Watch,
        b"EXEC" | b"DISCARD" => TxEffect::EndTx,
        b"UNWATCH" => TxEffect::Unwatch,
        _ => TxEffect::None,
    }
}

/// The protocol version a `HELLO` asks for, if it names a valid one (2 or 3).
pub fn hello_version(args: &[Bytes]) -> Option<u8> {
    if !eq_ic(args.first()?, "HELLO") {
        return None;
    }
    match args.get(1)?.as_ref() {
        b"2" => Some(2),
        b"3" => Some(3),
        _ => None,
    }
}

/// True for a bare `HELLO` or `HELLO <ver>`, which the proxy routes by protocol.
pub fn is_plain_hello(args: &[Bytes]) -> bool {
    args.len() <= 2 && args.first().is_some_and(|a| eq_ic(a, "HELLO"))
}

/// True for `RESET`.
pub fn is_reset(args: &[Bytes]) -> bool {
    args.len() == 1 && eq_ic(&args[0], "RESET")
}

/// Splits a command line on spaces, for tests.
#[cfg(test)]
pub(crate) fn cmd(s: &str) -> Vec<Bytes> {
    s.split_whitespace()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_stateless_commands_to_shared_connections() {
        for c in [
            "GET k",
            "set k v",
            "MGET a b",
            "EVAL x 0",
            "CLIENT ID",
            "HELLO 3",
            "EXEC",
        ] {
            assert_eq!(classify(&cmd(c)), Route::Shared, "{c}");
        }
    }

    #[test]
    fn pins_transactions_and_blocking_calls() {
        for c in ["multi", "WATCH k", "BLPOP l 0", "bzpopmin z 1", "WAIT 1 0"] {
            assert_eq!(classify(&cmd(c)), Route::Transient, "{c}");
        }
        assert_eq!(
            classify(&cmd("XREAD COUNT 1 BLOCK 0 STREAMS s $")),
            Route::Transient
        );
        // "block" as a stream name after STREAMS is not the option.
        assert_eq!(classify(&cmd("XREAD STREAMS block 0")), Route::Shared);
    }

    #[test]
    fn pins_session_state_and_relays_out_of_band_replies() {
        assert_eq!(classify(&cmd("SELECT 2")), Route::Session);
        assert_eq!(classify(&cmd("SELECT 0")), Route::Local(Local::SelectZero));
        assert_eq!(classify(&cmd("AUTH u p")), Route::Session);
        assert_eq!(classify(&cmd("HELLO 3 AUTH u p")), Route::Session);
        assert_eq!(classify(&cmd("client setname x")), Route::Session);
        assert_eq!(classify(&cmd("SUBSCRIBE a b")), Route::Relay);
        assert_eq!(classify(&cmd("unsubscribe")), Route::Relay);
        assert_eq!(classify(&cmd("CLIENT TRACKING on")), Route::Relay);
        assert_eq!(classify(&cmd("MONITOR")), Route::Relay);
        assert_eq!(classify(&cmd("quit")), Route::Local(Local::Quit));
        assert_eq!(
            classify(&cmd("nearcache info")),
            Route::Local(Local::Nearcache)
        );
    }

    #[test]
    fn long_names_do_not_match_by_prefix() {
        assert_eq!(classify(&cmd("SUBSCRIBEXXXXXXXXXXXXXXXX a")), Route::Shared);
    }

    #[test]
    fn reads_hello_versions() {
        assert_eq!(hello_version(&cmd("hello 3")), Some(3));
        assert_eq!(hello_version(&cmd("HELLO 4")), None);
        assert!(is_plain_hello(&cmd("HELLO")));
        assert!(!is_plain_hello(&cmd("HELLO 3 SETNAME x")));
    }
}
