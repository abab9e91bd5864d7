//! Whatever the input: no panic; every command parsed re-encodes to a multibulk that parses
//! back to the same arguments; an incomplete command leaves the buffer untouched.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::{encode_command, encode_command_len, parse_command, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_len: 4096,
        max_elements: 64,
        max_depth: 16,
        max_inline_len: 256,
        any_line: false,
    };
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match parse_command(&mut buf, &limits) {
            Ok(Some(args)) => {
                assert!(buf.len() < before, "a command must consume input");
                let mut out = BytesMut::new();
                encode_command(&args, &mut out);
                assert_eq!(out.len(), encode_command_len(&args));
                if args.is_empty() {
                    continue;
                }
                // An inline line may hold more arguments than max_elements allows a multibulk.
                let again = parse_command(&mut out, &Limits::default()).unwrap();
                assert_eq!(again.as_ref(), Some(&args));
                assert!(out.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before);
                break;
            }
            Err(_) => break,
        }
    }
});
