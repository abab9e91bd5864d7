//! How the client table reads: one `CLIENT LIST` line per client, in Redis's field order, and
//! the `# Clients` section of `INFO` with the proxy's own counts.
//!
//! Fields the proxy cannot know exactly are given as Redis gives them for an idle client:
//! buffer sizes (`qbuf` is the command being run, for the client that runs it), `events=r`.

use std::fmt::Write as _;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::table::{Client, Registry, SubKind};

/// `CLIENT LIST [TYPE t] [ID id ...]`, parsed.
pub enum ListFilter {
    All,
    Type(ClientType),
    Ids(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Replica,
    Master,
    PubSub,
}

impl ClientType {
    /// Redis's names (`slave` and `replica` are the same).
    pub fn parse(name: &[u8]) -> Option<ClientType> {
        let lower = name.to_ascii_lowercase();
        Some(match &lower[..] {
            b"normal" => ClientType::Normal,
            b"slave" | b"replica" => ClientType::Replica,
            b"master" => ClientType::Master,
            b"pubsub" => ClientType::PubSub,
            _ => return None,
        })
    }

    pub fn of(c: &Client) -> ClientType {
        if c.is_pubsub() {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }
}

impl Client {
    fn is_pubsub(&self) -> bool {
        [SubKind::Channel, SubKind::Pattern, SubKind::Shard]
            .iter()
            .any(|&k| self.subs(k) > 0)
    }
}

/// One `CLIENT LIST` line (no line ending). `qbuf` is the size of the command the client is
/// running, for the client asking; 0 for the others.
pub fn line(c: &Client, registry: &Registry, qbuf: usize, now: Instant) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let age = now.saturating_duration_since(c.created).as_secs();
    let idle = registry
        .clock
        .now()
        .saturating_sub(c.idle_since_ms.load(Relaxed))
        / 1000;
    let tracking = c.tracking();
    let mut flags = String::new();
    if c.is_pubsub() {
        flags.push('P');
    }
    let multi = c.multi.load(Relaxed);
    if multi >= 0 {
        flags.push('x');
    }
    if c.blocked.load(Relaxed) {
        flags.push('b');
    }
    if tracking.on {
        flags.push('t');
        if registry.redirect_broken(&tracking) {
            flags.push('R');
        }
        if tracking.bcast {
            flags.push('B');
        }
    }
    if c.no_evict.load(Relaxed) {
        flags.push('e');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let cmd = crate::command::full_name_of(c.cmd.load(Relaxed))
        .map_or_else(|| "NULL".to_string(), |n| n.to_ascii_lowercase());
    let name = c.name();
    let mut out = String::with_capacity(320);
    let _ = write!(
        out,
        "id={} addr={} laddr={} fd={} name={} age={age} idle={idle} flags={flags} db={} \
         sub={} psub={} ssub={} multi={multi} qbuf={qbuf} qbuf-free=0 argv-mem=0 \
         multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user={} \
         redir={} resp={}",
        c.id,
        c.addr,
        c.laddr,
        c.fd,
        String::from_utf8_lossy(&name),
        c.db(),
        c.subs(SubKind::Channel),
        c.subs(SubKind::Pattern),
        c.subs(SubKind::Shard),
        c.user(),
        tracking.redirect_field(),
        c.proto.load(Relaxed),
    );
    out
}

/// `INFO`'s reply with the fields of its `# Clients` section that describe clients replaced by
/// the proxy's own: `connected_clients`, `maxclients`, `tracking_clients`. `blocked_clients`
/// and `clients_in_timeout_table` stay Redis's: only clients' dedicated connections block.
/// Other sections are left as Redis wrote them; a reply without the section is unchanged.
pub fn info_clients(frame: &[u8], registry: &Registry, max_clients: usize) -> Option<Bytes> {
    // `$<len>\r\n<payload>\r\n`, or RESP3's verbatim `=<len>\r\ntxt:<payload>\r\n`.
    let kind = *frame.first().filter(|k| matches!(k, b'$' | b'='))?;
    let header = frame.iter().position(|&b| b == b'\n')? + 1;
    let payload = frame.get(header..frame.len().checked_sub(2)?)?;
    let patched = patch(payload, registry, max_clients)?;
    let mut out = BytesMut::with_capacity(patched.len() + 16);
    resp::header(&mut out, kind, patched.len());
    out.extend_from_slice(patched.as_bytes());
    out.extend_from_slice(b"\r\n");
    Some(out.freeze())
}

fn patch(payload: &[u8], registry: &Registry, max_clients: usize) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find("# Clients\r\n")?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    let rest = &text[start..];
    let end = rest.find("\r\n\r\n").map_or(rest.len(), |i| i + 2);
    for line in rest[..end].split_inclusive("\r\n") {
        let field = line.split(':').next().unwrap_or("");
        match field {
            "connected_clients" => {
                let _ = write!(out, "connected_clients:{}\r\n", registry.len());
            }
            "maxclients" => {
                let _ = write!(out, "maxclients:{max_clients}\r\n");
            }
            "tracking_clients" => {
                let _ = write!(out, "tracking_clients:{}\r\n", registry.tracking_clients());
            }
            _ => out.push_str(line),
        }
    }
    out.push_str(&rest[end..]);
    Some(out)
}
