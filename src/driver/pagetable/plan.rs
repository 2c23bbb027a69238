//! The read-only plan pass of map and unmap (ranges and page batches): walks what the
//! execute pass would do and counts the table pages it needs, so a call that cannot complete
//! fails before anything changes.

use super::*;

impl PageTable {
    /// The read-only pass of `map`/`unmap` over `[s, e)` in the level-`level` table `v`:
    /// validates what the execute pass will follow or free, and counts the tables it creates.
    pub(super) fn plan(
        &self,
        mem: &PhysMem,
        v: Virt,
        level: u32,
        s: u64,
        e: u64,
        op: Op,
    ) -> Result<u64> {
        if level == 1 {
            return Ok(0);
        }
        let frame = match v {
            Virt::Real(t) => read_frame(mem, t)?,
            _ => None,
        };
        let esz = level_size(level);
        let max_leaf = self.superpages.max_leaf_level();
        let mut n = 0u64;
        let mut a = s;
        while a < e {
            let base = a & !(esz - 1);
            let sub_e = e.min(base + esz);
            let full = a == base && sub_e == base + esz;
            let kind = match v {
                Virt::Real(_) => {
                    let pte = frame.map_or(0, |f| f[address_level_offset(a, level) as usize]);
                    self.classify(pte, level)?
                }
                Virt::Empty => Kind::Absent,
                Virt::Leaves => Kind::Leaf,
            };
            match op {
                Op::Map { delta } => {
                    if full && level <= max_leaf && a.wrapping_add(delta) & (esz - 1) == 0 {
                        if let Kind::Table(c) = kind {
                            self.check_subtree(mem, c, level - 1)?;
                        }
                    } else {
                        n += match kind {
                            Kind::Absent => {
                                1 + self.plan(mem, Virt::Empty, level - 1, a, sub_e, op)?
                            }
                            Kind::Leaf => {
                                1 + self.plan(mem, Virt::Leaves, level - 1, a, sub_e, op)?
                            }
                            Kind::Table(c) => {
                                self.plan(mem, Virt::Real(c), level - 1, a, sub_e, op)?
                            }
                        };
                    }
                }
                Op::Unmap => match kind {
                    Kind::Absent => {}
                    Kind::Table(c) if full => self.check_subtree(mem, c, level - 1)?,
                    Kind::Leaf if full => {}
                    Kind::Leaf => n += 1 + self.plan(mem, Virt::Leaves, level - 1, a, sub_e, op)?,
                    Kind::Table(c) => {
                        n += self.plan(mem, Virt::Real(c), level - 1, a, sub_e, op)?
                    }
                },
            }
            a = sub_e;
        }
        Ok(n)
    }

    /// Count the tables a batch (sorted by L1 table) creates, validating the paths it follows.
    /// Map creates missing tables and shatters superpages; unmap only shatters.
    pub(super) fn plan_pages(
        &self,
        mem: &PhysMem,
        sorted: impl Iterator<Item = u64>,
        unmap: bool,
    ) -> Result<u64> {
        let levels = self.levels;
        let mut n = 0u64;
        // last[l]: prefix of the last level-l table counted as new (tables are visited in order).
        let mut last = [u64::MAX; 6];
        let mut prev_key = u64::MAX;
        for iova in sorted {
            let key = iova >> level_to_offset_bits(2);
            if key == prev_key {
                continue;
            }
            prev_key = key;
            // `new_from`: levels below it (down to 1) are new tables.
            let mut new_from = 0u32;
            if self.root == 0 {
                if unmap {
                    return Ok(0);
                }
                new_from = levels + 1;
            } else {
                let mut t = self.root;
                for l in (2..=levels).rev() {
                    let pte = read_entry(mem, t, address_level_offset(iova, l))?;
                    match self.classify(pte, l)? {
                        Kind::Table(c) => t = c,
                        Kind::Absent if unmap => break,
                        _ => {
                            new_from = l;
                            break;
                        }
                    }
                }
            }
            for l in 1..new_from {
                let prefix = iova >> level_to_offset_bits(l + 1).min(63);
                if last[l as usize] != prefix {
                    last[l as usize] = prefix;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
