use bytes::BytesMut;
use resp::{encode, parse_command, parse_frame, scan, Frame, Limits};

#[test]
fn round_trips_a_mixed_reply() {
    let wire: &[u8] = b"%2\r\n+a\r\n*3\r\n:-5\r\n$-1\r\n,1.5\r\n$3\r\nkey\r\n|1\r\n#t\r\n_\r\n>2\r\n(123\r\n=7\r\ntxt:abc\r\n";
    let limits = Limits::default();
    assert_eq!(scan(wire, &limits).unwrap(), Some(wire.len()));
    for cut in 0..wire.len() {
        assert_eq!(scan(&wire[..cut], &limits).unwrap(), None, "cut at {cut}");
    }
    let mut buf = BytesMut::from(wire);
    let f = parse_frame(&mut buf, &limits).unwrap().unwrap();
    assert!(buf.is_empty());
    let mut out = BytesMut::new();
    encode(&f, &mut out);
    assert_eq!(&out[..], wire);
}

#[test]
fn parses_inline_and_multibulk_commands() {
    let limits = Limits::default();
    let mut buf = BytesMut::from(&b"set k \"a b\\x41\"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]);
    let a = parse_command(&mut buf, &limits).unwrap().unwrap();
    assert_eq!(a, vec!["set", "k", "a bA"]);
    let b = parse_command(&mut buf, &limits).unwrap().unwrap();
    assert_eq!(b, vec!["GET", "k"]);
    assert!(buf.is_empty());
    let _ = Frame::Null;
}

#[test]
fn length_lines_read_as_decimal_at_every_width() {
    let widths = (0..20_000).chain([99_999, 100_000, 1 << 20, usize::MAX]);
    for n in widths {
        for kind in [b'$', b'*'] {
            let mut out = BytesMut::from(&b"x"[..]);
            resp::header(&mut out, kind, n);
            assert_eq!(&out[..], format!("x{}{n}\r\n", kind as char).as_bytes());
        }
    }
}
