//! Where one command goes in a cluster, from the command table's key positions: the slot of
//! its keys, a split per slot for the multi-key commands a proxy may split, a fan-out or a
//! local answer for keyless ones, or Redis's own refusal.
//!
//! Owns the [`Plan`] and the splitting of a command into per-slot parts. Never sends a part
//! and never merges replies (`merge` does); never decides a keyless command's route itself
//! (`keyless` does).

use bytes::Bytes;
use hashbrown::HashMap;

use super::keyless::{self, Keyless};
use super::redirect::CROSSSLOT;
use super::slot::key_slot;
use super::topology::Topology;
use crate::command::CommandSpec;

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every key is in this slot: the slot's master.
    Slot(u16),
    /// Keys in several slots of a command the proxy splits: one part per slot.
    Split(Split),
    /// No keys: see [`Keyless`].
    Keyless(Keyless),
    /// Answered with this error by the proxy, as Redis Cluster would answer it (`CROSSSLOT`
    /// for a command that needs one slot and was given keys in several).
    Refuse(&'static str),
}

/// How a split command's parts make the client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// MGET: one array, each part's elements put back at their keys' places.
    Mget,
    /// MSET: `+OK` unless a part failed (then the first failure). Not atomic across slots.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: the parts' counts added.
    Count,
}

/// The multi-key commands split per slot, with the width of one key's arguments.
const SPLITTABLE: &[(&str, SplitKind, usize)] = &[
    ("MGET", SplitKind::Mget, 1),
    ("MSET", SplitKind::Mset, 2),
    ("DEL", SplitKind::Count, 1),
    ("UNLINK", SplitKind::Count, 1),
    ("EXISTS", SplitKind::Count, 1),
    ("TOUCH", SplitKind::Count, 1),
];

/// One part of a split command: the same command on the keys of one slot, in the client's
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub slot: u16,
    /// The command name and this part's keys (with their values for MSET).
    pub args: Vec<Bytes>,
    /// For each key of this part, its place among the client's keys.
    pub places: Vec<usize>,
}

/// A command split per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub kind: SplitKind,
    /// In the order of each slot's first key.
    pub parts: Vec<Part>,
    /// How many keys the client gave.
    pub keys: usize,
}

impl Split {
    /// The parts grouped by the master that serves their slot, in the order of each master's
    /// first part: what to pipeline to each node. A part whose slot no node serves is under
    /// `None` (the client gets `CLUSTERDOWN`, as from Redis).
    pub fn by_node(&self, topo: &Topology) -> Vec<(Option<String>, Vec<usize>)> {
        let mut out: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            let addr = topo.master(part.slot).map(|m| m.addr());
            match out.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, parts)) => parts.push(i),
                None => out.push((addr, vec![i])),
            }
        }
        out
    }
}

/// Where `spec`, called as `args` (the name at index 0), goes.
///
/// A call whose arguments do not fit the command's arity or key specifications goes to any
/// node, whose reply is Redis's own error; so does a command whose key positions only its own
/// code knows (Redis marks them incomplete) when it has no other key.
pub fn plan(spec: &CommandSpec, args: &[Bytes]) -> Plan {
    if !fits_arity(spec, args) {
        return Plan::Keyless(Keyless::AnyNode);
    }
    let keys = match spec.keys(args) {
        Ok(keys) => keys,
        Err(_) => return Plan::Keyless(Keyless::AnyNode),
    };
    let Some(&(first, _)) = keys.first() else {
        return Plan::Keyless(keyless::classify(spec, args));
    };
    let slot = key_slot(&args[first]);
    if keys.iter().all(|&(i, _)| key_slot(&args[i]) == slot) {
        return Plan::Slot(slot);
    }
    let full = spec.full_name();
    match SPLITTABLE.iter().find(|(n, _, _)| *n == full) {
        Some(&(_, kind, width)) => match split(kind, width, args) {
            Some(s) => Plan::Split(s),
            None => Plan::Keyless(Keyless::AnyNode),
        },
        None => Plan::Refuse(CROSSSLOT),
    }
}

/// The slot a keyless command's channels decide ([`Keyless::ChannelSlot`]): `Err` with
/// `CROSSSLOT` when they are in several slots, `Ok(None)` when there are none.
pub fn channel_slot(spec: &CommandSpec, args: &[Bytes]) -> Result<Option<u16>, &'static str> {
    let mut slot = None;
    let mut mixed = false;
    for ks in spec.redis.map_or(&[][..], |r| r.key_specs) {
        let _ = ks.positions(args, |i| {
            let s = key_slot(&args[i]);
            mixed |= slot.is_some_and(|t| t != s);
            slot = Some(s);
        });
    }
    if mixed {
        Err(CROSSSLOT)
    } else {
        Ok(slot)
    }
}

/// Whether Redis would take the call as a command to run: a command it knows, with arguments
/// that fit its arity (inside `MULTI`, one that does not is refused and dooms the transaction).
pub fn well_formed(spec: &CommandSpec, args: &[Bytes]) -> bool {
    spec.redis.is_some() && fits_arity(spec, args)
}

fn fits_arity(spec: &CommandSpec, args: &[Bytes]) -> bool {
    match spec.redis.map(|r| r.arity) {
        Some(a) if a >= 0 => args.len() == a as usize,
        Some(a) => args.len() >= usize::from(a.unsigned_abs()),
        None => true,
    }
}

/// Splits `name key [value] key [value] ...` per slot. `None` when the arguments do not come
/// in whole groups of `width` (Redis will answer the unsplit command with an error).
fn split(kind: SplitKind, width: usize, args: &[Bytes]) -> Option<Split> {
    let rest = args.get(1..)?;
    if rest.is_empty() || rest.len() % width != 0 {
        return None;
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for (place, group) in rest.chunks_exact(width).enumerate() {
        let slot = key_slot(&group[0]);
        let i = *index.entry(slot).or_insert_with(|| {
            parts.push(Part {
                slot,
                args: vec![args[0].clone()],
                places: Vec::new(),
            });
            parts.len() - 1
        });
        parts[i].args.extend_from_slice(group);
        parts[i].places.push(place);
    }
    Some(Split {
        kind,
        parts,
        keys: rest.len() / width,
    })
}

#[cfg(test)]
mod tests;
