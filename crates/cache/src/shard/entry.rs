//! One entry's format: the packed bytes (group, key and value in one allocation), the 32-byte
//! [`Entry`] the slab holds, the deadline encoding and the hashes the index files an entry by
//! (with the shard's [`Hasher`]).
//!
//! Pure functions and plain data: nothing here touches the slab, the index, the policy or the
//! budget, nothing allocates except [`pack`], which the caller runs before taking the shard
//! lock, and it must never import another file of the shard (they all build on it).

use crate::clock::NEVER;
use std::hash::BuildHasher;

/// The hasher of a shard's groups and keys (shared by the cache and its shards).
pub(crate) type Hasher = hashbrown::DefaultHashBuilder;

/// "No cell" marker for an entry's group links; the slab never hands it out as a cell.
pub(super) const NIL: u32 = u32::MAX;

/// Flag in [`Entry::tag`]: the entry is its group's head (indexed by the group's hash).
pub(super) const HEAD: u32 = 1 << 31;

/// One resident entry: 32 bytes.
pub(crate) struct Entry {
    /// Group, key and value in one allocation, see [`pack`].
    pub(super) data: Box<[u8]>,
    /// Deadline, see [`encode_deadline`].
    pub(super) expires: u32,
    /// The shard's id for the entry's tag (index into `Core::tags`), and the [`HEAD`] flag.
    pub(super) tag: u32,
    /// The entry's neighbours in its group's circular list (itself when alone).
    pub(super) g_prev: u32,
    pub(super) g_next: u32,
}

/// Deadlines below 2^31 ms (24.8 days on the caller's clock) are stored exactly; later ones in
/// units of 1,024 ms, rounded down (an entry may expire up to ~1 s early, never late), up to
/// ~69 years; `u32::MAX` is [`NEVER`].
const EXACT: u64 = 1 << 31;
const COARSE_SHIFT: u32 = 10;

pub(crate) fn encode_deadline(at: u64) -> u32 {
    if at == NEVER {
        return u32::MAX;
    }
    if at < EXACT {
        return at as u32;
    }
    let coarse = ((at - EXACT) >> COARSE_SHIFT).min(u64::from(u32::MAX) - 1 - EXACT);
    (EXACT + coarse) as u32
}

pub(crate) fn decode_deadline(d: u32) -> u64 {
    let d = u64::from(d);
    if d == u64::from(u32::MAX) {
        NEVER
    } else if d < EXACT {
        d
    } else {
        EXACT + ((d - EXACT) << COARSE_SHIFT)
    }
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> usize {
    let (mut n, mut shift) = (0usize, 0u32);
    loop {
        let x = b[*pos];
        *pos += 1;
        n |= usize::from(x & 0x7f) << shift;
        if x < 0x80 {
            return n;
        }
        shift += 7;
    }
}

/// Bytes [`pack`] produces for these lengths.
pub(crate) fn packed_len(group_len: usize, key_len: usize, value_len: usize) -> usize {
    varint_len(group_len) + varint_len(key_len) + group_len + key_len + value_len
}

/// An entry's bytes: group length and key length (LEB128), then group, key and value (the
/// concatenation of `value`'s parts), in one allocation of exactly that size.
pub(crate) fn pack(group: &[u8], key: &[u8], value: &[&[u8]]) -> Box<[u8]> {
    let value_len = value.iter().map(|p| p.len()).sum();
    let mut v = Vec::with_capacity(packed_len(group.len(), key.len(), value_len));
    put_varint(&mut v, group.len());
    put_varint(&mut v, key.len());
    v.extend_from_slice(group);
    v.extend_from_slice(key);
    for part in value {
        v.extend_from_slice(part);
    }
    v.into_boxed_slice()
}

/// Group, key and value of packed bytes. Every lookup takes an entry apart two or three times
/// (the group to find its head, the key to compare, the value to copy), so the usual case, both
/// lengths under 128 (one byte each), skips the general decoding.
#[inline]
pub(super) fn parts(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    if let [g @ 0..=0x7f, k @ 0..=0x7f, rest @ ..] = data {
        let (g, k) = (usize::from(*g), usize::from(*k));
        if let Some((group, rest)) = rest.split_at_checked(g) {
            if let Some((key, value)) = rest.split_at_checked(k) {
                return (group, key, value);
            }
        }
    }
    parts_varint(data)
}

/// Whether two keys (or groups) are equal: the lookup path's comparison. Keys of up to 16
/// bytes, the usual Redis key and every GET's compact key, are compared as two overlapping
/// words each, inline, rather than by a call to `memcmp` (about 80 instructions a call, a tenth
/// of an MGET key's lookup).
#[inline(always)]
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        0 => true,
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// [`parts`] for any lengths.
fn parts_varint(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut pos = 0;
    let g = get_varint(data, &mut pos);
    let k = get_varint(data, &mut pos);
    let (group, rest) = data[pos..].split_at(g);
    let (key, value) = rest.split_at(k);
    (group, key, value)
}

fn mix64(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// The index's hash of an entry that is not its group's head: its group's hash combined with
/// its key's.
pub(crate) fn entry_hash(hasher: &Hasher, group_hash: u64, key: &[u8]) -> u64 {
    mix64(group_hash ^ hasher.hash_one(key).rotate_left(29))
}

/// The index's hash of a group's head.
pub(super) fn head_hash(group_hash: u64) -> u64 {
    mix64(group_hash ^ 0x9E37_79B9_7F4A_7C15)
}

impl Entry {
    pub(super) fn is_head(&self) -> bool {
        self.tag & HEAD != 0
    }
    pub(super) fn tag_id(&self) -> u32 {
        self.tag & !HEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_agrees_with_slice_equality_at_every_length_and_position() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x40;
                assert!(!same(&a, &b), "length {n}, differing at {at}");
            }
            assert!(!same(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn cells_are_32_bytes() {
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 32);
    }

    #[test]
    fn deadlines_never_move_later() {
        for at in [
            0,
            1,
            99,
            EXACT - 1,
            EXACT,
            EXACT + 1023,
            EXACT + 1024,
            EXACT + 5_000_000,
            1 << 40,
            1 << 41,
            1 << 50,
            NEVER - 1,
        ] {
            let back = decode_deadline(encode_deadline(at));
            assert!(back <= at, "{at} -> {back}");
            assert!(back != NEVER);
            if at < EXACT {
                assert_eq!(back, at);
            } else if at < 1 << 41 {
                assert!(at - back < 1024, "{at} -> {back}");
            }
        }
        assert_eq!(decode_deadline(encode_deadline(NEVER)), NEVER);
    }

    #[test]
    fn packs_and_unpacks() {
        for (g, k, v) in [
            (0usize, 0usize, 0usize),
            (1, 2, 3),
            (127, 127, 0),
            (128, 1, 9),
            (127, 128, 5),
            (300, 20_000, 70_000),
        ] {
            let (gb, kb, vb) = (vec![1u8; g], vec![2u8; k], vec![3u8; v]);
            let data = pack(&gb, &kb, &[&vb]);
            assert_eq!(data.len(), packed_len(g, k, v));
            assert_eq!(parts(&data), (&gb[..], &kb[..], &vb[..]));
        }
    }
}
