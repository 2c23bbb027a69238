//! Range operations: `map` and `unmap` of `[iova, iova + size)`, plan first, then execute.

use super::*;

impl PageTable {
    // -----------------------------------------------------------------------------------------
    // Range map / unmap

    /// Map `[iova, iova + size)` onto `[maddr, maddr + size)`. Returns true when some entry it
    /// overwrote was present (the flush hint).
    pub fn map(
        &mut self,
        mem: &mut PhysMem,
        iova: Iova,
        maddr: Maddr,
        size: u64,
        perms: Perms,
    ) -> Result<bool> {
        let (iova, maddr) = (iova.get(), maddr.get());
        let end = self.check_iova_range(iova, size)?;
        Self::check_maddr_range(maddr, size)?;
        let flags = perms.bits()?;
        mem.check_node(self.node)?;
        let op = Op::Map {
            delta: maddr.wrapping_sub(iova),
        };
        let top = if self.root == 0 {
            Virt::Empty
        } else {
            Virt::Real(self.root)
        };
        let mut needed = self.plan(mem, top, self.levels, iova, end, op)?;
        if self.root == 0 {
            needed += 1;
        }
        mem.ensure_free(needed, self.node)?;
        if self.root == 0 {
            self.root = self.alloc_table(mem, self.levels)?;
        }
        let mut st = Exec::default();
        self.map_rec(
            mem,
            self.root,
            self.levels,
            iova,
            end,
            maddr.wrapping_sub(iova),
            flags,
            &mut st,
        )?;
        self.finish(mem, st)
    }

    /// Clear `[iova, iova + size)`, shattering superpages that straddle its ends and freeing
    /// tables that become empty. Returns true when something was present.
    pub fn unmap(&mut self, mem: &mut PhysMem, iova: Iova, size: u64) -> Result<bool> {
        let iova = iova.get();
        let end = self.check_iova_range(iova, size)?;
        if self.root == 0 {
            return Ok(false);
        }
        mem.check_node(self.node)?;
        let needed = self.plan(
            mem,
            Virt::Real(self.root),
            self.levels,
            iova,
            end,
            Op::Unmap,
        )?;
        mem.ensure_free(needed, self.node)?;
        let mut st = Exec::default();
        self.unmap_rec(mem, self.root, self.levels, iova, end, &mut st)?;
        self.finish(mem, st)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn map_rec(
        &mut self,
        mem: &mut PhysMem,
        t: u64,
        level: u32,
        s: u64,
        e: u64,
        delta: u64,
        flags: u64,
        st: &mut Exec,
    ) -> Result<()> {
        if level == 1 {
            let slots = l1_slots(mem, t, s, e)?;
            let mut old_any = 0u64;
            let mut v = s.wrapping_add(delta) | flags;
            for slot in slots.iter_mut() {
                old_any |= *slot;
                *slot = v;
                v += PAGE_SIZE;
            }
            st.present |= old_any & PRESENT != 0;
            return Ok(());
        }
        let esz = level_size(level);
        let max_leaf = self.superpages.max_leaf_level();
        let mut a = s;
        while a < e {
            let base = a & !(esz - 1);
            let sub_e = e.min(base + esz);
            let full = a == base && sub_e == base + esz;
            let idx = address_level_offset(a, level) as usize;
            let old = mem.page_mut(Maddr(t))?[idx];
            let kind = self.classify(old, level)?;
            let m = a.wrapping_add(delta);
            if full && level <= max_leaf && m & (esz - 1) == 0 {
                match kind {
                    Kind::Absent => {}
                    Kind::Leaf => st.present = true,
                    Kind::Table(c) => {
                        st.present = true;
                        st.free.push((c, level - 1));
                    }
                }
                mem.page_mut(Maddr(t))?[idx] = m | flags | Pte::PS;
            } else {
                let c = self.child_table(mem, st, t, idx, old, kind, level)?;
                self.map_rec(mem, c, level - 1, a, sub_e, delta, flags, st)?;
            }
            a = sub_e;
        }
        Ok(())
    }

    /// Clear `[s, e)` in the level-`level` table `t`; returns true when `t` is now empty.
    pub(super) fn unmap_rec(
        &mut self,
        mem: &mut PhysMem,
        t: u64,
        level: u32,
        s: u64,
        e: u64,
        st: &mut Exec,
    ) -> Result<bool> {
        if level == 1 {
            let slots = l1_slots(mem, t, s, e)?;
            let mut old_any = 0u64;
            for slot in slots.iter_mut() {
                old_any |= *slot;
                *slot = 0;
            }
            st.present |= old_any & PRESENT != 0;
            return Ok(is_empty(mem.page_mut(Maddr(t))?));
        }
        let esz = level_size(level);
        let mut a = s;
        while a < e {
            let base = a & !(esz - 1);
            let sub_e = e.min(base + esz);
            let full = a == base && sub_e == base + esz;
            let idx = address_level_offset(a, level) as usize;
            let old = mem.page_mut(Maddr(t))?[idx];
            match self.classify(old, level)? {
                Kind::Absent => {}
                Kind::Leaf if full => {
                    st.present = true;
                    mem.page_mut(Maddr(t))?[idx] = 0;
                }
                Kind::Table(c) if full => {
                    st.present = true;
                    mem.page_mut(Maddr(t))?[idx] = 0;
                    st.free.push((c, level - 1));
                }
                Kind::Leaf => {
                    st.present = true;
                    let c = self.shatter(mem, old, level)?;
                    mem.page_mut(Maddr(t))?[idx] = Pte::table(c).0;
                    self.unmap_rec(mem, c, level - 1, a, sub_e, st)?;
                }
                Kind::Table(c) => {
                    if self.unmap_rec(mem, c, level - 1, a, sub_e, st)? {
                        mem.page_mut(Maddr(t))?[idx] = 0;
                        st.free.push((c, level - 1));
                    }
                }
            }
            a = sub_e;
        }
        Ok(is_empty(mem.page_mut(Maddr(t))?))
    }
}
