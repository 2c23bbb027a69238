//! Batch operations over scattered 4 KiB pages: `map_pages` and `unmap_pages`, sorted by L1
//! table, planned, then executed.

use super::*;

impl PageTable {
    // -----------------------------------------------------------------------------------------
    // Batches of 4 KiB pages

    pub(super) fn check_pages(&self, what: &'static str, iovas: &[u64]) -> Result<()> {
        let limit = self.limit();
        if let Some((i, &v)) = iovas
            .iter()
            .enumerate()
            .find(|(_, &v)| v & PAGE_MASK != 0 || v >= limit)
        {
            let why = if v & PAGE_MASK != 0 {
                "is not 4 KiB aligned".to_string()
            } else {
                format!("is beyond the {}-bit address width", self.width())
            };
            return Err(Error::invalid(what, format!("{what}[{i}] = {v:#x} {why}")));
        }
        Ok(())
    }

    /// Map each 4 KiB page `iovas[i]` onto `maddrs[i]` (a later duplicate wins). Returns true
    /// when some overwritten entry was present.
    pub fn map_pages(
        &mut self,
        mem: &mut PhysMem,
        iovas: &[u64],
        maddrs: &[u64],
        perms: Perms,
    ) -> Result<bool> {
        if iovas.len() != maddrs.len() {
            return Err(Error::invalid(
                "maddrs",
                format!("{} maddrs for {} iovas", maddrs.len(), iovas.len()),
            ));
        }
        self.check_pages("iovas", iovas)?;
        let mlimit = 1u64 << MAX_MADDR_BITS;
        if let Some((i, &m)) = maddrs
            .iter()
            .enumerate()
            .find(|(_, &m)| m & PAGE_MASK != 0 || m >= mlimit)
        {
            return Err(Error::invalid(
                "maddrs",
                format!("maddrs[{i}] = {m:#x} is not a 4 KiB aligned address below 2^52"),
            ));
        }
        let flags = perms.bits()?;
        mem.check_node(self.node)?;
        if iovas.is_empty() {
            return Ok(false);
        }
        if let Some(r) = self.map_pages_packed(mem, iovas, maddrs, flags) {
            return r;
        }
        let pairs: Vec<(u64, u64)> = iovas.iter().copied().zip(maddrs.iter().copied()).collect();
        let pairs = sort_by_table(pairs, |p| p.0 >> level_to_offset_bits(2));
        // Plan.
        let needed = self.plan_pages(mem, pairs.iter().map(|p| p.0), false)?;
        mem.ensure_free(needed, self.node)?;
        // Execute, one L1 table at a time.
        let mut st = Exec::default();
        let mut old_any = 0u64;
        for group in pairs.chunk_by(|a, b| a.0 >> 21 == b.0 >> 21) {
            let t = self.walk_alloc(mem, group[0].0, 1, &mut st)?;
            let frame = mem.page_mut(Maddr(t))?;
            // Read first, so a duplicate IOVA in the batch does not count as "present before".
            for &(iova, _) in group {
                old_any |= frame[address_level_offset(iova, 1) as usize];
            }
            for &(iova, maddr) in group {
                frame[address_level_offset(iova, 1) as usize] = maddr | flags;
            }
        }
        st.present |= old_any & PRESENT != 0;
        self.finish(mem, st)
    }

    /// `map_pages` for batches whose L1 tables span at most 2^15 (a 64 GiB window, the common
    /// case): each page packs into one u64 (table number, L1 index, target frame), which halves
    /// the memory traffic of sorting. None when the batch does not fit (checked input).
    pub(super) fn map_pages_packed(
        &mut self,
        mem: &mut PhysMem,
        iovas: &[u64],
        maddrs: &[u64],
        flags: u64,
    ) -> Option<Result<bool>> {
        const KEY_SHIFT: u32 = 49;
        const IDX_SHIFT: u32 = 40;
        const PFN_MASK: u64 = (1 << IDX_SHIFT) - 1;
        let (lo, bits) = key_span(iovas);
        if bits > 64 - KEY_SHIFT {
            return None;
        }
        let (mut packed, mut tmp) = std::mem::take(&mut self.scratch);
        packed.clear();
        packed.extend(iovas.iter().zip(maddrs).map(|(&v, &m)| {
            (((v >> 21) - lo) << KEY_SHIFT)
                | (((v >> PAGE_SHIFT) & LEVEL_MASK) << IDX_SHIFT)
                | (m >> PAGE_SHIFT)
        }));
        // By table, then by entry (stable, so a later duplicate still wins): each table is
        // written front to back.
        radix_sort(&mut packed, &mut tmp, bits + 9, |x| x >> IDX_SHIFT);
        let iova_of = |x: u64| (lo + (x >> KEY_SHIFT)) << 21;
        let run = |pt: &mut Self, mem: &mut PhysMem| -> Result<bool> {
            let needed = pt.plan_pages(mem, packed.iter().map(|&x| iova_of(x)), false)?;
            mem.ensure_free(needed, pt.node)?;
            let mut st = Exec::default();
            let mut old_any = 0u64;
            for group in packed.chunk_by(|a, b| a >> KEY_SHIFT == b >> KEY_SHIFT) {
                let t = pt.walk_alloc(mem, iova_of(group[0]), 1, &mut st)?;
                let frame = mem.page_mut(Maddr(t))?;
                for &x in group {
                    old_any |= frame[((x >> IDX_SHIFT) & LEVEL_MASK) as usize];
                }
                for &x in group {
                    frame[((x >> IDX_SHIFT) & LEVEL_MASK) as usize] =
                        ((x & PFN_MASK) << PAGE_SHIFT) | flags;
                }
            }
            st.present |= old_any & PRESENT != 0;
            pt.finish(mem, st)
        };
        let r = run(self, mem);
        self.keep_scratch(packed, tmp);
        Some(r)
    }

    /// Unmap each 4 KiB page of `iovas`, freeing tables that become empty. Returns true when
    /// something was present.
    pub fn unmap_pages(&mut self, mem: &mut PhysMem, iovas: &[u64]) -> Result<bool> {
        self.check_pages("iovas", iovas)?;
        if iovas.is_empty() || self.root == 0 {
            return Ok(false);
        }
        mem.check_node(self.node)?;
        let (mut sorted, mut tmp) = std::mem::take(&mut self.scratch);
        sorted.clear();
        sorted.extend_from_slice(iovas);
        let (lo, bits) = key_span(iovas);
        if bits <= 32 {
            radix_sort(&mut sorted, &mut tmp, bits + 9, |v| {
                (v >> PAGE_SHIFT) - (lo << 9)
            });
        } else {
            sorted.sort_unstable();
        }
        let r = self.unmap_sorted(mem, &sorted);
        self.keep_scratch(sorted, tmp);
        r
    }

    pub(super) fn unmap_sorted(&mut self, mem: &mut PhysMem, sorted: &[u64]) -> Result<bool> {
        let needed = self.plan_pages(mem, sorted.iter().copied(), true)?;
        mem.ensure_free(needed, self.node)?;
        let mut st = Exec::default();
        let levels = self.levels;
        for group in sorted.chunk_by(|a, b| a >> 21 == b >> 21) {
            let iova = group[0];
            // Walk down, remembering (table, index) per level; shatter superpages met.
            let mut path = [(0u64, 0usize); 6];
            let mut t = self.root;
            let mut found = true;
            for l in (2..=levels).rev() {
                let idx = address_level_offset(iova, l) as usize;
                path[l as usize] = (t, idx);
                let pte = mem.page_mut(Maddr(t))?[idx];
                t = match self.classify(pte, l)? {
                    Kind::Table(c) => c,
                    Kind::Absent => {
                        found = false;
                        break;
                    }
                    Kind::Leaf => {
                        st.present = true;
                        let c = self.shatter(mem, pte, l)?;
                        mem.page_mut(Maddr(t))?[idx] = Pte::table(c).0;
                        c
                    }
                };
            }
            if !found {
                continue;
            }
            let frame = mem.page_mut(Maddr(t))?;
            let mut old_any = 0u64;
            for &v in group {
                let slot = &mut frame[address_level_offset(v, 1) as usize];
                old_any |= *slot;
                *slot = 0;
            }
            st.present |= old_any & PRESENT != 0;
            if old_any & PRESENT == 0 || !is_empty(frame) {
                continue;
            }
            // Free the emptied L1 table and any ancestors that it leaves empty (not the root).
            let mut child = t;
            for l in 2..=levels {
                let (pt, idx) = path[l as usize];
                let parent = mem.page_mut(Maddr(pt))?;
                parent[idx] = 0;
                let now_empty = is_empty(parent);
                self.free_table(mem, child)?;
                if !now_empty || l == levels {
                    break;
                }
                child = pt;
            }
        }
        self.finish(mem, st)
    }
}
