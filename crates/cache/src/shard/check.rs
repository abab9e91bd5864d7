//! `validate()` for one shard core: a full O(n) consistency check for tests and debugging.
//! Must never mutate anything.

use super::core::Core;
use super::entry::{entry_hash, parts};
use std::hash::BuildHasher;

impl Core {
    /// Check every invariant of the shard; `Err` names the first violation.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut live = 0usize;
        let mut bytes = 0u64;
        let mut per_tag = vec![0u32; self.tags.len()];
        for cell in 0..self.slab.high() {
            let resident = self.policy.contains(cell);
            let Some(e) = self.slab.get(cell) else {
                if resident {
                    return Err(format!("policy holds free cell {cell}"));
                }
                continue;
            };
            if !resident {
                return Err(format!("entry {cell} is not in the policy"));
            }
            live += 1;
            bytes += self.cost_of(e);
            let (group, key, _) = parts(&e.data);
            let group_hash = self.hasher.hash_one(group);
            let hash = entry_hash(&self.hasher, group_hash, key);
            if self.find(|| hash, group_hash, group, key) != Some(cell) {
                return Err(format!("entry {cell} not reachable through the index"));
            }
            let Some(head) = self.find_group(group_hash, group) else {
                return Err(format!("entry {cell}'s group has no head"));
            };
            if e.is_head() != (head == cell) {
                return Err(format!("entry {cell}: head flag disagrees with the index"));
            }
            for (n, back) in [(e.g_next, true), (e.g_prev, false)] {
                let ok = self.slab.get(n).is_some_and(|ne| {
                    parts(&ne.data).0 == group && if back { ne.g_prev } else { ne.g_next } == cell
                });
                if !ok {
                    return Err(format!("entry {cell}: group circle broken"));
                }
            }
            let id = e.tag_id();
            let rec = self.tags.get(id as usize);
            if !rec.is_some_and(|r| r.len > 0 && self.tag_ids.get(&r.tag) == Some(&id)) {
                return Err(format!("entry {cell} has an unindexed tag"));
            }
            per_tag[id as usize] += 1;
        }
        if live != self.len || live != self.index.len() || live != self.policy.len() {
            return Err(format!(
                "{live} live cells, {} counted, {} indexed, {} in policy",
                self.len,
                self.index.len(),
                self.policy.len()
            ));
        }
        self.slab.check()?;
        if bytes != self.bytes || bytes != self.policy.weight() {
            return Err(format!(
                "bytes: entries sum to {bytes}, accounted {}, policy weight {}",
                self.bytes,
                self.policy.weight()
            ));
        }
        if self.bytes() > self.budget {
            return Err(format!(
                "{} bytes over budget {}",
                self.bytes(),
                self.budget
            ));
        }
        // The structures are charged at least what they hold beyond the entries' share.
        if self.reserve < self.excess() {
            return Err(format!(
                "reserve {} below the structures' excess {}",
                self.reserve,
                self.excess()
            ));
        }
        if self.policy.capacity() != self.budget.saturating_sub(self.reserve) {
            return Err(format!(
                "policy capacity {} is not budget {} less reserve {}",
                self.policy.capacity(),
                self.budget,
                self.reserve
            ));
        }
        self.policy.check()?;
        // Group circles: each head's circle holds its group's entries, no other head, and the
        // circles add up to every entry.
        let mut in_groups = 0usize;
        for head in 0..self.slab.high() {
            let Some(e) = self.slab.get(head).filter(|e| e.is_head()) else {
                continue;
            };
            let group = parts(&e.data).0;
            let (mut cur, mut n) = (head, 0usize);
            loop {
                n += 1;
                if n > live {
                    return Err(format!("group of cell {head}: circle does not close"));
                }
                cur = self.slab.entry(cur).g_next;
                if cur == head {
                    break;
                }
                let m = self.slab.entry(cur);
                if m.is_head() || parts(&m.data).0 != group {
                    return Err(format!("group of cell {head}: circle reaches cell {cur}"));
                }
            }
            in_groups += n;
        }
        if in_groups != live {
            return Err(format!("{in_groups} entries in group circles, {live} live"));
        }
        for (id, rec) in self.tags.iter().enumerate() {
            let indexed = self.tag_ids.get(&rec.tag) == Some(&(id as u32));
            let free = self.free_tags.contains(&(id as u32));
            if indexed == free || (indexed && rec.len != per_tag[id]) {
                return Err(format!(
                    "tag id {id}: {} entries, recorded {}",
                    per_tag[id], rec.len
                ));
            }
        }
        if self.tag_ids.len() + self.free_tags.len() != self.tags.len() {
            return Err("tag index out of step with entries".into());
        }
        Ok(())
    }
}
