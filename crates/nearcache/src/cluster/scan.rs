//! `SCAN` over a cluster: one node after the other, with a cursor that names the node.
//!
//! The client's cursor is the node's cursor shifted left by [`NODE_BITS`], with the node's
//! place among the masters (in the map's order) in the low bits. `0` starts at the first
//! master; a node's `0` moves on to the next master; the last master's `0` is the client's `0`.
//! Redis's cursors stay far below 2^56 (they count buckets of the node's hash table), so a
//! cursor that would not fit is refused rather than cut.
//!
//! SCAN's guarantee holds per node: a key present on its node from start to end is returned.
//! If a slot changes master during the scan, its keys may be returned twice or missed, as with
//! a cluster client scanning node by node. Owns the cursor's encoding and the reply's rewriting;
//! never sends anything.

use resp::Frame;

/// Low bits of the client's cursor that hold the node's place: up to 256 masters.
pub const NODE_BITS: u32 = 8;
const MAX_NODES: usize = 1 << NODE_BITS;

/// The error a cursor that names no node gets (Redis's words for a bad cursor).
pub const INVALID_CURSOR: &str = "ERR invalid cursor";

/// The master to ask (its place among `masters`) and the cursor to give it, from the client's
/// cursor.
pub fn node_cursor(cursor: &[u8], masters: usize) -> Result<(usize, u64), &'static str> {
    if masters == 0 {
        return Err("CLUSTERDOWN The cluster is down");
    }
    if masters > MAX_NODES {
        return Err("ERR nearcache: SCAN over more than 256 masters is not supported");
    }
    let c: u64 = std::str::from_utf8(cursor)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(INVALID_CURSOR)?;
    let place = (c & (MAX_NODES as u64 - 1)) as usize;
    if place >= masters {
        return Err(INVALID_CURSOR);
    }
    Ok((place, c >> NODE_BITS))
}

/// The client's next cursor after the master at `place` answered `next`.
fn client_cursor(place: usize, next: u64, masters: usize) -> Option<u64> {
    if next == 0 {
        return Some(if place + 1 < masters {
            place as u64 + 1
        } else {
            0
        });
    }
    (next < 1 << (64 - NODE_BITS)).then_some(next << NODE_BITS | place as u64)
}

/// The client's reply from the reply of the master at `place`: its cursor replaced by the
/// client's next one. An error, or a reply not shaped as SCAN's, goes through as it is.
pub fn rewrite(reply: Frame, place: usize, masters: usize) -> Frame {
    let Frame::Array(mut parts) = reply else {
        return reply;
    };
    let next = match parts.first() {
        Some(Frame::Bulk(b)) if parts.len() == 2 => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok()),
        _ => None,
    };
    let Some(next) = next else {
        return Frame::Array(parts);
    };
    match client_cursor(place, next, masters) {
        Some(c) => {
            parts[0] = Frame::Bulk(c.to_string().into());
            Frame::Array(parts)
        }
        None => Frame::error("ERR nearcache: a node's SCAN cursor is too large to carry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(cursor: &str, keys: &[&str]) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(cursor.to_string().into()),
            Frame::Array(
                keys.iter()
                    .map(|k| Frame::Bulk(k.to_string().into()))
                    .collect(),
            ),
        ])
    }

    fn cursor_of(f: &Frame) -> String {
        match f {
            Frame::Array(p) => match &p[0] {
                Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scan_walks_every_master_in_turn() {
        // Three masters, each answering twice: 17 then 0.
        let mut cursor = b"0".to_vec();
        let mut visited = Vec::new();
        loop {
            let (place, c) = node_cursor(&cursor, 3).unwrap();
            visited.push((place, c));
            let next = if c == 0 { "17" } else { "0" };
            let out = rewrite(reply(next, &["k"]), place, 3);
            cursor = cursor_of(&out).into_bytes();
            if cursor == b"0" {
                break;
            }
        }
        assert_eq!(visited, [(0, 0), (0, 17), (1, 0), (1, 17), (2, 0), (2, 17)]);
    }

    #[test]
    fn bad_cursors_and_replies() {
        assert_eq!(node_cursor(b"x", 3), Err(INVALID_CURSOR));
        assert_eq!(node_cursor(b"-1", 3), Err(INVALID_CURSOR));
        assert_eq!(node_cursor(b"3", 3), Err(INVALID_CURSOR)); // a fourth master
        assert!(node_cursor(b"0", 0).is_err());
        assert!(node_cursor(b"0", 300).is_err());
        assert_eq!(node_cursor(b"5121", 3), Ok((1, 20)));
        // Errors and other shapes pass through; a cursor too large is refused, not cut.
        let err = Frame::error("ERR syntax error");
        assert_eq!(rewrite(err.clone(), 0, 3), err);
        let odd = Frame::Array(vec![Frame::Integer(1)]);
        assert_eq!(rewrite(odd.clone(), 0, 3), odd);
        let huge = rewrite(reply(&u64::MAX.to_string(), &[]), 0, 3);
        assert!(matches!(huge, Frame::Error(_)), "{huge:?}");
    }
}
