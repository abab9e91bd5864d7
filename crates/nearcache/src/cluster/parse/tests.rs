//! Tests of the `CLUSTER SHARDS` / `CLUSTER SLOTS` readers on hand-built replies in both
//! protocols, malformed ones, and random frames (which must never panic).

use proptest::prelude::*;
use resp::Frame;

use super::*;

fn b(s: &str) -> Frame {
    Frame::bulk(s.as_bytes().to_vec())
}

/// A map in RESP3, a flat array of pairs in RESP2.
fn map(resp3: bool, kv: Vec<(&str, Frame)>) -> Frame {
    if resp3 {
        Frame::Map(kv.into_iter().map(|(k, v)| (b(k), v)).collect())
    } else {
        Frame::Array(kv.into_iter().flat_map(|(k, v)| [b(k), v]).collect())
    }
}

fn shard_node(resp3: bool, port: i64, role: &str, health: &str) -> Frame {
    map(
        resp3,
        vec![
            ("id", b(&format!("{port:040}"))),
            ("port", Frame::Integer(port)),
            ("ip", b("127.0.0.1")),
            ("endpoint", b("127.0.0.1")),
            ("role", b(role)),
            ("replication-offset", Frame::Integer(182)),
            ("health", b(health)),
        ],
    )
}

const RANGES: [(i64, i64); 3] = [(10923, 16383), (5461, 10922), (0, 5460)];

fn shards(resp3: bool) -> Frame {
    Frame::Array(
        RANGES
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| {
                let port = 7002 - i as i64;
                map(
                    resp3,
                    vec![
                        (
                            "slots",
                            Frame::Array(vec![Frame::Integer(s), Frame::Integer(e)]),
                        ),
                        (
                            "nodes",
                            Frame::Array(vec![
                                shard_node(resp3, port + 3, "replica", "online"),
                                shard_node(resp3, port, "master", "online"),
                            ]),
                        ),
                    ],
                )
            })
            .collect(),
    )
}

fn slots(resp3: bool) -> Frame {
    let node = |port: i64| {
        let extra = if resp3 {
            Frame::Map(vec![])
        } else {
            Frame::Array(vec![])
        };
        Frame::Array(vec![
            b("127.0.0.1"),
            Frame::Integer(port),
            b(&format!("{port:040}")),
            extra,
        ])
    };
    Frame::Array(
        RANGES
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| {
                let port = 7002 - i as i64;
                Frame::Array(vec![
                    Frame::Integer(s),
                    Frame::Integer(e),
                    node(port),
                    node(port + 3),
                ])
            })
            .collect(),
    )
}

#[test]
fn shards_and_slots_in_both_protocols_give_one_map() {
    let expected = parse_shards(&shards(false), "x").unwrap();
    assert_eq!(expected.unassigned(), 0);
    assert_eq!(
        expected.ranges(),
        vec![
            (0, 5460, "127.0.0.1:7000".to_string()),
            (5461, 10922, "127.0.0.1:7001".to_string()),
            (10923, 16383, "127.0.0.1:7002".to_string()),
        ]
    );
    let shard = expected.shard(0).unwrap();
    assert_eq!(shard.master.id, format!("{:040}", 7000));
    assert_eq!(shard.replicas.len(), 1);
    assert_eq!(shard.replicas[0].port, 7003);
    assert_eq!(parse_shards(&shards(true), "x").unwrap(), expected);
    for resp3 in [false, true] {
        let from_slots = parse_slots(&slots(resp3), "x").unwrap();
        assert_eq!(from_slots.ranges(), expected.ranges());
        let ids = |t: &Topology| t.nodes().map(|n| n.id.clone()).collect::<Vec<_>>();
        let (mut a, mut e) = (ids(&from_slots), ids(&expected));
        a.sort();
        e.sort();
        assert_eq!(a, e);
    }
}

#[test]
fn unknown_endpoints_take_the_answering_host_and_old_servers_omit_ids() {
    let reply = Frame::Array(vec![Frame::Array(vec![
        Frame::Integer(0),
        Frame::Integer(16383),
        Frame::Array(vec![b("?"), Frame::Integer(7000)]),
        Frame::Array(vec![Frame::NullBulk, Frame::Integer(7001)]),
        Frame::Array(vec![b(""), Frame::Integer(7002)]),
    ])]);
    let t = parse_slots(&reply, "10.1.2.3").unwrap();
    let addrs: Vec<String> = t.nodes().map(|n| n.addr()).collect();
    assert_eq!(addrs, ["10.1.2.3:7000", "10.1.2.3:7001", "10.1.2.3:7002"]);
    assert_eq!(t.master(0).unwrap().id, "");
}

#[test]
fn shards_without_slots_or_master_are_skipped_and_health_is_kept() {
    let reply = Frame::Array(vec![
        map(
            false,
            vec![
                ("slots", Frame::Array(vec![])),
                (
                    "nodes",
                    Frame::Array(vec![shard_node(false, 7009, "master", "online")]),
                ),
            ],
        ),
        map(
            false,
            vec![
                (
                    "slots",
                    Frame::Array(vec![Frame::Integer(0), Frame::Integer(9)]),
                ),
                (
                    "nodes",
                    Frame::Array(vec![
                        shard_node(false, 7000, "master", "online"),
                        shard_node(false, 7003, "replica", "loading"),
                    ]),
                ),
                ("future-field", Frame::Integer(1)),
            ],
        ),
    ]);
    let t = parse_shards(&reply, "x").unwrap();
    assert_eq!(t.shards().count(), 1);
    assert_eq!(t.unassigned(), 16384 - 10);
    assert_eq!(t.shard(9).unwrap().replicas[0].health, Health::Loading);
    assert!(t.master(10).is_none());
}

#[test]
fn malformed_replies_are_errors_that_say_where() {
    let cases: Vec<(Frame, &str)> = vec![
        (Frame::Integer(1), "not an array"),
        (Frame::Error("ERR unknown subcommand".into()), "error reply"),
        (Frame::Array(vec![Frame::Integer(1)]), "shard 0"),
        (
            Frame::Array(vec![map(
                false,
                vec![("slots", Frame::Array(vec![Frame::Integer(0)]))],
            )]),
            "odd number",
        ),
        (
            Frame::Array(vec![map(
                false,
                vec![(
                    "slots",
                    Frame::Array(vec![Frame::Integer(0), Frame::Integer(16384)]),
                )],
            )]),
            "out of range",
        ),
        (
            Frame::Array(vec![map(
                false,
                vec![
                    (
                        "slots",
                        Frame::Array(vec![Frame::Integer(0), Frame::Integer(1)]),
                    ),
                    (
                        "nodes",
                        Frame::Array(vec![map(false, vec![("id", b("x"))])]),
                    ),
                ],
            )]),
            "no port",
        ),
    ];
    for (frame, want) in cases {
        let e = parse_shards(&frame, "x").unwrap_err();
        assert!(e.0.contains(want), "{e} should mention {want}");
    }
    let overlapping = Frame::Array(vec![
        Frame::Array(vec![
            Frame::Integer(0),
            Frame::Integer(10),
            Frame::Array(vec![b("a"), Frame::Integer(1)]),
        ]),
        Frame::Array(vec![
            Frame::Integer(5),
            Frame::Integer(20),
            Frame::Array(vec![b("b"), Frame::Integer(1)]),
        ]),
    ]);
    assert!(parse_slots(&overlapping, "x")
        .unwrap_err()
        .0
        .contains("twice"));
    let bad_port = Frame::Array(vec![Frame::Array(vec![
        Frame::Integer(0),
        Frame::Integer(1),
        Frame::Array(vec![b("a"), Frame::Integer(65536)]),
    ])]);
    assert!(parse_slots(&bad_port, "x").unwrap_err().0.contains("port"));
    assert!(parse_slots(&Frame::Array(vec![Frame::Array(vec![])]), "x").is_err());
}

/// Random frames built from the pieces these replies are made of.
fn frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        (-2i64..17000).prop_map(Frame::Integer),
        prop_oneof![
            Just("slots"),
            Just("nodes"),
            Just("id"),
            Just("port"),
            Just("role"),
            Just("master"),
            Just("health"),
            Just("ip"),
            Just("endpoint"),
            Just("?"),
        ]
        .prop_map(b),
        Just(Frame::NullBulk),
        Just(Frame::Null),
        Just(Frame::Boolean(true)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
            prop::collection::vec((inner.clone(), inner), 0..5).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #[test]
    fn random_replies_never_panic(f in frame()) {
        let _ = parse_shards(&f, "x");
        let _ = parse_slots(&f, "x");
        let _ = parse_shards(&Frame::Array(vec![f.clone()]), "x");
        let _ = parse_slots(&Frame::Array(vec![f]), "x");
    }
}
