//! The error replies a cluster node answers instead of running a command: `MOVED`, `ASK`,
//! `TRYAGAIN`, `CLUSTERDOWN`, `CROSSSLOT`, read into a typed [`ClusterError`].
//!
//! Owns the reading of those replies' text and the proxy's own `CROSSSLOT` reply. Never
//! decides what to do about one (retry, refresh the map): that is the router's business. A
//! reply it does not recognise, or a redirect whose slot or address is malformed, is `None`:
//! the caller passes it on to the client as Redis sent it.

/// Redis's own reply to a command whose keys are in different slots.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// A node's address in a redirect: `host:port`, with `host` empty when the node does not know
/// its own address (`MOVED 3999 :6380`), which means the host of the node that replied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// `host:port` (IPv6 hosts in brackets), with `origin` standing for an empty host.
    pub fn resolve(&self, origin: &str) -> String {
        let host = if self.host.is_empty() {
            origin
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Reads `host:port`, `[v6]:port` or `v6:port` (the last colon separates the port).
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Some(NodeAddr {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

/// What a cluster node said instead of running the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// The slot lives on another node for good: update the map, send there.
    Moved { slot: u16, addr: NodeAddr },
    /// The slot is being migrated and this key is already on the target: send `ASKING` and the
    /// command there, once, without updating the map.
    Ask { slot: u16, addr: NodeAddr },
    /// A multi-key command during a slot's migration, with its keys split between the two
    /// nodes: retry later.
    TryAgain,
    /// The cluster (or this slot) is not served right now; the text says why.
    ClusterDown(String),
    /// The command's keys are not in one slot.
    CrossSlot,
}

impl ClusterError {
    /// Reads an error reply's text (without the leading `-` and the CRLF; a RESP3 bulk error's
    /// payload). `None` for any other error, or a malformed redirect.
    pub fn parse(text: &[u8]) -> Option<ClusterError> {
        let text = std::str::from_utf8(text).ok()?.trim_end();
        let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
        match code {
            "MOVED" | "ASK" => {
                let mut words = rest.split(' ');
                let slot: u16 = words.next()?.parse().ok()?;
                let addr = NodeAddr::parse(words.next()?)?;
                if usize::from(slot) >= super::slot::SLOTS || words.next().is_some() {
                    return None;
                }
                Some(if code == "MOVED" {
                    ClusterError::Moved { slot, addr }
                } else {
                    ClusterError::Ask { slot, addr }
                })
            }
            "TRYAGAIN" => Some(ClusterError::TryAgain),
            "CLUSTERDOWN" => Some(ClusterError::ClusterDown(rest.to_string())),
            "CROSSSLOT" => Some(ClusterError::CrossSlot),
            _ => None,
        }
    }

    /// Reads a whole reply frame's bytes (`-MOVED ...\r\n` or `!len\r\nMOVED ...\r\n`).
    pub fn from_reply(reply: &[u8]) -> Option<ClusterError> {
        match reply.first()? {
            b'-' => Self::parse(reply.get(1..)?),
            b'!' => {
                let start = reply.iter().position(|&b| b == b'\n')? + 1;
                Self::parse(reply.get(start..)?)
            }
            _ => None,
        }
    }

    /// Whether the same command may be sent again as it is (after a delay).
    pub fn retry_later(&self) -> bool {
        matches!(self, ClusterError::TryAgain | ClusterError::ClusterDown(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn redirects_are_read_with_slot_and_address() {
        assert_eq!(
            ClusterError::parse(b"MOVED 12182 127.0.0.1:31003"),
            Some(ClusterError::Moved {
                slot: 12182,
                addr: addr("127.0.0.1", 31003)
            })
        );
        assert_eq!(
            ClusterError::from_reply(b"-ASK 1 ::1:7000\r\n"),
            Some(ClusterError::Ask {
                slot: 1,
                addr: addr("::1", 7000)
            })
        );
        assert_eq!(
            ClusterError::from_reply(b"!21\r\nMOVED 3999 [::1]:7000\r\n"),
            Some(ClusterError::Moved {
                slot: 3999,
                addr: addr("::1", 7000)
            })
        );
        let unknown_host = ClusterError::parse(b"MOVED 3999 :6380").unwrap();
        let ClusterError::Moved { addr, .. } = unknown_host else {
            panic!("not a MOVED");
        };
        assert_eq!(addr.resolve("10.0.0.1"), "10.0.0.1:6380");
        assert_eq!(
            NodeAddr::parse("::1:7000").unwrap().resolve(""),
            "[::1]:7000"
        );
    }

    #[test]
    fn the_other_cluster_errors_are_typed() {
        let e = ClusterError::parse(b"TRYAGAIN Multiple keys request during rehashing of slot");
        assert_eq!(e, Some(ClusterError::TryAgain));
        assert!(e.unwrap().retry_later());
        assert_eq!(
            ClusterError::parse(b"CLUSTERDOWN Hash slot not served"),
            Some(ClusterError::ClusterDown("Hash slot not served".into()))
        );
        assert_eq!(
            ClusterError::parse(CROSSSLOT.as_bytes()),
            Some(ClusterError::CrossSlot)
        );
    }

    #[test]
    fn malformed_or_foreign_errors_are_none() {
        for bad in [
            &b"MOVED"[..],
            b"MOVED 16384 127.0.0.1:1",
            b"MOVED -1 127.0.0.1:1",
            b"MOVED x 127.0.0.1:1",
            b"MOVED 1 127.0.0.1",
            b"MOVED 1 127.0.0.1:99999",
            b"MOVED 1 127.0.0.1:1 extra",
            b"ASK 1",
            b"ERR unknown command",
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(
                ClusterError::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(ClusterError::from_reply(b"+OK\r\n"), None);
        assert_eq!(ClusterError::from_reply(b""), None);
        assert_eq!(ClusterError::from_reply(b"!5"), None);
    }
}
