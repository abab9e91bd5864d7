//! Whatever the input: no panic; `scan` and `parse_frame` agree; an accepted frame re-encodes
//! to exactly the bytes it was parsed from, which parse back to an equal frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::{encode, parse_frame, scan, Frame, Limits};

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer reaches every limit check.
    let limits = Limits {
        max_bulk_len: 4096,
        max_elements: 64,
        max_depth: 16,
        max_inline_len: 256,
        any_line: false,
    };
    let measured = scan(data, &limits);
    let mut buf = BytesMut::from(data);
    let parsed = parse_frame(&mut buf, &limits);
    match (measured, parsed) {
        (Ok(Some(n)), Ok(Some(frame))) => {
            assert_eq!(buf.len(), data.len() - n);
            let mut out = BytesMut::new();
            encode(&frame, &mut out);
            assert_eq!(&out[..], &data[..n], "lossless re-encoding");
            let again = parse_frame(&mut out, &limits).unwrap().unwrap();
            assert_eq!(again, frame);
            assert!(out.is_empty());
            // RESP2 conversion yields something encodable that parses back (a map's pairs
            // become twice as many array elements, hence the default limits).
            let r2: Frame = frame.into_resp2();
            let mut out = BytesMut::new();
            encode(&r2, &mut out);
            assert_eq!(parse_frame(&mut out, &Limits::default()).unwrap(), Some(r2));
        }
        (Ok(None), Ok(None)) => assert_eq!(buf.len(), data.len()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (m, p) => panic!("scan {m:?} but parse_frame {p:?}"),
    }
});
