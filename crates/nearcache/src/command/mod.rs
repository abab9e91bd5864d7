//! The command table: everything the proxy knows about a command, in one [`CommandSpec`] per
//! command and subcommand, looked up once per distinct name.
//!
//! A spec joins Redis's own metadata (arity, flags, key specifications: [`table`], generated
//! from Redis 7's `COMMAND` and checked against a live server by `tests/command_table.rs`) with
//! the proxy's policy ([`policy`]): its route, what it means for the cache, what it does to a
//! transaction, its code in entry keys and its index in the command figures. Nothing else in
//! the crate compares command names.
//!
//! This is the synchronous half of the proxy: no I/O, no locks after the table is built. A
//! name Redis does not know gets the safe default: shared route, a write to every argument.
//! Never asks Redis at run time: the table is compiled in.

pub mod introspect;
mod meaning;
pub mod memo;
mod policy;
pub mod redis;
mod table;

use std::sync::LazyLock;

use bytes::Bytes;
use hashbrown::HashMap;

use meaning::{Blocking, CacheEffect, RouteRule, Written};
pub use meaning::{CacheUse, Local, Route, Special, TxEffect};
use redis::{flag, key_flag, RedisCommand, Unresolved};

/// MGET's code in compact entry keys: after every cacheable read's.
pub const MGET_CODE: u8 = policy::CACHEABLE.len() as u8 + 1;

/// Index of a command in the command figures: its top-level command's place in the table,
/// [`CommandSpec::OTHER`] for names the table does not know.
pub type CommandId = u16;

/// Everything the proxy knows about one command or subcommand.
#[derive(Debug)]
pub struct CommandSpec {
    /// Upper case; a subcommand's own word only (see [`CommandSpec::full_name`]).
    pub name: &'static str,
    parent: Option<&'static str>,
    /// The figures' index (a subcommand counts under its command).
    pub id: CommandId,
    /// What Redis says about it; `None` for names Redis does not know (or newer than the table).
    pub redis: Option<&'static RedisCommand>,
    route: RouteRule,
    effect: CacheEffect,
    /// Waits on Redis's side: never blocks, always, or only with a `BLOCK` option.
    blocking: Blocking,
    pub tx: TxEffect,
    pub special: Special,
    /// 1 + its index among its parent's subcommands; 0 for a command.
    sub: u16,
    subcommands: Vec<CommandSpec>,
}

impl CommandSpec {
    /// The figures' index of names the table does not know.
    pub const OTHER: CommandId = CommandId::MAX;

    /// `NAME` or `NAME|SUBCOMMAND`.
    pub fn full_name(&self) -> String {
        match self.parent {
            Some(p) => format!("{p}|{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// A number naming this command or subcommand, for [`full_name_of`]: kept where a
    /// reference cannot be (an atomic).
    pub fn code(&self) -> u32 {
        (u32::from(self.id) << 16) | u32::from(self.sub)
    }

    /// The spec that applies to this call: its subcommand's when `args[1]` names one.
    pub fn resolve(&'static self, args: &[Bytes]) -> &'static CommandSpec {
        if self.subcommands.is_empty() {
            return self;
        }
        args.get(1)
            .and_then(|sub| {
                self.subcommands
                    .iter()
                    .find(|s| sub.eq_ignore_ascii_case(s.name.as_bytes()))
            })
            .unwrap_or(self)
    }

    /// How this call must be routed by a session that holds no dedicated connection.
    pub fn route(&self, args: &[Bytes]) -> Route {
        match self.route {
            RouteRule::Fixed(r) => r,
            RouteRule::SelectDb if args.len() == 2 && args[1].as_ref() == b"0" => {
                Route::Local(Local::SelectZero)
            }
            RouteRule::SelectDb => Route::Session,
            RouteRule::Hello if args.len() > 2 => Route::Session,
            RouteRule::Hello => Route::Shared,
            RouteRule::Blocking if self.blocks(args) => Route::Transient,
            RouteRule::Blocking => Route::Shared,
        }
    }

    /// True when this call may wait on Redis's side for as long as it says (BLPOP, WAIT, XREAD
    /// BLOCK ...): no upstream timeout applies to it.
    pub fn blocks(&self, args: &[Bytes]) -> bool {
        match self.blocking {
            Blocking::Never => false,
            Blocking::Always => true,
            Blocking::WithBlockOption => args
                .get(1..)
                .unwrap_or_default()
                .iter()
                .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
                .any(|a| a.eq_ignore_ascii_case(b"BLOCK")),
        }
    }

    /// The protocol a `HELLO` asks for, if it names a valid one (2 or 3).
    pub fn hello_version(&self, args: &[Bytes]) -> Option<u8> {
        if self.special != Special::Hello {
            return None;
        }
        match args.get(1)?.as_ref() {
            b"2" => Some(2),
            b"3" => Some(3),
            _ => None,
        }
    }

    /// A valid `RESET` (which takes no arguments).
    pub fn is_reset(&self, args: &[Bytes]) -> bool {
        self.special == Special::Reset && args.len() == 1
    }

    /// What a call of `nargs` words (name included) means for the cache: a read without a key
    /// is passed through.
    pub fn cache_use(&self, nargs: usize) -> CacheUse {
        match self.effect {
            CacheEffect::Read(_) | CacheEffect::MultiRead if nargs < 2 => CacheUse::Neutral,
            CacheEffect::Read(_) => CacheUse::Read,
            CacheEffect::MultiRead => CacheUse::MultiRead,
            CacheEffect::Neutral => CacheUse::Neutral,
            CacheEffect::Write(_) => CacheUse::Write,
            CacheEffect::WriteAll => CacheUse::WriteAll,
        }
    }

    /// Its code in compact entry keys, for the reads the cache answers.
    pub fn read_code(&self) -> Option<u8> {
        match self.effect {
            CacheEffect::Read(code) => Some(code),
            CacheEffect::MultiRead => Some(MGET_CODE),
            _ => None,
        }
    }

    /// Whether Redis gives it this [`flag`].
    pub fn has_flag(&self, bit: u32) -> bool {
        self.redis.is_some_and(|r| r.flags & bit != 0)
    }

    /// The keys this call may change, for a write: those its key specifications mark as
    /// written, or every argument after the name when they cannot say (an unknown command, a
    /// script, a specification Redis marks incomplete). Over-invalidating costs a few misses;
    /// missing a key would cost stale reads.
    pub fn write_keys(&self, args: &[Bytes]) -> KeyList {
        self.written_keys(args).keys
    }

    /// [`CommandSpec::write_keys`], and whether they are known exactly: the key
    /// specifications found every key the call may change. Not for scripts (which may touch
    /// keys they do not declare), commands Redis does not know, or specifications Redis marks
    /// incomplete, where every argument stands in for the keys and a key the command computes
    /// may still be missing: the session then holds back all its cached reads until the
    /// reply, not only those of these keys.
    pub fn written_keys(&self, args: &[Bytes]) -> WrittenKeys {
        let every_arg = || WrittenKeys {
            keys: args.get(1..).unwrap_or_default().iter().cloned().collect(),
            exact: false,
        };
        let only_written = match self.effect {
            CacheEffect::Write(Written::Specs) => true,
            CacheEffect::Write(Written::AllKeys) => false,
            _ => return every_arg(),
        };
        let mut keys = KeyList::new();
        let found = self.each_key(args, |i, flags| {
            let written = flags & key_flag::RO == 0 || flags & key_flag::VARIABLE_FLAGS != 0;
            if written || !only_written {
                keys.push(args[i].clone());
            }
        });
        match found {
            Ok(()) => WrittenKeys { keys, exact: true },
            Err(_) => every_arg(),
        }
    }

    /// The positions of every key of this call and their [`key_flag`]s, as Redis finds them
    /// from its key specifications (argument 0 is the name). An error when the specifications
    /// cannot say (the command's own code would decide) or the arguments do not fit them.
    pub fn keys(&self, args: &[Bytes]) -> Result<Vec<(usize, u16)>, Unresolved> {
        let mut out = Vec::new();
        self.each_key(args, |i, flags| out.push((i, flags)))?;
        Ok(out)
    }

    fn each_key(&self, args: &[Bytes], mut f: impl FnMut(usize, u16)) -> Result<(), Unresolved> {
        let Some(redis) = self.redis else {
            return Err(Unresolved::Incomplete);
        };
        for spec in redis.key_specs {
            if spec.flags & key_flag::NOT_KEY == 0 {
                spec.positions(args, |i| f(i, spec.flags))?;
            }
        }
        Ok(())
    }
}

/// The keys of a write: inline for one key (most writes), so that forwarding a write
/// allocates nothing for them.
pub type KeyList = smallvec::SmallVec<[Bytes; 1]>;

/// The keys a write may change ([`CommandSpec::written_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenKeys {
    pub keys: KeyList,
    /// The call changes no key outside `keys`.
    pub exact: bool,
}

/// Every spec, with the index from names to them.
struct Table {
    specs: Vec<CommandSpec>,
    by_name: HashMap<&'static [u8], usize, hashbrown::DefaultHashBuilder>,
    unknown: CommandSpec,
}

static TABLE: LazyLock<Table> = LazyLock::new(build);

/// Longest command name looked up; longer names are unknown without looking.
const MAX_NAME: usize = 32;

/// The spec of a command name (any case): the unknown-command spec for names the table does
/// not know. Look a name up once and keep the spec (see [`NameMemo`]): this hashes it.
pub fn lookup(name: &[u8]) -> &'static CommandSpec {
    let table = &*TABLE;
    if name.len() > MAX_NAME {
        return &table.unknown;
    }
    let mut buf = [0u8; MAX_NAME];
    let upper = &mut buf[..name.len()];
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    match table.by_name.get(&*upper) {
        Some(&i) => &table.specs[i],
        None => &table.unknown,
    }
}

/// Redis's metadata as generated into the table (for `tests/command_table.rs`).
pub fn redis_commands() -> &'static [RedisCommand] {
    table::COMMANDS
}

/// How many commands have figures of their own ([`CommandId`]s below this).
pub fn count() -> usize {
    TABLE.specs.len()
}

/// The figures' label of a command id: its name, or `OTHER`.
pub fn name_of(id: CommandId) -> &'static str {
    TABLE.specs.get(usize::from(id)).map_or("OTHER", |s| s.name)
}

/// `NAME` or `NAME|SUBCOMMAND` of a [`CommandSpec::code`]; `None` for unknown commands.
pub fn full_name_of(code: u32) -> Option<String> {
    let spec = TABLE.specs.get((code >> 16) as usize)?;
    match (code & 0xffff) as usize {
        0 => Some(spec.full_name()),
        i => spec.subcommands.get(i - 1).map(CommandSpec::full_name),
    }
}

/// Whether `name` (any case) is a read the cache may answer.
pub fn is_cacheable(name: &str) -> bool {
    lookup(name.as_bytes()).read_code().is_some()
}

/// Builds the table: Redis's metadata, then the policy's exceptions.
fn build() -> Table {
    let mut specs: Vec<CommandSpec> = table::COMMANDS.iter().map(|c| spec(c, None)).collect();
    for extra in policy::EXTRA {
        match extra.split_once('|') {
            None => specs.push(named(extra, None, None)),
            Some((parent, sub)) => {
                if let Some(p) = specs.iter_mut().find(|s| s.name == parent) {
                    p.subcommands.push(named(sub, Some(p.name), None));
                }
            }
        }
    }
    specs.sort_by_key(|s| s.name);
    for (id, s) in specs.iter_mut().enumerate() {
        let id = CommandId::try_from(id).expect("fewer commands than ids");
        s.id = id;
        for (i, sub) in s.subcommands.iter_mut().enumerate() {
            sub.id = id;
            sub.sub = u16::try_from(i + 1).expect("fewer subcommands than ids");
        }
    }
    let by_name = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_bytes(), i))
        .collect();
    let mut unknown = named("OTHER", None, None);
    unknown.effect = CacheEffect::Write(Written::AllArgs);
    Table {
        specs,
        by_name,
        unknown,
    }
}

fn spec(redis: &'static RedisCommand, parent: Option<&'static str>) -> CommandSpec {
    let mut s = named(redis.name, parent, Some(redis));
    s.subcommands = redis
        .subcommands
        .iter()
        .map(|sub| spec(sub, Some(redis.name)))
        .collect();
    s
}

/// The spec of one name, from Redis's metadata (if any) and the policy.
fn named(
    name: &'static str,
    parent: Option<&'static str>,
    redis: Option<&'static RedisCommand>,
) -> CommandSpec {
    let full = match parent {
        Some(p) => format!("{p}|{name}"),
        None => name.to_string(),
    };
    let flags = redis.map_or(0, |r| r.flags);
    let blocking = if policy::BLOCK_OPTION.contains(&full.as_str()) {
        Blocking::WithBlockOption
    } else if flags & flag::BLOCKING != 0 || policy::BLOCKING.contains(&full.as_str()) {
        Blocking::Always
    } else {
        Blocking::Never
    };
    let route = listed(policy::ROUTES, &full).unwrap_or(match blocking {
        Blocking::Never => RouteRule::Fixed(Route::Shared),
        _ => RouteRule::Blocking,
    });
    let cacheable = policy::CACHEABLE.iter().position(|c| *c == full);
    let effect = match (cacheable, listed(policy::EFFECTS, &full)) {
        (Some(i), _) => CacheEffect::Read(i as u8 + 1),
        (None, Some(effect)) => effect,
        (None, None) if flags & flag::WRITE != 0 => CacheEffect::Write(Written::Specs),
        (None, None) => CacheEffect::Neutral,
    };
    CommandSpec {
        name,
        parent,
        id: CommandSpec::OTHER,
        redis,
        route,
        effect,
        blocking,
        tx: listed(policy::TX, &full).unwrap_or(TxEffect::None),
        special: listed(policy::SPECIAL, &full).unwrap_or(Special::None),
        sub: 0,
        subcommands: Vec::new(),
    }
}

/// The value a policy list gives `full`, if it lists it.
fn listed<T: Copy>(list: &[(&str, T)], full: &str) -> Option<T> {
    list.iter().find(|(n, _)| *n == full).map(|(_, v)| *v)
}

/// Splits a command line on spaces, for tests.
#[cfg(test)]
pub(crate) fn cmd(s: &str) -> Vec<Bytes> {
    s.split_whitespace()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests;
