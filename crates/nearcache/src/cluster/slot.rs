//! Hash slots: CRC16 (the XMODEM variant of Redis's `crc16.c`) and the key → slot rule of
//! Redis's `keyHashSlot`, `{hash tags}` included.
//!
//! Owns the one definition of which slot a key lives in; routing, splitting and the slot map
//! all ask here. Pure arithmetic on bytes: never allocates, never fails, never looks at a
//! topology.

/// How many hash slots a Redis Cluster has.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection, no final XOR), the
/// checksum Redis Cluster hashes keys with. `crc16(b"123456789") == 0x31C3`.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The slot of `key`, as Redis computes it: if the key holds a `{` followed later by a `}`
/// with at least one byte between them, only the bytes between the first `{` and the first
/// `}` after it are hashed; otherwise the whole key is.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// The part of `key` that decides its slot (see [`key_slot`]).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        // `{}`: an empty tag does not count, the whole key is hashed.
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// The CRC16 lookup table, built at compile time from the polynomial.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_xmodem_check_value_and_redis_table_entries() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        // The first entries of the table in Redis's crc16.c.
        assert_eq!(&TABLE[..4], &[0x0000, 0x1021, 0x2042, 0x3063]);
        assert_eq!(TABLE[255], 0x1ef0);
    }

    #[test]
    fn slots_of_known_keys() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"123456789"), 0x31C3 & 0x3FFF);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
    }

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hash_tag(b"{user}.x"), b"user");
        assert_eq!(hash_tag(b"a{b}c{d}"), b"b");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}"); // empty first tag: whole key
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar"); // first '{', first '}' after it
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b"no tag"), b"no tag");
        assert_eq!(hash_tag(b"{\xff\x00}"), b"\xff\x00");
    }
}
