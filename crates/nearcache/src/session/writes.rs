//! Which keys a session has writes in flight for: read-your-writes by key. A cacheable read
//! bypasses the cache only while one of its own keys has a write of the same session in flight
//! (the write may not have reached Redis yet, and the client expects to read it back), or while
//! a write whose keys are not known exactly is in flight (a script, FLUSHDB, EXEC, an unknown
//! command), which holds back every read of the session as before.
//!
//! Owns the counts the session's reader raises when it sends a write and its writer lowers once
//! the write's reply is in and its keys are invalidated. Never lets a read through while a
//! write to one of its keys may still be unapplied: keys are kept as 64-bit hashes, and a
//! collision only makes an unrelated read bypass. Never allocates or locks: a fixed array of
//! slots, each a hash and a count; a write whose keys do not fit falls back to the whole-session
//! rule.
//!
//! The converse order is kept here too ([`JoinedReads`]): a miss that joined another session's
//! read in flight is answered by a read on another connection, which a later write of this
//! session must not overtake. Never lets such a write go before that read's reply.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::reply::WriteMark;

/// Distinct keys with writes in flight a session tracks one by one. More slots keep more of a
/// pipeline's writes keyed before the whole-session fallback, at the cost of a longer scan for
/// each cacheable read while writes are in flight (none while there are none).
pub const SLOTS: usize = 16;

/// A session's writes in flight, as its reader and writer share them.
///
/// Only the reader adds: it picks slots and writes their hashes, so a slot whose count is 0 is
/// the reader's to reuse. The writer only takes back what a [`WriteMark`] holds, and does so
/// after invalidating the write's keys; a reader that sees a count fall (Acquire) therefore also
/// sees the invalidation, and the pre-write value is gone from the cache before the read looks.
pub struct WritesInFlight {
    /// Every write in flight, keyed or not: while 0, reads need look no further.
    total: AtomicUsize,
    /// Writes in flight holding back every read ([`WriteMark::Session`]).
    whole: AtomicUsize,
    /// Writes in flight per slot, and the hash of the key each slot stands for.
    counts: [AtomicU32; SLOTS],
    hashes: [AtomicU64; SLOTS],
    hasher: hashbrown::DefaultHashBuilder,
}

impl Default for WritesInFlight {
    fn default() -> Self {
        WritesInFlight {
            total: AtomicUsize::new(0),
            whole: AtomicUsize::new(0),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
            hashes: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: Default::default(),
        }
    }
}

impl WritesInFlight {
    /// The reader sends a write that may change `keys`, known exactly, or (`None`) keys it
    /// cannot name. Returns what the writer must release ([`WritesInFlight::done`]).
    pub fn sent(&self, keys: Option<&[Bytes]>) -> WriteMark {
        let mark = match keys {
            Some(keys) if keys.len() <= SLOTS => self.claim(keys),
            _ => None,
        };
        let mark = match mark {
            Some(bits) => {
                for i in slots(bits) {
                    self.counts[i].fetch_add(1, Ordering::AcqRel);
                }
                WriteMark::Keys(bits)
            }
            None => {
                self.whole.fetch_add(1, Ordering::AcqRel);
                WriteMark::Session
            }
        };
        self.total.fetch_add(1, Ordering::AcqRel);
        mark
    }

    /// The slots `keys` take: a slot already standing for a key's hash, else a free one (its
    /// hash written now; its count is raised by the caller). `None` if they do not fit.
    fn claim(&self, keys: &[Bytes]) -> Option<u16> {
        // With nothing in flight every slot is free, and stays so: only the reader adds.
        let idle = self.total.load(Ordering::Acquire) == 0;
        let mut bits = 0u16;
        for key in keys {
            let hash = self.hasher.hash_one(&key[..]);
            let mut free = None;
            let mut held = None;
            for i in 0..SLOTS {
                let mine = bits & (1 << i) != 0;
                if mine || !idle && self.counts[i].load(Ordering::Acquire) > 0 {
                    if self.hashes[i].load(Ordering::Relaxed) == hash {
                        held = Some(i);
                        break;
                    }
                } else if free.is_none() {
                    free = Some(i);
                    if idle && (bits >> i) == 0 {
                        // No slot above this one is taken: none can hold the hash.
                        break;
                    }
                }
            }
            let slot = match (held, free) {
                (Some(i), _) => i,
                (None, Some(i)) => {
                    self.hashes[i].store(hash, Ordering::Relaxed);
                    i
                }
                (None, None) => return None,
            };
            bits |= 1 << slot;
        }
        Some(bits)
    }

    /// The writer: the write holding `mark` has its reply, and its keys were invalidated.
    pub fn done(&self, mark: WriteMark) {
        match mark {
            WriteMark::Keys(bits) => {
                for i in slots(bits) {
                    self.counts[i].fetch_sub(1, Ordering::AcqRel);
                }
            }
            WriteMark::Session => {
                self.whole.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    /// Writes in flight, of every kind.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Whether a read of `keys` must bypass the cache: a write in flight may change one of
    /// them. One atomic load while the session has no write in flight.
    #[inline]
    pub fn hold_back(&self, keys: &[Bytes]) -> bool {
        self.total.load(Ordering::Acquire) != 0 && self.hold_back_slow(keys)
    }

    #[cold]
    fn hold_back_slow(&self, keys: &[Bytes]) -> bool {
        if self.whole.load(Ordering::Acquire) != 0 {
            return true;
        }
        let mut live = [0u64; SLOTS];
        let mut n = 0;
        for (count, hash) in self.counts.iter().zip(&self.hashes) {
            if count.load(Ordering::Acquire) > 0 {
                live[n] = hash.load(Ordering::Relaxed);
                n += 1;
            }
        }
        let live = &live[..n];
        !live.is_empty()
            && keys
                .iter()
                .any(|k| live.contains(&self.hasher.hash_one(&k[..])))
    }
}

/// Keys whose miss this session answered by joining a read another session had in flight
/// (`cachelayer/flights.rs`), on another connection. That read may reach Redis after a write
/// this session sends later on its own connection, and would then answer an earlier read with
/// a later write's value: a write to such a key waits until every reply the session awaits is
/// in. The reader's own: no sharing, no atomics.
#[derive(Default)]
pub struct JoinedReads {
    hashes: [u64; JOINED],
    len: usize,
    /// More keys were joined than fit: any write waits.
    overflow: bool,
    hasher: hashbrown::DefaultHashBuilder,
}

/// Keys joined that are remembered one by one; past it, every write waits for the joins.
const JOINED: usize = 8;

impl JoinedReads {
    /// A miss of `key` joined another session's read.
    pub fn joined(&mut self, key: &[u8]) {
        let hash = self.hasher.hash_one(key);
        if self.hashes[..self.len].contains(&hash) {
            return;
        }
        match self.hashes.get_mut(self.len) {
            Some(slot) => {
                *slot = hash;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// Whether a write of `keys` (`None`: keys not known exactly) may overtake a joined read.
    #[inline]
    pub fn conflicts(&self, keys: Option<&[Bytes]>) -> bool {
        if self.len == 0 && !self.overflow {
            return false;
        }
        match keys {
            Some(keys) if !self.overflow => keys
                .iter()
                .any(|k| self.hashes[..self.len].contains(&self.hasher.hash_one(&k[..]))),
            _ => true,
        }
    }

    /// Every joined read has its reply: nothing can be overtaken any more.
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }
}

/// The slots a mark's bits name.
fn slots(mut bits: u16) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = bits.trailing_zeros() as usize;
        bits &= bits.checked_sub(1)?;
        Some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &str) -> Vec<Bytes> {
        names
            .split_whitespace()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect()
    }

    #[test]
    fn only_reads_of_keys_written_are_held_back() {
        let w = WritesInFlight::default();
        assert!(!w.hold_back(&keys("a")));
        let a = w.sent(Some(&keys("a")));
        assert!(w.hold_back(&keys("a")));
        assert!(!w.hold_back(&keys("b")));
        assert!(w.hold_back(&keys("b c a")), "an MGET naming a");
        let a2 = w.sent(Some(&keys("a b")));
        w.done(a);
        assert!(
            w.hold_back(&keys("a")),
            "the second write to a is in flight"
        );
        w.done(a2);
        assert!(!w.hold_back(&keys("a")) && !w.hold_back(&keys("b")));
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn writes_with_unknown_keys_hold_back_every_read() {
        let w = WritesInFlight::default();
        let all = w.sent(None);
        assert_eq!(all, WriteMark::Session);
        assert!(w.hold_back(&keys("anything")));
        w.done(all);
        assert!(!w.hold_back(&keys("anything")));
    }

    #[test]
    fn keys_beyond_the_slots_fall_back_to_the_whole_session() {
        let w = WritesInFlight::default();
        let many: Vec<Bytes> = (0..=SLOTS).map(|i| Bytes::from(format!("k{i}"))).collect();
        assert_eq!(w.sent(Some(&many)), WriteMark::Session);
        let mut marks = Vec::new();
        for k in &many[..SLOTS] {
            marks.push(w.sent(Some(std::slice::from_ref(k))));
        }
        assert!(marks.iter().all(|m| matches!(m, WriteMark::Keys(_))));
        // Every slot is taken: one more key does not fit.
        assert_eq!(w.sent(Some(&keys("other"))), WriteMark::Session);
        // A key already held shares its slot.
        assert_eq!(w.sent(Some(&many[..1])), marks[0]);
    }

    #[test]
    fn writes_to_keys_joined_wait_for_the_joined_reads() {
        let mut j = JoinedReads::default();
        assert!(!j.conflicts(None));
        j.joined(b"a");
        assert!(j.conflicts(Some(&keys("b a"))));
        assert!(!j.conflicts(Some(&keys("b"))));
        assert!(j.conflicts(None), "a write of unknown keys");
        for i in 0..JOINED {
            j.joined(format!("k{i}").as_bytes());
        }
        assert!(j.conflicts(Some(&keys("b"))), "overflowed");
        j.clear();
        assert!(!j.conflicts(Some(&keys("a"))) && !j.conflicts(None));
    }

    #[test]
    fn a_key_named_twice_takes_one_slot_once() {
        let w = WritesInFlight::default();
        let m = w.sent(Some(&keys("a a")));
        let WriteMark::Keys(bits) = m else {
            panic!("{m:?}")
        };
        assert_eq!(bits.count_ones(), 1);
        w.done(m);
        assert!(!w.hold_back(&keys("a")));
    }

    /// A write in flight as the model sees it: its keys (`None`: not known exactly), and the
    /// mark the set gave it.
    struct Flying {
        keys: Option<Vec<u8>>,
        mark: WriteMark,
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A write of these keys (indices into a few names), exact or not.
        Send(Vec<u8>, bool),
        /// The reply of the `n`th write in flight (modulo their number) is in.
        Done(usize),
        /// A read of these keys.
        Read(Vec<u8>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let keys = || proptest::collection::vec(0u8..24, 0..4);
        prop_oneof![
            (keys(), proptest::bool::weighted(0.8)).prop_map(|(k, e)| Step::Send(k, e)),
            (0usize..64).prop_map(Step::Done),
            keys().prop_map(Step::Read),
        ]
    }

    fn names(keys: &[u8]) -> Vec<Bytes> {
        keys.iter()
            .map(|k| Bytes::from(format!("key:{k}")))
            .collect()
    }

    proptest::proptest! {
        /// Against a model that remembers every write in flight: a read is held back whenever
        /// a write in flight may change one of its keys, and only then or while a write holds
        /// the whole session (one with unknown keys, or whose keys did not fit); a write with
        /// exact keys holds the whole session only if the distinct keys in flight overflow.
        #[test]
        fn reads_wait_exactly_for_writes_to_their_keys(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            let set = WritesInFlight::default();
            let mut flying: Vec<Flying> = Vec::new();
            for step in steps {
                match step {
                    Step::Send(keys, exact) => {
                        let named = names(&keys);
                        let mark = set.sent(exact.then_some(&named[..]));
                        let mut live: Vec<u8> = flying
                            .iter()
                            .filter(|f| matches!(f.mark, WriteMark::Keys(_)))
                            .flat_map(|f| f.keys.clone().unwrap_or_default())
                            .chain(keys.iter().copied())
                            .collect();
                        live.sort_unstable();
                        live.dedup();
                        if !exact {
                            proptest::prop_assert_eq!(mark, WriteMark::Session);
                        } else if live.len() <= SLOTS {
                            proptest::prop_assert!(matches!(mark, WriteMark::Keys(_)), "{:?}", mark);
                        }
                        flying.push(Flying { keys: exact.then_some(keys), mark });
                    }
                    Step::Done(n) if !flying.is_empty() => {
                        let f = flying.remove(n % flying.len());
                        set.done(f.mark);
                    }
                    Step::Done(_) => {}
                    Step::Read(keys) => {
                        let conflict = flying.iter().any(|f| match &f.keys {
                            None => true,
                            Some(written) => written.iter().any(|k| keys.contains(k)),
                        });
                        let whole = flying.iter().any(|f| f.mark == WriteMark::Session);
                        let held = set.hold_back(&names(&keys));
                        if conflict {
                            proptest::prop_assert!(held, "a read of {:?} went to the cache", keys);
                        } else if !whole {
                            proptest::prop_assert!(!held, "a read of {:?} held back for nothing", keys);
                        }
                    }
                }
                proptest::prop_assert_eq!(set.count(), flying.len());
            }
        }
    }
}
