//! Property tests: every frame the encoder can write is measured, parsed and streamed back
//! exactly, whatever the chunking; commands round-trip; RESP2 conversion yields RESP2.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp::{
    encode, encode_command, encode_command_len, parse_command, parse_frame, scan, CommandReader,
    Frame, Limits, NullKind, ParseError,
};

/// Bytes of a line (simple string, error): anything but CR and LF.
fn line_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(
        any::<u8>().prop_map(|b| if b == b'\r' || b == b'\n' { b'.' } else { b }),
        0..24,
    )
    .prop_map(Bytes::from)
}

/// Binary payloads, with CR and LF over-represented.
fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(
        prop_oneof![
            6 => any::<u8>(),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(b'$'),
        ],
        0..48,
    )
    .prop_map(Bytes::from)
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(0i64),
        1 => Just(-1i64),
        1 => -1000i64..1000,
    ]
}

fn double_text() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        any::<f64>().prop_map(|d| format!("{d}")),
        any::<f64>().prop_map(|d| format!("{d:e}")),
        any::<f64>().prop_map(|d| format!("{d:?}")),
        (-1000i32..1000).prop_map(|n| n.to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("nan".to_string()),
        Just("1.5e-300".to_string()),
        Just("-0.0".to_string()),
        Just("3.14159E+10".to_string()),
    ]
    .prop_map(Bytes::from)
}

fn big_number() -> impl Strategy<Value = Bytes> {
    "[+-]?[0-9]{1,60}".prop_map(Bytes::from)
}

fn verbatim() -> impl Strategy<Value = Bytes> {
    ("[a-z]{3}", binary()).prop_map(|(fmt, body)| {
        let mut v = fmt.into_bytes();
        v.push(b':');
        v.extend_from_slice(&body);
        Bytes::from(v)
    })
}

fn leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        integer().prop_map(Frame::Integer),
        binary().prop_map(Frame::Bulk),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        double_text().prop_map(Frame::Double),
        big_number().prop_map(Frame::BigNumber),
        binary().prop_map(Frame::BulkError),
        verbatim().prop_map(Frame::Verbatim),
    ]
}

/// Arbitrary frame trees, every variant, nested up to 5 levels.
fn frame() -> impl Strategy<Value = Frame> {
    leaf().prop_recursive(5, 48, 5, |inner| {
        let pairs = prop::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            pairs.clone().prop_map(Frame::Map),
            (pairs, inner).prop_map(|(p, f)| Frame::Attribute(p, Box::new(f))),
        ]
    })
}

fn wire(f: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode(f, &mut out);
    out.freeze()
}

/// True when only RESP2 types occur in `f`.
fn is_resp2(f: &Frame) -> bool {
    match f {
        Frame::Simple(_)
        | Frame::Error(_)
        | Frame::Integer(_)
        | Frame::Bulk(_)
        | Frame::NullBulk
        | Frame::NullArray => true,
        Frame::Array(v) => v.iter().all(is_resp2),
        _ => false,
    }
}

fn args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8)
}

/// Feeds `bytes` in the given chunk sizes, parsing after every append; returns the frames.
fn feed_frames(bytes: &[u8], chunks: &[usize]) -> Vec<(usize, Frame)> {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().cycle();
    while fed < bytes.len() {
        let n = (*sizes.next().unwrap()).clamp(1, bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        while let Some(f) = parse_frame(&mut buf, &limits).unwrap() {
            got.push((fed, f));
        }
    }
    assert!(buf.is_empty());
    got
}

/// What a connection gets from `bytes`: each command's arguments and own bytes, then the
/// error or the number of bytes left waiting.
type Outcome = (Vec<(Vec<Bytes>, Option<Bytes>)>, Result<usize, ParseError>);

/// Reads `bytes`, all present at once, with a fresh reader per command.
fn commands_at_once(bytes: &[u8], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(bytes);
    let mut got = Vec::new();
    let mut args = Vec::new();
    loop {
        match resp::parse_command_into(&mut buf, limits, &mut args) {
            Ok(Some(frame)) => got.push((std::mem::take(&mut args), frame)),
            Ok(None) => return (got, Ok(buf.len())),
            Err(e) => return (got, Err(e)),
        }
    }
}

/// Reads `bytes` arriving in chunks of the given sizes with one reader kept throughout.
fn commands_chunked(bytes: &[u8], chunks: &[usize], limits: &Limits) -> Outcome {
    let mut reader = CommandReader::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut args = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().cycle();
    while fed < bytes.len() {
        let n = (*sizes.next().unwrap()).clamp(1, bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        loop {
            match reader.read(&mut buf, limits, &mut args) {
                Ok(Some(frame)) => got.push((std::mem::take(&mut args), frame)),
                Ok(None) => break,
                Err(e) => return (got, Err(e)),
            }
        }
    }
    (got, Ok(buf.len()))
}

/// Client input: valid commands in every form Redis reads, with odd corners, and some noise.
fn client_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => args().prop_map(|a| {
            let mut out = BytesMut::new();
            encode_command(&a, &mut out);
            out.to_vec()
        }),
        1 => Just(b"*-3\r\n".to_vec()),
        1 => Just(b"*0\r\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"*1\r\n$2\r\nabXY".to_vec()),
        1 => Just(b"*2\rX$4\r\nECHO\r\n$1\rYaZZ".to_vec()),
        1 => "[a-z \"'\\\\\t]{0,30}\r?\n".prop_map(String::into_bytes),
        1 => prop::collection::vec(
            prop_oneof![Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(0u8), any::<u8>()],
            0..12,
        ),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn scan_measures_the_encoding(f in frame()) {
        let w = wire(&f);
        prop_assert_eq!(scan(&w, &Limits::default()), Ok(Some(w.len())));
    }

    #[test]
    fn parse_gives_the_frame_back(f in frame()) {
        let w = wire(&f);
        let mut buf = BytesMut::from(&w[..]);
        let got = parse_frame(&mut buf, &Limits::default()).unwrap();
        prop_assert_eq!(got.as_ref(), Some(&f));
        prop_assert!(buf.is_empty());
        // And the frame re-encodes to the same bytes: the codec is lossless.
        prop_assert_eq!(wire(got.as_ref().unwrap()), w);
    }

    #[test]
    fn every_strict_prefix_is_incomplete(f in frame()) {
        let w = wire(&f);
        for cut in 0..w.len() {
            prop_assert_eq!(scan(&w[..cut], &Limits::default()), Ok(None), "cut at {}", cut);
            let mut buf = BytesMut::from(&w[..cut]);
            prop_assert_eq!(parse_frame(&mut buf, &Limits::default()), Ok(None));
            prop_assert_eq!(buf.len(), cut, "an incomplete frame must not be consumed");
        }
    }

    #[test]
    fn byte_by_byte_yields_the_frame_once_at_the_end(f in frame()) {
        let w = wire(&f);
        let got = feed_frames(&w, &[1]);
        prop_assert_eq!(got, vec![(w.len(), f)]);
    }

    #[test]
    fn random_chunks_yield_the_frame_once_at_the_end(
        f in frame(),
        chunks in prop::collection::vec(1usize..40, 1..10),
    ) {
        let w = wire(&f);
        let got = feed_frames(&w, &chunks);
        prop_assert_eq!(got, vec![(w.len(), f)]);
    }

    #[test]
    fn back_to_back_frames_parse_as_two(
        a in frame(),
        b in frame(),
        chunks in prop::collection::vec(1usize..40, 1..10),
    ) {
        let (wa, wb) = (wire(&a), wire(&b));
        let mut both = wa.to_vec();
        both.extend_from_slice(&wb);
        let mut buf = BytesMut::from(&both[..]);
        let limits = Limits::default();
        prop_assert_eq!(scan(&both, &limits), Ok(Some(wa.len())));
        prop_assert_eq!(parse_frame(&mut buf, &limits).unwrap(), Some(a.clone()));
        prop_assert_eq!(parse_frame(&mut buf, &limits).unwrap(), Some(b.clone()));
        prop_assert!(buf.is_empty());
        let streamed = feed_frames(&both, &chunks);
        prop_assert_eq!(streamed.len(), 2);
        prop_assert_eq!(&streamed[0].1, &a);
        prop_assert_eq!(&streamed[1], &(both.len(), b));
    }

    #[test]
    fn into_resp2_yields_resp2_that_round_trips(f in frame(), array_null in any::<bool>()) {
        let kind = if array_null { NullKind::Array } else { NullKind::Bulk };
        let top_null = matches!(f, Frame::Null);
        let r2 = f.into_resp2_with(kind);
        prop_assert!(is_resp2(&r2), "{:?}", r2);
        if top_null {
            let want = if array_null { Frame::NullArray } else { Frame::NullBulk };
            prop_assert_eq!(&r2, &want);
        }
        let w = wire(&r2);
        let mut buf = BytesMut::from(&w[..]);
        prop_assert_eq!(parse_frame(&mut buf, &Limits::default()).unwrap(), Some(r2));
    }

    #[test]
    fn commands_round_trip(a in args()) {
        let mut out = BytesMut::new();
        encode_command(&a, &mut out);
        prop_assert_eq!(encode_command_len(&a), out.len());
        let w = out.clone().freeze();
        let got = parse_command(&mut out, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(&got, &a);
        prop_assert!(out.is_empty());
        // A command is also a valid frame: an array of bulks.
        prop_assert_eq!(scan(&w, &Limits::default()), Ok(Some(w.len())));
    }

    #[test]
    fn commands_byte_by_byte(a in args(), b in args()) {
        let mut wire = BytesMut::new();
        encode_command(&a, &mut wire);
        let first = wire.len();
        encode_command(&b, &mut wire);
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (i, &byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            if let Some(args) = parse_command(&mut buf, &limits).unwrap() {
                got.push((i + 1, args));
            }
        }
        prop_assert!(buf.is_empty());
        let want = vec![
            (first, a.into_iter().map(Bytes::from).collect::<Vec<_>>()),
            (wire.len(), b.into_iter().map(Bytes::from).collect()),
        ];
        prop_assert_eq!(got, want);
    }

    /// Any argument, written as a double-quoted inline argument with `\xHH` escapes, comes back.
    #[test]
    fn quoted_inline_commands_round_trip(a in args(), crlf in any::<bool>()) {
        let mut line = Vec::new();
        for arg in &a {
            line.push(b'"');
            for &c in arg {
                match c {
                    b'"' | b'\\' => line.extend_from_slice(&[b'\\', c]),
                    0x21..=0x7e => line.push(c),
                    _ => line.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
                }
            }
            line.extend_from_slice(b"\" ");
        }
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let mut buf = BytesMut::from(&line[..]);
        let got = parse_command(&mut buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(got, a);
        prop_assert!(buf.is_empty());
    }

    /// Garbage never panics, and `scan` and `parse_frame` agree on it.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let limits = Limits { max_depth: 8, ..Limits::default() };
        let measured = scan(&data, &limits);
        let mut buf = BytesMut::from(&data[..]);
        let parsed = parse_frame(&mut buf, &limits);
        match (measured, parsed) {
            (Ok(Some(n)), Ok(Some(f))) => {
                prop_assert_eq!(buf.len(), data.len() - n);
                let mut again = BytesMut::from(&wire(&f)[..]);
                prop_assert_eq!(parse_frame(&mut again, &limits).unwrap(), Some(f));
            }
            (Ok(None), Ok(None)) => prop_assert_eq!(buf.len(), data.len()),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (m, p) => prop_assert!(false, "scan {:?} but parse {:?}", m, p),
        }
        let mut buf = BytesMut::from(&data[..]);
        let _ = parse_command(&mut buf, &limits);
    }

    /// A valid encoding with one byte changed is measured or rejected, never mis-parsed.
    #[test]
    fn mutated_encodings_never_panic(f in frame(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let mut w = wire(&f).to_vec();
        let i = at.index(w.len());
        w[i] = to;
        let limits = Limits::default();
        if let Ok(Some(n)) = scan(&w, &limits) {
            let mut buf = BytesMut::from(&w[..]);
            let got = parse_frame(&mut buf, &limits).unwrap().unwrap();
            prop_assert_eq!(buf.len(), w.len() - n);
            let re = wire(&got);
            prop_assert_eq!(&re[..], &w[..n], "accepted input must re-encode byte for byte");
        }
    }

    /// A kept reader fed at random split points reads exactly what one pass over the whole
    /// input reads: the same commands, the same frames, the same error or the same remainder.
    #[test]
    fn a_resumed_reader_reads_what_one_pass_reads(
        input in client_input(),
        chunks in prop::collection::vec(1usize..24, 1..8),
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_inline_len: 12, max_elements: 5, max_bulk_len: 30, ..Limits::default() }
        } else {
            Limits::default()
        };
        let once = commands_at_once(&input, &limits);
        let chunked = commands_chunked(&input, &chunks, &limits);
        prop_assert_eq!(&chunked, &once);
        let bytewise = commands_chunked(&input, &[1], &limits);
        prop_assert_eq!(&bytewise, &once);
    }
}
