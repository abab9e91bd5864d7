//! Parse, scan and encode throughput on typical proxy traffic.
//!
//! `cargo bench -p nearcache-resp -- --warm-up-time 1 --measurement-time 3`
//! Throughput is reported in bytes; frames/s = frames per iteration / time (see docs/codec.md).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use resp::{encode, encode_command, parse_command, parse_frame, scan, Frame, Limits};

/// One workload: its wire bytes and how many frames (commands or replies) they hold.
struct Case {
    name: &'static str,
    wire: Bytes,
    frames: usize,
    command: bool,
}

fn get_pipeline() -> Vec<Vec<Bytes>> {
    (0..1000)
        .map(|i| vec![Bytes::from("GET"), Bytes::from(format!("key:{i:03}"))])
        .collect()
}

fn set_4k() -> Vec<Bytes> {
    vec![
        Bytes::from("SET"),
        Bytes::from("key:000"),
        Bytes::from(vec![b'x'; 4096]),
    ]
}

fn small_bulks() -> Vec<Frame> {
    (0..1000)
        .map(|i| Frame::bulk(format!("value-{i:05}")))
        .collect()
}

fn big_bulk() -> Frame {
    Frame::bulk(vec![b'v'; 100 * 1024])
}

fn array_of_100() -> Frame {
    Frame::Array(
        (0..100)
            .map(|i| Frame::bulk(format!("member:{i:04}")))
            .collect(),
    )
}

/// A RESP3 map like `CLIENT INFO`/`HELLO` replies: ten entries of mixed, nested types.
fn nested_map() -> Frame {
    Frame::Map(
        (0..10)
            .map(|i| {
                let inner = Frame::Map(vec![
                    (Frame::simple("name"), Frame::bulk(format!("user-{i}"))),
                    (Frame::simple("score"), Frame::Double(Bytes::from("3.25"))),
                    (Frame::simple("count"), Frame::Integer(i * 1000)),
                    (Frame::simple("active"), Frame::Boolean(i % 2 == 0)),
                    (
                        Frame::simple("flags"),
                        Frame::Set(vec![Frame::simple("a"), Frame::simple("b"), Frame::Null]),
                    ),
                ]);
                (Frame::bulk(format!("field:{i}")), inner)
            })
            .collect(),
    )
}

fn wire_of(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for f in frames {
        encode(f, &mut out);
    }
    out.freeze()
}

fn cases() -> Vec<Case> {
    let mut get = BytesMut::new();
    for c in get_pipeline() {
        encode_command(&c, &mut get);
    }
    let mut set = BytesMut::new();
    encode_command(&set_4k(), &mut set);
    vec![
        Case {
            name: "get_pipeline_1000",
            wire: get.freeze(),
            frames: 1000,
            command: true,
        },
        Case {
            name: "set_4k",
            wire: set.freeze(),
            frames: 1,
            command: true,
        },
        Case {
            name: "bulk_small_x1000",
            wire: wire_of(&small_bulks()),
            frames: 1000,
            command: false,
        },
        Case {
            name: "bulk_100k",
            wire: wire_of(&[big_bulk()]),
            frames: 1,
            command: false,
        },
        Case {
            name: "array_100_bulks",
            wire: wire_of(&[array_of_100()]),
            frames: 1,
            command: false,
        },
        Case {
            name: "resp3_nested_map",
            wire: wire_of(&[nested_map()]),
            frames: 1,
            command: false,
        },
    ]
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    for case in cases() {
        g.throughput(Throughput::Bytes(case.wire.len() as u64));
        let size = if case.wire.len() > 64 * 1024 {
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        g.bench_function(case.name, |b| {
            b.iter_batched(
                || BytesMut::from(&case.wire[..]),
                |mut buf| {
                    let mut n = 0;
                    if case.command {
                        while let Some(args) = parse_command(&mut buf, &limits).unwrap() {
                            black_box(args);
                            n += 1;
                        }
                    } else {
                        while let Some(f) = parse_frame(&mut buf, &limits).unwrap() {
                            black_box(f);
                            n += 1;
                        }
                    }
                    assert_eq!(n, case.frames);
                    buf
                },
                size,
            )
        });
    }
    g.finish();
}

fn scan_only(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("scan");
    for case in cases() {
        g.throughput(Throughput::Bytes(case.wire.len() as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| {
                let wire = black_box(&case.wire[..]);
                let (mut pos, mut n) = (0, 0);
                while pos < wire.len() {
                    pos += scan(&wire[pos..], &limits).unwrap().unwrap();
                    n += 1;
                }
                assert_eq!(n, case.frames);
            })
        });
    }
    g.finish();
}

fn encode_all(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let get = get_pipeline();
    let set = set_4k();
    let replies: Vec<(&str, Vec<Frame>)> = vec![
        ("bulk_small_x1000", small_bulks()),
        ("bulk_100k", vec![big_bulk()]),
        ("array_100_bulks", vec![array_of_100()]),
        ("resp3_nested_map", vec![nested_map()]),
    ];
    let mut out = BytesMut::with_capacity(256 * 1024);
    let wires = cases();
    let len_of = |name: &str| wires.iter().find(|c| c.name == name).unwrap().wire.len() as u64;
    g.throughput(Throughput::Bytes(len_of("get_pipeline_1000")));
    g.bench_function("get_pipeline_1000", |b| {
        b.iter(|| {
            out.clear();
            for c in &get {
                encode_command(black_box(c), &mut out);
            }
        })
    });
    g.throughput(Throughput::Bytes(len_of("set_4k")));
    g.bench_function("set_4k", |b| {
        b.iter(|| {
            out.clear();
            encode_command(black_box(&set), &mut out);
        })
    });
    for (name, frames) in &replies {
        g.throughput(Throughput::Bytes(len_of(name)));
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                for f in frames {
                    encode(black_box(f), &mut out);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, scan_only, encode_all);
criterion_main!(benches);
