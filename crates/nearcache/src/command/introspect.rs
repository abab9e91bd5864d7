//! Reads a live Redis's `COMMAND` reply into owned values of the same shape as the generated
//! table, so that the table can be generated from a server and compared with one.
//!
//! Owns the parsing of `COMMAND`'s reply (RESP2 flat pairs or RESP3 maps). Never used on the
//! request path: the proxy answers from the checked-in table, not from what a server says.

use bytes::Bytes;
use resp::Frame;

use super::redis::{flag, key_flag, Begin, Find, KeySpec, RedisCommand};

/// One command as a live server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    /// Upper case; a subcommand's own word only.
    pub name: String,
    pub arity: i16,
    pub flags: u32,
    pub tips: Vec<String>,
    pub key_specs: Vec<KeySpecInfo>,
    pub subcommands: Vec<CommandInfo>,
}

/// A key specification with its keyword owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpecInfo {
    pub begin: BeginInfo,
    pub find: Find,
    pub flags: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginInfo {
    Index(i16),
    Keyword { keyword: String, startfrom: i16 },
    Unknown,
}

impl From<&RedisCommand> for CommandInfo {
    fn from(c: &RedisCommand) -> Self {
        CommandInfo {
            name: c.name.to_string(),
            arity: c.arity,
            flags: c.flags,
            tips: c.tips.iter().map(|t| t.to_string()).collect(),
            key_specs: c.key_specs.iter().map(KeySpecInfo::from).collect(),
            subcommands: c.subcommands.iter().map(CommandInfo::from).collect(),
        }
    }
}

impl From<&KeySpec> for KeySpecInfo {
    fn from(k: &KeySpec) -> Self {
        let begin = match k.begin {
            Begin::Index(i) => BeginInfo::Index(i),
            Begin::Keyword { keyword, startfrom } => BeginInfo::Keyword {
                keyword: keyword.to_string(),
                startfrom,
            },
            Begin::Unknown => BeginInfo::Unknown,
        };
        KeySpecInfo {
            begin,
            find: k.find,
            flags: k.flags,
        }
    }
}

/// Parses the reply to `COMMAND` (or `COMMAND INFO ...`): every command, sorted by name, each
/// with its subcommands sorted by name.
pub fn parse_command_reply(reply: &Frame) -> Result<Vec<CommandInfo>, String> {
    let mut out = items(reply, "COMMAND reply")?
        .iter()
        .filter(|c| !matches!(c, Frame::Null | Frame::NullArray | Frame::NullBulk))
        .map(|c| command(c, None))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn command(frame: &Frame, parent: Option<&str>) -> Result<CommandInfo, String> {
    let fields = items(frame, "command")?;
    let full = text(fields.first().ok_or("empty command entry")?)?.to_ascii_uppercase();
    let name = match parent {
        Some(p) => full
            .strip_prefix(&format!("{p}|"))
            .ok_or_else(|| format!("subcommand {full} not under {p}"))?
            .to_string(),
        None => full.clone(),
    };
    let at = |i: usize| fields.get(i).ok_or(format!("{full}: entry {i} missing"));
    let arity = match at(1)? {
        Frame::Integer(n) => i16::try_from(*n).map_err(|_| format!("{full}: arity {n}"))?,
        other => return Err(format!("{full}: arity is {other:?}")),
    };
    let flags = words(at(2)?)?
        .iter()
        .map(|w| bit(flag::NAMES, w).ok_or_else(|| format!("{full}: unknown flag {w}")))
        .sum::<Result<u32, String>>()?;
    let tips = match fields.get(7) {
        Some(f) => words(f)?,
        None => Vec::new(),
    };
    let key_specs = match fields.get(8) {
        Some(f) => items(f, "key specs")?
            .iter()
            .map(|s| key_spec(s).map_err(|e| format!("{full}: {e}")))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mut subcommands = match fields.get(9) {
        Some(f) => items(f, "subcommands")?
            .iter()
            .map(|s| command(s, Some(&full)))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    subcommands.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(CommandInfo {
        name,
        arity,
        flags,
        tips,
        key_specs,
        subcommands,
    })
}

fn key_spec(frame: &Frame) -> Result<KeySpecInfo, String> {
    let fields = pairs(frame)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .ok_or(format!("key spec without {name}"))
    };
    let flags = words(field("flags")?)?
        .iter()
        .map(|w| bit(key_flag::NAMES, w).ok_or_else(|| format!("unknown key flag {w}")))
        .sum::<Result<u16, String>>()?;
    let begin = field("begin_search")?;
    let (kind, spec) = typed(begin)?;
    let begin = match kind.as_str() {
        "index" => BeginInfo::Index(int(&spec, "index")?),
        "keyword" => BeginInfo::Keyword {
            keyword: spec
                .iter()
                .find(|(k, _)| k == "keyword")
                .map(|(_, v)| text(v))
                .ok_or("keyword without keyword")??
                .to_string(),
            startfrom: int(&spec, "startfrom")?,
        },
        "unknown" => BeginInfo::Unknown,
        other => return Err(format!("unknown begin_search type {other}")),
    };
    let (kind, spec) = typed(field("find_keys")?)?;
    let find = match kind.as_str() {
        "range" => Find::Range {
            lastkey: int(&spec, "lastkey")?,
            keystep: int(&spec, "keystep")?,
            limit: int(&spec, "limit")?,
        },
        "keynum" => Find::Keynum {
            keynumidx: int(&spec, "keynumidx")?,
            firstkey: int(&spec, "firstkey")?,
            keystep: int(&spec, "keystep")?,
        },
        "unknown" => Find::Unknown,
        other => return Err(format!("unknown find_keys type {other}")),
    };
    Ok(KeySpecInfo { begin, find, flags })
}

/// Named fields of a map-like reply.
type Fields<'a> = Vec<(String, &'a Frame)>;

/// `{type: T, spec: {...}}` of a begin_search or find_keys.
fn typed(frame: &Frame) -> Result<(String, Fields<'_>), String> {
    let fields = pairs(frame)?;
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let kind = text(get("type").ok_or("no type")?)?.to_string();
    let spec = match get("spec") {
        Some(s) => pairs(s)?,
        None => Vec::new(),
    };
    Ok((kind, spec))
}

fn int(spec: &Fields<'_>, name: &str) -> Result<i16, String> {
    match spec.iter().find(|(k, _)| k == name).map(|(_, v)| *v) {
        Some(Frame::Integer(n)) => i16::try_from(*n).map_err(|_| format!("{name} out of range")),
        other => Err(format!("{name} is {other:?}")),
    }
}

fn bit<T: Copy>(names: &[(T, &str)], word: &str) -> Option<T> {
    names
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(word))
        .map(|(b, _)| *b)
}

fn items<'a>(frame: &'a Frame, what: &str) -> Result<&'a [Frame], String> {
    match frame {
        Frame::Array(v) | Frame::Set(v) => Ok(v),
        other => Err(format!("{what} is not an array: {other:?}")),
    }
}

/// Key/value pairs, from a RESP3 map or a RESP2 flat array.
fn pairs(frame: &Frame) -> Result<Fields<'_>, String> {
    match frame {
        Frame::Map(m) => m
            .iter()
            .map(|(k, v)| Ok((text(k)?.to_string(), v)))
            .collect(),
        Frame::Array(v) if v.len() % 2 == 0 => v
            .chunks(2)
            .map(|kv| Ok((text(&kv[0])?.to_string(), &kv[1])))
            .collect(),
        other => Err(format!("not a map: {other:?}")),
    }
}

fn words(frame: &Frame) -> Result<Vec<String>, String> {
    items(frame, "word list")?
        .iter()
        .map(|w| text(w).map(str::to_string))
        .collect()
}

fn text(frame: &Frame) -> Result<&str, String> {
    let bytes: &Bytes = match frame {
        Frame::Bulk(b) | Frame::Simple(b) | Frame::Verbatim(b) => b,
        other => return Err(format!("not a string: {other:?}")),
    };
    std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_resp2_command_entry() {
        let mut buf = bytes::BytesMut::from(
            &b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
               *0\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$6\r\naccess\r\n\
               $12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n\
               *2\r\n$5\r\nindex\r\n:1\r\n\
               $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n\
               *6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n\
               *0\r\n"[..],
        );
        let frame = resp::parse_frame(&mut buf, &resp::Limits::default())
            .unwrap()
            .unwrap();
        let parsed = parse_command_reply(&frame).unwrap();
        assert_eq!(
            parsed,
            vec![CommandInfo {
                name: "GET".into(),
                arity: 2,
                flags: flag::READONLY | flag::FAST,
                tips: vec![],
                key_specs: vec![KeySpecInfo {
                    begin: BeginInfo::Index(1),
                    find: Find::Range {
                        lastkey: 0,
                        keystep: 1,
                        limit: 0
                    },
                    flags: key_flag::RO | key_flag::ACCESS,
                }],
                subcommands: vec![],
            }]
        );
    }

    #[test]
    fn unknown_flags_are_errors_not_silence() {
        let mut buf = bytes::BytesMut::from(
            &b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+shiny\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n"[..],
        );
        let frame = resp::parse_frame(&mut buf, &resp::Limits::default())
            .unwrap()
            .unwrap();
        let err = parse_command_reply(&frame).unwrap_err();
        assert!(err.contains("unknown flag shiny"), "{err}");
    }
}
