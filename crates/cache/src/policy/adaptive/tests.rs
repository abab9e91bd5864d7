//! The adaptive policy alone on synthetic traces (sweeps, loops, re-reads, hot sets): it must
//! follow LRU where recency wins, keep TinyLFU where frequency wins, and keep its shadows within
//! their budget. Tests drive the policy directly, never a cache, and assert hit counts, never time.

use super::*;
use crate::policy::Lru;

fn hash(id: u32) -> u64 {
    u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

/// Hits of `p` on `trace` with weights from `weight`, checking invariants now and then.
fn hits_weighted(p: &mut dyn Policy, trace: &[u32], weight: impl Fn(u32) -> u32) -> u64 {
    let mut resident = vec![false; trace.iter().max().map_or(0, |m| *m as usize + 1)];
    let mut evicted = Vec::new();
    let mut hits = 0;
    for (i, &id) in trace.iter().enumerate() {
        if resident[id as usize] {
            hits += 1;
            p.on_hit(id);
        } else {
            evicted.clear();
            p.insert(id, hash(id), weight(id), &mut evicted);
            resident[id as usize] = true;
            for &v in &evicted {
                resident[v as usize] = false;
            }
        }
        if i % 997 == 0 {
            p.check().expect("invariants");
        }
    }
    p.check().expect("invariants at the end");
    hits
}

fn hits(p: &mut dyn Policy, trace: &[u32]) -> u64 {
    hits_weighted(p, trace, |_| 1)
}

/// Sweeps up and down over 1,000 keys: each turn re-reads the most recent keys, which only
/// recency catches; TinyLFU alone refuses them (all keys are equally frequent).
fn sweeps(len: usize) -> Vec<u32> {
    sweeps_over(1000, len)
}

/// `len` requests sweeping up and down over `keys` keys.
fn sweeps_over(keys: u32, len: usize) -> Vec<u32> {
    let sweep: Vec<u32> = (0..keys).chain((0..keys).rev()).collect();
    sweep.iter().copied().cycle().take(len).collect()
}

#[test]
fn follows_lru_on_back_and_forth_sweeps() {
    let trace = sweeps(100_000);
    let mut lru = Lru::new(100);
    let mut ad = Adaptive::counted(100);
    let (l, a) = (hits(&mut lru, &trace), hits(&mut ad, &trace));
    assert!(ad.lru_mode(), "should have switched to LRU");
    assert!(a * 100 >= l * 98, "adaptive {a} vs lru {l}");
}

#[test]
fn keeps_tinylfu_on_a_loop() {
    // A loop over 1,000 keys: LRU never hits at capacity 100, TinyLFU keeps a stable set.
    let trace: Vec<u32> = (0..1000).cycle().take(100_000).collect();
    let mut ad = Adaptive::counted(100);
    let a = hits(&mut ad, &trace);
    assert!(!ad.lru_mode());
    assert!(a > 5_000, "adaptive hits {a}");
}

#[test]
fn clear_leaves_lru_mode() {
    let mut ad = Adaptive::counted(100);
    hits(&mut ad, &sweeps(20_000));
    assert!(ad.lru_mode());
    ad.clear();
    assert!(!ad.lru_mode());
    assert!(ad.is_empty());
    ad.check().expect("invariants after clear");
}

#[test]
fn sampled_shadows_still_switch() {
    // 20,000 keys swept at capacity 5,000 with room for 256 samples: the rate halves to 1/32 or
    // so, and the sample still sees LRU winning.
    let trace = sweeps_over(20_000, 400_000);
    let mut ad = Adaptive::with_shadows(5_000, 0, 256);
    let mut lru = Lru::new(5_000);
    let (l, a) = (hits(&mut lru, &trace), hits(&mut ad, &trace));
    assert!(ad.lru_mode(), "should have switched to LRU");
    assert!(a * 100 >= l * 95, "adaptive {a} vs lru {l}");
}

#[test]
fn shadows_stay_within_their_budget() {
    // Weights from 1 to 64 and a capacity far above the sample bound: many halvings, and
    // `check` (run throughout) compares the shadows' heap bytes with their budget.
    let trace: Vec<u32> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % 50_000)
        .collect();
    let mut ad = Adaptive::with_shadows(200_000, shadow::budget(64), 64);
    hits_weighted(&mut ad, &trace, |id| 1 + id % 64);
    assert!(ad.weight() + ad.reserved_bytes() <= ad.capacity());
}

#[test]
fn byte_capacity_reserves_the_shadow_budget() {
    // A 16 MiB shard affords the full sample; the entries get the rest.
    let ad = Adaptive::new(16 << 20);
    assert_eq!(ad.reserved_bytes(), shadow::budget(MAX_SAMPLES));
    assert!(ad.reserved_bytes() <= (16 << 20) / SHADOW_SHARE);
    assert_eq!(ad.inner.capacity(), (16 << 20) - ad.reserved_bytes());
    // A 1 MiB shard affords fewer; a tiny one none at all.
    let small = Adaptive::new(1 << 20);
    assert!(small.sim.is_some());
    assert!(small.reserved_bytes() <= (1 << 20) / SHADOW_SHARE);
    let tiny = Adaptive::new(64 << 10);
    assert!(tiny.sim.is_none());
    assert_eq!(tiny.reserved_bytes(), 0);
    assert_eq!(tiny.inner.capacity(), 64 << 10);
}

#[test]
fn removals_reach_the_shadows() {
    let mut ad = Adaptive::counted(50);
    let mut evicted = Vec::new();
    for id in 0..40u32 {
        ad.insert(id, hash(id), 1, &mut evicted);
    }
    for id in 0..40u32 {
        ad.remove(id);
    }
    ad.check().expect("invariants");
    assert!(ad.is_empty());
    assert_eq!(ad.sim.as_ref().expect("shadows").live_keys(), 0);
}

#[test]
fn shadows_wait_for_half_capacity() {
    // Below half the capacity the shadows see nothing: hits cost a flag test, no simulation.
    let mut ad = Adaptive::counted(1_000);
    let mut evicted = Vec::new();
    for id in 0..499u32 {
        ad.insert(id, hash(id), 1, &mut evicted);
    }
    for _ in 0..3 {
        for id in 0..499u32 {
            ad.on_hit(id);
        }
    }
    assert!(!ad.observing());
    assert_eq!(ad.sim.as_ref().expect("shadows").live_keys(), 0);
    // The insert that reaches half starts them, warm with every resident key.
    ad.insert(499, hash(499), 1, &mut evicted);
    assert!(ad.observing());
    assert_eq!(ad.sim.as_ref().expect("shadows").live_keys(), 500);
    ad.check().expect("invariants");
}

#[test]
fn shadows_stop_below_a_quarter() {
    let mut ad = Adaptive::counted(100);
    hits(&mut ad, &sweeps(20_000));
    assert!(ad.observing() && ad.lru_mode());
    // Invalidate down to 24 entries: the shadows stop, the policy is adaptive again.
    for id in 0..1000u32 {
        if ad.contains(id) && ad.len() > 24 {
            ad.remove(id);
        }
    }
    assert!(!ad.observing() && !ad.lru_mode());
    assert_eq!(ad.sim.as_ref().expect("shadows").live_keys(), 0);
    ad.check().expect("invariants");
}

/// Each new key is followed by a re-read of the key 10 new keys back: recency wins, and the
/// re-reads start before a cache of 100 is full.
fn recent_rereads(len: u32) -> Vec<u32> {
    (0..len).flat_map(|i| [i, i.saturating_sub(10)]).collect()
}

#[test]
fn half_size_hint_starts_in_lru_mode() {
    // The half-size pair sees LRU win before the real cache evicts, so LRU mode starts with
    // the first eviction instead of after the full-size duel has caught up.
    let trace = recent_rereads(101);
    let mut ad = Adaptive::counted(100);
    hits(&mut ad, &trace);
    assert!(ad.lru_mode(), "hint should have started LRU mode");
    let mut lru = Lru::new(100);
    let mut ad = Adaptive::counted(100);
    let trace = recent_rereads(5_000);
    let (l, a) = (hits(&mut lru, &trace), hits(&mut ad, &trace));
    assert_eq!(a, l, "exactly LRU on a pure recency trace");
}

#[test]
fn no_reuse_starts_a_trial_of_lru() {
    // A loop fills the cache without a single reuse: neither side has evidence, so the first
    // evictions run in LRU mode on trial (`keeps_tinylfu_on_a_loop` sees it end).
    let fill: Vec<u32> = (0..101).collect();
    let mut ad = Adaptive::counted(100);
    hits(&mut ad, &fill);
    assert!(ad.observing() && ad.lru_mode());
    // One key requested again after another, before the cache fills, is evidence enough to
    // start adaptive; whether the reuse came before the shadows started or after.
    for at in [1, 70] {
        let mut trace = fill.clone();
        trace.insert(at as usize + 1, at - 1);
        let mut ad = Adaptive::counted(100);
        hits(&mut ad, &trace);
        assert!(ad.observing() && !ad.lru_mode(), "reuse after {at}");
    }
    // Back-to-back repeats are not: any policy hits them. Every key twice in a row, before and
    // after the shadows start, still starts the trial.
    let twice: Vec<u32> = fill.iter().flat_map(|&id| [id, id]).collect();
    let mut ad = Adaptive::counted(100);
    hits(&mut ad, &twice);
    assert!(ad.observing() && ad.lru_mode());
}

#[test]
fn idle_window_shrinks() {
    // 80 hot keys (resident in main, hit every other request) between one-time keys: the window
    // never hits, so it should shrink from its 5% towards nothing.
    let mut trace = Vec::new();
    let mut fresh = 1_000;
    for i in 0..40_000u32 {
        if i % 2 == 0 {
            trace.push(i / 2 % 80);
        } else {
            trace.push(fresh);
            fresh += 1;
        }
    }
    let mut ad = Adaptive::plain(200, 200);
    let start = ad.window();
    hits(&mut ad, &trace);
    assert!(
        ad.window() < start / 2,
        "window {} from {start}",
        ad.window()
    );
}

#[test]
fn busy_window_stays() {
    // Every key is requested twice, a few requests apart: only the window hits, so it must not
    // shrink for idleness.
    let trace: Vec<u32> = (0..20_000u32)
        .flat_map(|i| [i, i.saturating_sub(3)])
        .collect();
    let mut ad = Adaptive::plain(200, 200);
    let start = ad.window();
    hits(&mut ad, &trace);
    assert!(ad.window() >= start, "window {} from {start}", ad.window());
}

#[test]
fn first_turn_of_a_sweep_is_lru() {
    // Nothing is requested twice before the cache evicts, so the first evictions run in LRU
    // mode on trial, and the turn of the sweep hits what LRU hits.
    let trace = sweeps(3_000);
    let mut lru = Lru::new(100);
    let mut ad = Adaptive::counted(100);
    let (l, a) = (hits(&mut lru, &trace), hits(&mut ad, &trace));
    assert!(l > 0);
    assert_eq!(a, l, "adaptive {a} vs lru {l}");
}

#[test]
fn loop_keeps_a_stable_main() {
    // A loop over 2,000 keys at capacity 200: the window goes idle and shrinks below 1%, and a
    // candidate that leads a victim by only its own request is refused, so main keeps a stable
    // set from the first passes (at most 199 hits a pass, 20 passes).
    let trace: Vec<u32> = (0..2000).cycle().take(40_000).collect();
    let mut ad = Adaptive::counted(200);
    let a = hits(&mut ad, &trace);
    assert!(ad.window() * 100 < 200, "window {}", ad.window());
    assert!(a > 3_400, "adaptive hits {a}");
}
