//! Malformed and over-limit input: each case is rejected with the exact error kind and offset,
//! by `scan` and `parse_frame` alike, and `parse_frame` leaves an incomplete frame in place.

use bytes::{Bytes, BytesMut};
use resp::{parse_command, parse_frame, scan, ErrorKind, Limits, ParseError};

fn small() -> Limits {
    Limits {
        max_bulk_len: 1024,
        max_elements: 4,
        max_depth: 3,
        max_inline_len: 16,
        any_line: false,
    }
}

/// The error `scan` gives for `input`, checked to be the one `parse_frame` gives too.
fn frame_err_with(input: &[u8], limits: &Limits) -> ParseError {
    let e = scan(input, limits).expect_err("scan accepted malformed input");
    let mut buf = BytesMut::from(input);
    assert_eq!(parse_frame(&mut buf, limits), Err(e));
    e
}

fn frame_err(input: &[u8]) -> ParseError {
    frame_err_with(input, &Limits::default())
}

fn cmd_err_with(input: &[u8], limits: &Limits) -> ParseError {
    let mut buf = BytesMut::from(input);
    parse_command(&mut buf, limits).expect_err("parse_command accepted malformed input")
}

fn cmd_err(input: &[u8]) -> ParseError {
    cmd_err_with(input, &Limits::default())
}

fn cmd(input: &[u8]) -> Option<Vec<Bytes>> {
    let mut buf = BytesMut::from(input);
    parse_command(&mut buf, &Limits::default()).unwrap()
}

fn e(kind: ErrorKind, offset: usize) -> ParseError {
    ParseError { kind, offset }
}

#[test]
fn bad_type_byte() {
    assert_eq!(frame_err(b"X\r\n"), e(ErrorKind::InvalidTypeByte(b'X'), 0));
    // Nested, and reported before the line is complete.
    assert_eq!(
        frame_err(b"*2\r\n:1\r\n@"),
        e(ErrorKind::InvalidTypeByte(b'@'), 8)
    );
    assert_eq!(
        frame_err(b"GET key"),
        e(ErrorKind::InvalidTypeByte(b'G'), 0)
    );
    assert_eq!(frame_err(b"\r\n"), e(ErrorKind::InvalidTypeByte(b'\r'), 0));
}

#[test]
fn non_numeric_length() {
    assert_eq!(frame_err(b"$abc\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"*1x\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"$\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"%-\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"*1\r\n$ 3\r\n"), e(ErrorKind::InvalidLength, 5));
}

#[test]
fn negative_length_other_than_minus_one() {
    assert_eq!(frame_err(b"$-2\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"*-5\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(
        frame_err(b"~-9223372036854775808\r\n"),
        e(ErrorKind::InvalidLength, 1)
    );
}

#[test]
fn non_canonical_numbers_are_rejected_so_the_codec_stays_lossless() {
    // Redis's string2ll rejects these; accepting them would re-encode differently.
    assert_eq!(frame_err(b":+5\r\n"), e(ErrorKind::InvalidInteger, 1));
    assert_eq!(frame_err(b":007\r\n"), e(ErrorKind::InvalidInteger, 1));
    assert_eq!(frame_err(b":-0\r\n"), e(ErrorKind::InvalidInteger, 1));
    assert_eq!(frame_err(b"$+3\r\nabc\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"$03\r\nabc\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(frame_err(b"*-01\r\n"), e(ErrorKind::InvalidLength, 1));
    assert_eq!(scan(b":0\r\n", &Limits::default()), Ok(Some(4)));
    assert_eq!(scan(b"$0\r\n\r\n", &Limits::default()), Ok(Some(6)));
}

#[test]
fn minus_one_is_null_only_for_bulk_and_array() {
    let l = Limits::default();
    assert_eq!(scan(b"$-1\r\n", &l), Ok(Some(5)));
    assert_eq!(scan(b"*-1\r\n", &l), Ok(Some(5)));
    assert_eq!(scan(b"*2\r\n$-1\r\n*-1\r\n", &l), Ok(Some(14)));
    for bad in [
        &b"!-1\r\n"[..],
        b"=-1\r\n",
        b"%-1\r\n",
        b"~-1\r\n",
        b">-1\r\n",
        b"|-1\r\n",
    ] {
        assert_eq!(frame_err(bad), e(ErrorKind::InvalidLength, 1), "{bad:?}");
    }
}

#[test]
fn integer_overflow() {
    let l = Limits::default();
    assert_eq!(scan(b":9223372036854775807\r\n", &l), Ok(Some(22)));
    assert_eq!(scan(b":-9223372036854775808\r\n", &l), Ok(Some(23)));
    assert_eq!(
        frame_err(b":9223372036854775808\r\n"),
        e(ErrorKind::InvalidInteger, 1)
    );
    assert_eq!(
        frame_err(b":-9223372036854775809\r\n"),
        e(ErrorKind::InvalidInteger, 1)
    );
    assert_eq!(
        frame_err(b":99999999999999999999\r\n"),
        e(ErrorKind::InvalidInteger, 1)
    );
    assert_eq!(
        frame_err(b"$9223372036854775808\r\n"),
        e(ErrorKind::InvalidLength, 1)
    );
    assert_eq!(frame_err(b":\r\n"), e(ErrorKind::InvalidInteger, 1));
    assert_eq!(frame_err(b":1a\r\n"), e(ErrorKind::InvalidInteger, 1));
}

#[test]
fn bad_double() {
    for bad in [
        &b",abc\r\n"[..],
        b",\r\n",
        b",1.5.2\r\n",
        b",infinity\r\n",
        b",1e\r\n",
    ] {
        assert_eq!(frame_err(bad), e(ErrorKind::InvalidDouble, 1), "{bad:?}");
    }
    for good in [
        &b",inf\r\n"[..],
        b",-inf\r\n",
        b",nan\r\n",
        b",1.5e-300\r\n",
        b",-0\r\n",
    ] {
        assert_eq!(scan(good, &Limits::default()), Ok(Some(good.len())));
    }
}

#[test]
fn bad_big_number() {
    assert_eq!(frame_err(b"(12a\r\n"), e(ErrorKind::InvalidBigNumber, 1));
    assert_eq!(frame_err(b"(-\r\n"), e(ErrorKind::InvalidBigNumber, 1));
}

#[test]
fn bad_boolean() {
    assert_eq!(frame_err(b"#x\r\n"), e(ErrorKind::InvalidBoolean, 1));
    assert_eq!(frame_err(b"#\r\n"), e(ErrorKind::InvalidBoolean, 1));
    assert_eq!(frame_err(b"#T\r\n"), e(ErrorKind::InvalidBoolean, 1));
    // Known wrong before the line ends.
    assert_eq!(frame_err(b"#tt"), e(ErrorKind::InvalidBoolean, 1));
}

#[test]
fn null_with_content() {
    assert_eq!(frame_err(b"_x\r\n"), e(ErrorKind::InvalidNull, 1));
    assert_eq!(frame_err(b"_x"), e(ErrorKind::InvalidNull, 1));
}

#[test]
fn missing_crlf_after_bulk_payload() {
    assert_eq!(frame_err(b"$3\r\nabcde\r\n"), e(ErrorKind::MissingCrlf, 7));
    assert_eq!(frame_err(b"$3\r\nabc\n\r"), e(ErrorKind::MissingCrlf, 7));
    assert_eq!(frame_err(b"*1\r\n!1\r\nxyz"), e(ErrorKind::MissingCrlf, 9));
}

#[test]
fn bare_cr_in_a_line() {
    assert_eq!(frame_err(b"+a\rb\r\n"), e(ErrorKind::InvalidLine, 2));
    // Known wrong before any LF arrives.
    assert_eq!(frame_err(b"+a\rb"), e(ErrorKind::InvalidLine, 2));
    // A trailing CR alone may still become a CRLF.
    assert_eq!(scan(b"+ab\r", &Limits::default()), Ok(None));
}

#[test]
fn bare_lf_line_ending() {
    assert_eq!(frame_err(b"+OK\n"), e(ErrorKind::InvalidLine, 3));
    assert_eq!(frame_err(b"$3\nabc\r\n"), e(ErrorKind::InvalidLine, 2));
    assert_eq!(frame_err(b"*1\r\n:1\n"), e(ErrorKind::InvalidLine, 6));
    assert_eq!(frame_err(b"+\n"), e(ErrorKind::InvalidLine, 1));
}

#[test]
fn over_limit_bulk_length() {
    assert_eq!(
        frame_err_with(b"$1073741824\r\n", &small()),
        e(
            ErrorKind::BulkTooLarge {
                len: 1 << 30,
                max: 1024
            },
            1
        )
    );
    assert_eq!(
        frame_err_with(b"*1\r\n=1025\r\n", &small()),
        e(
            ErrorKind::BulkTooLarge {
                len: 1025,
                max: 1024
            },
            5
        )
    );
    assert_eq!(scan(b"$1024\r\n", &small()), Ok(None));
}

#[test]
fn one_gigabyte_bulk_header() {
    let header = b"$1073741824\r\n";
    // The default max_bulk_len is Redis's 512 MB: a 1 GB bulk is refused at once.
    assert_eq!(
        frame_err(header),
        e(
            ErrorKind::BulkTooLarge {
                len: 1 << 30,
                max: 512 << 20
            },
            1
        )
    );
    // With the limit raised it is merely incomplete (tests/alloc.rs shows it costs nothing).
    let big = Limits {
        max_bulk_len: 1 << 30,
        ..Limits::default()
    };
    assert_eq!(scan(header, &big), Ok(None));
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(parse_frame(&mut buf, &big), Ok(None));
    assert_eq!(&buf[..], header);
    // Exactly the default limit is fine.
    assert_eq!(scan(b"$536870912\r\n", &Limits::default()), Ok(None));
}

#[test]
fn endless_header_lines_are_cut_short() {
    let mut long = b"$".to_vec();
    long.extend_from_slice(&[b'1'; 21]);
    assert_eq!(frame_err(&long), e(ErrorKind::InvalidLength, 1));
    long[0] = b'*';
    assert_eq!(frame_err(&long), e(ErrorKind::InvalidLength, 1));
    long[0] = b':';
    assert_eq!(frame_err(&long), e(ErrorKind::InvalidInteger, 1));
    // 20 characters can still be a valid number.
    assert_eq!(scan(b":-9223372036854775808", &Limits::default()), Ok(None));
}

/// A command's header lines are Redis's: judged once their CR arrives, refused as too big
/// only when none has come within 64 KB (`PROTO_INLINE_MAX_SIZE`).
#[test]
fn command_header_lines_wait_for_their_cr_up_to_64_kb() {
    let l = Limits::default();
    let max = 64 * 1024;
    for (prefix, kind, at) in [
        (&b"*"[..], ErrorKind::MultibulkCountTooLong { max }, 0),
        (b"*1\r\n$", ErrorKind::BulkCountTooLong { max }, 4),
        (b"*1\r\nfoo", ErrorKind::BulkCountTooLong { max }, 4),
    ] {
        let mut cmd = prefix.to_vec();
        cmd.resize(at + max, b'9');
        let mut buf = BytesMut::from(&cmd[..]);
        assert_eq!(parse_command(&mut buf, &l), Ok(None));
        assert_eq!(buf.len(), cmd.len());
        cmd.push(b'9');
        assert_eq!(cmd_err(&cmd), e(kind, at + max));
    }
    // Thirty digits are waited for, then judged as a number.
    let mut digits = b"*1\r\n$".to_vec();
    digits.extend_from_slice(&[b'9'; 30]);
    assert_eq!(cmd(&digits), None);
    digits.extend_from_slice(b"\r\n");
    assert_eq!(cmd_err(&digits), e(ErrorKind::InvalidLength, 5));
    // Like strchr, the search for the CR stops at a NUL: the line never ends.
    let mut nul = b"*1\r\n$1\x00\r\nab\r\n".to_vec();
    assert_eq!(cmd(&nul), None);
    nul.resize(4 + max + 1, b'x');
    assert_eq!(
        cmd_err(&nul),
        e(ErrorKind::BulkCountTooLong { max }, 4 + max)
    );
    // A CR further away than 64 KB does not rescue the line.
    let mut far = b"*".to_vec();
    far.resize(max + 10, b'1');
    far.extend_from_slice(b"\r\n");
    assert_eq!(
        cmd_err(&far),
        e(ErrorKind::MultibulkCountTooLong { max }, max)
    );
}

#[test]
fn too_many_elements() {
    assert_eq!(
        frame_err_with(b"*5\r\n", &small()),
        e(ErrorKind::TooManyElements { len: 5, max: 4 }, 1)
    );
    // A map counts its pairs.
    assert_eq!(scan(b"%4\r\n", &small()), Ok(None));
    assert_eq!(
        frame_err_with(b"*1\r\n%5\r\n", &small()),
        e(ErrorKind::TooManyElements { len: 5, max: 4 }, 5)
    );
    assert_eq!(
        cmd_err_with(b"*5\r\n", &small()),
        e(ErrorKind::TooManyElements { len: 5, max: 4 }, 1)
    );
}

#[test]
fn nesting_deeper_than_max_depth() {
    let deep = b"*1\r\n".repeat(100_000);
    assert_eq!(
        frame_err(&deep),
        e(ErrorKind::TooDeep { max: 128 }, 128 * 4)
    );
    let mixed = b"*1\r\n%1\r\n~1\r\n|1\r\n>1\r\n".repeat(20_000);
    assert_eq!(
        frame_err(&mixed),
        e(ErrorKind::TooDeep { max: 128 }, 128 * 4)
    );
    // At the limit exactly it parses.
    let mut ok = b"*1\r\n".repeat(128);
    ok.extend_from_slice(b":1\r\n");
    let mut buf = BytesMut::from(&ok[..]);
    assert!(parse_frame(&mut buf, &Limits::default()).unwrap().is_some());
    assert!(buf.is_empty());
    assert_eq!(
        frame_err_with(b"*1\r\n*1\r\n*1\r\n*0\r\n", &small()),
        e(ErrorKind::TooDeep { max: 3 }, 12)
    );
}

#[test]
fn deep_nesting_beyond_the_inline_stack_is_measured() {
    let limits = Limits {
        max_depth: 100_000,
        ..Limits::default()
    };
    let mut deep = b"*2\r\n".repeat(5_000);
    deep.extend_from_slice(b":1\r\n");
    // Each level still waits for its second element.
    assert_eq!(scan(&deep, &limits), Ok(None));
    deep.extend_from_slice(&b"_\r\n".repeat(5_000));
    assert_eq!(scan(&deep, &limits), Ok(Some(deep.len())));
}

#[test]
fn inline_too_long_without_newline() {
    let limits = Limits::default();
    let mut buf = BytesMut::from(&vec![b'a'; 64 * 1024][..]);
    assert_eq!(parse_command(&mut buf, &limits), Ok(None));
    buf.extend_from_slice(b"a");
    assert_eq!(
        parse_command(&mut buf, &limits),
        Err(e(ErrorKind::InlineTooLong { max: 64 * 1024 }, 64 * 1024))
    );
    assert_eq!(
        cmd_err_with(b"GET aaaaaaaaaaaaaaaaaaaaaaaaaa", &small()),
        e(ErrorKind::InlineTooLong { max: 16 }, 16)
    );
    // A newline past the limit does not rescue it.
    assert_eq!(
        cmd_err_with(b"GET aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", &small()),
        e(ErrorKind::InlineTooLong { max: 16 }, 16)
    );
}

#[test]
fn unbalanced_quotes() {
    assert_eq!(
        cmd_err(b"set k \"abc\r\n"),
        e(ErrorKind::UnbalancedQuotes, 0)
    );
    assert_eq!(cmd_err(b"set k 'abc\n"), e(ErrorKind::UnbalancedQuotes, 0));
    assert_eq!(
        cmd_err(b"set k \"a\"b\r\n"),
        e(ErrorKind::UnbalancedQuotes, 0)
    );
    assert_eq!(
        cmd_err(b"set k \"abc\\\"\r\n"),
        e(ErrorKind::UnbalancedQuotes, 0)
    );
}

#[test]
fn command_element_not_bulk() {
    assert_eq!(
        cmd_err(b"*1\r\n:1\r\n"),
        e(ErrorKind::ExpectedBulk(b':'), 4)
    );
    // Reported once the line's CR has come, as Redis does.
    assert_eq!(cmd(b"*2\r\n$1\r\na\r\n+"), None);
    assert_eq!(
        cmd_err(b"*2\r\n$1\r\na\r\n+\r\n"),
        e(ErrorKind::ExpectedBulk(b'+'), 11)
    );
    assert_eq!(cmd_err(b"*1\r\n$-1\r\n"), e(ErrorKind::InvalidLength, 5));
    assert_eq!(
        cmd_err(b"*1\r\n$03\r\nabc\r\n"),
        e(ErrorKind::InvalidLength, 5)
    );
    assert_eq!(cmd_err(b"*01\r\n"), e(ErrorKind::InvalidLength, 1));
    // Redis skips the two bytes after a payload and a line's CR without looking at them:
    // what it reads, the proxy must read alike.
    let mut buf = BytesMut::from(&b"*1\r\n$2\r\nabc\r\n"[..]);
    let l = Limits::default();
    assert_eq!(
        parse_command(&mut buf, &l),
        Ok(Some(vec![Bytes::from("ab")]))
    );
    assert_eq!(&buf[..], b"\n");
    let mut buf = BytesMut::from(&b"*2\rX$4\r\nECHO\r\n$1\rYaZZ"[..]);
    let want = vec![Bytes::from("ECHO"), Bytes::from("a")];
    assert_eq!(parse_command(&mut buf, &l), Ok(Some(want)));
    assert!(buf.is_empty());
}

#[test]
fn verbatim_without_format() {
    assert_eq!(
        frame_err(b"=3\r\nabc\r\n"),
        e(ErrorKind::InvalidVerbatim, 4)
    );
    assert_eq!(
        frame_err(b"=5\r\ntxtab\r\n"),
        e(ErrorKind::InvalidVerbatim, 4)
    );
    assert_eq!(frame_err(b"=0\r\n\r\n"), e(ErrorKind::InvalidVerbatim, 4));
    assert_eq!(scan(b"=4\r\ntxt:\r\n", &Limits::default()), Ok(Some(10)));
}

#[test]
fn streamed_types() {
    assert_eq!(frame_err(b"$?\r\n"), e(ErrorKind::Streamed, 1));
    assert_eq!(frame_err(b"*?\r\n"), e(ErrorKind::Streamed, 1));
    assert_eq!(frame_err(b"*1\r\n%?\r\n"), e(ErrorKind::Streamed, 5));
    // A command's count is a number or "invalid multibulk length", as in Redis.
    assert_eq!(cmd_err(b"*?\r\n"), e(ErrorKind::InvalidLength, 1));
}

#[test]
fn empty_commands() {
    assert_eq!(cmd(b"*0\r\n"), Some(vec![]));
    assert_eq!(cmd(b"*-1\r\n"), Some(vec![]));
    // Any count below one: Redis 7.0 answers `*-10` with nothing and reads on.
    assert_eq!(cmd(b"*-10\r\n"), Some(vec![]));
    assert_eq!(cmd(b"\r\n"), Some(vec![]));
    assert_eq!(cmd(b"\n"), Some(vec![]));
    assert_eq!(cmd(b" \t \r\n"), Some(vec![]));
    assert_eq!(cmd(b""), None);
    assert_eq!(cmd(b"*0\r"), None);
    // Blank lines, then a command.
    let mut buf = BytesMut::from(&b"\r\n\n*0\r\nPING\n"[..]);
    let l = Limits::default();
    assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
    assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
    assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
    assert_eq!(
        parse_command(&mut buf, &l),
        Ok(Some(vec![Bytes::from("PING")]))
    );
    assert!(buf.is_empty());
}

#[test]
fn inline_lines() {
    assert_eq!(cmd(b"PING\n").unwrap(), ["PING"]);
    assert_eq!(cmd(b"PING\r\n").unwrap(), ["PING"]);
    assert_eq!(cmd(b"PING"), None);
    assert_eq!(cmd(b"  get   k \r\n").unwrap(), ["get", "k"]);
    assert_eq!(cmd(b"set k \"\"\n").unwrap(), ["set", "k", ""]);
    assert_eq!(cmd(b"set k 'it\\'s'\n").unwrap(), ["set", "k", "it's"]);
    assert_eq!(cmd(b"set k 'a\\nb'\n").unwrap(), ["set", "k", "a\\nb"]);
    assert_eq!(
        cmd(b"set k \"a\\nb\\x0g\"\n").unwrap(),
        ["set", "k", "a\nbx0g"]
    );
    // A quote may open mid-argument, as in sdssplitargs.
    assert_eq!(cmd(b"set k ab\"c d\"\n").unwrap(), ["set", "k", "abc d"]);
}

#[test]
fn inline_splits_on_every_c_space() {
    // Redis's sdssplitargs uses isspace(), which includes the vertical tab.
    // Between arguments, that is; inside an unquoted one only space, tab, CR and LF end it
    // (redis-server 7.0.15 echoes `ECHO a\x0bb` as `a\x0bb`).
    assert_eq!(cmd(b"\x0b\x0cPING\n").unwrap(), ["PING"]);
    assert_eq!(cmd(b"a\x0bb\x0cc\td\n").unwrap(), ["a\x0bb\x0cc", "d"]);
    assert_eq!(cmd(b"\"a\"\x0bb\n").unwrap(), ["a", "b"]);
    assert_eq!(cmd(b"PING\rPING\n").unwrap(), ["PING", "PING"]);
}

#[test]
fn incomplete_command_is_left_in_place() {
    let l = Limits::default();
    let wire = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(parse_command(&mut buf, &l), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}
