//! The shape of Redis's own command metadata, as `COMMAND` (Redis 7) reports it: arity, flags,
//! tips and key specifications, for every command and subcommand.
//!
//! Owns the types of the generated table ([`super::table`]) and the one place that reads a key
//! specification: [`KeySpec::positions`], Redis's `getKeysUsingKeySpecs` in our words. Never
//! holds proxy policy (routes, cacheability): that is [`super::policy`]'s.

/// Command flags (`COMMAND`'s third element), one bit each.
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const ASKING: u32 = 1 << 11;
    pub const FAST: u32 = 1 << 12;
    pub const NO_AUTH: u32 = 1 << 13;
    pub const MAY_REPLICATE: u32 = 1 << 14;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 15;
    pub const NO_MULTI: u32 = 1 << 16;
    pub const MOVABLEKEYS: u32 = 1 << 17;
    pub const ALLOW_BUSY: u32 = 1 << 18;
    pub const NO_ASYNC_LOADING: u32 = 1 << 19;

    /// Every flag with the word `COMMAND` spells it with.
    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (ASKING, "asking"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (NO_MULTI, "no_multi"),
        (MOVABLEKEYS, "movablekeys"),
        (ALLOW_BUSY, "allow_busy"),
        (NO_ASYNC_LOADING, "no_async_loading"),
    ];
}

/// Key specification flags, one bit each.
pub mod key_flag {
    pub const RO: u16 = 1 << 0;
    pub const RW: u16 = 1 << 1;
    pub const OW: u16 = 1 << 2;
    pub const RM: u16 = 1 << 3;
    pub const ACCESS: u16 = 1 << 4;
    pub const UPDATE: u16 = 1 << 5;
    pub const INSERT: u16 = 1 << 6;
    pub const DELETE: u16 = 1 << 7;
    pub const NOT_KEY: u16 = 1 << 8;
    pub const INCOMPLETE: u16 = 1 << 9;
    pub const VARIABLE_FLAGS: u16 = 1 << 10;

    /// Every flag with the word `COMMAND` spells it with.
    pub const NAMES: &[(u16, &str)] = &[
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (NOT_KEY, "not_key"),
        (INCOMPLETE, "incomplete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];
}

/// One command (or subcommand) as Redis describes it.
#[derive(Debug)]
pub struct RedisCommand {
    /// Upper case; a subcommand's own word only (`SETNAME` of `CLIENT SETNAME`).
    pub name: &'static str,
    /// Redis's arity: the exact number of words, or at least `-arity` when negative.
    pub arity: i16,
    /// [`flag`] bits.
    pub flags: u32,
    /// Hints for clients, e.g. `request_policy:all_shards` (what a cluster proxy fans out).
    pub tips: &'static [&'static str],
    pub key_specs: &'static [KeySpec],
    pub subcommands: &'static [RedisCommand],
}

/// Where a command's keys are: how to find the first one, then how to find the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub begin: Begin,
    pub find: Find,
    /// [`key_flag`] bits: how the command uses these keys.
    pub flags: u16,
}

/// How the first key is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// At this argument index (the command name is index 0).
    Index(i16),
    /// Right after `keyword`, searched from `startfrom` (from the end when negative).
    Keyword {
        keyword: &'static str,
        startfrom: i16,
    },
    /// Only the command's own code knows.
    Unknown,
}

/// How the keys after the first are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Find {
    /// Up to `lastkey` (relative to the first key; from the end when negative), every
    /// `keystep`-th argument; with `limit`, the share `1/limit` of the remaining arguments.
    Range {
        lastkey: i16,
        keystep: i16,
        limit: i16,
    },
    /// The argument at `keynumidx` (relative to the first) says how many keys follow, starting
    /// at `firstkey` (relative), every `keystep`-th.
    Keynum {
        keynumidx: i16,
        firstkey: i16,
        keystep: i16,
    },
    /// Only the command's own code knows.
    Unknown,
}

// Short constructors, so that the generated table reads one command per line.

pub const fn cmd(
    name: &'static str,
    arity: i16,
    flags: u32,
    tips: &'static [&'static str],
    key_specs: &'static [KeySpec],
    subcommands: &'static [RedisCommand],
) -> RedisCommand {
    RedisCommand {
        name,
        arity,
        flags,
        tips,
        key_specs,
        subcommands,
    }
}

pub const fn spec(begin: Begin, find: Find, flags: u16) -> KeySpec {
    KeySpec { begin, find, flags }
}

pub const fn index(i: i16) -> Begin {
    Begin::Index(i)
}

pub const fn keyword(keyword: &'static str, startfrom: i16) -> Begin {
    Begin::Keyword { keyword, startfrom }
}

pub const fn range(lastkey: i16, keystep: i16, limit: i16) -> Find {
    Find::Range {
        lastkey,
        keystep,
        limit,
    }
}

pub const fn keynum(keynumidx: i16, firstkey: i16, keystep: i16) -> Find {
    Find::Keynum {
        keynumidx,
        firstkey,
        keystep,
    }
}

/// Why a key specification cannot say where the keys are for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// The specification is `unknown` or marked incomplete: the command's code decides.
    Incomplete,
    /// The arguments do not fit the specification (Redis will reply with an error).
    Invalid,
}

impl KeySpec {
    /// Calls `found(position)` for every key this specification finds in `args` (the command
    /// name at index 0), as Redis's `getKeysUsingKeySpecs` does. A keyword that is absent
    /// finds nothing, which is not an error.
    pub fn positions<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        mut found: impl FnMut(usize),
    ) -> Result<(), Unresolved> {
        let argc = args.len() as i64;
        let first = match self.begin {
            Begin::Index(i) => i64::from(i),
            Begin::Keyword { keyword, startfrom } => {
                match find_keyword(args, keyword, i64::from(startfrom)) {
                    Some(i) => i + 1,
                    None => return Ok(()),
                }
            }
            Begin::Unknown => return Err(Unresolved::Incomplete),
        };
        let (first, last, step) = match self.find {
            Find::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let (lastkey, limit) = (i64::from(lastkey), i64::from(limit));
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit <= 1 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, i64::from(keystep))
            }
            Find::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let at = first + i64::from(keynumidx);
                let n = usize::try_from(at)
                    .ok()
                    .and_then(|at| args.get(at))
                    .and_then(|a| std::str::from_utf8(a.as_ref()).ok()?.parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .ok_or(Unresolved::Invalid)?;
                let first = first + i64::from(firstkey);
                (first, first + n - 1, i64::from(keystep))
            }
            Find::Unknown => return Err(Unresolved::Incomplete),
        };
        if last < first {
            // No keys (a keynum of 0), or arguments that do not fit.
            return if last == first - 1 {
                Ok(())
            } else {
                Err(Unresolved::Invalid)
            };
        }
        if first < 1 || last >= argc || step < 1 {
            return Err(Unresolved::Invalid);
        }
        let mut i = first;
        while i <= last {
            found(i as usize);
            i += step;
        }
        if self.flags & key_flag::INCOMPLETE != 0 {
            return Err(Unresolved::Incomplete);
        }
        Ok(())
    }
}

/// The index of `keyword` (any case) searched from `startfrom` towards the end, or from
/// `argc + startfrom` towards the start when negative. As in Redis, the last argument is never
/// taken for the keyword searching forwards (no key could follow it), nor the first one
/// searching backwards.
fn find_keyword<A: AsRef<[u8]>>(args: &[A], keyword: &str, startfrom: i64) -> Option<i64> {
    let argc = args.len() as i64;
    let matches = |i: i64| {
        args[i as usize]
            .as_ref()
            .eq_ignore_ascii_case(keyword.as_bytes())
    };
    if startfrom > 0 {
        (startfrom..argc - 1).find(|&i| matches(i))
    } else {
        (2..=(argc + startfrom).min(argc - 1))
            .rev()
            .find(|&i| matches(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: KeySpec, line: &str) -> Result<Vec<usize>, Unresolved> {
        let args: Vec<&str> = line.split_whitespace().collect();
        let mut out = Vec::new();
        spec.positions(&args, |i| out.push(i)).map(|()| out)
    }

    const fn range(first: i16, lastkey: i16, keystep: i16, limit: i16) -> KeySpec {
        KeySpec {
            begin: Begin::Index(first),
            find: Find::Range {
                lastkey,
                keystep,
                limit,
            },
            flags: key_flag::RO,
        }
    }

    #[test]
    fn ranges_count_from_the_first_key_or_the_end() {
        assert_eq!(keys(range(1, 0, 1, 0), "GET k"), Ok(vec![1]));
        assert_eq!(keys(range(1, -1, 1, 0), "DEL a b c"), Ok(vec![1, 2, 3]));
        assert_eq!(keys(range(1, -1, 2, 0), "MSET a 1 b 2"), Ok(vec![1, 3]));
        // XREAD STREAMS a b 0 0: the keys are the first half of what follows STREAMS.
        let xread = KeySpec {
            begin: Begin::Keyword {
                keyword: "STREAMS",
                startfrom: 1,
            },
            find: Find::Range {
                lastkey: -1,
                keystep: 1,
                limit: 2,
            },
            flags: key_flag::RO,
        };
        assert_eq!(keys(xread, "XREAD COUNT 2 streams a b 0 0"), Ok(vec![4, 5]));
        assert_eq!(keys(xread, "XREAD COUNT 2"), Ok(vec![]));
        assert_eq!(keys(range(1, 0, 1, 0), "GET"), Err(Unresolved::Invalid));
    }

    #[test]
    fn keynum_reads_the_count_from_the_arguments() {
        let eval = KeySpec {
            begin: Begin::Index(2),
            find: Find::Keynum {
                keynumidx: 0,
                firstkey: 1,
                keystep: 1,
            },
            flags: key_flag::RW,
        };
        assert_eq!(keys(eval, "EVAL s 2 a b x"), Ok(vec![3, 4]));
        assert_eq!(keys(eval, "EVAL s 0 x"), Ok(vec![]));
        assert_eq!(keys(eval, "EVAL s 3 a"), Err(Unresolved::Invalid));
        assert_eq!(keys(eval, "EVAL s x a"), Err(Unresolved::Invalid));
        assert_eq!(keys(eval, "EVAL s -1 a"), Err(Unresolved::Invalid));
        assert_eq!(keys(eval, "EVAL"), Err(Unresolved::Invalid));
    }

    #[test]
    fn keywords_are_searched_backwards_from_a_negative_start() {
        let store = KeySpec {
            begin: Begin::Keyword {
                keyword: "STORE",
                startfrom: -1,
            },
            find: Find::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
            flags: key_flag::OW,
        };
        assert_eq!(keys(store, "X a store b STORE dst"), Ok(vec![5]));
        assert_eq!(keys(store, "X a b"), Ok(vec![]));
        // Searching backwards from the last word, a keyword there has no key after it.
        assert_eq!(keys(store, "X a STORE"), Err(Unresolved::Invalid));
        let forward = KeySpec {
            begin: Begin::Keyword {
                keyword: "STORE",
                startfrom: 1,
            },
            ..store
        };
        // Searching forwards, the last word is never taken for the keyword.
        assert_eq!(keys(forward, "X a STORE"), Ok(vec![]));
        assert_eq!(keys(forward, "X STORE d"), Ok(vec![2]));
        let unknown = KeySpec {
            begin: Begin::Unknown,
            find: Find::Unknown,
            flags: key_flag::RO,
        };
        assert_eq!(keys(unknown, "SORT k"), Err(Unresolved::Incomplete));
    }
}
