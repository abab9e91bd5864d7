//! TCP reassembly of one direction of one connection: segments in capture order in, the
//! byte stream out, in order, with a [`Event::Gap`] wherever bytes were never captured.
//!
//! Out-of-order segments wait until the hole before them fills; retransmitted bytes are
//! delivered once; a hole is declared lost when the peer acknowledges past it (it got the
//! bytes, the capture did not), when too much waits behind it, or at the end. A stream whose
//! SYN was not captured starts at its first segment. Never interprets the bytes, and never
//! holds more than [`MAX_PENDING`] bytes.

use std::collections::BTreeMap;

/// Most bytes kept waiting behind a hole: beyond this the hole is declared lost. Larger keeps
/// more of a badly reordered capture; smaller bounds memory per stream.
pub const MAX_PENDING: usize = 4 << 20;

/// What the stream delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The next bytes, with the stream offset just past them.
    Data(&'a [u8], u64),
    /// This many bytes were never captured.
    Gap(u64),
}

/// Reassembly figures of one direction.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct StreamCounts {
    pub bytes: u64,
    pub retransmitted_bytes: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
}

impl std::ops::AddAssign for StreamCounts {
    fn add_assign(&mut self, o: StreamCounts) {
        self.bytes += o.bytes;
        self.retransmitted_bytes += o.retransmitted_bytes;
        self.out_of_order_segments += o.out_of_order_segments;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// The sequence number of the next byte expected, once known.
    next_seq: Option<u32>,
    /// The stream offset of that byte.
    pos: u64,
    /// True when the stream's start (its SYN) was captured.
    pub from_start: bool,
    /// Segments past a hole, by stream offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// The stream offset of its FIN, once seen: the peer acknowledges it as one more byte.
    fin: Option<u64>,
    pub counts: StreamCounts,
}

impl Stream {
    /// The stream offset of sequence number `seq`, once the stream has started.
    pub fn offset_of(&self, seq: u32) -> Option<u64> {
        let next = self.next_seq?;
        let rel = self.pos as i64 + i64::from(seq.wrapping_sub(next) as i32);
        u64::try_from(rel).ok()
    }

    /// One captured segment of this direction.
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        out: &mut dyn FnMut(Event),
    ) {
        let seq = if syn {
            if self.next_seq.is_none() {
                self.next_seq = Some(seq.wrapping_add(1));
                self.from_start = true;
            }
            seq.wrapping_add(1)
        } else {
            seq
        };
        if fin {
            let at = self.offset_of(seq.wrapping_add(payload.len() as u32));
            self.fin = self.fin.or(at);
        }
        if payload.is_empty() {
            return;
        }
        if self.next_seq.is_none() {
            self.next_seq = Some(seq);
        }
        let Some(start) = self.offset_of(seq) else {
            // Before the stream's first captured byte: an old retransmission.
            self.counts.retransmitted_bytes += payload.len() as u64;
            return;
        };
        let end = start + payload.len() as u64;
        if end <= self.pos {
            self.counts.retransmitted_bytes += payload.len() as u64;
            return;
        }
        if start > self.pos {
            self.counts.out_of_order_segments += 1;
            // Two segments at the same offset: the longer is kept, the other was a
            // retransmission (every payload byte ends up delivered or counted as such).
            let keep = self.pending.entry(start).or_default();
            if keep.len() < payload.len() {
                self.counts.retransmitted_bytes += keep.len() as u64;
                self.pending_bytes += payload.len() - keep.len();
                *keep = payload.to_vec();
            } else {
                self.counts.retransmitted_bytes += payload.len() as u64;
            }
            if self.pending_bytes > MAX_PENDING {
                self.skip_hole(out);
            }
            return;
        }
        let skip = (self.pos - start) as usize;
        self.counts.retransmitted_bytes += skip as u64;
        self.deliver(&payload[skip..], out);
        self.drain(out);
    }

    /// The peer acknowledged up to `ack`: any hole below it was lost by the capture.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Event)) {
        let Some(mut upto) = self.offset_of(ack) else {
            return;
        };
        if let Some(fin) = self.fin {
            upto = upto.min(fin);
        }
        while self.pos < upto {
            let hole_end = self.pending.keys().next().map_or(upto, |&k| k.min(upto));
            if hole_end > self.pos {
                self.gap(hole_end - self.pos, out);
            }
            self.drain(out);
            if self.pending.is_empty() {
                break;
            }
        }
    }

    /// The end of the capture: whatever waits behind a hole is delivered after a gap.
    pub fn finish(&mut self, out: &mut dyn FnMut(Event)) {
        while !self.pending.is_empty() {
            self.skip_hole(out);
        }
    }

    fn skip_hole(&mut self, out: &mut dyn FnMut(Event)) {
        if let Some(&first) = self.pending.keys().next() {
            if first > self.pos {
                self.gap(first - self.pos, out);
            }
            self.drain(out);
        }
    }

    fn gap(&mut self, n: u64, out: &mut dyn FnMut(Event)) {
        self.counts.gaps += 1;
        self.counts.gap_bytes += n;
        self.advance(n);
        out(Event::Gap(n));
    }

    fn advance(&mut self, n: u64) {
        self.pos += n;
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(n as u32));
    }

    fn deliver(&mut self, bytes: &[u8], out: &mut dyn FnMut(Event)) {
        if bytes.is_empty() {
            return;
        }
        self.counts.bytes += bytes.len() as u64;
        self.advance(bytes.len() as u64);
        out(Event::Data(bytes, self.pos));
    }

    /// Delivers the waiting segments that now continue the stream.
    fn drain(&mut self, out: &mut dyn FnMut(Event)) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.pos {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len();
            let end = start + data.len() as u64;
            if end <= self.pos {
                self.counts.retransmitted_bytes += data.len() as u64;
                continue;
            }
            let skip = (self.pos - start) as usize;
            self.counts.retransmitted_bytes += skip as u64;
            self.deliver(&data[skip..], out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds segments (seq, bytes) and acks, and returns the delivered stream with gaps as `#`.
    fn run(steps: &[(&str, u32, &[u8])]) -> (String, StreamCounts) {
        let mut s = Stream::default();
        let mut text = String::new();
        let mut out = |e: Event| match e {
            Event::Data(b, _) => text.push_str(&String::from_utf8_lossy(b)),
            Event::Gap(n) => text.push_str(&"#".repeat(n as usize)),
        };
        for (kind, seq, bytes) in steps {
            match *kind {
                "syn" => s.segment(*seq, true, false, bytes, &mut out),
                "seg" => s.segment(*seq, false, false, bytes, &mut out),
                "fin" => s.segment(*seq, false, true, bytes, &mut out),
                "ack" => s.acked(*seq, &mut out),
                _ => unreachable!("test step"),
            }
        }
        s.finish(&mut out);
        (text, s.counts)
    }

    #[test]
    fn reorders_drops_duplicates_and_marks_holes() {
        let base = u32::MAX - 3; // the sequence numbers wrap inside the stream
        let (t, c) = run(&[
            ("syn", base, b""),
            ("seg", base.wrapping_add(7), b"ghi"),
            ("seg", base.wrapping_add(1), b"abc"),
            ("seg", base.wrapping_add(4), b"def"),
            ("seg", base.wrapping_add(1), b"abcdef"),
            ("seg", base.wrapping_add(13), b"mno"),
            ("ack", base.wrapping_add(13), b""),
            ("seg", base.wrapping_add(19), b"stu"),
        ]);
        assert_eq!(t, "abcdefghi###mno###stu");
        assert_eq!(c.gaps, 2);
        assert_eq!(c.retransmitted_bytes, 6);
        assert_eq!(c.out_of_order_segments, 3);
    }

    #[test]
    fn segments_waiting_at_the_same_offset_keep_the_longest_and_count_the_rest() {
        let (t, c) = run(&[
            ("syn", 0, b""),
            ("seg", 4, b"de"),
            ("seg", 4, b"def"),
            ("seg", 4, b"d"),
            ("seg", 1, b"abc"),
        ]);
        assert_eq!(t, "abcdef");
        // 9 payload bytes given: 6 delivered, the shorter copies (2 + 1) retransmissions.
        assert_eq!((c.bytes, c.retransmitted_bytes), (6, 3));
    }

    #[test]
    fn a_stream_without_its_syn_starts_at_its_first_segment() {
        let (t, c) = run(&[
            ("seg", 1000, b"xyz"),
            ("seg", 1003, b"w"),
            ("seg", 990, b"old"),
            ("fin", 1004, b""),
            ("ack", 1005, b""),
        ]);
        assert_eq!(t, "xyzw");
        assert_eq!(c.gaps, 0, "the FIN is acknowledged as a byte, not a hole");
    }
}
