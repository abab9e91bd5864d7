//! Splitting an inline command line (`set k "a b"`) into arguments, as Redis's `sdssplitargs`
//! does.
//!
//! A leaf: knows one line's bytes, nothing about buffers or where the line ended. Never
//! accepts a line Redis would refuse, nor splits one differently.

use bytes::Bytes;

/// Splits an inline command line into arguments the way Redis 7.0 (`sdssplitargs`) does.
///
/// Blanks between arguments are C's `isspace` set; inside an unquoted argument only space,
/// tab, CR and LF end it (a vertical tab or form feed is part of the argument, as in Redis).
/// `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`. Returns `None`
/// for unbalanced quotes or a closing quote not followed by a blank. An empty argument (`""`)
/// is kept. The line holds no NUL: the reader ends a line's search at one, as Redis's `strchr`
/// does.
pub fn split_inline(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        loop {
            match line.get(i) {
                None | Some(b' ' | b'\t' | b'\r' | b'\n') => break,
                // A closing quote ends the argument (a blank must follow it).
                Some(&q @ (b'"' | b'\'')) => {
                    i = quoted(line, i + 1, q, &mut cur)?;
                    break;
                }
                Some(&c) => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(cur));
    }
}

/// Reads a quoted run starting after the opening quote; returns the index after the closing one.
fn quoted(line: &[u8], mut i: usize, q: u8, out: &mut Vec<u8>) -> Option<usize> {
    loop {
        let c = *line.get(i)?;
        if c == q {
            // The closing quote must end the argument.
            match line.get(i + 1) {
                None => return Some(i + 1),
                Some(&n) if is_space(n) => return Some(i + 1),
                Some(_) => return None,
            }
        }
        if c == b'\\' && i + 1 < line.len() {
            let n = line[i + 1];
            if q == b'\'' {
                if n == b'\'' {
                    out.push(b'\'');
                    i += 2;
                    continue;
                }
            } else if n == b'x' && i + 3 < line.len() && is_hex_pair(line[i + 2], line[i + 3]) {
                out.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                i += 4;
                continue;
            } else {
                out.push(match n {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
}

/// C's `isspace`, which `sdssplitargs` uses between arguments and after a closing quote:
/// unlike `u8::is_ascii_whitespace` it includes the vertical tab.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn is_hex_pair(a: u8, b: u8) -> bool {
    a.is_ascii_hexdigit() && b.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}
