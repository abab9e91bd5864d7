//! The shard's entry cells: chunks of [`CHUNK`] cells that follow the live entry count.
//!
//! A cell's number is the entry's handle everywhere (index, group links, policy arena), so the
//! slab decides how far the handle-indexed structures reach. It hands out the **lowest** free
//! cell (a bit per chunk says which chunks have room, a bit per cell which cells are taken), so
//! under churn the entries gather in the low chunks and the high ones drain; trailing empty
//! chunks are then released, keeping one spare so that a count wobbling at a chunk boundary
//! does not allocate and free 32 KiB each time. Never moves a live entry on its own (only
//! [`Slab::move_down`], when the core compacts), never copies itself to grow. Picking a cell scans one bit per chunk and 16 words in the chunk: O(1) for any
//! shard size that fits memory.

use super::entry::{Entry, NIL};

pub(crate) const CHUNK_BITS: u32 = 10;
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;
const WORDS: usize = CHUNK / 64;

struct Chunk {
    cells: Box<[Option<Entry>]>,
    /// Bit `i`: cell `i` holds an entry.
    used: [u64; WORDS],
    live: u32,
}

impl Chunk {
    fn new() -> Self {
        Self {
            cells: (0..CHUNK).map(|_| None).collect(),
            used: [0; WORDS],
            live: 0,
        }
    }
}

#[derive(Default)]
pub(crate) struct Slab {
    chunks: Vec<Chunk>,
    /// Bit `c`: chunk `c` has a free cell.
    open: Vec<u64>,
}

fn split(cell: u32) -> (usize, usize) {
    ((cell >> CHUNK_BITS) as usize, cell as usize & (CHUNK - 1))
}

impl Slab {
    /// One past the highest cell that can hold an entry.
    pub(crate) fn high(&self) -> u32 {
        (self.chunks.len() << CHUNK_BITS) as u32
    }

    pub(crate) fn get(&self, cell: u32) -> Option<&Entry> {
        let (c, i) = split(cell);
        self.chunks.get(c).and_then(|c| c.cells[i].as_ref())
    }

    pub(crate) fn get_mut(&mut self, cell: u32) -> Option<&mut Entry> {
        let (c, i) = split(cell);
        self.chunks.get_mut(c).and_then(|c| c.cells[i].as_mut())
    }

    pub(crate) fn entry(&self, cell: u32) -> &Entry {
        self.get(cell).expect("index points at a live cell")
    }

    pub(crate) fn entry_mut(&mut self, cell: u32) -> &mut Entry {
        self.get_mut(cell).expect("index points at a live cell")
    }

    fn set_open(&mut self, c: usize, open: bool) {
        let (w, bit) = (c / 64, 1u64 << (c % 64));
        if self.open.len() <= w {
            self.open.resize(w + 1, 0);
        }
        if open {
            self.open[w] |= bit;
        } else {
            self.open[w] &= !bit;
        }
    }

    /// Put `e` in the lowest free cell and return it.
    pub(crate) fn place(&mut self, e: Entry) -> u32 {
        let c = match self.open.iter().position(|&w| w != 0) {
            Some(w) => w * 64 + self.open[w].trailing_zeros() as usize,
            None => {
                assert!(
                    self.chunks.len() < (NIL >> CHUNK_BITS) as usize,
                    "fewer than 2^32 - 1 entries per shard"
                );
                self.chunks.push(Chunk::new());
                self.set_open(self.chunks.len() - 1, true);
                self.chunks.len() - 1
            }
        };
        let chunk = &mut self.chunks[c];
        let w = chunk
            .used
            .iter()
            .position(|&w| w != u64::MAX)
            .expect("an open chunk has a free cell");
        let i = w * 64 + (!chunk.used[w]).trailing_zeros() as usize;
        chunk.used[w] |= 1 << (i % 64);
        chunk.live += 1;
        debug_assert!(chunk.cells[i].is_none());
        chunk.cells[i] = Some(e);
        if chunk.live as usize == CHUNK {
            self.set_open(c, false);
        }
        ((c << CHUNK_BITS) | i) as u32
    }

    pub(crate) fn take(&mut self, cell: u32) -> Entry {
        let (c, i) = split(cell);
        let chunk = &mut self.chunks[c];
        let e = chunk.cells[i].take().expect("take of a live cell");
        chunk.used[i / 64] &= !(1 << (i % 64));
        chunk.live -= 1;
        self.set_open(c, true);
        e
    }

    /// The highest cell holding an entry.
    pub(crate) fn highest(&self) -> Option<u32> {
        let c = self.chunks.iter().rposition(|c| c.live > 0)?;
        let used = &self.chunks[c].used;
        let w = used.iter().rposition(|&w| w != 0)?;
        let i = w * 64 + 63 - used[w].leading_zeros() as usize;
        Some(((c << CHUNK_BITS) | i) as u32)
    }

    /// Move the entry in `cell` to the lowest free cell, and return that cell (`cell` itself
    /// when none is lower).
    pub(crate) fn move_down(&mut self, cell: u32) -> u32 {
        let e = self.take(cell);
        self.place(e)
    }

    /// Release trailing empty chunks but one. Returns whether any went.
    pub(crate) fn release(&mut self) -> bool {
        let before = self.chunks.len();
        while let [.., a, b] = &self.chunks[..] {
            if a.live != 0 || b.live != 0 {
                break;
            }
            self.chunks.pop();
            self.set_open(self.chunks.len(), false);
        }
        if self.chunks.len() == before {
            return false;
        }
        self.open.truncate(self.chunks.len().div_ceil(64));
        if self.chunks.len() < self.chunks.capacity() / 4 {
            self.chunks.shrink_to(self.chunks.len() * 2);
        }
        true
    }

    /// Every entry, emptying the slab (chunks dropped here, entries handed out).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Entry> {
        std::mem::take(self)
            .chunks
            .into_iter()
            .flat_map(|c| c.cells.into_vec().into_iter().flatten())
    }

    /// Heap bytes the slab holds: the chunks, their headers and the open-chunk bits.
    pub(crate) fn heap_bytes(&self) -> u64 {
        let chunk = CHUNK * std::mem::size_of::<Option<Entry>>();
        (self.chunks.len() * chunk
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.open.capacity() * 8) as u64
    }

    /// The slab's own invariants: bits, counts and cells agree, and at most one trailing chunk
    /// is empty.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            let bits: u32 = chunk.used.iter().map(|w| w.count_ones()).sum();
            let filled = chunk.cells.iter().filter(|s| s.is_some()).count() as u32;
            let agree = (0..CHUNK).all(|i| {
                (chunk.used[i / 64] >> (i % 64)) & 1 == u64::from(chunk.cells[i].is_some())
            });
            if bits != chunk.live || filled != chunk.live || !agree {
                return Err(format!("chunk {c}: bits, count and cells disagree"));
            }
            let open = self
                .open
                .get(c / 64)
                .is_some_and(|w| w >> (c % 64) & 1 == 1);
            if open != (chunk.live as usize != CHUNK) {
                return Err(format!("chunk {c}: open bit wrong"));
            }
        }
        let beyond = self.open.iter().enumerate().any(|(w, &bits)| {
            (0..64).any(|b| bits >> b & 1 == 1 && w * 64 + b >= self.chunks.len())
        });
        if beyond {
            return Err("open bit set for a chunk that does not exist".into());
        }
        if let [.., a, b] = &self.chunks[..] {
            if a.live == 0 && b.live == 0 {
                return Err("two trailing empty chunks kept".into());
            }
        }
        Ok(())
    }
}
