//! `CLIENT KILL`'s arguments, read as Redis 7.0 reads them: the old form `CLIENT KILL addr:port`
//! and the filters `ID`, `TYPE`, `ADDR`, `LADDR`, `USER`, `SKIPME`, with Redis's error texts.

use bytes::Bytes;

use super::describe::ClientType;
use super::table::{Client, Registry};

/// What a `CLIENT KILL` selects.
#[derive(Debug, Default)]
pub struct KillFilter {
    /// The old form: one address, an error when nobody matches.
    pub old_form: bool,
    pub id: Option<u64>,
    pub kind: Option<ClientType>,
    pub addr: Option<Bytes>,
    pub laddr: Option<Bytes>,
    pub user: Option<Bytes>,
    /// Whether the caller spares itself (the default for the filter form).
    pub skip_me: bool,
}

impl KillFilter {
    /// Parses the arguments after `CLIENT KILL`; `Err` is the error reply's text.
    pub fn parse(args: &[Bytes], registry: &Registry) -> Result<KillFilter, String> {
        if args.len() == 1 {
            return Ok(KillFilter {
                old_form: true,
                addr: Some(args[0].clone()),
                ..KillFilter::default()
            });
        }
        let mut f = KillFilter {
            skip_me: true,
            ..KillFilter::default()
        };
        let mut i = 0;
        while i < args.len() {
            let (opt, Some(value)) = (args[i].to_ascii_uppercase(), args.get(i + 1)) else {
                return Err("ERR syntax error".into());
            };
            match &opt[..] {
                b"ID" => {
                    let id = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|&n| n >= 1)
                        .ok_or("ERR client-id should be greater than 0")?;
                    f.id = Some(id as u64);
                }
                b"TYPE" => {
                    let kind = ClientType::parse(value).ok_or_else(|| {
                        format!(
                            "ERR Unknown client type '{}'",
                            String::from_utf8_lossy(value)
                        )
                    })?;
                    f.kind = Some(kind);
                }
                b"ADDR" => f.addr = Some(value.clone()),
                b"LADDR" => f.laddr = Some(value.clone()),
                b"USER" => {
                    let known = &value[..] == b"default"
                        || registry
                            .all()
                            .iter()
                            .any(|c| c.user().as_bytes() == &value[..]);
                    if !known {
                        return Err(format!(
                            "ERR No such user '{}'",
                            String::from_utf8_lossy(value)
                        ));
                    }
                    f.user = Some(value.clone());
                }
                b"SKIPME" => {
                    f.skip_me = if value.eq_ignore_ascii_case(b"yes") {
                        true
                    } else if value.eq_ignore_ascii_case(b"no") {
                        false
                    } else {
                        return Err("ERR syntax error".into());
                    };
                }
                _ => return Err("ERR syntax error".into()),
            }
            i += 2;
        }
        Ok(f)
    }

    /// Whether the filter selects `c` (the caller is `me`).
    pub fn matches(&self, c: &Client, me: u64) -> bool {
        if !self.old_form && self.skip_me && c.id == me {
            return false;
        }
        let same = |want: &Option<Bytes>, have: String| {
            want.as_ref().is_none_or(|w| w[..] == *have.as_bytes())
        };
        same(&self.addr, c.addr.to_string())
            && same(&self.laddr, c.laddr.to_string())
            && same(&self.user, c.user())
            && self.id.is_none_or(|id| id == c.id)
            && self.kind.is_none_or(|k| k == ClientType::of(c))
    }
}
