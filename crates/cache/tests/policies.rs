//! Property test of the policies alone, driven with weighted handles like the cache does.
//! Adaptive is driven three ways: as the cache builds it (weights are bytes; these capacities
//! are too small for shadows), as the replay builds it (shadows sampling every key), and with
//! shadows of 4 samples and a reserve, so the sampling rate halves again and again.

use cache::policy::{Adaptive, Handle, Policy};
use cache::PolicyKind;
use proptest::prelude::*;
use std::collections::HashSet;

#[derive(Clone, Debug)]
enum Op {
    Access { id: u16, weight: u8 },
    Remove { id: u16 },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            8 => (0..64u16, 1..40u8).prop_map(|(id, weight)| Op::Access { id, weight }),
            1 => (0..64u16).prop_map(|id| Op::Remove { id }),
        ],
        1..400,
    )
}

/// Policy number `k`: every kind as the cache builds it, then the two adaptive variants.
fn build(k: usize, capacity: u64) -> Box<dyn Policy> {
    const KINDS: usize = PolicyKind::ALL.len();
    match k {
        KINDS => PolicyKind::Adaptive.build_counted(capacity),
        k if k > KINDS => Box::new(Adaptive::with_shadows(capacity, capacity / 4, 4)),
        _ => PolicyKind::ALL[k].build(capacity),
    }
}

fn drive(k: usize, capacity: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut p = build(k, capacity);
    let mut resident: HashSet<Handle> = HashSet::new();
    let mut evicted = Vec::new();
    for op in ops {
        match op {
            Op::Access { id, weight } => {
                let h = Handle::from(id);
                if resident.contains(&h) {
                    // Hits never allocate: the shard charges the structures after inserts.
                    let held = p.heap_bytes();
                    p.on_hit(h);
                    prop_assert_eq!(p.heap_bytes(), held, "a hit changed the heap held");
                } else {
                    evicted.clear();
                    p.insert(
                        h,
                        u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        u32::from(weight),
                        &mut evicted,
                    );
                    resident.insert(h);
                    for v in &evicted {
                        prop_assert!(resident.remove(v), "evicted a non-resident handle {}", v);
                    }
                }
            }
            Op::Remove { id } => {
                let h = Handle::from(id);
                if resident.remove(&h) {
                    p.remove(h);
                }
            }
        }
        if let Err(e) = p.check() {
            return Err(TestCaseError::fail(e));
        }
        prop_assert_eq!(p.len(), resident.len());
        for &h in &resident {
            prop_assert!(p.contains(h));
        }
        prop_assert!(p.weight() <= p.capacity());
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_policy_keeps_its_invariants(ops in ops(), capacity in 0..400u64, k in 0..PolicyKind::ALL.len() + 2) {
        drive(k, capacity, ops)?;
    }
}
