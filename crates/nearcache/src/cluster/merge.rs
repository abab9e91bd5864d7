//! The client's reply from the replies of a command's parts: a split command's parts
//! ([`merge_split`]) or a keyless command's fan-out ([`merge_fanout`]), in RESP2 or RESP3 alike
//! (elements are moved, never converted, so each keeps the type its node gave it).
//!
//! Owns reassembly only. A reply that does not fit what was asked (a part's array of the wrong
//! length, a count that is not an integer) becomes an error reply saying so, never a panic and
//! never a silently wrong answer.

use resp::Frame;

use super::keyless::Merge;
use super::split::{Split, SplitKind};

/// An `INFO` reply of a node as the proxy's: `cluster_enabled:0`, as the proxy stands for one
/// Redis (`CLUSTER ...` is refused as by a Redis without cluster support). Same length, so the
/// bulk or verbatim string's header stays true; any other reply as it is.
pub fn info_as_one_node(reply: bytes::Bytes) -> bytes::Bytes {
    const ON: &[u8] = b"cluster_enabled:1";
    let Some(at) = reply.windows(ON.len()).position(|w| w == ON) else {
        return reply;
    };
    let mut out = reply.to_vec();
    out[at + ON.len() - 1] = b'0';
    out.into()
}

fn unexpected(what: &str) -> Frame {
    Frame::error(format!(
        "ERR nearcache: unexpected reply from a cluster node ({what})"
    ))
}

fn first_error(replies: &[Frame]) -> Option<Frame> {
    replies.iter().find(|r| r.is_error()).cloned()
}

/// The client's reply to a split command from its parts' replies, one per part in
/// [`Split::parts`] order. A part that failed makes the whole reply that failure (the first,
/// in part order); for MSET the parts that succeeded stay written (MSET across slots is not
/// atomic).
pub fn merge_split(split: &Split, replies: Vec<Frame>) -> Frame {
    if replies.len() != split.parts.len() {
        return unexpected("a reply per part");
    }
    if let Some(e) = first_error(&replies) {
        return e;
    }
    match split.kind {
        SplitKind::Count => merge_fanout(Merge::Sum, replies),
        SplitKind::Mset => merge_fanout(Merge::AllOk, replies),
        SplitKind::Mget => {
            let mut out: Vec<Option<Frame>> = vec![None; split.keys];
            for (part, reply) in split.parts.iter().zip(replies) {
                let Frame::Array(items) = reply else {
                    return unexpected("MGET: not an array");
                };
                if items.len() != part.places.len() {
                    return unexpected("MGET: wrong number of values");
                }
                for (&place, item) in part.places.iter().zip(items) {
                    match out.get_mut(place) {
                        Some(slot) => *slot = Some(item),
                        None => return unexpected("MGET: key out of place"),
                    }
                }
            }
            match out.into_iter().collect::<Option<Vec<_>>>() {
                Some(items) => Frame::Array(items),
                None => unexpected("MGET: a key without a value"),
            }
        }
    }
}

fn is_null(f: &Frame) -> bool {
    matches!(f, Frame::Null | Frame::NullBulk | Frame::NullArray)
}

/// The client's reply to a command sent to several nodes, from their replies in node order.
pub fn merge_fanout(merge: Merge, replies: Vec<Frame>) -> Frame {
    if replies.is_empty() {
        return Frame::error("CLUSTERDOWN nearcache: no node to send the command to");
    }
    match merge {
        Merge::OneOk => {
            let ok = replies.iter().position(|r| !r.is_error()).unwrap_or(0);
            return replies.into_iter().nth(ok).unwrap_or(Frame::Null);
        }
        Merge::FirstNonNull => {
            if let Some(e) = first_error(&replies) {
                return e;
            }
            let found = replies.iter().position(|r| !is_null(r)).unwrap_or(0);
            return replies.into_iter().nth(found).unwrap_or(Frame::Null);
        }
        _ => {}
    }
    if let Some(e) = first_error(&replies) {
        return e;
    }
    match merge {
        Merge::Sum | Merge::Min => {
            let mut ints = Vec::with_capacity(replies.len());
            for r in &replies {
                match r {
                    Frame::Integer(i) => ints.push(*i),
                    _ => return unexpected("not an integer"),
                }
            }
            let v = if merge == Merge::Sum {
                ints.iter().fold(0i64, |a, b| a.saturating_add(*b))
            } else {
                ints.iter().copied().min().unwrap_or(0)
            };
            Frame::Integer(v)
        }
        Merge::AllOk => replies.into_iter().next().unwrap_or(Frame::Null),
        Merge::Concat => {
            let mut is_set = false;
            let mut all = Vec::new();
            for r in replies {
                match r {
                    Frame::Array(v) => all.extend(v),
                    Frame::Set(v) => {
                        is_set = true;
                        all.extend(v)
                    }
                    _ => return unexpected("not an array"),
                }
            }
            if is_set {
                Frame::Set(all)
            } else {
                Frame::Array(all)
            }
        }
        Merge::And => {
            let mut acc: Option<Vec<i64>> = None;
            for r in &replies {
                let Frame::Array(v) = r else {
                    return unexpected("not an array");
                };
                let mut ints = Vec::with_capacity(v.len());
                for f in v {
                    match f {
                        Frame::Integer(i) => ints.push(*i),
                        _ => return unexpected("not an integer"),
                    }
                }
                acc = Some(match acc {
                    None => ints,
                    Some(a) if a.len() == ints.len() => {
                        a.iter().zip(&ints).map(|(x, y)| (*x).min(*y)).collect()
                    }
                    Some(_) => return unexpected("arrays of different lengths"),
                });
            }
            Frame::Array(
                acc.unwrap_or_default()
                    .into_iter()
                    .map(Frame::Integer)
                    .collect(),
            )
        }
        Merge::OneOk | Merge::FirstNonNull => Frame::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn info_says_cluster_support_is_off_and_keeps_its_length() {
        let info = "# Cluster\r\ncluster_enabled:1\r\n";
        let resp2 = Bytes::from(format!("${}\r\n{info}\r\n", info.len()));
        let off = "# Cluster\r\ncluster_enabled:0\r\n";
        assert_eq!(
            info_as_one_node(resp2),
            Bytes::from(format!("${}\r\n{off}\r\n", off.len()))
        );
        let resp3 = Bytes::from(format!("={}\r\ntxt:{info}\r\n", info.len() + 4));
        assert_eq!(
            info_as_one_node(resp3),
            Bytes::from(format!("={}\r\ntxt:{off}\r\n", off.len() + 4))
        );
        let err = Bytes::from_static(b"-ERR nope\r\n");
        assert_eq!(info_as_one_node(err.clone()), err);
    }
}
