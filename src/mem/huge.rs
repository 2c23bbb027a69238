//! [`HugeTable`]: a large table of plain data in an anonymous mapping of its own, asked for
//! transparent huge pages, for the caches the hot path probes at random (an IOTLB of a million
//! entries spans 16 MiB: on 4 KiB host pages nearly every probe would also miss the host's
//! TLB). Small tables stay on the heap. The storage is [`super::raw::Table`], in the crate's
//! one fenced module of unsafe code: its slice costs no check to make.

use bytemuck::Pod;

use super::raw::Table;
use crate::error::{Error, Result};

/// Tables smaller than this stay on the heap (a huge page would not hold more of them, and a
/// process has a bounded number of mappings).
pub const MIN_MAPPED_BYTES: usize = 2 << 20;

/// `len` values of `T`: in their own mapping from [`MIN_MAPPED_BYTES`] on, else on the heap.
pub struct HugeTable<T: Pod> {
    table: Table<T>,
}

impl<T: Pod> HugeTable<T> {
    /// A table of `len` copies of `fill`. Host refusal is `Error::HostMemory`.
    pub fn new(len: usize, fill: T) -> Result<Self> {
        let bytes = len
            .checked_mul(core::mem::size_of::<T>())
            .ok_or(Error::HostMemory {
                bytes: u64::MAX,
                why: "table larger than the address space",
            })?;
        let table = if bytes < MIN_MAPPED_BYTES {
            Table::heap(len, fill)?
        } else {
            Table::mapped(len, fill)?
        };
        Ok(HugeTable { table })
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[T] {
        self.table.as_slice()
    }

    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.table.as_mut_slice()
    }
}

impl<T: Pod> core::ops::Deref for HugeTable<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> core::ops::DerefMut for HugeTable<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Pod + core::fmt::Debug> core::fmt::Debug for HugeTable<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HugeTable")
            .field("len", &self.as_slice().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_what_is_written() {
        let mut t = HugeTable::new(3000, 7u64).unwrap();
        assert!(t.as_slice().iter().all(|&v| v == 7) && t.as_slice().len() == 3000);
        t.as_mut_slice()[2999] = 9;
        t.as_mut_slice()[0] = 1;
        assert_eq!(
            (t.as_slice()[0], t.as_slice()[1], t.as_slice()[2999]),
            (1, 7, 9)
        );
        assert!(!t.table.is_mapped(), "small tables stay on the heap");
        let mut big = HugeTable::new(MIN_MAPPED_BYTES / 8 + 1, 3u64).unwrap();
        assert!(big.table.is_mapped());
        big.as_mut_slice()[MIN_MAPPED_BYTES / 8] = 4;
        assert_eq!(
            big.as_slice().iter().map(|&v| v as usize).sum::<usize>(),
            3 * (MIN_MAPPED_BYTES / 8) + 4
        );
        let e = HugeTable::new(0, 0u8).unwrap();
        assert!(e.as_slice().is_empty());
        assert!(HugeTable::new(usize::MAX, 0u64).is_err());
    }
}
