//! Tests of the routing plan, and the property that splitting a command per slot and merging
//! the parts' replies gives the reply of the unsplit command (on a model of Redis's strings).

use bytes::Bytes;
use hashbrown::HashMap;
use proptest::prelude::*;
use resp::Frame;

use super::*;
use crate::cluster::keyless::Merge;
use crate::cluster::merge::{merge_fanout, merge_split};
use crate::cluster::topology::{Health, Node, Shard};
use crate::command::{cmd, lookup};

fn plan_of(args: &[Bytes]) -> Plan {
    plan(lookup(&args[0]).resolve(args), args)
}

fn of(line: &str) -> Plan {
    plan_of(&cmd(line))
}

#[test]
fn keys_in_one_slot_go_to_it() {
    assert_eq!(of("GET foo"), Plan::Slot(12182));
    assert_eq!(of("MGET {t}a {t}b"), Plan::Slot(key_slot(b"t")));
    assert_eq!(of("SUNIONSTORE {t}d {t}a {t}b"), Plan::Slot(key_slot(b"t")));
    assert_eq!(of("EVAL s 2 {t}a {t}b x y"), Plan::Slot(key_slot(b"t")));
    assert_eq!(
        of("MOVE foo 1"),
        Plan::Slot(12182),
        "the node answers MOVE's refusal"
    );
}

#[test]
fn commands_needing_one_slot_are_refused_with_redis_words() {
    for line in [
        "SUNIONSTORE a b c",
        "EVAL s 2 a b",
        "RENAME a b",
        "MSETNX a 1 b 2",
        "WATCH a b",
    ] {
        assert_eq!(of(line), Plan::Refuse(CROSSSLOT), "{line}");
    }
}

#[test]
fn bad_calls_go_to_any_node_for_redis_s_own_error() {
    for line in ["GET", "GET a b", "MSET a 1 b", "MGET"] {
        assert_eq!(of(line), Plan::Keyless(Keyless::AnyNode), "{line}");
    }
}

#[test]
fn multi_key_commands_split_per_slot_in_client_order() {
    let Plan::Split(s) = of("MSET a 1 b 2 {a}x 3 c 4") else {
        panic!("not split");
    };
    assert_eq!(s.kind, SplitKind::Mset);
    assert_eq!(s.keys, 4);
    let slots: Vec<u16> = s.parts.iter().map(|p| p.slot).collect();
    assert_eq!(slots, [key_slot(b"a"), key_slot(b"b"), key_slot(b"c")]);
    assert_eq!(s.parts[0].args, cmd("MSET a 1 {a}x 3"));
    assert_eq!(s.parts[0].places, [0, 2]);
    for name in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
        let Plan::Split(s) = of(&format!("{name} a b a")) else {
            panic!("{name} not split");
        };
        assert_eq!(s.kind, SplitKind::Count);
        assert_eq!(s.parts[0].args, cmd(&format!("{name} a a")));
    }
}

#[test]
fn channels_decide_a_shard_command_s_slot() {
    let args = cmd("SSUBSCRIBE {c}1 {c}2");
    let spec = lookup(b"SSUBSCRIBE");
    assert_eq!(channel_slot(spec, &args), Ok(Some(key_slot(b"c"))));
    assert_eq!(channel_slot(spec, &cmd("SSUBSCRIBE a b")), Err(CROSSSLOT));
    let publish = cmd("SPUBLISH foo msg");
    assert_eq!(channel_slot(lookup(b"SPUBLISH"), &publish), Ok(Some(12182)));
}

#[test]
fn parts_are_grouped_by_the_master_of_their_slot() {
    let mut t = Topology::default();
    let node = |port| Node {
        id: String::new(),
        host: "h".into(),
        port,
        health: Health::Online,
    };
    t.add_shard(
        Shard {
            master: node(1),
            replicas: vec![],
        },
        &[(0, 8191)],
    )
    .unwrap();
    t.add_shard(
        Shard {
            master: node(2),
            replicas: vec![],
        },
        &[(8192, 12000)],
    )
    .unwrap();
    // foo: 12182 unassigned; bar: 5061 on 1; baz: 4813 on 1; a: 15495 unassigned; c: 7365 on 1
    let Plan::Split(s) = of("MGET foo bar hello baz") else {
        panic!("not split");
    };
    let groups = s.by_node(&t);
    let addr = |p: u16| Some(format!("h:{p}"));
    let slot_of = |i: usize| s.parts[i].slot;
    for (a, parts) in &groups {
        for &i in parts {
            assert_eq!(t.master(slot_of(i)).map(|m| m.addr()), *a);
        }
    }
    assert!(groups.iter().any(|(a, _)| *a == addr(1)));
    assert!(
        groups.iter().any(|(a, _)| a.is_none()),
        "foo's slot has no node"
    );
    let total: usize = groups.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(total, s.parts.len());
}

#[test]
fn a_failed_part_fails_the_reply_and_odd_shapes_are_errors() {
    let Plan::Split(s) = of("MGET a b") else {
        panic!("not split");
    };
    let err = Frame::error("MOVED 1 h:1");
    let ok = Frame::Array(vec![Frame::bulk("v")]);
    assert_eq!(merge_split(&s, vec![ok.clone(), err.clone()]), err);
    let odd = merge_split(&s, vec![ok.clone(), Frame::Integer(1)]);
    assert!(odd.is_error());
    let short = merge_split(&s, vec![ok.clone(), Frame::Array(vec![])]);
    assert!(short.is_error());
    assert!(merge_split(&s, vec![ok]).is_error());
    assert_eq!(
        merge_fanout(Merge::Sum, vec![Frame::Integer(2), Frame::Integer(3)]),
        Frame::Integer(5)
    );
    assert!(merge_fanout(Merge::Sum, vec![Frame::bulk("x")]).is_error());
    assert!(merge_fanout(Merge::AllOk, vec![]).is_error());
    assert_eq!(
        merge_fanout(Merge::OneOk, vec![err.clone(), Frame::simple("OK")]),
        Frame::simple("OK")
    );
    let and = merge_fanout(
        Merge::And,
        vec![
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(1)]),
            Frame::Array(vec![Frame::Integer(0), Frame::Integer(1)]),
        ],
    );
    assert_eq!(
        and,
        Frame::Array(vec![Frame::Integer(0), Frame::Integer(1)])
    );
    let first = merge_fanout(Merge::FirstNonNull, vec![Frame::Null, Frame::bulk("k")]);
    assert_eq!(first, Frame::bulk("k"));
    let keys = merge_fanout(
        Merge::Concat,
        vec![
            Frame::Array(vec![Frame::bulk("a")]),
            Frame::Array(vec![Frame::bulk("b")]),
        ],
    );
    assert_eq!(keys, Frame::Array(vec![Frame::bulk("a"), Frame::bulk("b")]));
}

/// Redis's string commands on a map: enough to say what the unsplit command replies.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    data: HashMap<Bytes, Bytes>,
    resp3: bool,
}

impl Model {
    fn run(&mut self, args: &[Bytes]) -> Frame {
        let keys = &args[1..];
        match &args[0][..] {
            b"MGET" => Frame::Array(
                keys.iter()
                    .map(|k| match self.data.get(k) {
                        Some(v) => Frame::Bulk(v.clone()),
                        None if self.resp3 => Frame::Null,
                        None => Frame::NullBulk,
                    })
                    .collect(),
            ),
            b"MSET" => {
                for kv in keys.chunks_exact(2) {
                    self.data.insert(kv[0].clone(), kv[1].clone());
                }
                Frame::simple("OK")
            }
            b"DEL" | b"UNLINK" => Frame::Integer(
                keys.iter()
                    .filter(|k| self.data.remove(*k).is_some())
                    .count() as i64,
            ),
            _ => Frame::Integer(keys.iter().filter(|k| self.data.contains_key(*k)).count() as i64),
        }
    }
}

/// Keys from a small pool, some sharing a hash tag, so that calls repeat keys and mix slots.
fn key() -> impl Strategy<Value = Bytes> {
    (0u8..6, 0u8..4).prop_map(|(tag, n)| match tag {
        0 => Bytes::from(format!("k{n}")),
        t => Bytes::from(format!("{{t{t}}}k{n}")),
    })
}

fn call() -> impl Strategy<Value = Vec<Bytes>> {
    let names = prop_oneof![
        Just("MGET"),
        Just("MSET"),
        Just("DEL"),
        Just("UNLINK"),
        Just("EXISTS"),
        Just("TOUCH")
    ];
    (names, prop::collection::vec((key(), 0u8..3), 1..12)).prop_map(|(name, keys)| {
        let mut args = vec![Bytes::from_static(name.as_bytes())];
        for (k, v) in keys {
            args.push(k);
            if name == "MSET" {
                args.push(Bytes::from(format!("v{v}")));
            }
        }
        args
    })
}

proptest! {
    #[test]
    fn split_then_merge_equals_the_unsplit_reply(
        stored in prop::collection::vec((key(), 0u8..3), 0..16),
        args in call(),
        resp3 in any::<bool>(),
    ) {
        let data = stored
            .into_iter()
            .map(|(k, v)| (k, Bytes::from(format!("s{v}"))))
            .collect();
        let model = Model { data, resp3 };
        let mut whole = model.clone();
        let expected = whole.run(&args);
        match plan_of(&args) {
            Plan::Slot(slot) => {
                for k in args[1..].iter().step_by(if &args[0][..] == b"MSET" { 2 } else { 1 }) {
                    prop_assert_eq!(key_slot(k), slot);
                }
            }
            Plan::Split(split) => {
                prop_assert!(split.parts.len() > 1);
                let mut parts = model.clone();
                let replies = split.parts.iter().map(|p| parts.run(&p.args)).collect();
                prop_assert_eq!(merge_split(&split, replies), expected);
                prop_assert_eq!(parts, whole, "the same writes happened");
            }
            other => prop_assert!(false, "unexpected plan {:?}", other),
        }
    }
}
