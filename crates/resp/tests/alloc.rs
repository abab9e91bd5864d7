//! `scan` allocates nothing, and an incomplete frame costs `parse_frame` and `parse_command`
//! nothing either, however large the length it announces.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use resp::{parse_command, parse_frame, scan, Limits};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn a_one_gigabyte_header_is_incomplete_and_free() {
    let header = b"$1073741824\r\n";
    let limits = Limits {
        max_bulk_len: 1 << 30,
        ..Limits::default()
    };
    assert_eq!(allocations(|| scan(header, &limits)), (Ok(None), 0));
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(
        allocations(|| parse_frame(&mut buf, &limits)),
        (Ok(None), 0)
    );
    let mut cmd = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n"[..]);
    assert_eq!(
        allocations(|| parse_command(&mut cmd, &limits)),
        (Ok(None), 0)
    );
    // With the default 512 MB limit it is an error, still without allocating.
    let (r, n) = allocations(|| scan(header, &Limits::default()));
    assert!(r.is_err());
    assert_eq!(n, 0);
}

#[test]
fn scan_of_nested_frames_does_not_allocate() {
    let mut deep = b"*1\r\n%1\r\n".repeat(15);
    deep.extend_from_slice(b"~4\r\n,1.5\r\n,-inf\r\n#t\r\n(12345678901234567890\r\n");
    deep.extend_from_slice(&b":1\r\n".repeat(15));
    let limits = Limits::default();
    assert_eq!(
        allocations(|| scan(&deep, &limits)),
        (Ok(Some(deep.len())), 0)
    );
    let wide = [&b"*1000\r\n"[..], &b"$3\r\nabc\r\n".repeat(1000)].concat();
    assert_eq!(
        allocations(|| scan(&wide, &limits)),
        (Ok(Some(wide.len())), 0)
    );
}

#[test]
fn a_kept_reader_allocates_nothing_while_waiting_and_no_more_than_a_one_shot_parse() {
    use resp::{parse_command_into, CommandReader};
    let limits = Limits::default();
    let wire = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    let mut args = Vec::with_capacity(8);
    let mut buf = BytesMut::with_capacity(1024);
    buf.extend_from_slice(wire);
    let (r, one_shot) = allocations(|| parse_command_into(&mut buf, &limits, &mut args));
    assert!(matches!(r, Ok(Some(Some(_)))));
    let mut reader = CommandReader::new();
    let mut buf = BytesMut::with_capacity(1024);
    buf.extend_from_slice(wire);
    let (r, kept) = allocations(|| reader.read(&mut buf, &limits, &mut args));
    assert!(matches!(r, Ok(Some(Some(_)))));
    assert!(kept <= one_shot, "kept reader {kept}, one-shot {one_shot}");
    // Fed a byte at a time, nothing is allocated until the command is complete.
    let mut buf = BytesMut::with_capacity(1024);
    for &b in &wire[..wire.len() - 1] {
        buf.extend_from_slice(&[b]);
        let (r, n) = allocations(|| reader.read(&mut buf, &limits, &mut args));
        assert_eq!((r, n), (Ok(None), 0));
    }
}
