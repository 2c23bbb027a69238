//! The interrupt-entry cache: interrupt remapping table entries (IRTEs) as the unit last read
//! them, by interrupt index. A cached entry stays in use after software changes the table in
//! memory until an interrupt-entry-cache invalidation covers its index (VT-d §6.5.2.7: global,
//! or index-selective over 2^IM entries from the index aligned down to 2^IM), or until a new
//! table is latched (SIRTP invalidates the whole cache).

use std::collections::HashMap;

/// One IRTE as read from memory: its low and high quadwords.
pub type IrteWords = (u64, u64);

/// What an interrupt-entry-cache invalidation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IecScope {
    /// Every entry.
    Global,
    /// The 2^`im` entries from `index` aligned down to 2^`im` (`im` 0..=31 saturates at the
    /// whole index space).
    Index { index: u16, im: u8 },
}

/// The interrupt-entry cache of one unit.
#[derive(Clone, Debug, Default)]
pub struct InterruptEntryCache {
    entries: HashMap<u16, IrteWords>,
    invalidations: u64,
}

impl InterruptEntryCache {
    pub fn new() -> Self {
        Self::default()
    }
    /// The cached entry at `index`.
    #[inline]
    pub fn get(&self, index: u16) -> Option<IrteWords> {
        self.entries.get(&index).copied()
    }
    /// Remember the entry read at `index`.
    #[inline]
    pub fn insert(&mut self, index: u16, irte: IrteWords) {
        self.entries.insert(index, irte);
    }
    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Invalidations executed (of any scope).
    pub fn invalidations(&self) -> u64 {
        self.invalidations
    }
    /// Drop the entries `scope` covers.
    pub fn invalidate(&mut self, scope: IecScope) {
        self.invalidations += 1;
        match scope {
            IecScope::Global => self.entries.clear(),
            IecScope::Index { index, im } => {
                let span = 1u32 << im.min(16);
                let first = (index as u32) & !(span - 1);
                let last = first + (span - 1);
                if span as usize >= self.entries.len() {
                    self.entries
                        .retain(|&i, _| !(first..=last).contains(&(i as u32)));
                } else {
                    for i in first..=last {
                        self.entries.remove(&(i as u16));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> InterruptEntryCache {
        let mut c = InterruptEntryCache::new();
        for i in 0..64u16 {
            c.insert(i, (i as u64, 0));
        }
        c
    }

    #[test]
    fn index_selective_covers_the_aligned_block_of_two_to_the_im() {
        // IM 2 at index 13: entries 12..=15 (13 aligned down to 4).
        let mut c = filled();
        c.invalidate(IecScope::Index { index: 13, im: 2 });
        let gone: Vec<u16> = (0..64).filter(|&i| c.get(i).is_none()).collect();
        assert_eq!(gone, vec![12, 13, 14, 15]);
        // IM 0: the one entry.
        c.invalidate(IecScope::Index { index: 40, im: 0 });
        assert!(c.get(40).is_none() && c.get(39).is_some() && c.get(41).is_some());
        assert_eq!(c.len(), 64 - 5);
        assert_eq!(c.invalidations(), 2);
    }

    #[test]
    fn a_large_mask_and_global_clear_everything() {
        let mut c = filled();
        c.invalidate(IecScope::Index { index: 7, im: 31 });
        assert!(c.is_empty());
        let mut c = filled();
        c.invalidate(IecScope::Global);
        assert!(c.is_empty());
        // Index 0xFFFF with IM 4: 0xFFF0..=0xFFFF, no overflow.
        let mut c = InterruptEntryCache::new();
        c.insert(0xFFFF, (1, 2));
        c.insert(0xFFEF, (3, 4));
        c.invalidate(IecScope::Index {
            index: 0xFFFF,
            im: 4,
        });
        assert_eq!((c.get(0xFFFF), c.get(0xFFEF)), (None, Some((3, 4))));
    }
}
