//! `PhysMem`: the simulated host physical memory that every table lives in.
//!
//! * NUMA node `i` owns the machine-address range `[base_i, base_i + size_i)` (half-open, 4 KiB
//!   aligned, no overlaps). A node may be terabytes.
//! * Sparse backing: a 4 KiB frame costs memory only once it is written. Never-written memory
//!   inside a node reads as zeros; an address outside every node is an error (which the hardware
//!   walk turns into the matching "table access" fault).
//! * A binary buddy allocator per node (free lists by order, lowest address first, so runs are
//!   deterministic): allocation and free cost O(MAX_ORDER * log n), never a scan over a node.
//!   Allocated pages read as zeros; freed pages drop their backing.
//! * Frame 0 (machine address 0) is reserved at construction when a node starts at 0: address
//!   0 means "no table" in root, context and page-table pointers and in this API (as in Xen), so
//!   `alloc_pages` never returns it and `free_pages` refuses it. It stays readable and writable.
//! * Per node, `total_pages == reserved_pages + allocated_pages + free_pages` at all times.
//!
//! Lookup of a frame is node (a scan of a handful of ranges) -> chunk directory -> frame: three
//! dependent loads, a few nanoseconds.

use std::collections::BTreeSet;

use crate::addr::{Maddr, ENTRIES_PER_PAGE, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::error::{Error, Result};

/// One 4 KiB frame as 512 little-endian u64 words (host endianness is little on every target
/// we build for; `read`/`write` of bytes convert explicitly).
pub type Frame = [u64; ENTRIES_PER_PAGE];

const CHUNK_SHIFT: u32 = 15; // 32768 frames (128 MiB of address space) per directory chunk
const CHUNK_PAGES: usize = 1 << CHUNK_SHIFT;
/// Largest buddy block: 2^40 pages (4 EiB), larger than any node we accept.
const MAX_ORDER: usize = 40;
/// The architectural limit of machine addresses (52 bits).
pub const MAX_MADDR_BITS: u32 = 52;

type Chunk = Box<[Option<Box<Frame>>]>;

/// Per-node statistics, as `PhysMem::stats` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStats {
    pub base: u64,
    pub size: u64,
    /// Every page of the node: `reserved_pages + allocated_pages + free_pages`.
    pub total_pages: u64,
    /// Pages never handed out: 1 (frame 0) on a node that starts at address 0, else 0.
    pub reserved_pages: u64,
    /// Pages handed out by `alloc_pages` and not freed since.
    pub allocated_pages: u64,
    /// Pages `alloc_pages` may still hand out.
    pub free_pages: u64,
    /// Frames with backing store (written at least once since their last alloc or free).
    pub backed_pages: u64,
    /// Allocations that asked for this node but were served by another one.
    pub fallbacks: u64,
}

struct Node {
    base_pfn: u64,
    npages: u64,
    dir: Vec<Option<Chunk>>,
    /// Backed frames per chunk, so dropping a chunk's last frame needs no scan of the chunk.
    live: Vec<u32>,
    /// free[k]: start pfns (absolute) of free blocks of 2^k pages.
    free: Vec<BTreeSet<u64>>,
    free_pages: u64,
    /// Frames kept out of the allocator for good: frame 0 when the node starts at 0.
    reserved_pages: u64,
    backed_pages: u64,
    fallbacks: u64,
}

impl Node {
    fn new(base_pfn: u64, npages: u64) -> Self {
        let nchunks = npages.div_ceil(CHUNK_PAGES as u64) as usize;
        let mut n = Node {
            base_pfn,
            npages,
            dir: (0..nchunks).map(|_| None).collect(),
            live: vec![0; nchunks],
            free: vec![BTreeSet::new(); MAX_ORDER + 1],
            free_pages: 0,
            reserved_pages: u64::from(base_pfn == 0),
            backed_pages: 0,
            fallbacks: 0,
        };
        // Frame 0 never enters the free lists, so no buddy merge can ever reach it either.
        let first = base_pfn + n.reserved_pages;
        for (start, order) in aligned_blocks(first, npages - n.reserved_pages) {
            n.free[order].insert(start);
        }
        n.free_pages = npages - n.reserved_pages;
        n
    }

    #[inline]
    fn end_pfn(&self) -> u64 {
        self.base_pfn + self.npages
    }

    #[inline]
    fn frame(&self, pfn: u64) -> Option<&Frame> {
        let rel = (pfn - self.base_pfn) as usize;
        let chunk = self.dir.get(rel >> CHUNK_SHIFT)?.as_ref()?;
        chunk.get(rel & (CHUNK_PAGES - 1))?.as_deref()
    }

    fn frame_mut(&mut self, pfn: u64) -> &mut Frame {
        let rel = (pfn - self.base_pfn) as usize;
        let slot = &mut self.dir[rel >> CHUNK_SHIFT];
        let chunk = slot.get_or_insert_with(|| (0..CHUNK_PAGES).map(|_| None).collect());
        let f = &mut chunk[rel & (CHUNK_PAGES - 1)];
        if f.is_none() {
            self.backed_pages += 1;
            self.live[rel >> CHUNK_SHIFT] += 1;
        }
        f.get_or_insert_with(|| Box::new([0u64; ENTRIES_PER_PAGE]))
    }

    /// Drop the backing of `[pfn, pfn + n)`, so it reads as zeros and costs nothing.
    fn discard(&mut self, pfn: u64, n: u64) {
        let mut p = pfn;
        let end = pfn + n;
        while p < end {
            let rel = (p - self.base_pfn) as usize;
            let ci = rel >> CHUNK_SHIFT;
            let chunk_end = self.base_pfn + (((ci as u64) + 1) << CHUNK_SHIFT);
            let stop = end.min(chunk_end);
            if let Some(chunk) = self.dir[ci].as_mut() {
                let mut dropped = 0;
                for q in p..stop {
                    let i = ((q - self.base_pfn) as usize) & (CHUNK_PAGES - 1);
                    if chunk[i].take().is_some() {
                        dropped += 1;
                    }
                }
                self.backed_pages -= dropped;
                self.live[ci] -= dropped as u32;
                if self.live[ci] == 0 {
                    self.dir[ci] = None;
                }
            }
            p = stop;
        }
    }

    /// True when any page of `[pfn, pfn + 2^order)` lies in a free block.
    fn overlaps_free(&self, pfn: u64, order: usize) -> bool {
        let end = pfn + (1u64 << order);
        for k in 0..=MAX_ORDER {
            if k >= order {
                if self.free[k].contains(&(pfn & !((1u64 << k) - 1))) {
                    return true;
                }
            } else if self.free[k].range(pfn..end).next().is_some() {
                return true;
            }
        }
        false
    }

    /// Take a block of 2^order pages, lowest address of the smallest fitting order first.
    fn take_block(&mut self, order: usize) -> Option<u64> {
        let j = (order..=MAX_ORDER).find(|&j| !self.free[j].is_empty())?;
        let start = self.free[j].pop_first()?;
        for k in (order..j).rev() {
            self.free[k].insert(start + (1u64 << k));
        }
        self.free_pages -= 1u64 << order;
        Some(start)
    }

    /// Return `[pfn, pfn + n)` (already checked to be allocated) to the free lists, merging buddies.
    fn release(&mut self, pfn: u64, n: u64) {
        for (start, order) in aligned_blocks(pfn, n) {
            let (mut s, mut k) = (start, order);
            while k < MAX_ORDER {
                let buddy = s ^ (1u64 << k);
                if !self.free[k].remove(&buddy) {
                    break;
                }
                s = s.min(buddy);
                k += 1;
            }
            self.free[k].insert(s);
        }
        self.free_pages += n;
    }

    fn largest_free_order(&self) -> Option<usize> {
        (0..=MAX_ORDER).rev().find(|&k| !self.free[k].is_empty())
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

/// The simulated machine memory: NUMA nodes, sparse frames, and a page allocator per node.
pub struct PhysMem {
    nodes: Vec<Node>,
    /// Node indices sorted by base address, for address -> node.
    order: Vec<usize>,
}

impl PhysMem {
    /// Build from `(base, size)` byte ranges, one per node, in node order.
    pub fn new(ranges: &[(u64, u64)]) -> Result<Self> {
        if ranges.is_empty() {
            return Err(Error::invalid(
                "nodes",
                "at least one (base, size) range is needed",
            ));
        }
        if ranges.len() > u32::MAX as usize {
            return Err(Error::invalid("nodes", "too many nodes"));
        }
        let limit = 1u64 << MAX_MADDR_BITS;
        for (i, &(base, size)) in ranges.iter().enumerate() {
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
        }
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&i| ranges[i].0);
        for w in order.windows(2) {
            let (a, b) = (ranges[w[0]], ranges[w[1]]);
            if a.0 + a.1 > b.0 {
                return Err(Error::invalid(
                    "nodes",
                    format!(
                        "node {} [{:#x}, {:#x}) overlaps node {} at {:#x}",
                        w[0],
                        a.0,
                        a.0 + a.1,
                        w[1],
                        b.0
                    ),
                ));
            }
        }
        let nodes = ranges
            .iter()
            .map(|&(b, s)| Node::new(b >> PAGE_SHIFT, s >> PAGE_SHIFT))
            .collect();
        Ok(PhysMem { nodes, order })
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

    #[inline]
    fn node_index_of_pfn(&self, pfn: u64) -> Option<usize> {
        // A handful of nodes: a linear scan beats a binary search.
        self.order
            .iter()
            .copied()
            .find(|&i| pfn >= self.nodes[i].base_pfn && pfn < self.nodes[i].end_pfn())
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

    /// The frame holding `pfn`: `Some(None)` when it is inside a node but never written
    /// (zeros), `None` when no node owns it. The walkers' primitive.
    #[inline]
    pub fn frame(&self, pfn: u64) -> Option<Option<&Frame>> {
        let i = self.node_index_of_pfn(pfn)?;
        Some(self.nodes[i].frame(pfn))
    }

    /// Read the 8-byte entry at `maddr` (8-byte aligned). None when no node owns it.
    #[inline]
    pub fn load_u64(&self, maddr: u64) -> Option<u64> {
        let pfn = maddr >> PAGE_SHIFT;
        let f = self.frame(pfn)?;
        Some(f.map_or(0, |f| f[((maddr & PAGE_MASK) >> 3) as usize]))
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
        self.nodes[i].frame_mut(a >> PAGE_SHIFT)[((a & PAGE_MASK) >> 3) as usize] = value;
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
        let node = &mut self.nodes[i];
        let mut a = a;
        let mut rest = words;
        while !rest.is_empty() {
            let off = ((a & PAGE_MASK) >> 3) as usize;
            let n = (ENTRIES_PER_PAGE - off).min(rest.len());
            let (now, later) = rest.split_at(n);
            node.frame_mut(a >> PAGE_SHIFT)[off..off + n].copy_from_slice(now);
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
        Ok(self.nodes[i].frame_mut(a >> PAGE_SHIFT))
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

    /// Write `data` starting at `maddr`; the range must lie inside one node.
    pub fn write(&mut self, maddr: Maddr, data: &[u8]) -> Result<()> {
        let i = self.span_node(maddr.get(), data.len() as u64)?;
        let node = &mut self.nodes[i];
        let mut a = maddr.get();
        let mut done = 0usize;
        while done < data.len() {
            let off = (a & PAGE_MASK) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - done);
            let src = &data[done..done + n];
            let f = node.frame_mut(a >> PAGE_SHIFT);
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
    /// allocated, on any node since allocation falls back: how table builders check before
    /// writing anything.
    pub fn ensure_free(&self, needed: u64, node: Option<u32>) -> Result<()> {
        let free: u64 = self.nodes.iter().map(|n| n.free_pages).sum();
        if free < needed {
            return Err(Error::OutOfMemory {
                npages: needed,
                node,
            });
        }
        Ok(())
    }

    /// Allocate `npages` contiguous zeroed pages, on `node` when it has room, else on another
    /// node (counted as a fallback of `node`). `node = None`: the first node with room.
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
            let excess = (1u64 << order) - npages;
            if excess > 0 {
                nd.release(start + npages, excess);
            }
            nd.discard(start, npages);
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
        if pfn < nd.base_pfn + nd.reserved_pages {
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
        nd.discard(pfn, npages);
        nd.release(pfn, npages);
        Ok(())
    }

    /// True when the page at `maddr` is allocated: handed out by `alloc_pages` and not freed
    /// since (inside a node, in no free block, not the reserved frame 0).
    pub fn is_allocated(&self, maddr: Maddr) -> bool {
        let pfn = maddr.pfn();
        match self.node_index_of_pfn(pfn) {
            Some(i) => {
                let n = &self.nodes[i];
                pfn >= n.base_pfn + n.reserved_pages && !n.overlaps_free(pfn, 0)
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
}
