//! The last command name a session looked up, so that a repeated name costs one short
//! comparison instead of a hash lookup.
//!
//! Clients repeat their commands (a pipeline of GETs, a loop of SETs). Owns nothing but that
//! memory; never decides anything about a command ([`super::CommandSpec`] does).

use super::CommandSpec;

/// The last command name looked up, as the client spelled it, and its spec.
pub struct NameMemo {
    name: [u8; 16],
    len: u8,
    spec: &'static CommandSpec,
}

impl Default for NameMemo {
    fn default() -> Self {
        NameMemo {
            name: [0; 16],
            len: 0,
            spec: super::lookup(b""),
        }
    }
}

impl NameMemo {
    /// [`super::lookup`], remembered for names of up to 16 bytes.
    pub fn lookup(&mut self, name: &[u8]) -> &'static CommandSpec {
        let len = usize::from(self.len);
        if len > 0 && name == &self.name[..len] {
            return self.spec;
        }
        let spec = super::lookup(name);
        if let Some(dst) = self.name.get_mut(..name.len()) {
            dst.copy_from_slice(name);
            self.len = name.len() as u8;
            self.spec = spec;
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::super::{lookup, name_of, CacheUse, MGET_CODE};
    use super::*;

    #[test]
    fn remembers_the_last_name_and_looks_up_another() {
        let mut memo = NameMemo::default();
        for name in [
            &b"get"[..],
            b"GET",
            b"GETSET",
            b"GETXXXXXXXXXXXXXXXXXXXXXX",
            b"getset",
            b"",
            b"get",
            b"get",
            b"MGET",
            b"flushall",
            b"georadiusbymember_ro",
        ] {
            assert!(std::ptr::eq(memo.lookup(name), lookup(name)), "{name:?}");
        }
        let get = memo.lookup(b"gEt");
        assert_eq!(name_of(get.id), "GET");
        assert_eq!(get.cache_use(2), CacheUse::Read);
        assert_eq!(memo.lookup(b"SET").cache_use(3), CacheUse::Write);
        assert_eq!(memo.lookup(b"MGET").read_code(), Some(MGET_CODE));
        let long = memo.lookup(b"GETXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(name_of(long.id), "OTHER");
        assert_eq!(long.cache_use(2), CacheUse::Write);
        assert_eq!(long.read_code(), None);
    }
}
