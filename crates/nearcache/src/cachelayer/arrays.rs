//! Array replies taken apart and put together, element by element, as raw bytes: how an MGET
//! of the missing keys is merged with the hits.
//!
//! Owns nothing but the encoding; never allocates per element beyond the `Bytes` views.

use bytes::{BufMut, Bytes, BytesMut};

/// The elements of an array reply, each as its raw bytes; `None` for anything else.
pub fn split_array(reply: &Bytes) -> Option<Vec<Bytes>> {
    let limits = resp::Limits::UNBOUNDED;
    let header_end = reply.iter().position(|&b| b == b'\n')? + 1;
    let count: usize = std::str::from_utf8(reply.get(1..header_end - 2)?)
        .ok()?
        .parse()
        .ok()?;
    if reply.first() != Some(&b'*') {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    let mut pos = header_end;
    for _ in 0..count {
        let len = resp::scan(&reply[pos..], &limits).ok()??;
        items.push(reply.slice(pos..pos + len));
        pos += len;
    }
    (pos == reply.len()).then_some(items)
}

/// An array reply from its elements' raw bytes.
pub fn join_array(items: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    put_array(&mut out, items.len(), items.iter());
    out.freeze()
}

/// Appends an array reply of these `n` elements' raw bytes to `out`.
pub fn put_array<'a>(out: &mut BytesMut, n: usize, items: impl Iterator<Item = &'a Bytes> + Clone) {
    let len: usize = items.clone().map(Bytes::len).sum();
    out.reserve(len + 16);
    resp::header(out, b'*', n);
    for item in items {
        out.put_slice(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins_arrays() {
        let reply = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n");
        let items = split_array(&reply).unwrap();
        assert_eq!(items, vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"_\r\n"]);
        assert_eq!(join_array(&items), reply);
        assert!(split_array(&Bytes::from_static(b"-ERR x\r\n")).is_none());
        assert!(split_array(&Bytes::from_static(b"*2\r\n$1\r\na\r\n")).is_none());
    }
}
