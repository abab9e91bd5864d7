//! Every way entries leave a shard other than eviction: the expiry sweep, a group's
//! invalidation, a tag's or a scope's invalidation and `clear`.
//!
//! Removed entries go to the caller's [`Garbage`], never dropped under the lock; the policy is
//! told with `remove` (not counted as evictions), and the structures are tidied afterwards only
//! when something was removed.

use super::core::{Core, Delta, Garbage};
use super::entry::decode_deadline;
use crate::cache::tag_scope;
use hashbrown::HashTable;

impl Core {
    /// Look at up to `budget` cells after the sweep cursor and drop expired entries.
    pub(super) fn sweep_expired(&mut self, now: u64, budget: usize, g: &mut Garbage) -> u64 {
        let n = self.slab.high();
        let mut expired = 0;
        for _ in 0..budget.min(n as usize) {
            self.sweep = (self.sweep + 1) % n;
            let cell = self.sweep;
            if matches!(self.slab.get(cell), Some(e) if decode_deadline(e.expires) <= now) {
                self.policy.remove(cell);
                g.push(self.unlink(cell));
                expired += 1;
            }
        }
        expired
    }

    /// Drop every entry of a group.
    pub(crate) fn remove_group(
        &mut self,
        group_hash: u64,
        group: &[u8],
        g: &mut Garbage,
    ) -> (u64, Delta) {
        let mut removed = 0;
        while let Some(cell) = self.find_group(group_hash, group) {
            self.policy.remove(cell);
            g.push(self.unlink(cell)); // the next member, if any, becomes the head
            removed += 1;
        }
        if removed == 0 {
            // Most invalidations find nothing (a write to a key never read through us, or the
            // second of a write's two invalidations): nothing shrank, so nothing to tidy.
            return (0, Delta::default());
        }
        (removed, self.tidied(g))
    }

    fn tidied(&mut self, g: &mut Garbage) -> Delta {
        Delta {
            evicted: self.tidy(g),
            ..Delta::default()
        }
    }

    /// Drop every entry with this tag: a scan of the slab, as tags die rarely (a lost upstream
    /// connection) and keeping per-tag lists would cost every entry two links.
    pub(crate) fn remove_tag(&mut self, tag: u64, g: &mut Garbage) -> (u64, Delta) {
        let Some(&id) = self.tag_ids.get(&tag) else {
            return (0, Delta::default());
        };
        let mut left = self.tags[id as usize].len;
        let mut removed = 0;
        let mut cell = 0;
        while left > 0 && cell < self.slab.high() {
            if self.slab.get(cell).is_some_and(|e| e.tag_id() == id) {
                self.policy.remove(cell);
                g.push(self.unlink(cell));
                left -= 1;
                removed += 1;
            }
            cell += 1;
        }
        (removed, self.tidied(g))
    }

    /// Drop every entry whose tag has `scope`: like [`Core::remove_tag`], one scan of the slab
    /// for all the scope's tags at once.
    pub(crate) fn remove_scope(&mut self, scope: u16, g: &mut Garbage) -> (u64, Delta) {
        let doomed: Vec<bool> = self
            .tags
            .iter()
            .enumerate()
            .map(|(id, rec)| {
                rec.len > 0
                    && tag_scope(rec.tag) == scope
                    && self.tag_ids.get(&rec.tag) == Some(&(id as u32))
            })
            .collect();
        let mut left: u64 = doomed
            .iter()
            .zip(&self.tags)
            .filter(|(d, _)| **d)
            .map(|(_, rec)| u64::from(rec.len))
            .sum();
        let mut removed = 0;
        let mut cell = 0;
        while left > 0 && cell < self.slab.high() {
            let hit = self
                .slab
                .get(cell)
                .is_some_and(|e| doomed.get(e.tag_id() as usize) == Some(&true));
            if hit {
                self.policy.remove(cell);
                g.push(self.unlink(cell));
                left -= 1;
                removed += 1;
            }
            cell += 1;
        }
        if removed == 0 {
            return (0, Delta::default());
        }
        (removed, self.tidied(g))
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self, g: &mut Garbage) -> (u64, Delta) {
        let n = self.len as u64;
        g.items.extend(self.slab.drain().map(|e| e.data));
        self.index = HashTable::new();
        self.tags.clear();
        self.tag_ids.clear();
        self.free_tags.clear();
        self.policy.clear();
        self.policy.shrink(0);
        self.len = 0;
        self.bytes = 0;
        self.sweep = 0;
        (n, self.tidied(g))
    }
}
