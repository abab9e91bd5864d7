//! What a captured command does to its keys' time to live: SET EX/PX/EXAT/PXAT, SETEX,
//! PSETEX, GETEX, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT set one; PERSIST, a plain SET, GETSET,
//! DEL, UNLINK and GETDEL end it; everything else (INCR, LPUSH, SET KEEPTTL...) keeps it, as
//! Redis does.
//!
//! Reads arguments only; never fails: an argument that does not parse as Redis would accept
//! it means the command failed in Redis too, and is taken to change nothing.

use bytes::Bytes;

/// A command's effect on the TTL of the keys it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlChange {
    /// Leaves it as it was.
    Keep,
    /// The keys no longer expire (or no longer exist).
    Clear,
    /// The keys expire this many milliseconds after the command.
    Set(u64),
}

fn number(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// A relative or absolute deadline in seconds or milliseconds, as ms from `now_ms` (an
/// absolute one in the past: expires at once, 1 ms).
fn deadline(unit: &[u8], value: &[u8], now_ms: u64) -> Option<TtlChange> {
    let n = number(value)?;
    let ms = match unit.to_ascii_uppercase().as_slice() {
        b"EX" => n.checked_mul(1000)?,
        b"PX" => n,
        b"EXAT" => n.checked_mul(1000)?.saturating_sub(now_ms as i64),
        b"PXAT" => n.saturating_sub(now_ms as i64),
        _ => return None,
    };
    Some(TtlChange::Set(ms.max(1) as u64))
}

/// What `args` (name first) do to their keys' TTL, at capture time `now_ms` (ms since the
/// epoch, for the absolute forms).
pub fn ttl_change(name: &str, args: &[Bytes], now_ms: u64) -> TtlChange {
    let arg = |i: usize| args.get(i).map(|a| &a[..]);
    let found = match name {
        "set" => Some(set_options(args.get(3..).unwrap_or(&[]), now_ms)),
        "setex" => arg(2).and_then(|v| deadline(b"EX", v, now_ms)),
        "psetex" => arg(2).and_then(|v| deadline(b"PX", v, now_ms)),
        "expire" => arg(2).and_then(|v| deadline(b"EX", v, now_ms)),
        "pexpire" => arg(2).and_then(|v| deadline(b"PX", v, now_ms)),
        "expireat" => arg(2).and_then(|v| deadline(b"EXAT", v, now_ms)),
        "pexpireat" => arg(2).and_then(|v| deadline(b"PXAT", v, now_ms)),
        "getex" => getex_options(args.get(2..).unwrap_or(&[]), now_ms),
        "persist" | "getset" | "del" | "unlink" | "getdel" => Some(TtlChange::Clear),
        _ => None,
    };
    found.unwrap_or(TtlChange::Keep)
}

/// SET's options after the value: EX/PX/EXAT/PXAT set, KEEPTTL keeps, neither clears.
fn set_options(opts: &[Bytes], now_ms: u64) -> TtlChange {
    let mut i = 0;
    while i < opts.len() {
        let o = opts[i].to_ascii_uppercase();
        match o.as_slice() {
            b"KEEPTTL" => return TtlChange::Keep,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                return opts
                    .get(i + 1)
                    .and_then(|v| deadline(&o, v, now_ms))
                    .unwrap_or(TtlChange::Keep)
            }
            _ => i += 1,
        }
    }
    TtlChange::Clear
}

fn getex_options(opts: &[Bytes], now_ms: u64) -> Option<TtlChange> {
    let o = opts.first()?.to_ascii_uppercase();
    match o.as_slice() {
        b"PERSIST" => Some(TtlChange::Clear),
        _ => deadline(&o, opts.get(1)?, now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(words: &str, now_ms: u64) -> TtlChange {
        let args: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        ttl_change(
            &words.split(' ').next().unwrap().to_lowercase(),
            &args,
            now_ms,
        )
    }

    #[test]
    fn every_form_of_setting_a_ttl_is_read() {
        use TtlChange::*;
        assert_eq!(change("SET k v EX 10", 0), Set(10_000));
        assert_eq!(change("SET k v NX px 250", 0), Set(250));
        assert_eq!(change("SET k v EXAT 100", 40_000), Set(60_000));
        assert_eq!(change("SET k v PXAT 5", 40_000), Set(1));
        assert_eq!(change("SET k v KEEPTTL", 0), Keep);
        assert_eq!(change("SET k v", 0), Clear);
        assert_eq!(change("SET k v GET", 0), Clear);
        assert_eq!(change("SETEX k 3 v", 0), Set(3_000));
        assert_eq!(change("PSETEX k 30 v", 0), Set(30));
        assert_eq!(change("EXPIRE k 7 NX", 0), Set(7_000));
        assert_eq!(change("PEXPIRE k 70", 0), Set(70));
        assert_eq!(change("EXPIREAT k 2", 1_000), Set(1_000));
        assert_eq!(change("PEXPIREAT k 2500", 1_000), Set(1_500));
        assert_eq!(change("GETEX k EX 9", 0), Set(9_000));
        assert_eq!(change("GETEX k PERSIST", 0), Clear);
        assert_eq!(change("GETEX k", 0), Keep);
        assert_eq!(change("PERSIST k", 0), Clear);
        assert_eq!(change("DEL k", 0), Clear);
        assert_eq!(change("INCR k", 0), Keep);
        // What Redis refuses changes nothing.
        assert_eq!(change("SET k v EX ten", 0), Keep);
        assert_eq!(change("EXPIRE k", 0), Keep);
        assert_eq!(change("SETEX k", 0), Keep);
    }
}
