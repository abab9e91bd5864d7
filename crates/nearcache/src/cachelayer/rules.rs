//! The operator's narrowing of what is cached: commands allowed or denied, key prefixes
//! included or excluded.
//!
//! Owns only narrowing: a command the command table does not call cacheable never becomes
//! cacheable here, whatever the rules say.

use bytes::Bytes;

use crate::command::{CacheUse, CommandSpec};

/// Commands allowed (empty: all cacheable ones) or denied, and key prefixes included (empty:
/// all keys) or excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheRules {
    allow: Vec<String>,
    deny: Vec<String>,
    include: Vec<Vec<u8>>,
    exclude: Vec<Vec<u8>>,
}

impl CacheRules {
    pub fn new(allow: &[String], deny: &[String], include: &[String], exclude: &[String]) -> Self {
        let upper = |v: &[String]| v.iter().map(|s| s.to_ascii_uppercase()).collect();
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

    fn admits_command(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|a| a == name))
            && !self.deny.iter().any(|d| d == name)
    }

    fn admits_key(&self, key: &[u8]) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| key.starts_with(p)))
            && !self.exclude.iter().any(|p| key.starts_with(p))
    }

    /// Applies the rules to a command's cache use: a read they do not admit is read through.
    pub fn apply(&self, spec: &CommandSpec, args: &[Bytes], used: CacheUse) -> CacheUse {
        if !matches!(used, CacheUse::Read | CacheUse::MultiRead) || self.is_empty() {
            return used;
        }
        let keys = match used {
            CacheUse::Read => 1,
            _ => usize::MAX,
        };
        let admitted = self.admits_command(spec.name)
            && args[1..].iter().take(keys).all(|k| self.admits_key(k));
        if admitted {
            used
        } else {
            CacheUse::Neutral
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{cmd, lookup};

    #[test]
    fn rules_narrow_what_is_cached() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rules = CacheRules::new(
            &s(&[]),
            &s(&["hgetall"]),
            &s(&["user:", "item:"]),
            &s(&["user:secret"]),
        );
        let used = |c: &str| {
            let args = cmd(c);
            let spec = lookup(&args[0]);
            rules.apply(spec, &args, spec.cache_use(args.len()))
        };
        assert_eq!(used("GET user:1"), CacheUse::Read);
        assert_eq!(used("GET other"), CacheUse::Neutral);
        assert_eq!(used("GET user:secret:1"), CacheUse::Neutral);
        assert_eq!(used("HGETALL user:1"), CacheUse::Neutral);
        assert_eq!(used("MGET user:1 item:2"), CacheUse::MultiRead);
        assert_eq!(used("MGET user:1 other"), CacheUse::Neutral);
        assert_eq!(used("SET other v"), CacheUse::Write);
        let only_get = CacheRules::new(&s(&["get"]), &s(&[]), &s(&[]), &s(&[]));
        let hget = cmd("HGET h f");
        assert_eq!(
            only_get.apply(lookup(b"HGET"), &hget, CacheUse::Read),
            CacheUse::Neutral
        );
        let get = cmd("GET k");
        assert_eq!(
            only_get.apply(lookup(b"GET"), &get, CacheUse::Read),
            CacheUse::Read
        );
    }
}
