//! The driver side of DMA remapping: a domain's second-level page table, built in `PhysMem`.
//!
//! Behaviour follows Xen's VT-d driver (xen-driver.md §4.3, §4.4, §4.6) with the choices of
//! decisions.md: 3, 4 or 5 levels; table pages allocated against the domain's node (the seed's
//! rule); intermediate entries always R+W, only leaves carry permissions; 2 MiB / 1 GiB leaves
//! where alignment and the `superpages` setting allow, superpages shattered when part of one is
//! remapped or unmapped; unmap frees tables that become empty (never the root).
//!
//! Every mutation is atomic: arguments are checked, then a read-only *plan* pass validates every
//! table it will touch and counts the table pages it will allocate; only when the arena has that
//! many free pages does the *execute* pass write anything. So bad input, a corrupted table and
//! `OutOfMemory` all leave the tables exactly as they were.
//!
//! The table keeps the set of its own table pages (with their level and node). Mutations follow a
//! pointer only to one of those pages at the expected level, so a corrupted entry is reported as
//! an error instead of writing into (or freeing) someone else's memory. Read-only walks (lookup,
//! mappings) read whatever the entries say, as the hardware would, and fail only on pointers
//! outside memory.
//!
//! Files: this one holds the table's state, checks, allocation and walks; [`plan`] the
//! read-only plan pass; [`range`] `map` / `unmap`; [`batch`] `map_pages` / `unmap_pages`;
//! [`lookup`] the look-ups; [`sort`] the radix sort of batch inputs.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::addr::{Iova, Maddr, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::error::{Error, Result};
use crate::mem::{Frame, PhysMem, MAX_MADDR_BITS};
use crate::spec::{
    address_level_offset, level_size, level_to_offset_bits, levels_to_width, Pte, LEVEL_MASK,
    MAX_LEVELS, MIN_LEVELS,
};

mod batch;
mod lookup;
mod plan;
mod range;
mod sort;

use sort::{key_span, radix_sort, sort_by_table};

/// R or W: "present" as Xen defines it.
const PRESENT: u64 = Pte::R | Pte::W;
/// Highest level at which a leaf (PS) may appear: 1 GiB pages at L3.
const MAX_SUPERPAGE_LEVEL: u32 = 3;

/// The entries of the L1 table `t` that map `[s, e)` (a span inside that one table).
fn l1_slots(mem: &mut PhysMem, t: u64, s: u64, e: u64) -> Result<&mut [u64]> {
    let i0 = address_level_offset(s, 1) as usize;
    let n = ((e - s) >> PAGE_SHIFT) as usize;
    mem.page_mut(Maddr(t))?
        .get_mut(i0..i0 + n)
        .ok_or_else(|| Error::invalid("range", "internal: L1 span crosses a table"))
}

/// The largest leaf `map` may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Superpages {
    /// 4 KiB leaves only.
    None,
    /// 4 KiB and 2 MiB leaves.
    Sp2M,
    /// 4 KiB, 2 MiB and 1 GiB leaves.
    #[default]
    Sp1G,
}

impl Superpages {
    /// Parse "none", "2M" or "1G" (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "4k" => Ok(Superpages::None),
            "2m" => Ok(Superpages::Sp2M),
            "1g" => Ok(Superpages::Sp1G),
            _ => Err(Error::invalid(
                "superpages",
                format!("{s:?}: expected \"none\", \"2M\" or \"1G\""),
            )),
        }
    }
    /// The canonical name ("none", "2M", "1G").
    pub const fn as_str(self) -> &'static str {
        match self {
            Superpages::None => "none",
            Superpages::Sp2M => "2M",
            Superpages::Sp1G => "1G",
        }
    }
    /// Highest level a leaf may be written at (1, 2 or 3).
    pub const fn max_leaf_level(self) -> u32 {
        match self {
            Superpages::None => 1,
            Superpages::Sp2M => 2,
            Superpages::Sp1G => 3,
        }
    }
}

/// Leaf permissions and attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub snoop: bool,
}

impl Perms {
    /// Read + write, no snoop.
    pub const RW: Perms = Perms {
        read: true,
        write: true,
        snoop: false,
    };
    fn bits(self) -> Result<u64> {
        if !self.read && !self.write {
            return Err(Error::invalid(
                "read/write",
                "a mapping needs read or write (an entry without either is not present; use unmap)",
            ));
        }
        Ok(Pte::leaf(0, self.read, self.write, self.snoop, false).0)
    }
}

/// One translation: what `lookup` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The machine address of the looked-up IOVA itself (page offset included).
    pub maddr: u64,
    /// Size of the leaf: 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
    pub read: bool,
    pub write: bool,
    /// Level of the leaf: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB).
    pub level: u8,
}

/// A run of contiguous leaves with equal permissions: what `mappings` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub iova: u64,
    pub maddr: u64,
    pub size: u64,
    pub read: bool,
    pub write: bool,
}

/// A table page this page table owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableInfo {
    level: u32,
    node: u32,
}

/// A multiplicative hash for page addresses (the default SipHash costs more than the walk).
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        let h = (v >> PAGE_SHIFT).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

type TableSet = HashMap<u64, TableInfo, BuildHasherDefault<AddrHasher>>;

/// What an entry is, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Absent,
    Leaf,
    /// A pointer to one of our tables, one level down.
    Table(u64),
}

/// A table as the plan pass sees it: real, or one the execute pass would create.
#[derive(Clone, Copy)]
enum Virt {
    Real(u64),
    /// A new zeroed table.
    Empty,
    /// A new table from shattering a superpage: every entry a present leaf.
    Leaves,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Map { delta: u64 },
    Unmap,
}

/// State carried through one execute pass.
#[derive(Default)]
struct Exec {
    /// Some overwritten or cleared entry was present (the flush hint).
    present: bool,
    /// Subtrees cut off by this operation, freed at the end: (table, level).
    free: Vec<(u64, u32)>,
}

fn corrupt(addr: u64, why: &'static str) -> Error {
    Error::MemoryAccess {
        addr,
        len: PAGE_SIZE,
        why,
    }
}

/// A second-level page table of 3, 4 or 5 levels.
pub struct PageTable {
    root: u64,
    levels: u32,
    node: Option<u32>,
    superpages: Superpages,
    tables: TableSet,
    /// Sort buffers of the batch calls, kept between calls up to [`SCRATCH_KEEP`] entries each
    /// (fresh buffers cost a page fault per 4 KiB; larger ones are given back after the call,
    /// so a table's memory stays its pages, whatever batches it was built with).
    scratch: (Vec<u64>, Vec<u64>),
}

/// Entries of each sort buffer a table keeps between batch calls (512 KiB each).
pub const SCRATCH_KEEP: usize = 1 << 16;

impl PageTable {
    /// Keep the sort buffers of a batch call for the next one, or give them back when large.
    pub(super) fn keep_scratch(&mut self, a: Vec<u64>, b: Vec<u64>) {
        let small = |v: Vec<u64>| {
            if v.capacity() <= SCRATCH_KEEP {
                v
            } else {
                Vec::new()
            }
        };
        self.scratch = (small(a), small(b));
    }
}

impl PageTable {
    /// An empty table (no root yet) of `levels` levels, allocating on `node`.
    pub fn new(levels: u32, node: Option<u32>, superpages: Superpages) -> Result<Self> {
        if !(MIN_LEVELS..=MAX_LEVELS).contains(&levels) {
            return Err(Error::invalid(
                "levels",
                format!("{levels}: a second-level table has 3, 4 or 5 levels"),
            ));
        }
        Ok(PageTable {
            root: 0,
            levels,
            node,
            superpages,
            tables: TableSet::default(),
            scratch: (Vec::new(), Vec::new()),
        })
    }

    /// Machine address of the top table, 0 until the first allocation.
    pub fn root(&self) -> u64 {
        self.root
    }
    pub fn levels(&self) -> u32 {
        self.levels
    }
    /// Input address width in bits (39, 48, 57).
    pub fn width(&self) -> u32 {
        levels_to_width(self.levels)
    }
    /// The node table pages are allocated against (None: no preference).
    pub fn node(&self) -> Option<u32> {
        self.node
    }
    /// Change the node for future allocations; pages already allocated stay where they are.
    pub fn set_node(&mut self, node: Option<u32>) {
        self.node = node;
    }
    pub fn superpages(&self) -> Superpages {
        self.superpages
    }

    /// Table pages per node.
    pub fn table_pages(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for info in self.tables.values() {
            *out.entry(info.node).or_insert(0) += 1;
        }
        out
    }

    /// Total number of table pages.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    // -----------------------------------------------------------------------------------------
    // Checks

    fn limit(&self) -> u64 {
        1u64 << self.width()
    }

    fn check_iova_range(&self, iova: u64, size: u64) -> Result<u64> {
        if size == 0 {
            return Err(Error::invalid("size", "must not be 0"));
        }
        if iova & PAGE_MASK != 0 {
            return Err(Error::invalid(
                "iova",
                format!("{iova:#x} is not 4 KiB aligned"),
            ));
        }
        if size & PAGE_MASK != 0 {
            return Err(Error::invalid(
                "size",
                format!("{size:#x} is not a multiple of 4 KiB"),
            ));
        }
        match iova.checked_add(size) {
            Some(end) if end <= self.limit() => Ok(end),
            _ => Err(Error::invalid(
                "iova",
                format!(
                    "[{iova:#x}, +{size:#x}) goes beyond the {}-bit address width",
                    self.width()
                ),
            )),
        }
    }

    fn check_maddr_range(maddr: u64, size: u64) -> Result<()> {
        if maddr & PAGE_MASK != 0 {
            return Err(Error::invalid(
                "maddr",
                format!("{maddr:#x} is not 4 KiB aligned"),
            ));
        }
        match maddr.checked_add(size) {
            Some(end) if end <= 1u64 << MAX_MADDR_BITS => Ok(()),
            _ => Err(Error::invalid(
                "maddr",
                format!("[{maddr:#x}, +{size:#x}) goes beyond 2^52"),
            )),
        }
    }

    /// What `pte`, read from a level-`level` table, is; a pointer must be one of our tables.
    #[inline]
    fn classify(&self, pte: u64, level: u32) -> Result<Kind> {
        if pte & PRESENT == 0 {
            return Ok(Kind::Absent);
        }
        if level == 1 {
            return Ok(Kind::Leaf);
        }
        if pte & Pte::PS != 0 {
            if level <= MAX_SUPERPAGE_LEVEL {
                return Ok(Kind::Leaf);
            }
            return Err(corrupt(
                pte & Pte::ADDR_MASK,
                "corrupted page table: superpage (PS) entry above level 3",
            ));
        }
        let addr = pte & Pte::ADDR_MASK;
        match self.tables.get(&addr) {
            Some(info) if info.level == level - 1 => Ok(Kind::Table(addr)),
            _ => Err(corrupt(
                addr,
                "corrupted page table: an entry points at a page that is not one of this \
                 table's tables at the level below",
            )),
        }
    }

    /// Validate every pointer of the subtree under the level-`level` table `t`.
    fn check_subtree(&self, mem: &PhysMem, t: u64, level: u32) -> Result<()> {
        if level == 1 {
            return Ok(());
        }
        let Some(frame) = read_frame(mem, t)? else {
            return Ok(());
        };
        for &pte in frame.iter() {
            if let Kind::Table(c) = self.classify(pte, level)? {
                self.check_subtree(mem, c, level - 1)?;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Table pages

    fn alloc_table(&mut self, mem: &mut PhysMem, level: u32) -> Result<u64> {
        // Never 0: PhysMem reserves frame 0, the "no table" address.
        let a = mem.alloc_pages(1, self.node)?.get();
        let node = mem.node_of(Maddr(a)).unwrap_or(0);
        self.tables.insert(a, TableInfo { level, node });
        Ok(a)
    }

    fn free_table(&mut self, mem: &mut PhysMem, t: u64) -> Result<()> {
        self.tables.remove(&t);
        mem.free_pages(Maddr(t), 1)
    }

    /// A new level-`level - 1` table holding the superpage leaf `old` (at `level`) split in 512.
    fn shatter(&mut self, mem: &mut PhysMem, old: u64, level: u32) -> Result<u64> {
        let child = level - 1;
        let t = self.alloc_table(mem, child)?;
        let step = level_size(child);
        let mut attrs = old & !Pte::ADDR_MASK;
        if child == 1 {
            attrs &= !Pte::PS;
        }
        let mut a = old & Pte::ADDR_MASK;
        for e in mem.page_mut(Maddr(t))?.iter_mut() {
            *e = (a & Pte::ADDR_MASK) | attrs;
            a = a.wrapping_add(step);
        }
        Ok(t)
    }

    fn free_subtree(&mut self, mem: &mut PhysMem, t: u64, level: u32) -> Result<()> {
        if level > 1 {
            if let Some(frame) = read_frame(mem, t)? {
                let mut children = Vec::new();
                for &pte in frame.iter() {
                    if let Kind::Table(c) = self.classify(pte, level)? {
                        children.push(c);
                    }
                }
                for c in children {
                    self.free_subtree(mem, c, level - 1)?;
                }
            }
        }
        self.free_table(mem, t)
    }

    fn finish(&mut self, mem: &mut PhysMem, st: Exec) -> Result<bool> {
        for (t, level) in st.free {
            self.free_subtree(mem, t, level)?;
        }
        Ok(st.present)
    }

    // -----------------------------------------------------------------------------------------
    // addr_to_dma_page_maddr

    /// Xen's `addr_to_dma_page_maddr`: the machine address of the level-`level` table covering
    /// `iova`. With `alloc`, missing tables are allocated on the table's node and superpages met
    /// above `level` are shattered; without it, 0 when there is no such table.
    pub fn leaf_table(
        &mut self,
        mem: &mut PhysMem,
        iova: Iova,
        alloc: bool,
        level: u32,
    ) -> Result<u64> {
        let iova = iova.get();
        if !(1..=self.levels).contains(&level) {
            return Err(Error::invalid(
                "level",
                format!("{level}: must be in 1..={}", self.levels),
            ));
        }
        if iova >= self.limit() {
            return Err(Error::invalid(
                "iova",
                format!("{iova:#x} is beyond the {}-bit address width", self.width()),
            ));
        }
        if !alloc {
            return self.find_table(mem, iova, level);
        }
        mem.check_node(self.node)?;
        // Plan: count the tables to create.
        let needed = match self.root {
            0 => u64::from(self.levels - level + 1),
            r => {
                let mut t = r;
                let mut n = 0;
                for l in (level + 1..=self.levels).rev() {
                    let pte = read_entry(mem, t, address_level_offset(iova, l))?;
                    match self.classify(pte, l)? {
                        Kind::Table(c) => t = c,
                        _ => {
                            n = u64::from(l - level);
                            break;
                        }
                    }
                }
                n
            }
        };
        mem.ensure_free(needed, self.node)?;
        let mut st = Exec::default();
        let t = self.walk_alloc(mem, iova, level, &mut st)?;
        self.finish(mem, st)?;
        Ok(t)
    }

    /// Read-only walk to the level-`level` table covering `iova` (0 when missing).
    fn find_table(&self, mem: &PhysMem, iova: u64, level: u32) -> Result<u64> {
        let mut t = self.root;
        if t == 0 {
            return Ok(0);
        }
        for l in (level + 1..=self.levels).rev() {
            let pte = read_entry(mem, t, address_level_offset(iova, l))?;
            match self.classify(pte, l)? {
                Kind::Table(c) => t = c,
                _ => return Ok(0),
            }
        }
        Ok(t)
    }

    /// The table below entry `idx` (holding `pte`, of `kind`) of the level-`level` table `t`:
    /// the one it points to, a new empty one where it is absent, or the superpage it maps
    /// shattered into a table of the next size down (an old mapping: noted as present).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn child_table(
        &mut self,
        mem: &mut PhysMem,
        st: &mut Exec,
        t: u64,
        idx: usize,
        pte: u64,
        kind: Kind,
        level: u32,
    ) -> Result<u64> {
        let c = match kind {
            Kind::Table(c) => return Ok(c),
            Kind::Absent => self.alloc_table(mem, level - 1)?,
            Kind::Leaf => {
                st.present = true;
                self.shatter(mem, pte, level)?
            }
        };
        mem.page_mut(Maddr(t))?[idx] = Pte::table(c).0;
        Ok(c)
    }

    /// Walk to the level-`level` table covering `iova`, creating tables and shattering
    /// superpages on the way. The caller has checked that the allocations will succeed.
    fn walk_alloc(
        &mut self,
        mem: &mut PhysMem,
        iova: u64,
        level: u32,
        st: &mut Exec,
    ) -> Result<u64> {
        if self.root == 0 {
            self.root = self.alloc_table(mem, self.levels)?;
        }
        let mut t = self.root;
        for l in (level + 1..=self.levels).rev() {
            let idx = address_level_offset(iova, l) as usize;
            let pte = mem.page_mut(Maddr(t))?[idx];
            let kind = self.classify(pte, l)?;
            t = self.child_table(mem, st, t, idx, pte, kind, l)?;
        }
        Ok(t)
    }

    // -----------------------------------------------------------------------------------------
    // Teardown

    /// Free every table page (the root too); the table is empty afterwards.
    pub fn free(&mut self, mem: &mut PhysMem) -> Result<()> {
        let mut pages: Vec<u64> = self.tables.keys().copied().collect();
        pages.sort_unstable();
        self.tables.clear();
        self.root = 0;
        // Contiguous pages go back in one call (one return of their backing to the host).
        let mut first_err = None;
        let mut i = 0;
        while let Some(&start) = pages.get(i) {
            let mut n = 1;
            while pages.get(i + n) == Some(&(start + n as u64 * PAGE_SIZE)) {
                n += 1;
            }
            if mem.free_pages(Maddr(start), n as u64).is_err() {
                // Page by page, so every page that can go back does.
                for k in 0..n as u64 {
                    if let Err(e) = mem.free_pages(Maddr(start + k * PAGE_SIZE), 1) {
                        first_err.get_or_insert(e);
                    }
                }
            }
            i += n;
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// What a walk does with an entry (read-only walks: no ownership check).
enum Step {
    Absent,
    Leaf,
    Next(u64),
}

#[inline]
fn leaf_or_next(pte: u64, level: u32) -> Result<Step> {
    if pte & PRESENT == 0 {
        Ok(Step::Absent)
    } else if level == 1 || (pte & Pte::PS != 0 && level <= MAX_SUPERPAGE_LEVEL) {
        Ok(Step::Leaf)
    } else if pte & Pte::PS != 0 {
        Err(corrupt(
            pte & Pte::ADDR_MASK,
            "corrupted page table: superpage (PS) entry above level 3",
        ))
    } else {
        Ok(Step::Next(pte & Pte::ADDR_MASK))
    }
}

/// The table page at `t`: None when it was never written (all zeros); an error outside memory.
#[inline]
fn read_frame(mem: &PhysMem, t: u64) -> Result<Option<&Frame>> {
    mem.frame(t >> PAGE_SHIFT).ok_or(Error::MemoryAccess {
        addr: t,
        len: PAGE_SIZE,
        why: "page-table pointer outside every NUMA node (corrupted table?)",
    })
}

#[inline]
fn read_entry(mem: &PhysMem, t: u64, idx: u64) -> Result<u64> {
    Ok(read_frame(mem, t)?.map_or(0, |f| f[(idx & LEVEL_MASK) as usize]))
}

#[inline]
fn is_empty(frame: &Frame) -> bool {
    frame.iter().all(|&e| e & PRESENT == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const K4: u64 = 1 << 12;
    const M2: u64 = 1 << 21;
    const G1: u64 = 1 << 30;

    fn mem(pages: u64) -> PhysMem {
        PhysMem::new(&[(0, pages * K4), (1 << 40, pages * K4)]).unwrap()
    }

    fn pt(levels: u32, sp: Superpages) -> PageTable {
        PageTable::new(levels, None, sp).unwrap()
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The sort buffers of a large batch are given back after it; a small batch's are kept.
    /// Every mapping stays as the batches left it.
    #[test]
    fn batch_scratch_is_bounded() {
        let mut m = PhysMem::new(&[(0, 1 << 32)]).unwrap();
        let mut p = pt(4, Superpages::None);
        let n = 4 * SCRATCH_KEEP as u64;
        let iovas: Vec<u64> = (0..n).map(|i| (i * 7919 % n) * K4).collect();
        let maddrs: Vec<u64> = (0..n).map(|i| (1 << 31) + i * K4).collect();
        p.map_pages(&mut m, &iovas, &maddrs, Perms::RW).unwrap();
        assert!(p.scratch.0.capacity() <= SCRATCH_KEEP && p.scratch.1.capacity() <= SCRATCH_KEEP);
        let mut out = vec![0u64; iovas.len()];
        p.lookup_many(&m, &iovas, &mut out).unwrap();
        assert_eq!(out, maddrs);
        assert!(p.scratch.0.capacity() <= SCRATCH_KEEP && p.scratch.1.capacity() <= SCRATCH_KEEP);
        p.map_pages(&mut m, &iovas[..100], &maddrs[..100], Perms::RW)
            .unwrap();
        assert!(p.scratch.0.capacity() >= 100);
        assert!(p.unmap_pages(&mut m, &iovas).unwrap());
        assert!(p.scratch.0.capacity() <= SCRATCH_KEEP && p.scratch.1.capacity() <= SCRATCH_KEEP);
        p.lookup_many(&m, &iovas[..10], &mut out[..10]).unwrap();
        assert!(out[..10].iter().all(|&o| o == u64::MAX));
    }

    /// Page-granular model: iova page -> (maddr, read, write).
    type Model = BTreeMap<u64, (u64, bool, bool)>;

    fn model_runs(m: &Model) -> Vec<Mapping> {
        let mut out: Vec<Mapping> = Vec::new();
        for (&iova, &(maddr, read, write)) in m {
            match out.last_mut() {
                Some(p)
                    if p.iova + p.size == iova
                        && p.maddr + p.size == maddr
                        && p.read == read
                        && p.write == write =>
                {
                    p.size += K4
                }
                _ => out.push(Mapping {
                    iova,
                    maddr,
                    size: K4,
                    read,
                    write,
                }),
            }
        }
        out
    }

    /// Everything observable about table memory, for "nothing changed" checks.
    fn snapshot(p: &PageTable, m: &PhysMem) -> (u64, Vec<Mapping>, BTreeMap<u32, u64>, Vec<u64>) {
        let frees = m.stats().iter().map(|s| s.free_pages).collect();
        (p.root(), p.mappings(m).unwrap(), p.table_pages(), frees)
    }

    #[test]
    fn every_level_count_maps_its_top_page() {
        for (levels, width) in [(3u32, 39u32), (4, 48), (5, 57)] {
            let mut m = mem(64);
            let mut p = pt(levels, Superpages::None);
            assert_eq!(p.width(), width);
            let top = (1u64 << width) - K4;
            assert!(!p
                .map(&mut m, Iova(top), Maddr(0x5000), K4, Perms::RW)
                .unwrap());
            assert_eq!(p.table_count(), levels as usize);
            let t = p.lookup(&m, Iova(top + 0x123)).unwrap().unwrap();
            assert_eq!((t.maddr, t.page_size), (0x5123, K4));
            assert_eq!(p.lookup(&m, Iova(0)).unwrap(), None);
            let e = p.map(&mut m, Iova(top), Maddr(0), 2 * K4, Perms::RW);
            assert!(matches!(e, Err(Error::InvalidArgument { .. })));
            assert!(p.lookup(&m, Iova(1 << width)).is_err());
            // The root sits where the entry formulas say.
            let l1 = p.leaf_table(&mut m, Iova(top), false, 1).unwrap();
            assert_eq!(m.read_u64(Maddr(l1 + 511 * 8)).unwrap(), 0x5000 | 3);
            assert_eq!(p.leaf_table(&mut m, Iova(0), false, 1).unwrap(), 0);
            assert_eq!(
                p.leaf_table(&mut m, Iova(0), false, levels).unwrap(),
                p.root()
            );
            assert!(p.unmap(&mut m, Iova(top), K4).unwrap());
            assert_eq!(p.table_count(), 1);
        }
    }

    #[test]
    fn superpage_placement_follows_alignment_and_setting() {
        // [1G - 4K, 2G + 2M + 4K): 4K at the ends, 1G in the middle, 2M leaf after it.
        let (iova, size) = (G1 - K4, G1 + M2 + 2 * K4);
        for (sp, tables) in [
            (Superpages::Sp1G, 6),
            (Superpages::Sp2M, 7),
            (Superpages::None, 520),
        ] {
            let mut m = mem(1024);
            let mut p = pt(4, sp);
            p.map(&mut m, Iova(iova), Maddr(7 * G1 - K4), size, Perms::RW)
                .unwrap();
            let mid = p.lookup(&m, Iova(G1 + 5 * K4)).unwrap().unwrap();
            let want = match sp {
                Superpages::Sp1G => G1,
                Superpages::Sp2M => M2,
                Superpages::None => K4,
            };
            assert_eq!(mid.page_size, want);
            assert_eq!(mid.maddr, 7 * G1 + 5 * K4);
            // The leaf level goes with the page size: 1 for 4 KiB, 2 for 2 MiB, 3 for 1 GiB.
            let level = match sp {
                Superpages::Sp1G => 3,
                Superpages::Sp2M => 2,
                Superpages::None => 1,
            };
            assert_eq!(mid.level, level);
            let after = p.lookup(&m, Iova(2 * G1 + 8 * K4)).unwrap().unwrap();
            assert_eq!(
                after.page_size,
                if sp == Superpages::None { K4 } else { M2 }
            );
            assert_eq!(p.lookup(&m, Iova(G1 - K4)).unwrap().unwrap().page_size, K4);
            assert_eq!(
                p.lookup(&m, Iova(2 * G1 + M2)).unwrap().unwrap().page_size,
                K4
            );
            // root, L3, L2 + L1 below 1G, L2 + L1 above 2G; plus the middle's L2 (2M leaves)
            // or its L2 and 512 L1 tables (4K leaves).
            assert_eq!(p.table_count(), tables);
            assert_eq!(
                p.mappings(&m).unwrap(),
                vec![Mapping {
                    iova,
                    maddr: 7 * G1 - K4,
                    size,
                    read: true,
                    write: true
                }]
            );
        }
        // Misaligned maddr: no superpage.
        let mut m = mem(1024);
        let mut p = pt(4, Superpages::Sp1G);
        p.map(&mut m, Iova(G1), Maddr(K4), M2, Perms::RW).unwrap();
        assert_eq!(p.lookup(&m, Iova(G1)).unwrap().unwrap().page_size, K4);
    }

    #[test]
    fn superpages_shatter_on_partial_unmap_and_remap() {
        let mut m = mem(64);
        let mut p = pt(4, Superpages::Sp1G);
        p.map(&mut m, Iova(G1), Maddr(3 * G1), G1, Perms::RW)
            .unwrap();
        assert_eq!(p.table_count(), 2);
        // Unmap one 4K page in the middle: 1G -> 2M leaves -> 4K leaves.
        assert!(p.unmap(&mut m, Iova(G1 + M2 + K4), K4).unwrap());
        assert_eq!(p.table_count(), 4);
        assert_eq!(p.lookup(&m, Iova(G1 + M2 + K4)).unwrap(), None);
        let t = p.lookup(&m, Iova(G1 + M2 + 2 * K4 + 5)).unwrap().unwrap();
        assert_eq!((t.maddr, t.page_size), (3 * G1 + M2 + 2 * K4 + 5, K4));
        assert_eq!(
            p.lookup(&m, Iova(G1 + 5 * M2)).unwrap().unwrap().page_size,
            M2
        );
        // Remap part of a 2M leaf read-only.
        p.map(
            &mut m,
            Iova(G1 + 4 * M2),
            Maddr(0x1000),
            K4,
            Perms {
                read: true,
                write: false,
                snoop: true,
            },
        )
        .unwrap();
        let t = p.lookup(&m, Iova(G1 + 4 * M2)).unwrap().unwrap();
        assert!(t.read && !t.write && t.maddr == 0x1000);
        let runs = p.mappings(&m).unwrap();
        assert_eq!(runs.len(), 4);
        assert_eq!(runs.iter().map(|r| r.size).sum::<u64>(), G1 - K4);
        // Remapping the whole 1G with a 1G leaf frees the shattered tables.
        assert!(p
            .map(&mut m, Iova(G1), Maddr(3 * G1), G1, Perms::RW)
            .unwrap());
        assert_eq!(p.table_count(), 2);
    }

    #[test]
    fn unmap_frees_tables_down_to_the_root() {
        for levels in 3..=5 {
            let mut m = mem(4096);
            let mut p = pt(levels, Superpages::Sp2M);
            let before = m.stats()[0].free_pages + m.stats()[1].free_pages;
            p.map(&mut m, Iova(0x1000), Maddr(0x1000), 3 * M2, Perms::RW)
                .unwrap();
            p.map(&mut m, Iova(5 * G1 + 7 * K4), Maddr(0), K4, Perms::RW)
                .unwrap();
            p.map_pages(&mut m, &[9 * G1, 40 * M2], &[0, K4], Perms::RW)
                .unwrap();
            assert!(p.unmap(&mut m, Iova(0), 16 * G1).unwrap());
            assert_eq!(p.table_count(), 1);
            assert!(!p.unmap(&mut m, Iova(0), 16 * G1).unwrap());
            p.map(&mut m, Iova(0x1000), Maddr(0x1000), 3 * M2, Perms::RW)
                .unwrap();
            let v: Vec<u64> = (1..=3 * 512).map(|i| i * K4).collect();
            assert!(p.unmap_pages(&mut m, &v).unwrap());
            assert_eq!(p.table_count(), 1);
            p.free(&mut m).unwrap();
            assert_eq!(p.root(), 0);
            assert_eq!(m.stats()[0].free_pages + m.stats()[1].free_pages, before);
        }
    }

    #[test]
    fn out_of_memory_changes_nothing() {
        // 3 pages in all: enough for root + 2 tables, not for a 4-level path plus more.
        let mut m = PhysMem::new(&[(G1, 3 * K4)]).unwrap();
        let mut p = pt(4, Superpages::None);
        let snap = snapshot(&p, &m);
        let e = p.map(&mut m, Iova(0), Maddr(0), K4, Perms::RW);
        assert!(matches!(e, Err(Error::OutOfMemory { .. })), "{e:?}");
        assert_eq!(snapshot(&p, &m), snap);
        assert!(p.leaf_table(&mut m, Iova(0), true, 1).is_err());
        assert_eq!(snapshot(&p, &m), snap);
        let l2 = p.leaf_table(&mut m, Iova(0), true, 2).unwrap();
        assert!(l2 != 0 && l2 != p.root());
        assert_eq!(p.leaf_table(&mut m, Iova(0), false, 2).unwrap(), l2);
        assert_eq!(p.table_count(), 3);
        let snap = snapshot(&p, &m);
        assert!(p.map_pages(&mut m, &[0], &[0], Perms::RW).is_err());
        assert_eq!(snapshot(&p, &m), snap);

        // A superpage whose shattering needs more than the arena has.
        let mut m = PhysMem::new(&[(G1, 5 * K4)]).unwrap();
        let mut p = pt(4, Superpages::Sp1G);
        p.map(&mut m, Iova(0), Maddr(0), G1, Perms::RW).unwrap();
        p.map(&mut m, Iova(G1), Maddr(0), M2, Perms::RW).unwrap(); // root, L3, L2: 3 pages
        let snap = snapshot(&p, &m);
        // Needs 2 (1G -> L2 -> L1) + 1 (2M -> L1) with 2 free.
        let e = p.unmap(&mut m, Iova(G1 - K4), 2 * K4);
        assert!(matches!(e, Err(Error::OutOfMemory { .. })), "{e:?}");
        assert_eq!(snapshot(&p, &m), snap);
        let e = p.unmap_pages(&mut m, &[G1 - K4, G1]);
        assert!(matches!(e, Err(Error::OutOfMemory { .. })), "{e:?}");
        assert_eq!(snapshot(&p, &m), snap);
        // Half of it fits.
        assert!(p.unmap(&mut m, Iova(G1), K4).unwrap());
    }

    #[test]
    fn no_table_at_address_zero_and_nothing_leaks() {
        // A node starting at 0 with 4 pages: frame 0 is reserved, 3 are left for a 3-level
        // path (root, L2, L1) and the OOM check counts exactly those.
        let mut m = PhysMem::new(&[(0, 4 * K4)]).unwrap();
        let mut p = pt(3, Superpages::None);
        p.map(&mut m, Iova(0), Maddr(0), K4, Perms::RW).unwrap();
        assert_eq!(p.table_count(), 3);
        assert!(p.root() != 0 && !p.tables.contains_key(&0));
        assert_eq!(m.stats()[0].free_pages, 0);
        let snap = snapshot(&p, &m);
        let e = p.map(&mut m, Iova(M2), Maddr(0), K4, Perms::RW);
        assert!(matches!(e, Err(Error::OutOfMemory { .. })), "{e:?}");
        assert_eq!(snapshot(&p, &m), snap);
        p.free(&mut m).unwrap();
        let s = m.stats()[0];
        assert_eq!(
            (s.reserved_pages, s.allocated_pages, s.free_pages),
            (1, 0, 3)
        );
    }

    #[test]
    fn bad_input_is_rejected_without_change() {
        let mut m = mem(64);
        let mut p = pt(3, Superpages::Sp1G);
        p.map(&mut m, Iova(0), Maddr(0), M2, Perms::RW).unwrap();
        let snap = snapshot(&p, &m);
        let no = Perms {
            read: false,
            write: false,
            snoop: false,
        };
        let bad: Vec<Result<bool>> = vec![
            p.map(&mut m, Iova(0x800), Maddr(0), K4, Perms::RW),
            p.map(&mut m, Iova(0), Maddr(0x800), K4, Perms::RW),
            p.map(&mut m, Iova(0), Maddr(0), 0x800, Perms::RW),
            p.map(&mut m, Iova(0), Maddr(0), 0, Perms::RW),
            p.map(&mut m, Iova(1 << 39), Maddr(0), K4, Perms::RW),
            p.map(&mut m, Iova((1 << 39) - K4), Maddr(0), 2 * K4, Perms::RW),
            p.map(&mut m, Iova(!0xfff), Maddr(0), 2 * K4, Perms::RW),
            p.map(&mut m, Iova(0), Maddr(1 << 52), K4, Perms::RW),
            p.map(&mut m, Iova(0), Maddr((1 << 52) - K4), 2 * K4, Perms::RW),
            p.map(&mut m, Iova(0), Maddr(0), K4, no),
            p.unmap(&mut m, Iova(0), 0),
            p.unmap(&mut m, Iova(1), K4),
            p.unmap(&mut m, Iova(1 << 39), K4),
            p.map_pages(&mut m, &[0, 0x800], &[0, 0], Perms::RW),
            p.map_pages(&mut m, &[0, 1 << 39], &[0, 0], Perms::RW),
            p.map_pages(&mut m, &[0, K4], &[0, 1 << 52], Perms::RW),
            p.map_pages(&mut m, &[0, K4], &[0], Perms::RW),
            p.unmap_pages(&mut m, &[0, 5]),
        ];
        for (i, r) in bad.iter().enumerate() {
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "case {i}: {r:?}"
            );
        }
        assert!(p.leaf_table(&mut m, Iova(0), true, 4).is_err());
        assert!(p.leaf_table(&mut m, Iova(0), true, 0).is_err());
        assert!(p.lookup_many(&m, &[1 << 39], &mut [0]).is_err());
        p.set_node(Some(7));
        assert!(p.map(&mut m, Iova(G1), Maddr(0), K4, Perms::RW).is_err());
        assert_eq!(snapshot(&p, &m), snap);
        assert!(PageTable::new(2, None, Superpages::None).is_err());
        assert!(PageTable::new(6, None, Superpages::None).is_err());
        assert!(Superpages::parse("4M").is_err());
        assert_eq!(Superpages::parse("2m").unwrap(), Superpages::Sp2M);
    }

    #[test]
    fn corrupted_tables_give_errors() {
        let mut m = mem(64);
        let mut p = pt(4, Superpages::None);
        p.map(&mut m, Iova(0), Maddr(0), K4, Perms::RW).unwrap();
        let root = p.root();
        let good = m.read_u64(Maddr(root)).unwrap();
        // A pointer outside memory, then to a page that is not one of our tables.
        for bad in [
            Pte::table(1 << 45).0,
            Pte::table(5 * K4 + (1 << 40)).0,
            good | Pte::PS,
        ] {
            m.write_u64(Maddr(root), bad).unwrap();
            let snap_tables = p.table_pages();
            assert!(p.map(&mut m, Iova(K4), Maddr(0), K4, Perms::RW).is_err());
            assert!(p.unmap(&mut m, Iova(0), G1).is_err());
            assert!(p.map_pages(&mut m, &[K4], &[0], Perms::RW).is_err());
            assert!(p.unmap_pages(&mut m, &[0]).is_err());
            assert!(p.leaf_table(&mut m, Iova(0), false, 1).is_err());
            assert_eq!(p.table_pages(), snap_tables);
            assert_eq!(m.read_u64(Maddr(root)).unwrap(), bad);
        }
        m.write_u64(Maddr(root), Pte::table(1 << 45).0).unwrap();
        assert!(p.lookup(&m, Iova(0)).is_err());
        assert!(p.mappings(&m).is_err());
        assert!(p.lookup_many(&m, &[0], &mut [0]).is_err());
        m.write_u64(Maddr(root), good).unwrap();
        assert_eq!(p.lookup(&m, Iova(0)).unwrap().unwrap().maddr, 0);
        p.free(&mut m).unwrap();
    }

    #[test]
    fn nodes_of_table_pages() {
        let mut m = mem(64);
        let mut p = PageTable::new(4, Some(1), Superpages::None).unwrap();
        p.map(&mut m, Iova(0), Maddr(0), K4, Perms::RW).unwrap();
        p.set_node(Some(0));
        p.map(&mut m, Iova(G1), Maddr(0), K4, Perms::RW).unwrap();
        assert_eq!(p.table_pages(), BTreeMap::from([(0, 2), (1, 4)]));
        assert_eq!(m.node_of(Maddr(p.root())), Some(1));
    }

    #[test]
    fn random_ops_match_a_page_model() {
        for (seed, levels, sp) in [
            (1u64, 4u32, Superpages::Sp2M),
            (2, 3, Superpages::None),
            (3, 5, Superpages::Sp1G),
            (4, 4, Superpages::Sp1G),
        ] {
            let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
            let mut m = mem(1 << 14);
            let mut p = pt(levels, sp);
            let mut model = Model::new();
            // IOVAs in [base, base + 8 GiB) near the top of the width, maddrs anywhere.
            let base = (1u64 << p.width()) - 8 * G1;
            for step in 0..3000 {
                let kind = r.below(10);
                let size = match r.below(20) {
                    0 => M2,
                    1 => 2 * M2,
                    2 if step % 50 == 0 => G1,
                    _ => (1 + r.below(40)) * K4,
                };
                let align = if size >= M2 { size.min(G1) } else { K4 };
                let iova = base + (r.below(8 * G1 - size) & !(align - 1));
                let maddr = if r.below(2) == 0 {
                    r.below(1 << 40) & !(align - 1)
                } else {
                    r.below(1 << 40) & !(K4 - 1)
                };
                let perms = Perms {
                    read: r.below(4) != 0,
                    write: r.below(2) == 0,
                    snoop: false,
                };
                let perms = if !perms.read && !perms.write {
                    Perms::RW
                } else {
                    perms
                };
                let pages = size / K4;
                let was = (0..pages).any(|i| model.contains_key(&(iova + i * K4)));
                if kind < 5 {
                    let got = p
                        .map(&mut m, Iova(iova), Maddr(maddr), size, perms)
                        .unwrap();
                    assert_eq!(got, was, "step {step}");
                    for i in 0..pages {
                        model.insert(iova + i * K4, (maddr + i * K4, perms.read, perms.write));
                    }
                } else if kind < 8 {
                    assert_eq!(
                        p.unmap(&mut m, Iova(iova), size).unwrap(),
                        was,
                        "step {step}"
                    );
                    for i in 0..pages {
                        model.remove(&(iova + i * K4));
                    }
                } else {
                    // A scattered batch.
                    let n = 1 + r.below(64);
                    let iovas: Vec<u64> = (0..n)
                        .map(|_| base + (r.below(8 * G1) & !(K4 - 1)))
                        .collect();
                    let was = iovas.iter().any(|v| model.contains_key(v));
                    if kind == 8 {
                        let maddrs: Vec<u64> =
                            (0..n).map(|_| r.below(1 << 40) & !(K4 - 1)).collect();
                        assert_eq!(p.map_pages(&mut m, &iovas, &maddrs, perms).unwrap(), was);
                        for (&v, &a) in iovas.iter().zip(&maddrs) {
                            model.insert(v, (a, perms.read, perms.write));
                        }
                    } else {
                        assert_eq!(p.unmap_pages(&mut m, &iovas).unwrap(), was);
                        for v in &iovas {
                            model.remove(v);
                        }
                    }
                }
                if step % 100 == 99 {
                    assert_eq!(p.mappings(&m).unwrap(), model_runs(&model), "step {step}");
                    let probes: Vec<u64> = (0..256).map(|_| base + r.below(8 * G1)).collect();
                    let mut out = vec![0; probes.len()];
                    p.lookup_many(&m, &probes, &mut out).unwrap();
                    for (&v, &o) in probes.iter().zip(&out) {
                        let want = model
                            .get(&(v & !(K4 - 1)))
                            .map_or(u64::MAX, |e| e.0 + (v & (K4 - 1)));
                        assert_eq!(o, want);
                        let one = p.lookup(&m, Iova(v)).unwrap().map_or(u64::MAX, |t| t.maddr);
                        assert_eq!(one, want);
                    }
                }
            }
            p.unmap(&mut m, Iova(base), 8 * G1).unwrap();
            assert_eq!(p.table_count(), 1, "only the root is left");
        }
    }

    #[test]
    fn batches_over_wide_windows_take_the_general_path() {
        // Spans beyond 2^15 L1 tables (64 GiB) and beyond 2^32 (5 levels) use the unpacked
        // sort; results must not depend on the path.
        let mut m = mem(256);
        let mut p = pt(5, Superpages::None);
        let iovas = [1 << 56, 0, 1 << 40, 1 << 56, 5 * K4, 1 << 40];
        let maddrs = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000];
        assert!(!p.map_pages(&mut m, &iovas, &maddrs, Perms::RW).unwrap());
        let probes = [1 << 56, 0, (1 << 40) + 7, 5 * K4, 6 * K4];
        let mut out = [0u64; 5];
        p.lookup_many(&m, &probes, &mut out).unwrap();
        assert_eq!(out, [0x4000, 0x2000, 0x6007, 0x5000, u64::MAX]);
        assert!(p
            .unmap_pages(&mut m, &[1 << 56, 1 << 40, 0, 5 * K4])
            .unwrap());
        assert_eq!(p.table_count(), 1);
        let mut p = pt(4, Superpages::None);
        let iovas = [1 << 46, 0, 1 << 46];
        p.map_pages(&mut m, &iovas, &[K4, 2 * K4, 3 * K4], Perms::RW)
            .unwrap();
        let mut out = [0u64; 3];
        p.lookup_many(&m, &iovas, &mut out).unwrap();
        assert_eq!(out, [3 * K4, 2 * K4, 3 * K4]);
        assert!(p.unmap_pages(&mut m, &iovas).unwrap());
        assert_eq!(p.table_count(), 1);
    }

    #[test]
    fn batch_duplicates_last_wins_and_sorting() {
        let mut m = mem(256);
        let mut p = pt(4, Superpages::None);
        let iovas = [5 * M2, K4, 5 * M2, 3 * G1, K4];
        let maddrs = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000];
        assert!(!p.map_pages(&mut m, &iovas, &maddrs, Perms::RW).unwrap());
        let mut out = [0u64; 5];
        p.lookup_many(&m, &iovas, &mut out).unwrap();
        assert_eq!(out, [0x3000, 0x5000, 0x3000, 0x4000, 0x5000]);
        let keys: Vec<(u64, u32)> = (0..10_000u64)
            .map(|i| ((i * 7919) % 97, i as u32))
            .collect();
        let sorted = sort_by_table(keys.clone(), |k| k.0);
        let mut want = keys;
        want.sort_by_key(|k| k.0);
        assert_eq!(sorted, want);
    }
}
