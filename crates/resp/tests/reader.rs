//! The resumable command reader: a command trickling in is examined in proportion to its
//! length, not its length times the number of reads, and what it keeps stays small.

use bytes::{Bytes, BytesMut};
use resp::{CommandReader, Limits};

/// A multibulk of `n` arguments `a0`, `a1`, ... and its arguments.
fn many_args(n: usize) -> (Vec<u8>, Vec<Bytes>) {
    let args: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("a{i}"))).collect();
    let mut wire = BytesMut::new();
    resp::encode_command(&args, &mut wire);
    (wire.to_vec(), args)
}

/// Feeds `wire` to `reader` in chunks cycling through `sizes`, calling it after every chunk as
/// a connection does after every read; returns the one command it gives and how many calls
/// said "not yet".
fn trickle(reader: &mut CommandReader, wire: &[u8], sizes: &[usize]) -> (Vec<Bytes>, usize) {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut waits = 0;
    let mut fed = 0;
    for &size in sizes.iter().cycle() {
        let n = size.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        let result = reader.read(&mut buf, &limits, &mut args);
        // At every point, not just at the end: work so far is bounded by bytes so far.
        assert!(
            reader.scanned() <= 3 * fed as u64 + 64,
            "examined {} bytes after receiving {fed}",
            reader.scanned()
        );
        match result {
            Ok(Some(Some(frame))) => {
                assert_eq!(&frame[..], wire, "the command's own bytes");
                assert_eq!(fed, wire.len(), "complete only once every byte is in");
                assert!(buf.is_empty());
                return (args, waits);
            }
            Ok(None) => waits += 1,
            other => panic!("after {fed} of {} bytes: {other:?}", wire.len()),
        }
        assert!(fed < wire.len(), "all bytes fed but no command");
    }
    unreachable!("sizes is not empty")
}

#[test]
fn a_10_mb_command_fed_in_small_reads_is_examined_a_bounded_number_of_times_per_byte() {
    let (wire, want) = many_args(1_000_000);
    assert!(wire.len() > 10_000_000, "{} bytes", wire.len());
    let mut reader = CommandReader::new();
    // A few bytes to a few KB per read, split anywhere: inside numbers, CRLFs and payloads.
    let (args, waits) = trickle(&mut reader, &wire, &[3, 1, 700, 5, 2048, 13, 64, 4096, 2]);
    assert!(waits > 5_000, "{waits} reads");
    assert_eq!(args, want);
    // Every header byte is looked at a few times at most (once searching, once parsing, once
    // building the arguments), whatever the number of reads. Re-scanning the command from
    // its start on every read, as the reader once did, is over 10,000 times the input here.
    let per_byte = reader.scanned() as f64 / wire.len() as f64;
    assert!(
        reader.scanned() <= 3 * wire.len() as u64,
        "examined {} bytes for {} received ({per_byte:.1} per byte)",
        reader.scanned(),
        wire.len()
    );
    // What the reader keeps between reads does not grow with the command.
    assert!(std::mem::size_of::<CommandReader>() <= 512);
    // The arguments' vector holds what arrived, not more.
    assert_eq!(args.capacity(), want.len());
}

#[test]
fn starting_over_on_every_read_is_quadratic() {
    // The same command, 200 KB, read with a reader that forgets its progress on every call:
    // what `parse_command` does, and what the proxy's read loop did before it kept one.
    let (wire, want) = many_args(20_000);
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut scanned = 0;
    for chunk in wire.chunks(512) {
        buf.extend_from_slice(chunk);
        let mut fresh = CommandReader::new();
        let got = fresh.read(&mut buf, &limits, &mut args).unwrap();
        scanned += fresh.scanned();
        assert_eq!(got.is_some(), buf.is_empty());
    }
    assert_eq!(args, want);
    assert!(
        scanned > 30 * wire.len() as u64,
        "{scanned} for {}",
        wire.len()
    );
    // A kept reader on the same reads: linear.
    let mut kept = CommandReader::new();
    let (args, _) = trickle(&mut kept, &wire, &[512]);
    assert_eq!(args, want);
    assert!(kept.scanned() <= 3 * wire.len() as u64);
}

#[test]
fn header_lines_and_inline_lines_trickling_in_are_searched_once() {
    let limits = Limits::default();
    // An inline line just under 64 KB, one byte per read.
    let mut line = vec![b'x'; 60 * 1024];
    line.extend_from_slice(b" y\r\n");
    let mut reader = CommandReader::new();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    for (i, &b) in line.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let got = reader.read(&mut buf, &limits, &mut args).unwrap();
        assert_eq!(got.is_some(), i + 1 == line.len());
    }
    assert_eq!(args.len(), 2);
    assert!(
        reader.scanned() <= 3 * line.len() as u64,
        "{}",
        reader.scanned()
    );
    // A `*` line and a `$` line that take 60 KB to end (refused once they do).
    for prefix in [&b"*"[..], b"*1\r\n$"] {
        let mut wire = prefix.to_vec();
        wire.resize(60 * 1024, b'7');
        wire.extend_from_slice(b"\r\n");
        let mut reader = CommandReader::new();
        let mut buf = BytesMut::new();
        let mut result = Ok(None);
        for &b in &wire {
            assert_eq!(result, Ok(None));
            buf.extend_from_slice(&[b]);
            result = reader.read(&mut buf, &limits, &mut args);
        }
        let e = result.expect_err("a 60 KB number is not a length");
        assert_eq!(e.kind, resp::ErrorKind::InvalidLength);
        assert!(
            reader.scanned() <= 3 * wire.len() as u64,
            "{}",
            reader.scanned()
        );
    }
}

#[test]
fn a_huge_announced_count_costs_nothing_until_its_arguments_arrive() {
    let limits = Limits::default();
    let mut reader = CommandReader::new();
    let mut buf = BytesMut::from(&b"*2147483647\r\n$3\r\nSET\r\n$1\r\nk\r\n"[..]);
    let mut args = Vec::new();
    assert_eq!(reader.read(&mut buf, &limits, &mut args), Ok(None));
    assert_eq!(args.capacity(), 0);
    // One more than Redis's INT_MAX is refused as Redis refuses it.
    let mut buf = BytesMut::from(&b"*2147483648\r\n"[..]);
    let e = reader.read(&mut buf, &limits, &mut args).unwrap_err();
    assert_eq!(
        resp::protocol_error_reply(&e),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
}

#[test]
fn a_reader_whose_buffer_was_split_behind_its_back_starts_over() {
    let limits = Limits::default();
    let mut reader = CommandReader::new();
    let mut args = Vec::new();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nab"[..]);
    assert_eq!(reader.read(&mut buf, &limits, &mut args), Ok(None));
    buf.clear();
    buf.extend_from_slice(b"PING\r\n");
    assert_eq!(reader.read(&mut buf, &limits, &mut args), Ok(Some(None)));
    assert_eq!(args, [Bytes::from("PING")]);
}
