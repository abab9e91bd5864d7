//! `validate()` for one shard core: a full O(n) consistency check for tests and debugging.
//! Must never mutate anything.

use super::{Core, NIL};

impl<V: Clone> Core<V> {
    /// Check every invariant of the shard; `Err` names the first violation.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut live = 0usize;
        let mut bytes = 0u64;
        for (slot, e) in self.slots.iter().enumerate() {
            let slot = slot as u32;
            let resident = self.policy.contains(slot);
            let Some(e) = e else {
                if resident {
                    return Err(format!("policy holds free slot {slot}"));
                }
                continue;
            };
            if !resident {
                return Err(format!("entry {slot} is not in the policy"));
            }
            live += 1;
            bytes += u64::from(e.cost);
            if self.find(e.hash, &e.key) != Some(slot) {
                return Err(format!("entry {slot} not reachable through the key index"));
            }
            let g = self.groups.get(e.group as usize).and_then(|g| g.as_ref());
            if g.is_none() {
                return Err(format!("entry {slot} points to a missing group"));
            }
            if !self.tags.contains_key(&e.tag) {
                return Err(format!("entry {slot} has an unindexed tag"));
            }
        }
        if live != self.index.len() || live != self.policy.len() {
            return Err(format!(
                "{live} live slots, {} indexed, {} in policy",
                self.index.len(),
                self.policy.len()
            ));
        }
        if bytes != self.bytes || bytes != self.policy.weight() {
            return Err(format!(
                "bytes: entries sum to {bytes}, accounted {}, policy weight {}",
                self.bytes,
                self.policy.weight()
            ));
        }
        if self.bytes > self.budget {
            return Err(format!("{} bytes over budget {}", self.bytes, self.budget));
        }
        self.policy.check()?;
        // Group lists: each group's chain is well formed and holds exactly its entries.
        let mut in_groups = 0usize;
        for (gi, g) in self.groups.iter().enumerate() {
            let Some(g) = g else { continue };
            if self.find_group(g.hash, &g.name) != Some(gi as u32) {
                return Err(format!("group {gi} not reachable through the group index"));
            }
            let n = self.walk(g.head, |e| (e.g_prev, e.g_next), |e| e.group == gi as u32)?;
            if n != g.len as usize || n == 0 {
                return Err(format!("group {gi}: chain {n}, recorded {}", g.len));
            }
            in_groups += n;
        }
        if in_groups != live || self.group_index.len() + self.free_groups.len() != self.groups.len()
        {
            return Err("group index out of step with entries".into());
        }
        let mut in_tags = 0usize;
        for (&tag, t) in &self.tags {
            let n = self.walk(t.head, |e| (e.t_prev, e.t_next), |e| e.tag == tag)?;
            if n != t.len as usize || n == 0 {
                return Err(format!("tag {tag}: chain {n}, recorded {}", t.len));
            }
            in_tags += n;
        }
        if in_tags != live {
            return Err("tag index out of step with entries".into());
        }
        Ok(())
    }

    fn walk(
        &self,
        head: u32,
        links: impl Fn(&super::Entry<V>) -> (u32, u32),
        belongs: impl Fn(&super::Entry<V>) -> bool,
    ) -> Result<usize, String> {
        let (mut cur, mut prev, mut n) = (head, NIL, 0usize);
        while cur != NIL {
            let e = self
                .slots
                .get(cur as usize)
                .and_then(|e| e.as_ref())
                .ok_or_else(|| format!("chain reaches free slot {cur}"))?;
            let (p, next) = links(e);
            if p != prev || !belongs(e) {
                return Err(format!("chain broken at slot {cur}"));
            }
            n += 1;
            if n > self.slots.len() {
                return Err("chain has a cycle".into());
            }
            prev = cur;
            cur = next;
        }
        Ok(n)
    }
}
