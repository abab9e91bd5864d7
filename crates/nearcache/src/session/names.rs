//! What a command's name alone says, worked out once per distinct name rather than once per
//! command: its figures' slot, what it means for the cache, and its code in entry keys.
//!
//! Each of those is a case-insensitive table lookup. Clients repeat their commands (a
//! pipeline of GETs, a loop of SETs), so the session remembers the last name it saw and most
//! commands cost one short comparison.

use crate::keys::{self, CacheUse};
use crate::obs::stats;

/// What a command name says, for a command with arguments (see [`CacheUse::for_args`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameInfo {
    /// Its slot in the command figures ([`stats::slot_of`]).
    pub slot: u16,
    /// [`keys::name_use`].
    pub used: CacheUse,
    /// [`keys::read_code`].
    pub code: Option<u8>,
}

impl NameInfo {
    pub fn of(name: &[u8]) -> NameInfo {
        NameInfo {
            slot: stats::slot_of(name),
            used: keys::name_use(name),
            code: keys::read_code(name),
        }
    }
}

/// The last command name looked up, as the client spelled it, and its [`NameInfo`].
pub struct NameMemo {
    name: [u8; 16],
    len: u8,
    info: NameInfo,
}

impl Default for NameMemo {
    fn default() -> Self {
        NameMemo {
            name: [0; 16],
            len: 0,
            info: NameInfo::of(b""),
        }
    }
}

impl NameMemo {
    /// [`NameInfo::of`], remembered.
    pub fn info(&mut self, name: &[u8]) -> NameInfo {
        let len = usize::from(self.len);
        if len > 0 && name == &self.name[..len] {
            return self.info;
        }
        let info = NameInfo::of(name);
        if let Some(dst) = self.name.get_mut(..name.len()) {
            dst.copy_from_slice(name);
            self.len = name.len() as u8;
            self.info = info;
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stats::slot_name;

    #[test]
    fn remembers_the_last_name_and_recomputes_for_another() {
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
        ] {
            assert_eq!(memo.info(name), NameInfo::of(name), "{name:?}");
        }
        let get = memo.info(b"gEt");
        assert_eq!(slot_name(get.slot), "GET");
        assert_eq!(get.used, CacheUse::Read);
        assert_eq!(get.code, keys::read_code(b"GET"));
        assert_eq!(memo.info(b"SET").used, CacheUse::Write);
        assert_eq!(memo.info(b"MGET").code, Some(keys::MGET_CODE));
        let long = memo.info(b"GETXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(slot_name(long.slot), "OTHER");
        assert_eq!(long.used, CacheUse::Write);
        assert_eq!(long.code, None);
    }
}
