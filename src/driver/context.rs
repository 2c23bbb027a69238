//! The driver side of device mapping: a remapping unit's root table and its context tables
//! (legacy mode), as Xen's `bus_to_context_maddr` and `domain_context_mapping_one` build them
//! (xen-driver.md §4.3, §5.1, §5.2; entry layouts in vtd-hardware.md §1.5).
//!
//! The root table and every context table are allocated against the unit's node (the seed's
//! rule); a failed allocation is an error (decisions.md: the 2019 unchecked 0 is not
//! reproduced), and every mutation is atomic. Context tables are never freed before teardown,
//! as in Xen. Root entries are followed only to context tables this object allocated, so a
//! corrupted root entry is reported instead of written through.

use std::collections::BTreeMap;

use crate::addr::{Maddr, PAGE_MASK, PAGE_SIZE};
use crate::error::{Error, Result};
use crate::mem::{PhysMem, MAX_MADDR_BITS};
use crate::spec::{ContextEntry, RootEntry, TranslationType, CONTEXT_ENTRY_SIZE, ROOT_ENTRY_SIZE};

/// Fields of a legacy context entry, as `set_context` writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextFields {
    /// Second-level page-table pointer (4 KiB aligned; ignored by pass-through).
    pub slptptr: u64,
    /// AW field: 1, 2 or 3 (3, 4 or 5 levels).
    pub aw: u32,
    pub did: u16,
    pub tt: TranslationType,
    /// Fault processing disable.
    pub fpd: bool,
}

/// A remapping unit's root table and context tables.
pub struct RootTable {
    maddr: u64,
    node: Option<u32>,
    /// Context table per bus.
    contexts: BTreeMap<u8, u64>,
    /// Node of every page owned (root and context tables).
    pages: BTreeMap<u64, u32>,
}

fn corrupt(addr: u64) -> Error {
    Error::MemoryAccess {
        addr,
        len: PAGE_SIZE,
        why: "corrupted root table: a present root entry points at a page that is not this \
              unit's context table for that bus",
    }
}

impl RootTable {
    /// No tables yet; they will be allocated against `node`.
    pub fn new(node: Option<u32>) -> Self {
        RootTable {
            maddr: 0,
            node,
            contexts: BTreeMap::new(),
            pages: BTreeMap::new(),
        }
    }

    /// Machine address of the root table, 0 until allocated.
    pub fn maddr(&self) -> u64 {
        self.maddr
    }
    pub fn node(&self) -> Option<u32> {
        self.node
    }
    /// Change the node for future allocations; pages already allocated stay where they are.
    pub fn set_node(&mut self, node: Option<u32>) {
        self.node = node;
    }

    /// Pages per node (the root table and the context tables).
    pub fn table_pages(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for &n in self.pages.values() {
            *out.entry(n).or_insert(0) += 1;
        }
        out
    }

    fn alloc_page(&mut self, mem: &mut PhysMem) -> Result<u64> {
        // Never 0: PhysMem reserves frame 0, the "no table" address.
        let a = mem.alloc_pages(1, self.node)?.get();
        self.pages.insert(a, mem.node_of(Maddr(a)).unwrap_or(0));
        Ok(a)
    }

    /// Allocate the root table now (idempotent); returns its address.
    pub fn alloc(&mut self, mem: &mut PhysMem) -> Result<u64> {
        if self.maddr == 0 {
            mem.check_node(self.node)?;
            mem.ensure_free(1, self.node)?;
            self.maddr = self.alloc_page(mem)?;
        }
        Ok(self.maddr)
    }

    /// The context table of `bus` per the root entry: Some(addr), None when not present.
    fn present_context(&self, mem: &PhysMem, bus: u8) -> Result<Option<u64>> {
        if self.maddr == 0 {
            return Ok(None);
        }
        let at = self.maddr + u64::from(bus) * ROOT_ENTRY_SIZE;
        let e = RootEntry {
            lo: mem.read_u64(Maddr(at))?,
            hi: mem.read_u64(Maddr(at + 8))?,
        };
        if !e.present() {
            return Ok(None);
        }
        match self.contexts.get(&bus) {
            Some(&c) if c == e.ctp() => Ok(Some(c)),
            _ => Err(corrupt(e.ctp())),
        }
    }

    /// Xen's `bus_to_context_maddr`: the context table of `bus`, allocated (with the root
    /// table if need be) on the unit's node when `alloc`; 0 when missing and not `alloc`.
    pub fn context_table(&mut self, mem: &mut PhysMem, bus: u8, alloc: bool) -> Result<u64> {
        if let Some(c) = self.present_context(mem, bus)? {
            return Ok(c);
        }
        if !alloc {
            return Ok(0);
        }
        mem.check_node(self.node)?;
        mem.ensure_free(1 + u64::from(self.maddr == 0), self.node)?;
        self.alloc(mem)?;
        let c = self.alloc_page(mem)?;
        self.contexts.insert(bus, c);
        let at = self.maddr + u64::from(bus) * ROOT_ENTRY_SIZE;
        let e = RootEntry::new(c);
        mem.write_u64(Maddr(at), e.lo)?;
        mem.write_u64(Maddr(at + 8), e.hi)?;
        Ok(c)
    }

    /// Write a present legacy context entry for `bus:devfn`, allocating tables as needed.
    pub fn set_context(
        &mut self,
        mem: &mut PhysMem,
        bus: u8,
        devfn: u8,
        f: ContextFields,
    ) -> Result<()> {
        if f.slptptr & PAGE_MASK != 0 || f.slptptr >> MAX_MADDR_BITS != 0 {
            return Err(Error::invalid(
                "slptptr",
                format!("{:#x} is not a 4 KiB aligned address below 2^52", f.slptptr),
            ));
        }
        if !(1..=3).contains(&f.aw) {
            return Err(Error::invalid(
                "aw",
                format!("{}: the AW field is 1, 2 or 3 (3, 4 or 5 levels)", f.aw),
            ));
        }
        if f.tt == TranslationType::Reserved {
            return Err(Error::invalid("tt", "3 is reserved; use 0, 1 or 2"));
        }
        // Validate the path before any change.
        self.present_context(mem, bus)?;
        let c = self.context_table(mem, bus, true)?;
        let mut e = ContextEntry::new(f.slptptr, f.aw, f.did, f.tt);
        if f.fpd {
            e.lo |= ContextEntry::FPD;
        }
        let at = c + u64::from(devfn) * CONTEXT_ENTRY_SIZE;
        // hi first, then lo with P: a walker never sees P with a stale hi.
        mem.write_u64(Maddr(at + 8), e.hi)?;
        mem.write_u64(Maddr(at), e.lo)?;
        Ok(())
    }

    /// Clear the context entry of `bus:devfn` (both halves); true when it was present.
    pub fn clear_context(&mut self, mem: &mut PhysMem, bus: u8, devfn: u8) -> Result<bool> {
        let Some(c) = self.present_context(mem, bus)? else {
            return Ok(false);
        };
        let at = c + u64::from(devfn) * CONTEXT_ENTRY_SIZE;
        let was = mem.read_u64(Maddr(at))? & ContextEntry::P != 0;
        mem.write_u64(Maddr(at), 0)?;
        mem.write_u64(Maddr(at + 8), 0)?;
        Ok(was)
    }

    /// (lo, hi) of the context entry of `bus:devfn` when present.
    pub fn context(&self, mem: &PhysMem, bus: u8, devfn: u8) -> Result<Option<ContextEntry>> {
        let Some(c) = self.present_context(mem, bus)? else {
            return Ok(None);
        };
        let at = c + u64::from(devfn) * CONTEXT_ENTRY_SIZE;
        let e = ContextEntry {
            lo: mem.read_u64(Maddr(at))?,
            hi: mem.read_u64(Maddr(at + 8))?,
        };
        Ok(e.present().then_some(e))
    }

    /// The root entry of `bus` as stored, present or not; zeros before the root table exists.
    pub fn raw_root(&self, mem: &PhysMem, bus: u8) -> Result<RootEntry> {
        if self.maddr == 0 {
            return Ok(RootEntry::default());
        }
        let at = self.maddr + u64::from(bus) * ROOT_ENTRY_SIZE;
        Ok(RootEntry {
            lo: mem.read_u64(Maddr(at))?,
            hi: mem.read_u64(Maddr(at + 8))?,
        })
    }

    /// The context entry of `bus:devfn` as stored, present bit not checked; zeros when the
    /// bus has no context table (no root table, or its root entry not present). The table is
    /// found as the hardware finds it, through the root entry's CTP (no ownership check: this
    /// only reads), so a CTP outside memory is a `MemoryAccess` error.
    pub fn raw_context(&self, mem: &PhysMem, bus: u8, devfn: u8) -> Result<ContextEntry> {
        let root = self.raw_root(mem, bus)?;
        if !root.present() {
            return Ok(ContextEntry::default());
        }
        let at = root.ctp() + u64::from(devfn) * CONTEXT_ENTRY_SIZE;
        Ok(ContextEntry {
            lo: mem.read_u64(Maddr(at))?,
            hi: mem.read_u64(Maddr(at + 8))?,
        })
    }

    /// Every present context entry as (bus, devfn, entry), in bus/devfn order.
    pub fn entries(&self, mem: &PhysMem) -> Result<Vec<(u8, u8, ContextEntry)>> {
        let mut out = Vec::new();
        for bus in 0..=255u8 {
            if self.present_context(mem, bus)?.is_none() {
                continue;
            }
            for devfn in 0..=255u8 {
                if let Some(e) = self.context(mem, bus, devfn)? {
                    out.push((bus, devfn, e));
                }
            }
        }
        Ok(out)
    }

    /// Free the root table and every context table.
    pub fn free(&mut self, mem: &mut PhysMem) -> Result<()> {
        let pages: Vec<u64> = self.pages.keys().copied().collect();
        self.pages.clear();
        self.contexts.clear();
        self.maddr = 0;
        let mut first_err = None;
        for p in pages {
            if let Err(e) = mem.free_pages(Maddr(p), 1) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K4: u64 = 4096;
    const G1: u64 = 1 << 30;

    fn fields(slptptr: u64, aw: u32, did: u16) -> ContextFields {
        ContextFields {
            slptptr,
            aw,
            did,
            tt: TranslationType::MultiLevel,
            fpd: false,
        }
    }

    #[test]
    fn context_entries_land_where_the_spec_says() {
        let mut m = PhysMem::new(&[(0, 64 * K4), (G1, 64 * K4)]).unwrap();
        let mut rt = RootTable::new(Some(1));
        assert_eq!(rt.context_table(&mut m, 3, false).unwrap(), 0);
        rt.set_context(&mut m, 3, 0x0a, fields(0x7000, 2, 0x42))
            .unwrap();
        let root = rt.maddr();
        assert_eq!(m.node_of(Maddr(root)), Some(1));
        let ctp = m.read_u64(Maddr(root + 3 * 16)).unwrap();
        assert_eq!(ctp & 1, 1);
        assert_eq!(m.read_u64(Maddr(root + 3 * 16 + 8)).unwrap(), 0);
        let c = ctp & !0xfff;
        assert_eq!(rt.context_table(&mut m, 3, false).unwrap(), c);
        // lo: SLPTPTR | TT 0 | P; hi: DID << 8 | AW.
        assert_eq!(m.read_u64(Maddr(c + 0x0a * 16)).unwrap(), 0x7001);
        assert_eq!(m.read_u64(Maddr(c + 0x0a * 16 + 8)).unwrap(), 0x4202);
        let e = rt.context(&m, 3, 0x0a).unwrap().unwrap();
        assert_eq!(
            (e.slptptr(), e.aw(), e.did(), e.tt()),
            (0x7000, 2, 0x42, TranslationType::MultiLevel)
        );
        assert_eq!(rt.table_pages(), BTreeMap::from([(1, 2)]));
        let pt = ContextFields {
            slptptr: 0,
            aw: 1,
            did: 7,
            tt: TranslationType::PassThrough,
            fpd: true,
        };
        rt.set_context(&mut m, 3, 0xff, pt).unwrap();
        assert_eq!(m.read_u64(Maddr(c + 0xff * 16)).unwrap(), 0b1011);
        assert_eq!(rt.entries(&m).unwrap().len(), 2);
        assert!(rt.clear_context(&mut m, 3, 0x0a).unwrap());
        assert!(!rt.clear_context(&mut m, 3, 0x0a).unwrap());
        assert!(!rt.clear_context(&mut m, 9, 0).unwrap());
        assert_eq!(rt.context(&m, 3, 0x0a).unwrap(), None);
        rt.free(&mut m).unwrap();
        assert_eq!(m.stats()[1].allocated_pages, 0);
    }

    #[test]
    fn no_table_at_address_zero_and_nothing_leaks() {
        // Frame 0 is reserved: of 3 pages, 2 hold the root and one context table.
        let mut m = PhysMem::new(&[(0, 3 * K4)]).unwrap();
        let mut rt = RootTable::new(None);
        rt.set_context(&mut m, 5, 1, fields(0x7000, 2, 9)).unwrap();
        assert!(rt.maddr() != 0 && !rt.pages.contains_key(&0));
        assert!(matches!(
            rt.context_table(&mut m, 6, true),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(rt.table_pages(), BTreeMap::from([(0, 2)]));
        rt.free(&mut m).unwrap();
        let s = m.stats()[0];
        assert_eq!(
            (s.reserved_pages, s.allocated_pages, s.free_pages),
            (1, 0, 2)
        );
    }

    #[test]
    fn raw_entries_read_what_is_stored() {
        let mut m = PhysMem::new(&[(G1, 16 * K4)]).unwrap();
        let mut rt = RootTable::new(None);
        assert_eq!(rt.raw_root(&m, 3).unwrap(), RootEntry::default());
        assert_eq!(
            rt.raw_context(&m, 3, 0x0a).unwrap(),
            ContextEntry::default()
        );
        rt.set_context(&mut m, 3, 0x0a, fields(0x7000, 2, 0x42))
            .unwrap();
        let root = rt.maddr();
        let c = rt.context_table(&mut m, 3, false).unwrap();
        // vtd-hardware.md §1.5: root lo = CTP | P, hi 0; context lo = SLPTPTR | TT | P,
        // hi = DID << 8 | AW.
        let r = rt.raw_root(&m, 3).unwrap();
        assert_eq!((r.lo, r.hi), (c | 1, 0));
        let e = rt.raw_context(&m, 3, 0x0a).unwrap();
        assert_eq!((e.lo, e.hi), (0x7001, 0x4202));
        // Other buses: root entry not present, so no context table.
        assert_eq!(rt.raw_root(&m, 4).unwrap(), RootEntry::default());
        assert_eq!(
            rt.raw_context(&m, 4, 0x0a).unwrap(),
            ContextEntry::default()
        );
        // Present bit clear, the rest left: the raw entry still shows it, `context` does not.
        m.write_u64(Maddr(c + 0x0b * 16), 0x9000 | 0b0100).unwrap();
        m.write_u64(Maddr(c + 0x0b * 16 + 8), 0x0701).unwrap();
        let e = rt.raw_context(&m, 3, 0x0b).unwrap();
        assert_eq!((e.lo, e.hi), (0x9004, 0x0701));
        assert_eq!(rt.context(&m, 3, 0x0b).unwrap(), None);
        // A root entry with P clear but a pointer: no context table.
        m.write_u64(Maddr(root + 5 * 16), c).unwrap();
        assert_eq!(rt.raw_root(&m, 5).unwrap().lo, c);
        assert_eq!(
            rt.raw_context(&m, 5, 0x0a).unwrap(),
            ContextEntry::default()
        );
        // Followed as the hardware would, even to a page this object does not own.
        m.write_u64(Maddr(root + 6 * 16), c | 1).unwrap();
        assert_eq!(rt.raw_context(&m, 6, 0x0a).unwrap().lo, 0x7001);
        m.write_u64(Maddr(root + 7 * 16), (4 * G1) | 1).unwrap();
        assert!(matches!(
            rt.raw_context(&m, 7, 0),
            Err(Error::MemoryAccess { .. })
        ));
    }

    #[test]
    fn bad_input_oom_and_corruption() {
        let mut m = PhysMem::new(&[(G1, K4)]).unwrap();
        let mut rt = RootTable::new(None);
        for f in [
            fields(0x800, 2, 1),
            fields(1 << 52, 2, 1),
            fields(0, 0, 1),
            fields(0, 4, 1),
        ] {
            assert!(matches!(
                rt.set_context(&mut m, 0, 0, f),
                Err(Error::InvalidArgument { .. })
            ));
        }
        let mut f = fields(0, 2, 1);
        f.tt = TranslationType::Reserved;
        assert!(rt.set_context(&mut m, 0, 0, f).is_err());
        // One page: the root fits, root + context does not; nothing is allocated.
        assert!(matches!(
            rt.set_context(&mut m, 0, 0, fields(0, 2, 1)),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(rt.maddr(), 0);
        assert_eq!(m.stats()[0].allocated_pages, 0);
        assert_eq!(rt.alloc(&mut m).unwrap(), G1);
        assert_eq!(rt.alloc(&mut m).unwrap(), G1);
        // A root entry pointing somewhere else.
        let mut m = PhysMem::new(&[(G1, 16 * K4)]).unwrap();
        let mut rt = RootTable::new(None);
        rt.set_context(&mut m, 1, 0, fields(0, 2, 1)).unwrap();
        m.write_u64(Maddr(rt.maddr() + 16), (G1 + 9 * K4) | 1)
            .unwrap();
        assert!(matches!(
            rt.context(&m, 1, 0),
            Err(Error::MemoryAccess { .. })
        ));
        assert!(rt.set_context(&mut m, 1, 0, fields(0, 2, 1)).is_err());
        assert!(rt.entries(&m).is_err());
        rt.set_node(Some(3));
        assert!(matches!(
            rt.context_table(&mut m, 2, true),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
