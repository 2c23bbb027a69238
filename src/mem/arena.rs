//! `PhysMem`: the simulated host physical memory that every table lives in.
//!
//! * NUMA node `i` owns the machine-address range `[base_i, base_i + size_i)` (half-open, 4 KiB
//!   aligned, no overlaps). A node may be as large as the 52-bit address space.
//! * Backing on the host's own sparse memory: a node is anonymous `MAP_NORESERVE` reservations
//!   of at most [`CHUNK_BYTES`] each ([`super::raw::Reservation`]), made on the first write or
//!   allocation in their range, so an untouched node costs a few bytes whatever its size and a
//!   node up to 64 GiB is one reservation. Never-written memory reads as zeros; an address
//!   outside every node is an error (which the hardware walk turns into the matching "table
//!   access" fault). Freed pages go back to the host (`MADV_DONTNEED`).
//! * A node may instead be memory the embedding program owns ([`super::raw::External`]), used in
//!   place: a RAM image or an emulator's guest RAM. Its pages all belong to that program: they
//!   count as reserved, the allocator never hands them out, and a read-only one refuses writes.
//! * A binary buddy allocator per node (free lists by order, lowest address first, so runs are
//!   deterministic): allocation and free cost O(MAX_ORDER * log n), never a scan over a node.
//!   A node's free lists are built on its first allocation or free, so a million untouched
//!   nodes cost little. Allocated pages read as zeros; freed pages drop their backing.
//! * Frame 0 (machine address 0) is reserved at construction when a node starts at 0: address
//!   0 means "no table" in root, context and page-table pointers and in this API (as in Xen), so
//!   `alloc_pages` never returns it and `free_pages` refuses it. It stays readable and writable.
//! * Per node, `total_pages == reserved_pages + allocated_pages + free_pages` at all times.
//! * Host memory: at most `backing_limit` pages (default: the host's physical memory) are
//!   backed at once; `ensure_free` checks it with the free pages, so a table builder that
//!   checks first never runs out part way. Host refusal to reserve is `Error::HostMemory`.
//!
//! Lookup of a word: the node (a scan of up to 8 ranges, else a binary search), its reservation
//! (a node of at most 64 GiB has one), one bounds-checked load.

use std::collections::BTreeSet;

use super::raw::{External, Reservation, HUGE_PAGE};
use crate::addr::{Maddr, ENTRIES_PER_PAGE, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::error::{Error, Result};

/// One 4 KiB frame as 512 little-endian u64 words (host endianness is little on every target
/// we build for; `read`/`write` of bytes convert explicitly).
pub type Frame = [u64; ENTRIES_PER_PAGE];

/// Bytes of one reservation: a node is cut into reservations of this size (the last one
/// shorter), each made on first use.
pub const CHUNK_BYTES: u64 = 1 << CHUNK_SHIFT;
const CHUNK_SHIFT: u32 = 36;
const CHUNK_PAGE_SHIFT: u32 = CHUNK_SHIFT - PAGE_SHIFT;
const CHUNK_PAGE_MASK: u64 = (1 << CHUNK_PAGE_SHIFT) - 1;
/// Largest buddy block: 2^40 pages (4 EiB), larger than any node we accept.
const MAX_ORDER: usize = 40;
/// The architectural limit of machine addresses (52 bits).
pub const MAX_MADDR_BITS: u32 = 52;
/// Most nodes a `PhysMem` accepts (each costs about 100 bytes of host memory before use).
pub const MAX_NODES: usize = 1 << 24;
/// Nodes [`PhysMem::runs`] looks at (a view of memory with more nodes answers the others
/// through the look-up).
pub const RUN_SCAN_NODES: usize = 64;
/// Above this many nodes the address -> node look-up is a binary search.
const LINEAR_NODES: usize = 8;

/// Per-node statistics, as `PhysMem::stats` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStats {
    pub base: u64,
    pub size: u64,
    /// Every page of the node: `reserved_pages + allocated_pages + free_pages`.
    pub total_pages: u64,
    /// Pages never handed out: 1 (frame 0) on a node that starts at address 0, every page of a
    /// node backed by the embedding program's buffer, else 0.
    pub reserved_pages: u64,
    /// Pages handed out by `alloc_pages` and not freed since.
    pub allocated_pages: u64,
    /// Pages `alloc_pages` may still hand out.
    pub free_pages: u64,
    /// Frames with backing store (written at least once since their last alloc or free; every
    /// page of a buffer-backed node).
    pub backed_pages: u64,
    /// Allocations that asked for this node but were served by another one.
    pub fallbacks: u64,
}

/// How a node is given to [`PhysMem::with_nodes`].
pub enum NodeSpec {
    /// `size` bytes at `base` on the host's sparse memory.
    Sparse { base: u64, size: u64 },
    /// The embedding program's memory at `base`, used in place (its length is the node's size).
    Buffer { base: u64, memory: External },
}

/// One reservation and its "backed" bitmap (one bit per page, set on the first write),
/// followed in the same reservation by the "collapsed" bitmap (one bit per 2 MiB region, see
/// [`Chunk::written`]).
struct Chunk {
    data: Reservation,
    bits: Reservation,
}

/// Pages per 2 MiB region (a host huge page).
const REGION_PAGES: u64 = (HUGE_PAGE as u64) >> PAGE_SHIFT;

impl Chunk {
    /// Page `i` of the chunk was just written for the first time: when that completes its
    /// 2 MiB region (every page written), ask the host, once per region, to back the region
    /// with one huge page. Dense memory, such as the page tables the allocator hands out one
    /// after another, then costs one TLB entry per 512 pages; the memory used stays the same,
    /// as every page of the region is backed already. A page given back later splits the
    /// huge page again, and the region is not collapsed a second time (so a table freed and
    /// made again and again costs no copying).
    fn written(&mut self, i: u64) {
        let pages = (self.data.words().len() / ENTRIES_PER_PAGE) as u64;
        let region = i / REGION_PAGES;
        // The collapsed bit of the region, after the page bits.
        let w = pages.div_ceil(64) as usize + (region >> 6) as usize;
        let bit = 1u64 << (region & 63);
        let words = (REGION_PAGES / 64) as usize;
        let first = region as usize * words;
        let bits = self.bits.words_mut();
        if bits.get(w).is_none_or(|d| d & bit != 0) {
            return;
        }
        let full = bits
            .get(first..first + words)
            .is_some_and(|ws| ws.iter().all(|&x| x == u64::MAX));
        if full {
            if let Some(d) = bits.get_mut(w) {
                *d |= bit;
            }
            self.data
                .collapse(region << (PAGE_SHIFT + REGION_PAGES.trailing_zeros()));
        }
    }
}

enum Store {
    /// Reservations of `CHUNK_BYTES` each (the last shorter), None until first used.
    Owned(Box<[Option<Chunk>]>),
    Buffer(External),
}

struct Node {
    base_pfn: u64,
    npages: u64,
    store: Store,
    /// Indices of the reservations made so far, in the order they were made.
    made: Vec<u32>,
    /// (order, start pfn) of every free block; None while the node is as built (one run of free
    /// pages from the first unreserved page to the end), so untouched nodes allocate nothing.
    free: Option<BTreeSet<(u8, u64)>>,
    /// Bit k set when `free` holds a block of order k, so look-ups visit only those orders.
    orders: u64,
    free_pages: u64,
    /// Frames kept out of the allocator for good: frame 0 when the node starts at 0, every
    /// page of a buffer node.
    reserved_pages: u64,
    backed_pages: u64,
    fallbacks: u64,
}

/// Clear the bits `[from, to)` of `bits`; the number that were set.
fn clear_bits(bits: &mut [u64], from: u64, to: u64) -> u64 {
    let mut cleared = 0;
    let mut b = from;
    while b < to {
        let w = (b >> 6) as usize;
        let lo = b & 63;
        let hi = (to - (b & !63)).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        if let Some(word) = bits.get_mut(w) {
            cleared += u64::from((*word & mask).count_ones());
            *word &= !mask;
        }
        b = (b & !63) + hi;
    }
    cleared
}

impl Node {
    fn sparse(base_pfn: u64, npages: u64) -> Result<Self> {
        let nchunks = usize::try_from(npages.div_ceil(1 << CHUNK_PAGE_SHIFT)).map_err(|_| {
            Error::HostMemory {
                bytes: npages << PAGE_SHIFT,
                why: "node larger than the address space",
            }
        })?;
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(nchunks)
            .map_err(|_| Error::HostMemory {
                bytes: (nchunks * core::mem::size_of::<Option<Chunk>>()) as u64,
                why: "no host memory for the node's directory",
            })?;
        chunks.extend((0..nchunks).map(|_| None));
        let reserved = u64::from(base_pfn == 0);
        Ok(Node {
            base_pfn,
            npages,
            store: Store::Owned(chunks.into_boxed_slice()),
            made: Vec::new(),
            free: None,
            orders: 0,
            free_pages: npages - reserved,
            reserved_pages: reserved,
            backed_pages: 0,
            fallbacks: 0,
        })
    }

    fn buffer(base_pfn: u64, memory: External) -> Self {
        let npages = (memory.words().len() / ENTRIES_PER_PAGE) as u64;
        Node {
            base_pfn,
            npages,
            store: Store::Buffer(memory),
            made: Vec::new(),
            free: Some(BTreeSet::new()),
            orders: 0,
            free_pages: 0,
            reserved_pages: npages,
            backed_pages: npages,
            fallbacks: 0,
        }
    }

    #[inline]
    fn end_pfn(&self) -> u64 {
        self.base_pfn + self.npages
    }

    /// The word at byte offset `rel` (8-byte aligned, inside the node).
    #[inline(always)]
    fn word(&self, rel: u64) -> u64 {
        let words = match &self.store {
            Store::Owned(chunks) => match chunks.get((rel >> CHUNK_SHIFT) as usize) {
                Some(Some(c)) => c.data.words(),
                _ => return 0,
            },
            Store::Buffer(b) => return b.words().get((rel >> 3) as usize).copied().unwrap_or(0),
        };
        words
            .get(((rel & (CHUNK_BYTES - 1)) >> 3) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// The frame of `pfn` (inside the node): None when its reservation was never made.
    #[inline]
    fn frame(&self, pfn: u64) -> Option<&Frame> {
        let rel = pfn - self.base_pfn;
        let (words, first) = match &self.store {
            Store::Owned(chunks) => {
                let c = chunks.get((rel >> CHUNK_PAGE_SHIFT) as usize)?.as_ref()?;
                (
                    c.data.words(),
                    (rel & CHUNK_PAGE_MASK) as usize * ENTRIES_PER_PAGE,
                )
            }
            Store::Buffer(b) => (b.words(), rel as usize * ENTRIES_PER_PAGE),
        };
        words.get(first..first + ENTRIES_PER_PAGE)?.try_into().ok()
    }

    /// Make writes to `[pfn, pfn + n)` (inside the node) possible without failing part way:
    /// refuse a read-only buffer, make the reservations, count the pages not yet backed.
    fn prepare(&mut self, pfn: u64, n: u64, huge: bool) -> Result<u64> {
        let chunks = match &mut self.store {
            Store::Buffer(b) if b.writable() => return Ok(0),
            Store::Buffer(_) => {
                return Err(Error::MemoryAccess {
                    addr: pfn << PAGE_SHIFT,
                    len: n << PAGE_SHIFT,
                    why: "the node's buffer is read-only",
                })
            }
            Store::Owned(chunks) => chunks,
        };
        let rel = pfn - self.base_pfn;
        let mut new = 0;
        let mut p = rel;
        while p < rel + n {
            let ci = (p >> CHUNK_PAGE_SHIFT) as usize;
            let stop = (rel + n).min(((ci as u64) + 1) << CHUNK_PAGE_SHIFT);
            let Some(slot) = chunks.get_mut(ci) else {
                break;
            };
            if slot.is_none() {
                let pages =
                    (self.npages - ((ci as u64) << CHUNK_PAGE_SHIFT)).min(1 << CHUNK_PAGE_SHIFT);
                let data = Reservation::new(pages << PAGE_SHIFT, huge)?;
                // The page bits, then the collapsed bits (see [`Chunk`]).
                let bytes = 8 * (pages.div_ceil(64) + pages.div_ceil(REGION_PAGES * 64));
                let bits = Reservation::new(bytes.next_multiple_of(PAGE_SIZE), false)?;
                *slot = Some(Chunk { data, bits });
                self.made.push(ci as u32);
            }
            if let Some(c) = slot {
                let bits = c.bits.words();
                let (from, to) = (p & CHUNK_PAGE_MASK, ((stop - 1) & CHUNK_PAGE_MASK) + 1);
                // Bits set in [from, to), counted a word at a time.
                let mut set = 0u64;
                let mut b = from;
                while b < to {
                    let hi = (to - (b & !63)).min(64);
                    let lo = b & 63;
                    let mask = if hi - lo == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << (hi - lo)) - 1) << lo
                    };
                    set += u64::from((bits[(b >> 6) as usize] & mask).count_ones());
                    b = (b & !63) + hi;
                }
                new += (to - from) - set;
            }
            p = stop;
        }
        Ok(new)
    }

    /// The frame of `pfn` for writing; `prepare` must have succeeded for it. Returns the frame
    /// and whether it just became backed.
    /// `collapse`: the reservations are on 4 KiB host pages, and a 2 MiB region whose every
    /// page is written is asked to become one huge page ([`Chunk::written`]).
    fn frame_mut(&mut self, pfn: u64, collapse: bool) -> Result<(&mut Frame, bool)> {
        let rel = pfn - self.base_pfn;
        let gone = Error::MemoryAccess {
            addr: pfn << PAGE_SHIFT,
            len: PAGE_SIZE,
            why: "memory not prepared for writing",
        };
        let (words, first, new) = match &mut self.store {
            Store::Owned(chunks) => {
                let Some(Some(c)) = chunks.get_mut((rel >> CHUNK_PAGE_SHIFT) as usize) else {
                    return Err(gone);
                };
                let i = rel & CHUNK_PAGE_MASK;
                let bits = c.bits.words_mut();
                let w = &mut bits[(i >> 6) as usize];
                let new = *w & (1 << (i & 63)) == 0;
                *w |= 1 << (i & 63);
                if new && collapse {
                    c.written(i);
                }
                (c.data.words_mut(), i as usize * ENTRIES_PER_PAGE, new)
            }
            Store::Buffer(b) => match b.words_mut() {
                Some(w) => (w, rel as usize * ENTRIES_PER_PAGE, false),
                None => return Err(gone),
            },
        };
        if new {
            self.backed_pages += 1;
        }
        let f = words
            .get_mut(first..first + ENTRIES_PER_PAGE)
            .and_then(|s| <&mut Frame>::try_from(s).ok());
        match f {
            Some(f) => Ok((f, new)),
            None => Err(gone),
        }
    }

    /// Drop the backing of `[pfn, pfn + n)`, so it reads as zeros and costs nothing. The
    /// number of pages that had backing.
    fn discard(&mut self, pfn: u64, n: u64) -> u64 {
        let Store::Owned(chunks) = &mut self.store else {
            return 0;
        };
        let rel = pfn - self.base_pfn;
        let mut dropped = 0;
        let mut p = rel;
        while p < rel + n {
            let ci = (p >> CHUNK_PAGE_SHIFT) as usize;
            let stop = (rel + n).min(((ci as u64) + 1) << CHUNK_PAGE_SHIFT);
            if let Some(Some(c)) = chunks.get_mut(ci) {
                let (from, to) = (p & CHUNK_PAGE_MASK, ((stop - 1) & CHUNK_PAGE_MASK) + 1);
                let k = clear_bits(c.bits.words_mut(), from, to);
                if k > 0 {
                    c.data
                        .discard(from << PAGE_SHIFT, (to - from) << PAGE_SHIFT);
                    dropped += k;
                }
            }
            p = stop;
        }
        self.backed_pages -= dropped;
        dropped
    }

    /// The first page the allocator may hand out.
    fn first_free(&self) -> u64 {
        self.base_pfn + self.reserved_pages
    }

    /// The free lists and the mask of their non-empty orders, built from the node's initial
    /// run on first use.
    fn free_mut(&mut self) -> (&mut BTreeSet<(u8, u64)>, &mut u64) {
        if self.free.is_none() {
            let (first, n) = (self.first_free(), self.npages - self.reserved_pages);
            let set: BTreeSet<(u8, u64)> = aligned_blocks(first, n)
                .map(|(s, o)| (o as u8, s))
                .collect();
            self.orders = set.iter().fold(0, |m, &(k, _)| m | (1u64 << k));
            self.free = Some(set);
        }
        match &mut self.free {
            Some(f) => (f, &mut self.orders),
            None => unreachable!("built just above"),
        }
    }

    /// Remove free block `(k, s)`; false when it is not there.
    fn remove_free(free: &mut BTreeSet<(u8, u64)>, orders: &mut u64, k: u8, s: u64) -> bool {
        if !free.remove(&(k, s)) {
            return false;
        }
        if free.range((k, 0)..=(k, u64::MAX)).next().is_none() {
            *orders &= !(1u64 << k);
        }
        true
    }

    /// True when any page of `[pfn, pfn + 2^order)` lies in a free block.
    fn overlaps_free(&self, pfn: u64, order: usize) -> bool {
        let end = pfn + (1u64 << order);
        let Some(free) = &self.free else {
            return pfn < self.end_pfn() && end > self.first_free();
        };
        let mut mask = self.orders;
        while mask != 0 {
            let k = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if k >= order {
                if free.contains(&(k as u8, pfn & !((1u64 << k) - 1))) {
                    return true;
                }
            } else if free.range((k as u8, pfn)..(k as u8, end)).next().is_some() {
                return true;
            }
        }
        false
    }

    /// Take a block of 2^order pages, lowest address of the smallest fitting order first.
    fn take_block(&mut self, order: usize) -> Option<u64> {
        let (free, orders) = self.free_mut();
        let &(j, start) = free.range((order as u8, 0)..).next()?;
        Self::remove_free(free, orders, j, start);
        for k in (order..j as usize).rev() {
            free.insert((k as u8, start + (1u64 << k)));
            *orders |= 1u64 << k;
        }
        self.free_pages -= 1u64 << order;
        Some(start)
    }

    /// Return `[pfn, pfn + n)` (already checked to be allocated) to the free lists, merging buddies.
    fn release(&mut self, pfn: u64, n: u64) {
        let (free, orders) = self.free_mut();
        for (start, order) in aligned_blocks(pfn, n) {
            let (mut s, mut k) = (start, order);
            while k < MAX_ORDER {
                let buddy = s ^ (1u64 << k);
                if *orders & (1u64 << k) == 0 || !Self::remove_free(free, orders, k as u8, buddy) {
                    break;
                }
                s = s.min(buddy);
                k += 1;
            }
            free.insert((k as u8, s));
            *orders |= 1u64 << k;
        }
        self.free_pages += n;
    }

    fn largest_free_order(&self) -> Option<usize> {
        match &self.free {
            Some(_) => (self.orders != 0).then(|| 63 - self.orders.leading_zeros() as usize),
            None => aligned_blocks(self.first_free(), self.npages - self.reserved_pages)
                .map(|(_, o)| o)
                .max(),
        }
    }
}

/// Split `[pfn, pfn + n)` into maximal naturally aligned power-of-two blocks.
fn aligned_blocks(pfn: u64, n: u64) -> impl Iterator<Item = (u64, usize)> {
    let end = pfn + n;
    let mut p = pfn;
    core::iter::from_fn(move || {
        if p >= end {
            return None;
        }
        let align = if p == 0 {
            MAX_ORDER
        } else {
            (p.trailing_zeros() as usize).min(MAX_ORDER)
        };
        let fit = (63 - (end - p).leading_zeros()) as usize;
        let order = align.min(fit);
        let start = p;
        p += 1u64 << order;
        Some((start, order))
    })
}

fn order_for(npages: u64) -> usize {
    (64 - (npages - 1).leading_zeros()) as usize
}

/// The host's physical memory in pages (`MemTotal`), or unlimited when it cannot be read.
fn host_pages() -> u64 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    kib.map_or(u64::MAX, |k| k / 4)
}

/// The simulated machine memory: NUMA nodes, sparse frames, and a page allocator per node.
pub struct PhysMem {
    nodes: Vec<Node>,
    /// `(base_pfn, end_pfn, node index)` sorted by base, for address -> node.
    sorted: Vec<(u64, u64, u32)>,
    /// Transparent huge pages asked for on the reservations.
    huge_pages: bool,
    /// Pages with backing store on the owned nodes, and the most there may be.
    backed: u64,
    backing_limit: u64,
}

impl PhysMem {
    /// Build from `(base, size)` byte ranges, one per node, in node order.
    pub fn new(ranges: &[(u64, u64)]) -> Result<Self> {
        let mut specs = Vec::new();
        specs
            .try_reserve_exact(ranges.len())
            .map_err(|_| too_many(ranges.len()))?;
        specs.extend(
            ranges
                .iter()
                .map(|&(base, size)| NodeSpec::Sparse { base, size }),
        );
        Self::with_nodes(specs, false)
    }

    /// Build from node descriptions, in node order; `huge_pages`: ask the host for transparent
    /// huge pages on the reservations (fewer TLB misses where tables are dense; a freed 4 KiB
    /// page inside one splits it). Without it the reservations stay on 4 KiB host pages, and a
    /// 2 MiB region every page of which has been written is collapsed into one huge page,
    /// once (see `Chunk::written`).
    pub fn with_nodes(specs: Vec<NodeSpec>, huge_pages: bool) -> Result<Self> {
        if specs.is_empty() {
            return Err(Error::invalid(
                "nodes",
                "at least one (base, size) range is needed",
            ));
        }
        if specs.len() > MAX_NODES {
            return Err(too_many(specs.len()));
        }
        let limit = 1u64 << MAX_MADDR_BITS;
        let mut sorted = Vec::new();
        sorted
            .try_reserve_exact(specs.len())
            .map_err(|_| too_many(specs.len()))?;
        for (i, spec) in specs.iter().enumerate() {
            let (base, size) = match spec {
                NodeSpec::Sparse { base, size } => (*base, *size),
                NodeSpec::Buffer { base, memory } => (*base, memory.words().len() as u64 * 8),
            };
            if base & PAGE_MASK != 0 || size & PAGE_MASK != 0 {
                return Err(Error::invalid(
                    "nodes",
                    format!("node {i}: base {base:#x} and size {size:#x} must be 4 KiB aligned"),
                ));
            }
            if size == 0 {
                return Err(Error::invalid("nodes", format!("node {i}: size 0")));
            }
            match base.checked_add(size) {
                Some(end) if end <= limit => {}
                _ => {
                    return Err(Error::invalid(
                        "nodes",
                        format!("node {i}: [{base:#x}, +{size:#x}) goes past 2^52"),
                    ))
                }
            }
            sorted.push((base >> PAGE_SHIFT, (base + size) >> PAGE_SHIFT, i as u32));
        }
        sorted.sort_unstable();
        for w in sorted.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.1 > b.0 {
                return Err(Error::invalid(
                    "nodes",
                    format!(
                        "node {} [{:#x}, {:#x}) overlaps node {} at {:#x}",
                        a.2,
                        a.0 << PAGE_SHIFT,
                        a.1 << PAGE_SHIFT,
                        b.2,
                        b.0 << PAGE_SHIFT
                    ),
                ));
            }
        }
        let mut nodes = Vec::new();
        nodes
            .try_reserve_exact(specs.len())
            .map_err(|_| too_many(specs.len()))?;
        for spec in specs {
            nodes.push(match spec {
                NodeSpec::Sparse { base, size } => {
                    Node::sparse(base >> PAGE_SHIFT, size >> PAGE_SHIFT)?
                }
                NodeSpec::Buffer { base, memory } => Node::buffer(base >> PAGE_SHIFT, memory),
            });
        }
        Ok(PhysMem {
            nodes,
            sorted,
            huge_pages,
            backed: 0,
            backing_limit: host_pages(),
        })
    }

    /// Most pages the owned nodes may have backed at once (default: the host's physical
    /// memory). Writes and `ensure_free` past it give `OutOfMemory`.
    pub fn backing_limit(&self) -> u64 {
        self.backing_limit
    }

    pub fn set_backing_limit(&mut self, pages: u64) {
        self.backing_limit = pages;
    }

    /// True when the reservations ask for transparent huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// Number of NUMA nodes.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `(base, size)` of every node, in node order.
    pub fn node_ranges(&self) -> Vec<(u64, u64)> {
        self.nodes
            .iter()
            .map(|n| (n.base_pfn << PAGE_SHIFT, n.npages << PAGE_SHIFT))
            .collect()
    }

    /// True when node `i` (which must exist) is the embedding program's read-only buffer.
    pub fn node_read_only(&self, i: usize) -> bool {
        matches!(&self.nodes[i].store, Store::Buffer(b) if !b.writable())
    }

    #[inline]
    fn node_index_of_pfn(&self, pfn: u64) -> Option<usize> {
        let s = &self.sorted;
        if s.len() <= LINEAR_NODES {
            // A handful of nodes: a linear scan beats a binary search.
            return s
                .iter()
                .find(|&&(b, e, _)| pfn >= b && pfn < e)
                .map(|&(_, _, i)| i as usize);
        }
        let k = s.partition_point(|&(b, _, _)| b <= pfn);
        let &(_, e, i) = s.get(k.checked_sub(1)?)?;
        (pfn < e).then_some(i as usize)
    }

    /// The node owning `maddr`, or None when no node does.
    #[inline]
    pub fn node_of(&self, maddr: Maddr) -> Option<u32> {
        self.node_index_of_pfn(maddr.pfn()).map(|i| i as u32)
    }

    fn span_node(&self, addr: u64, len: u64) -> Result<usize> {
        let i = self
            .node_index_of_pfn(addr >> PAGE_SHIFT)
            .ok_or(Error::MemoryAccess {
                addr,
                len,
                why: "address outside every NUMA node",
            })?;
        let end = addr.checked_add(len).ok_or(Error::MemoryAccess {
            addr,
            len,
            why: "range overflows",
        })?;
        if end > self.nodes[i].end_pfn() << PAGE_SHIFT {
            return Err(Error::MemoryAccess {
                addr,
                len,
                why: "access runs past the end of its node",
            });
        }
        Ok(i)
    }

    /// Make a write of `len` bytes at `addr` (inside node `i`) unable to fail part way: the
    /// reservations exist, the buffer is writable, the backing limit leaves room.
    fn prepare_write(&mut self, i: usize, addr: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let first = addr >> PAGE_SHIFT;
        let last = (addr + len - 1) >> PAGE_SHIFT;
        let huge = self.huge_pages;
        let new = self.nodes[i].prepare(first, last - first + 1, huge)?;
        if new > 0 && self.backed.saturating_add(new) > self.backing_limit {
            return Err(self.over_limit(new));
        }
        Ok(())
    }

    fn over_limit(&self, npages: u64) -> Error {
        Error::HostMemory {
            bytes: npages << PAGE_SHIFT,
            why: "the backing limit (host pages the arena may use) would be passed",
        }
    }

    /// Frame `pfn` of node `i` for writing, after `prepare_write` covered it.
    fn frame_mut(&mut self, i: usize, pfn: u64) -> Result<&mut Frame> {
        let (f, new) = self.nodes[i].frame_mut(pfn, !self.huge_pages)?;
        if new {
            self.backed += 1;
        }
        Ok(f)
    }

    /// Up to `out.len()` contiguous runs of memory as words (first machine address, words):
    /// each reservation made so far (in the order made) and each buffer node, from the first
    /// [`RUN_SCAN_NODES`] nodes (a view answers the rest through `load_u64`). The number
    /// written.
    pub fn runs<'s>(&'s self, out: &mut [(u64, &'s [u64])]) -> usize {
        let mut n = 0;
        for &(base_pfn, _, i) in self.sorted.iter().take(RUN_SCAN_NODES) {
            let Some(node) = self.nodes.get(i as usize) else {
                continue;
            };
            let base = base_pfn << PAGE_SHIFT;
            let runs: &mut dyn Iterator<Item = (u64, &'s [u64])> = match &node.store {
                Store::Owned(chunks) => &mut node.made.iter().filter_map(move |&k| {
                    let c = chunks.get(k as usize)?.as_ref()?;
                    Some((base + (u64::from(k) << CHUNK_SHIFT), c.data.words()))
                }),
                Store::Buffer(b) => &mut std::iter::once((base, b.words())),
            };
            for run in runs {
                let Some(slot) = out.get_mut(n) else {
                    return n;
                };
                *slot = run;
                n += 1;
            }
        }
        n
    }

    /// The frame holding `pfn`: `Some(None)` when it is inside a node but its memory was never
    /// reserved (zeros), `None` when no node owns it. The walkers' primitive.
    #[inline]
    pub fn frame(&self, pfn: u64) -> Option<Option<&Frame>> {
        let i = self.node_index_of_pfn(pfn)?;
        Some(self.nodes[i].frame(pfn))
    }

    /// Read the 8-byte entry at `maddr` (8-byte aligned). None when no node owns it.
    #[inline]
    pub fn load_u64(&self, maddr: u64) -> Option<u64> {
        let i = self.node_index_of_pfn(maddr >> PAGE_SHIFT)?;
        let n = &self.nodes[i];
        Some(n.word((maddr & !7) - (n.base_pfn << PAGE_SHIFT)))
    }

    /// Read a u64 at an 8-byte aligned machine address.
    pub fn read_u64(&self, maddr: Maddr) -> Result<u64> {
        let a = maddr.get();
        if a & 7 != 0 {
            return Err(Error::MemoryAccess {
                addr: a,
                len: 8,
                why: "u64 access not 8-byte aligned",
            });
        }
        self.load_u64(a).ok_or(Error::MemoryAccess {
            addr: a,
            len: 8,
            why: "address outside every NUMA node",
        })
    }

    /// Write a u64 at an 8-byte aligned machine address.
    pub fn write_u64(&mut self, maddr: Maddr, value: u64) -> Result<()> {
        let a = maddr.get();
        if a & 7 != 0 {
            return Err(Error::MemoryAccess {
                addr: a,
                len: 8,
                why: "u64 access not 8-byte aligned",
            });
        }
        let i = self.span_node(a, 8)?;
        self.prepare_write(i, a, 8)?;
        self.frame_mut(i, a >> PAGE_SHIFT)?[((a & PAGE_MASK) >> 3) as usize] = value;
        Ok(())
    }

    /// Write `words` as consecutive u64s from an 8-byte aligned `maddr`; the range must lie
    /// inside one node (checked first: on error nothing is written). Whole-frame copies, no
    /// byte conversion: the batch writer of the Python API.
    pub fn write_u64s(&mut self, maddr: Maddr, words: &[u64]) -> Result<()> {
        let a = maddr.get();
        let len = (words.len() as u64).saturating_mul(8);
        if a & 7 != 0 {
            return Err(Error::MemoryAccess {
                addr: a,
                len,
                why: "u64 access not 8-byte aligned",
            });
        }
        let i = self.span_node(a, len)?;
        self.prepare_write(i, a, len)?;
        let mut a = a;
        let mut rest = words;
        while !rest.is_empty() {
            let off = ((a & PAGE_MASK) >> 3) as usize;
            let n = (ENTRIES_PER_PAGE - off).min(rest.len());
            let (now, later) = rest.split_at(n);
            self.frame_mut(i, a >> PAGE_SHIFT)?[off..off + n].copy_from_slice(now);
            rest = later;
            a += (n as u64) * 8;
        }
        Ok(())
    }

    /// The whole table page at a 4 KiB aligned `maddr`, for writers that fill many entries.
    pub fn page_mut(&mut self, maddr: Maddr) -> Result<&mut Frame> {
        let a = maddr.get();
        if !maddr.is_page_aligned() {
            return Err(Error::MemoryAccess {
                addr: a,
                len: PAGE_SIZE,
                why: "page access not 4 KiB aligned",
            });
        }
        let i = self.span_node(a, PAGE_SIZE)?;
        self.prepare_write(i, a, PAGE_SIZE)?;
        self.frame_mut(i, a >> PAGE_SHIFT)
    }

    /// Read `out.len()` bytes starting at `maddr`; the range must lie inside one node.
    pub fn read(&self, maddr: Maddr, out: &mut [u8]) -> Result<()> {
        let i = self.span_node(maddr.get(), out.len() as u64)?;
        let node = &self.nodes[i];
        let mut a = maddr.get();
        let mut done = 0usize;
        while done < out.len() {
            let off = (a & PAGE_MASK) as usize;
            let n = (PAGE_SIZE as usize - off).min(out.len() - done);
            let dst = &mut out[done..done + n];
            match node.frame(a >> PAGE_SHIFT) {
                None => dst.fill(0),
                Some(f) => {
                    for (k, b) in dst.iter_mut().enumerate() {
                        let byte = off + k;
                        *b = (f[byte >> 3] >> ((byte & 7) * 8)) as u8;
                    }
                }
            }
            done += n;
            a += n as u64;
        }
        Ok(())
    }

    /// Write `data` starting at `maddr`; the range must lie inside one node (checked first: on
    /// error nothing is written).
    pub fn write(&mut self, maddr: Maddr, data: &[u8]) -> Result<()> {
        let i = self.span_node(maddr.get(), data.len() as u64)?;
        self.prepare_write(i, maddr.get(), data.len() as u64)?;
        let mut a = maddr.get();
        let mut done = 0usize;
        while done < data.len() {
            let off = (a & PAGE_MASK) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - done);
            let src = &data[done..done + n];
            let f = self.frame_mut(i, a >> PAGE_SHIFT)?;
            if off & 7 == 0 && n & 7 == 0 {
                for (k, w) in src.chunks_exact(8).enumerate() {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(w);
                    f[(off >> 3) + k] = u64::from_le_bytes(b);
                }
            } else {
                for (k, &b) in src.iter().enumerate() {
                    let byte = off + k;
                    let sh = (byte & 7) * 8;
                    let w = &mut f[byte >> 3];
                    *w = (*w & !(0xffu64 << sh)) | ((b as u64) << sh);
                }
            }
            done += n;
            a += n as u64;
        }
        Ok(())
    }

    /// `InvalidArgument` unless `node` is None (no preference) or an existing node.
    pub fn check_node(&self, node: Option<u32>) -> Result<()> {
        match node {
            Some(n) if n as usize >= self.nodes.len() => Err(Error::invalid(
                "node",
                format!("node {n} does not exist (there are {})", self.nodes.len()),
            )),
            _ => Ok(()),
        }
    }

    /// `OutOfMemory` (naming the preferred `node`) unless `needed` single pages can be
    /// allocated, on any node since allocation falls back, and backed within the backing
    /// limit: how table builders check before writing anything.
    pub fn ensure_free(&self, needed: u64, node: Option<u32>) -> Result<()> {
        let free: u64 = self.nodes.iter().map(|n| n.free_pages).sum();
        if free < needed {
            return Err(Error::OutOfMemory {
                npages: needed,
                node,
            });
        }
        if self.backed.saturating_add(needed) > self.backing_limit {
            return Err(self.over_limit(needed));
        }
        Ok(())
    }

    /// Allocate `npages` contiguous zeroed pages, on `node` when it has room, else on another
    /// node (counted as a fallback of `node`). `node = None`: the first node with room.
    /// The pages' reservations are made here, so writing them cannot fail for want of one.
    pub fn alloc_pages(&mut self, npages: u64, node: Option<u32>) -> Result<Maddr> {
        if npages == 0 {
            return Err(Error::invalid("npages", "must be at least 1"));
        }
        self.check_node(node)?;
        if npages > 1u64 << MAX_ORDER {
            return Err(Error::OutOfMemory { npages, node });
        }
        let order = order_for(npages);
        let first = node.map_or(0, |n| n as usize);
        let count = self.nodes.len();
        let huge = self.huge_pages;
        for k in 0..count {
            let i = (first + k) % count;
            let fits = self.nodes[i]
                .largest_free_order()
                .is_some_and(|o| o >= order);
            if !fits {
                continue;
            }
            let nd = &mut self.nodes[i];
            let Some(start) = nd.take_block(order) else {
                continue;
            };
            if let Err(e) = nd.prepare(start, npages, huge) {
                nd.release(start, 1u64 << order);
                return Err(e);
            }
            let excess = (1u64 << order) - npages;
            if excess > 0 {
                nd.release(start + npages, excess);
            }
            self.backed -= nd.discard(start, npages);
            if k > 0 {
                if let Some(n) = node {
                    self.nodes[n as usize].fallbacks += 1;
                }
            }
            return Ok(Maddr(start << PAGE_SHIFT));
        }
        Err(Error::OutOfMemory { npages, node })
    }

    /// Free `npages` pages at `maddr`, all of which must be allocated and inside one node.
    pub fn free_pages(&mut self, maddr: Maddr, npages: u64) -> Result<()> {
        if !maddr.is_page_aligned() {
            return Err(Error::BadFree {
                addr: maddr,
                npages,
                why: "address not 4 KiB aligned",
            });
        }
        if npages == 0 {
            return Err(Error::BadFree {
                addr: maddr,
                npages,
                why: "npages is 0",
            });
        }
        let len = npages.checked_mul(PAGE_SIZE).ok_or(Error::BadFree {
            addr: maddr,
            npages,
            why: "size overflows",
        })?;
        let i = self
            .span_node(maddr.get(), len)
            .map_err(|_| Error::BadFree {
                addr: maddr,
                npages,
                why: "range not inside one NUMA node",
            })?;
        let pfn = maddr.pfn();
        let nd = &mut self.nodes[i];
        if let Store::Buffer(_) = nd.store {
            return Err(Error::BadFree {
                addr: maddr,
                npages,
                why: "the node is the embedding program's buffer; its pages are never allocated",
            });
        }
        if pfn < nd.base_pfn + u64::from(nd.base_pfn == 0) {
            return Err(Error::BadFree {
                addr: maddr,
                npages,
                why: "frame 0 is reserved (address 0 means \"no table\"); it was never allocated",
            });
        }
        if aligned_blocks(pfn, npages).any(|(s, o)| nd.overlaps_free(s, o)) {
            return Err(Error::BadFree {
                addr: maddr,
                npages,
                why: "some of these pages are not allocated (double free?)",
            });
        }
        self.backed -= nd.discard(pfn, npages);
        nd.release(pfn, npages);
        Ok(())
    }

    /// True when the page at `maddr` is allocated: handed out by `alloc_pages` and not freed
    /// since (inside an owned node, in no free block, not the reserved frame 0).
    pub fn is_allocated(&self, maddr: Maddr) -> bool {
        let pfn = maddr.pfn();
        match self.node_index_of_pfn(pfn) {
            Some(i) => {
                let n = &self.nodes[i];
                matches!(n.store, Store::Owned(_))
                    && pfn >= n.base_pfn + n.reserved_pages
                    && !n.overlaps_free(pfn, 0)
            }
            None => false,
        }
    }

    /// Statistics per node, in node order.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.nodes
            .iter()
            .map(|n| NodeStats {
                base: n.base_pfn << PAGE_SHIFT,
                size: n.npages << PAGE_SHIFT,
                total_pages: n.npages,
                reserved_pages: n.reserved_pages,
                allocated_pages: n.npages - n.reserved_pages - n.free_pages,
                free_pages: n.free_pages,
                backed_pages: n.backed_pages,
                fallbacks: n.fallbacks,
            })
            .collect()
    }
}

fn too_many(n: usize) -> Error {
    Error::HostMemory {
        bytes: (n as u64).saturating_mul(core::mem::size_of::<Node>() as u64),
        why: "too many nodes (at most 2^24)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn two_nodes() -> PhysMem {
        PhysMem::new(&[(0, 16 * PAGE_SIZE), (GIB, 8 * PAGE_SIZE)]).unwrap()
    }

    #[test]
    fn rejects_bad_node_ranges() {
        assert!(PhysMem::new(&[]).is_err());
        assert!(PhysMem::new(&[(0x800, 0x1000)]).is_err());
        assert!(PhysMem::new(&[(0, 0)]).is_err());
        assert!(PhysMem::new(&[(0, 0x3000), (0x2000, 0x1000)]).is_err());
        assert!(PhysMem::new(&[((1 << 52) - 0x1000, 0x2000)]).is_err());
        assert!(PhysMem::new(&[(0x2000, 0x1000), (0, 0x2000)]).is_ok());
    }

    #[test]
    fn alloc_on_requested_node_then_fallback() {
        let mut m = two_nodes();
        let a = m.alloc_pages(8, Some(1)).unwrap();
        assert_eq!(m.node_of(a), Some(1));
        let b = m.alloc_pages(1, Some(1)).unwrap();
        assert_eq!(m.node_of(b), Some(0));
        let s = m.stats();
        assert_eq!(s[1].fallbacks, 1);
        assert_eq!(s[1].free_pages, 0);
        assert_eq!(s[0].allocated_pages, 1);
    }

    #[test]
    fn non_power_of_two_returns_tail() {
        let mut m = two_nodes();
        let a = m.alloc_pages(3, Some(1)).unwrap();
        assert_eq!(m.stats()[1].allocated_pages, 3);
        let b = m.alloc_pages(1, Some(1)).unwrap();
        assert_eq!(b.get(), a.get() + 3 * PAGE_SIZE);
        m.free_pages(a, 3).unwrap();
        m.free_pages(b, 1).unwrap();
        assert_eq!(m.stats()[1].free_pages, 8);
        // Everything merged back: one 8-page block can be had again.
        assert_eq!(m.alloc_pages(8, Some(1)).unwrap().get(), GIB);
    }

    #[test]
    fn frame_zero_is_reserved_once_for_good() {
        let mut m = two_nodes();
        let s = m.stats();
        assert_eq!(
            (
                s[0].total_pages,
                s[0].reserved_pages,
                s[0].allocated_pages,
                s[0].free_pages
            ),
            (16, 1, 0, 15)
        );
        assert_eq!((s[1].reserved_pages, s[1].free_pages), (0, 8));
        assert!(!m.is_allocated(Maddr(0)));
        // A 16-page block would need frame 0; the aligned 8-page block above it is there.
        assert!(matches!(
            m.alloc_pages(16, Some(0)),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(m.alloc_pages(8, Some(0)).unwrap().get(), 8 * PAGE_SIZE);
        let mut got: Vec<u64> = (0..7)
            .map(|_| m.alloc_pages(1, Some(0)).unwrap().pfn())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..8).collect::<Vec<u64>>());
        let s = m.stats()[0];
        assert_eq!(
            (s.reserved_pages, s.allocated_pages, s.free_pages),
            (1, 15, 0)
        );
        // Node 0 is full: the next page comes from node 1, never frame 0.
        let c = m.alloc_pages(1, Some(0)).unwrap();
        assert_eq!(m.node_of(c), Some(1));
        let before = m.stats();
        assert!(matches!(
            m.free_pages(Maddr(0), 1),
            Err(Error::BadFree { .. })
        ));
        assert!(matches!(
            m.free_pages(Maddr(0), 2),
            Err(Error::BadFree { .. })
        ));
        assert_eq!(m.stats(), before);
        // Freeing its neighbours never merges a block over frame 0.
        for p in 1..8u64 {
            m.free_pages(Maddr(p * PAGE_SIZE), 1).unwrap();
        }
        m.free_pages(Maddr(8 * PAGE_SIZE), 8).unwrap();
        assert_eq!(m.stats()[0].free_pages, 15);
        assert!(m.alloc_pages(16, Some(0)).is_err());
        // Still memory: readable and writable.
        m.write_u64(Maddr(0), 7).unwrap();
        assert_eq!(m.read_u64(Maddr(0)).unwrap(), 7);
        // A one-page node at 0 has nothing to hand out.
        let mut one = PhysMem::new(&[(0, PAGE_SIZE)]).unwrap();
        assert_eq!(one.stats()[0].free_pages, 0);
        assert!(one.alloc_pages(1, None).is_err());
    }

    #[test]
    fn double_free_and_bad_free_change_nothing() {
        let mut m = two_nodes();
        let a = m.alloc_pages(2, Some(0)).unwrap();
        m.free_pages(a, 2).unwrap();
        let before = m.stats();
        assert!(matches!(m.free_pages(a, 1), Err(Error::BadFree { .. })));
        assert!(matches!(
            m.free_pages(Maddr(0x123), 1),
            Err(Error::BadFree { .. })
        ));
        assert!(matches!(
            m.free_pages(Maddr(5 * GIB), 1),
            Err(Error::BadFree { .. })
        ));
        assert_eq!(m.stats(), before);
    }

    #[test]
    fn zeroed_on_alloc_and_sparse() {
        let mut m = two_nodes();
        let a = m.alloc_pages(1, Some(0)).unwrap();
        m.write_u64(a, 0xdead_beef).unwrap();
        assert_eq!(m.stats()[0].backed_pages, 1);
        m.free_pages(a, 1).unwrap();
        assert_eq!(m.stats()[0].backed_pages, 0);
        let b = m.alloc_pages(1, Some(0)).unwrap();
        assert_eq!(a, b);
        assert_eq!(m.read_u64(b).unwrap(), 0);
    }

    #[test]
    fn bytes_round_trip_across_pages() {
        let mut m = two_nodes();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        m.write(Maddr(0xffd), &data).unwrap();
        let mut out = vec![0u8; 5000];
        m.read(Maddr(0xffd), &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(m.read_u64(Maddr(0x1000)).unwrap() & 0xff, data[3] as u64);
        assert!(m.write(Maddr(GIB + 8 * PAGE_SIZE - 4), &[0; 8]).is_err());
        assert!(m.read_u64(Maddr(2 * GIB)).is_err());
        assert_eq!(m.load_u64(2 * GIB), None);
        assert_eq!(m.load_u64(GIB), Some(0));
    }

    #[test]
    fn write_u64s_spans_pages_and_is_all_or_nothing() {
        let mut m = two_nodes();
        let words: Vec<u64> = (0..700u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        m.write_u64s(Maddr(0x1ff8), &words).unwrap();
        for (k, &w) in words.iter().enumerate() {
            assert_eq!(m.read_u64(Maddr(0x1ff8 + 8 * k as u64)).unwrap(), w);
        }
        // Byte view agrees (little endian).
        let mut b = [0u8; 8];
        m.read(Maddr(0x2000), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), words[1]);
        let before = m.stats();
        assert!(m.write_u64s(Maddr(0x1004), &[1]).is_err());
        // Runs past node 1's end: nothing written.
        let end = GIB + 8 * PAGE_SIZE;
        assert!(m.write_u64s(Maddr(end - 16), &[1, 2, 3]).is_err());
        assert_eq!(m.load_u64(end - 16), Some(0));
        assert!(m.write_u64s(Maddr(2 * GIB), &[1]).is_err());
        assert_eq!(m.stats(), before);
        assert!(m.write_u64s(Maddr(2 * GIB), &[]).is_err());
    }

    #[test]
    fn check_node_and_ensure_free() {
        let mut m = two_nodes();
        assert!(m.check_node(None).is_ok() && m.check_node(Some(1)).is_ok());
        let e = m.check_node(Some(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            Error::invalid("node", "node 2 does not exist (there are 2)").to_string()
        );
        // 15 free on node 0 (frame 0 reserved) + 8 on node 1, single pages from any node.
        assert!(m.ensure_free(23, Some(1)).is_ok() && m.ensure_free(0, None).is_ok());
        assert_eq!(
            m.ensure_free(24, Some(1)),
            Err(Error::OutOfMemory {
                npages: 24,
                node: Some(1)
            })
        );
        m.alloc_pages(8, Some(1)).unwrap();
        assert!(m.ensure_free(15, Some(1)).is_ok() && m.ensure_free(16, None).is_err());
        assert!(matches!(
            m.alloc_pages(1, Some(7)),
            Err(Error::InvalidArgument { what: "node", .. })
        ));
    }

    #[test]
    fn terabyte_nodes_are_cheap() {
        let mut m = PhysMem::new(&[(0, 512 * GIB), (512 * GIB, 512 * GIB)]).unwrap();
        for i in 0..1000u64 {
            let a = m.alloc_pages(1, Some((i % 2) as u32)).unwrap();
            m.write_u64(a, i).unwrap();
        }
        let s = m.stats();
        assert_eq!(s[0].allocated_pages + s[1].allocated_pages, 1000);
        assert_eq!(s[0].backed_pages + s[1].backed_pages, 1000);
    }

    #[test]
    fn random_alloc_free_matches_model() {
        // A small xorshift so the test needs no dependency.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut m = PhysMem::new(&[(0, 256 * PAGE_SIZE), (GIB, 128 * PAGE_SIZE)]).unwrap();
        let mut owned = std::collections::BTreeMap::<u64, u64>::new(); // pfn -> npages
        for _ in 0..5000 {
            if owned.is_empty() || rnd() % 3 != 0 {
                let n = 1 + rnd() % 9;
                let node = (rnd() % 3) as u32;
                let node = if node == 2 { None } else { Some(node) };
                match m.alloc_pages(n, node) {
                    Ok(a) => {
                        let p = a.pfn();
                        // No overlap with anything owned.
                        if let Some((&q, &qn)) = owned.range(..=p).next_back() {
                            assert!(q + qn <= p);
                        }
                        if let Some((&q, _)) = owned.range(p..).next() {
                            assert!(p + n <= q);
                        }
                        owned.insert(p, n);
                    }
                    Err(Error::OutOfMemory { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            } else {
                let k = (rnd() % owned.len() as u64) as usize;
                let (&p, &n) = owned.iter().nth(k).unwrap();
                m.free_pages(Maddr(p << PAGE_SHIFT), n).unwrap();
                owned.remove(&p);
            }
            let used: u64 = owned.values().sum();
            let s = m.stats();
            assert_eq!(s[0].allocated_pages + s[1].allocated_pages, used);
            for n in &s {
                assert_eq!(
                    n.reserved_pages + n.allocated_pages + n.free_pages,
                    n.total_pages
                );
            }
            assert!(!owned.contains_key(&0));
        }
    }

    #[test]
    fn node_of_the_whole_address_space_is_accepted_and_usable() {
        let mut m = PhysMem::new(&[(0, 1 << MAX_MADDR_BITS)]).unwrap();
        assert_eq!(m.stats()[0].total_pages, 1 << 40);
        // Far ends of the node, in different reservations.
        let top = (1u64 << MAX_MADDR_BITS) - 8;
        m.write_u64(Maddr(top), 0x1234).unwrap();
        m.write_u64(Maddr(3 * CHUNK_BYTES + 8), 0x77).unwrap();
        assert_eq!(m.read_u64(Maddr(top)).unwrap(), 0x1234);
        assert_eq!(m.load_u64(3 * CHUNK_BYTES + 8), Some(0x77));
        assert_eq!(m.load_u64(2 * CHUNK_BYTES), Some(0));
        assert_eq!(m.stats()[0].backed_pages, 2);
        let a = m.alloc_pages(1, None).unwrap();
        assert_eq!(a.get(), PAGE_SIZE);
    }

    #[test]
    fn many_nodes_look_up_by_binary_search() {
        let ranges: Vec<(u64, u64)> = (0..1000u64)
            .rev()
            .map(|i| ((i + 1) * 4 * PAGE_SIZE, PAGE_SIZE))
            .collect();
        let mut m = PhysMem::new(&ranges).unwrap();
        for (k, &(b, _)) in ranges.iter().enumerate() {
            assert_eq!(m.node_of(Maddr(b + 8)), Some(k as u32));
            assert_eq!(m.node_of(Maddr(b + PAGE_SIZE)), None);
        }
        assert_eq!(m.node_of(Maddr(0)), None);
        let a = m.alloc_pages(1, Some(500)).unwrap();
        assert_eq!(a.get(), ranges[500].0);
        m.write_u64(a, 9).unwrap();
        assert_eq!(m.read_u64(a).unwrap(), 9);
        assert!(m.alloc_pages(1, Some(500)).is_ok()); // falls back to another node
        assert_eq!(m.stats()[500].fallbacks, 1);
    }

    #[test]
    fn backing_limit_refuses_before_writing_anything() {
        let mut m = PhysMem::new(&[(0, 64 * PAGE_SIZE)]).unwrap();
        m.set_backing_limit(2);
        m.write_u64(Maddr(0), 1).unwrap();
        m.write_u64(Maddr(8), 2).unwrap(); // same page: no new backing
        assert!(m.ensure_free(1, None).is_ok());
        assert!(matches!(
            m.ensure_free(2, None),
            Err(Error::HostMemory { .. })
        ));
        let before = m.stats();
        // Three pages of which two are new: refused whole, nothing written.
        let words = vec![5u64; 3 * 512];
        assert!(matches!(
            m.write_u64s(Maddr(PAGE_SIZE), &words),
            Err(Error::HostMemory { .. })
        ));
        assert_eq!(m.stats(), before);
        assert_eq!(m.load_u64(PAGE_SIZE), Some(0));
        m.write_u64(Maddr(PAGE_SIZE), 3).unwrap();
        assert!(m.write_u64(Maddr(2 * PAGE_SIZE), 3).is_err());
        // Freeing gives the backing back.
        let a = m.alloc_pages(1, None).unwrap();
        assert_eq!(a.get(), PAGE_SIZE);
        assert_eq!(m.stats()[0].backed_pages, 1);
        m.write_u64(Maddr(2 * PAGE_SIZE), 3).unwrap();
    }

    #[test]
    fn buffer_node_is_used_in_place_and_never_allocated() {
        let mut words = vec![0u64; 1024].into_boxed_slice();
        words[3] = 0xabc;
        let ext = External::from_words(words, true).unwrap();
        let mut m = PhysMem::with_nodes(
            vec![
                NodeSpec::Buffer {
                    base: GIB,
                    memory: ext,
                },
                NodeSpec::Sparse {
                    base: 0,
                    size: 4 * PAGE_SIZE,
                },
            ],
            false,
        )
        .unwrap();
        assert_eq!(m.load_u64(GIB + 24), Some(0xabc));
        let s = m.stats()[0];
        assert_eq!(
            (
                s.total_pages,
                s.reserved_pages,
                s.allocated_pages,
                s.free_pages,
                s.backed_pages
            ),
            (2, 2, 0, 0, 2)
        );
        m.write_u64(Maddr(GIB + PAGE_SIZE), 7).unwrap();
        assert_eq!(
            m.frame((GIB >> PAGE_SHIFT) + 1).map(|f| f.is_some()),
            Some(true)
        );
        assert_eq!(m.read_u64(Maddr(GIB + PAGE_SIZE)).unwrap(), 7);
        // Allocation never hands out the buffer's pages.
        let a = m.alloc_pages(1, Some(0)).unwrap();
        assert_eq!(m.node_of(a), Some(1));
        assert!(!m.is_allocated(Maddr(GIB)));
        assert!(matches!(
            m.free_pages(Maddr(GIB), 1),
            Err(Error::BadFree { .. })
        ));
        let ro = External::from_words(vec![1u64; 512].into_boxed_slice(), false).unwrap();
        let mut m = PhysMem::with_nodes(
            vec![NodeSpec::Buffer {
                base: 0,
                memory: ro,
            }],
            false,
        )
        .unwrap();
        assert!(m.node_read_only(0));
        assert_eq!(m.read_u64(Maddr(8)).unwrap(), 1);
        assert!(matches!(
            m.write_u64(Maddr(8), 2),
            Err(Error::MemoryAccess { .. })
        ));
        assert!(m.page_mut(Maddr(0)).is_err());
        assert_eq!(m.read_u64(Maddr(8)).unwrap(), 1);
        assert!(External::from_words(vec![0u64; 100].into_boxed_slice(), true).is_err());
    }

    #[test]
    fn too_many_nodes_is_host_memory_not_abort() {
        let specs: Vec<NodeSpec> = Vec::new();
        assert!(PhysMem::with_nodes(specs, false).is_err());
        // A count past MAX_NODES is refused before anything is built.
        let big = vec![(0u64, PAGE_SIZE); MAX_NODES + 1];
        assert!(matches!(PhysMem::new(&big), Err(Error::HostMemory { .. })));
    }

    #[test]
    fn huge_page_reservations_read_and_write_the_same() {
        let specs = vec![NodeSpec::Sparse {
            base: 0,
            size: 64 << 20,
        }];
        let mut m = PhysMem::with_nodes(specs, true).unwrap();
        assert!(m.huge_pages());
        for k in 1..100u64 {
            let a = m.alloc_pages(1, None).unwrap();
            m.write_u64(a, k).unwrap();
            assert_eq!(m.read_u64(a).unwrap(), k);
        }
        assert_eq!(m.stats()[0].backed_pages, 99);
    }

    /// Regions of node `i` marked collapsed (asked to become one huge page).
    fn collapsed_regions(m: &PhysMem, i: usize) -> u64 {
        let Store::Owned(chunks) = &m.nodes[i].store else {
            return 0;
        };
        chunks
            .iter()
            .flatten()
            .map(|c| {
                let pages = (c.data.words().len() / ENTRIES_PER_PAGE) as u64;
                let from = pages.div_ceil(64) as usize;
                let to = from + pages.div_ceil(REGION_PAGES * 64) as usize;
                c.bits.words()[from..to]
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum::<u64>()
            })
            .sum()
    }

    /// A 2 MiB region becomes a candidate for one huge page when its last page is first
    /// written, not before, once only, and never when the reservations asked for huge pages
    /// already; what the pages hold and the backing counted do not change.
    #[test]
    fn a_fully_written_region_is_collapsed_once_keeping_its_contents() {
        for huge in [false, true] {
            let specs = vec![NodeSpec::Sparse {
                base: 1 << 30,
                size: 8 << 20,
            }];
            let mut m = PhysMem::with_nodes(specs, huge).unwrap();
            let base = 1u64 << 30;
            let page = |k: u64| Maddr(base + (k << PAGE_SHIFT));
            // Region 1 (pages 512..1024) written page by page, region 0 half only.
            for k in 0..256u64 {
                m.write_u64(page(k), k + 1).unwrap();
            }
            for k in 512..1023u64 {
                m.write_u64(page(k), k + 1).unwrap();
                m.write_u64(Maddr(page(k).0 + 4088), !k).unwrap();
            }
            assert_eq!(
                collapsed_regions(&m, 0),
                0,
                "one page of region 1 unwritten"
            );
            m.write_u64(page(1023), 1024).unwrap();
            assert_eq!(collapsed_regions(&m, 0), u64::from(!huge));
            for k in (0..256u64).chain(512..1024) {
                assert_eq!(m.read_u64(page(k)).unwrap(), k + 1, "page {k}");
            }
            for k in 512..1023u64 {
                assert_eq!(m.read_u64(Maddr(page(k).0 + 4088)).unwrap(), !k);
            }
            assert_eq!(m.stats()[0].backed_pages, 256 + 512);
            // A page given back and written again: still one region marked, contents kept.
            m.nodes[0].discard(page(700).0 >> PAGE_SHIFT, 1);
            assert_eq!(m.read_u64(page(700)).unwrap(), 0);
            m.write_u64(page(700), 7).unwrap();
            assert_eq!(collapsed_regions(&m, 0), u64::from(!huge));
            assert_eq!(m.read_u64(page(701)).unwrap(), 702);
            assert_eq!(m.stats()[0].backed_pages, 256 + 512);
        }
    }
}
