//! Read-only look-ups: one IOVA, many IOVAs (grouped by L1 table), and the list of mappings.

use super::*;

impl PageTable {
    // -----------------------------------------------------------------------------------------
    // Lookups

    /// The translation of `iova`, or None when it is not mapped.
    pub fn lookup(&self, mem: &PhysMem, iova: Iova) -> Result<Option<Translation>> {
        let iova = iova.get();
        if iova >= self.limit() {
            return Err(Error::invalid(
                "iova",
                format!("{iova:#x} is beyond the {}-bit address width", self.width()),
            ));
        }
        let mut t = self.root;
        if t == 0 {
            return Ok(None);
        }
        let mut level = self.levels;
        loop {
            let pte = read_entry(mem, t, address_level_offset(iova, level))?;
            match leaf_or_next(pte, level)? {
                Step::Absent => return Ok(None),
                Step::Leaf => {
                    let size = level_size(level);
                    return Ok(Some(Translation {
                        maddr: (pte & Pte::ADDR_MASK & !(size - 1)) | (iova & (size - 1)),
                        page_size: size,
                        read: pte & Pte::R != 0,
                        write: pte & Pte::W != 0,
                        level: level as u8,
                    }));
                }
                Step::Next(c) => {
                    t = c;
                    level -= 1;
                }
            }
        }
    }

    /// Translate every IOVA of `iovas` into `out` (u64::MAX when unmapped).
    pub fn lookup_many(&mut self, mem: &PhysMem, iovas: &[u64], out: &mut [u64]) -> Result<()> {
        if out.len() != iovas.len() {
            return Err(Error::invalid("out", "length differs from iovas"));
        }
        let limit = self.limit();
        if let Some((i, &v)) = iovas.iter().enumerate().find(|(_, &v)| v >= limit) {
            return Err(Error::invalid(
                "iovas",
                format!(
                    "iovas[{i}] = {v:#x} is beyond the {}-bit address width",
                    self.width()
                ),
            ));
        }
        if self.root == 0 {
            out.fill(u64::MAX);
            return Ok(());
        }
        // Group by L1 table so each table is walked once and stays in cache. Common case: pack
        // (table number, low 21 bits of the IOVA, position) into one u64.
        let (lo, bits) = key_span(iovas);
        if bits <= 15 && iovas.len() <= 1 << 28 {
            let (mut buf, mut tmp) = std::mem::take(&mut self.scratch);
            buf.clear();
            buf.extend(
                iovas
                    .iter()
                    .zip(0u64..)
                    .map(|(&v, i)| (((v >> 21) - lo) << 49) | ((v & 0x1f_ffff) << 28) | i),
            );
            // By table, then by entry: each table is read front to back (prefetch-friendly).
            radix_sort(&mut buf, &mut tmp, bits + 9, |x| x >> 40);
            let decode = |x: &u64| {
                (
                    ((lo + (x >> 49)) << 21) | ((x >> 28) & 0x1f_ffff),
                    (x & ((1 << 28) - 1)) as usize,
                )
            };
            let r = self.lookup_groups(mem, &buf, decode, out);
            self.keep_scratch(buf, tmp);
            return r;
        }
        let items: Vec<(u64, usize)> = iovas.iter().copied().zip(0..).collect();
        let items = sort_by_table(items, |p| p.0 >> level_to_offset_bits(2));
        self.lookup_groups(mem, &items, |p| *p, out)
    }

    /// Translate `items` (sorted by L1 table; `decode` gives IOVA and output position) into `out`.
    pub(super) fn lookup_groups<T>(
        &self,
        mem: &PhysMem,
        items: &[T],
        decode: impl Fn(&T) -> (u64, usize),
        out: &mut [u64],
    ) -> Result<()> {
        for group in items.chunk_by(|a, b| decode(a).0 >> 21 == decode(b).0 >> 21) {
            let Some(first) = group.first() else { continue };
            let iova = decode(first).0;
            let mut t = self.root;
            let mut level = self.levels;
            // The L1 table of this group, or the entry that ends the walk above L1.
            let found: Option<&Frame> = loop {
                let frame = read_frame(mem, t)?;
                if level == 1 {
                    break frame;
                }
                let pte = frame.map_or(0, |f| f[address_level_offset(iova, level) as usize]);
                match leaf_or_next(pte, level)? {
                    Step::Next(c) => {
                        t = c;
                        level -= 1;
                    }
                    step => {
                        let size = level_size(level);
                        let base = pte & Pte::ADDR_MASK & !(size - 1);
                        for x in group {
                            let (v, i) = decode(x);
                            if let Some(o) = out.get_mut(i) {
                                *o = match step {
                                    Step::Leaf => base | (v & (size - 1)),
                                    _ => u64::MAX,
                                };
                            }
                        }
                        break None;
                    }
                }
            };
            if level != 1 {
                continue;
            }
            for x in group {
                let (v, i) = decode(x);
                let pte = found.map_or(0, |f| f[address_level_offset(v, 1) as usize]);
                if let Some(o) = out.get_mut(i) {
                    *o = if pte & PRESENT == 0 {
                        u64::MAX
                    } else {
                        (pte & Pte::ADDR_MASK) | (v & PAGE_MASK)
                    };
                }
            }
        }
        Ok(())
    }

    /// Every mapping, as maximal runs of leaves contiguous in IOVA and machine address with
    /// equal permissions, in IOVA order.
    pub fn mappings(&self, mem: &PhysMem) -> Result<Vec<Mapping>> {
        let mut out: Vec<Mapping> = Vec::new();
        if self.root != 0 {
            self.collect(mem, self.root, self.levels, 0, &mut out)?;
        }
        Ok(out)
    }

    pub(super) fn collect(
        &self,
        mem: &PhysMem,
        t: u64,
        level: u32,
        base: u64,
        out: &mut Vec<Mapping>,
    ) -> Result<()> {
        let Some(frame) = read_frame(mem, t)? else {
            return Ok(());
        };
        let esz = level_size(level);
        for (i, &pte) in frame.iter().enumerate() {
            let iova = base + i as u64 * esz;
            match leaf_or_next(pte, level)? {
                Step::Absent => {}
                Step::Next(c) => self.collect(mem, c, level - 1, iova, out)?,
                Step::Leaf => {
                    let m = Mapping {
                        iova,
                        maddr: pte & Pte::ADDR_MASK & !(esz - 1),
                        size: esz,
                        read: pte & Pte::R != 0,
                        write: pte & Pte::W != 0,
                    };
                    match out.last_mut() {
                        Some(p)
                            if p.iova + p.size == m.iova
                                && p.maddr.wrapping_add(p.size) == m.maddr
                                && p.read == m.read
                                && p.write == m.write =>
                        {
                            p.size += m.size;
                        }
                        _ => out.push(m),
                    }
                }
            }
        }
        Ok(())
    }
}
