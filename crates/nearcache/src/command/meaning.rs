//! What a command means to the proxy, as the command table records it: how it is routed, what
//! it does to the cache and to a transaction. The vocabulary of [`super::CommandSpec`].
//!
//! Types only: shared by the table and the policy, depending on neither; never a name.

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
    /// `SYNC`, `PSYNC`: the client becomes a replica, and from then on reads the replication
    /// stream, which is not RESP (the RDB payload is a bulk without its CRLF). A raw byte relay
    /// on a connection of its own, both ways, until either side closes.
    Replicate,
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
    /// `CLIENT ID|INFO|LIST|KILL|SETNAME|GETNAME|NO-EVICT|GETREDIR|TRACKINGINFO|UNBLOCK`:
    /// about the proxy's own clients, answered from its client table in every session mode
    /// except inside MULTI (where Redis queues them).
    Client,
}

/// How a route depends on the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteRule {
    Fixed(Route),
    /// `SELECT 0` is answered locally while the session is in db 0; any other db pins a
    /// connection for the session.
    SelectDb,
    /// `HELLO` or `HELLO <ver>` is routed by protocol; with AUTH or SETNAME it changes the
    /// connection's state.
    Hello,
    /// A dedicated connection while the command may block (see [`CommandSpec::blocks`]).
    Blocking,
}

/// What a command does to the session's transaction state, which decides when a
/// [`Route::Transient`] connection can be given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    Multi,
    Watch,
    /// EXEC: the transaction and every WATCH end, and the queued writes take effect.
    Exec,
    /// DISCARD: the transaction and every WATCH end, and the queued writes are dropped.
    Discard,
    Unwatch,
}

/// Commands the session treats specially beyond their route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    /// Switches the connection's protocol.
    Hello,
    /// Returns the connection to its initial state (RESP2, db 0, no transaction).
    Reset,
    /// `CLIENT TRACKING`: pins the session; relayed only in RESP3, where invalidations arrive
    /// as pushes between replies (in RESP2 they go to the REDIRECT target).
    Tracking,
    /// `SELECT`: changes the client's db.
    Select,
    /// `CLIENT CACHING`: noted for `CLIENT TRACKINGINFO` until the next command.
    Caching,
    /// `INFO`: its `# Clients` section is about the proxy's clients.
    Info,
    /// `SUBSCRIBE` and the like: counted in the client table.
    Subscribe,
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

/// A command's effect on cached entries, as the table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CacheEffect {
    /// A cacheable read, with its code in compact entry keys.
    Read(u8),
    MultiRead,
    Neutral,
    Write(Written),
    WriteAll,
}

/// Which arguments a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// The keys its key specifications mark as written (not read-only).
    Specs,
    /// Every key its key specifications find.
    AllKeys,
    /// Every argument: its keys are not fully known.
    AllArgs,
}

/// Whether a command waits on Redis's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocking {
    Never,
    Always,
    WithBlockOption,
}
