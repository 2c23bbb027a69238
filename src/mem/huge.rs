//! [`HugeTable`]: a large table of plain data in an anonymous mapping of its own, asked for
//! transparent huge pages, for the caches the hot path probes at random (an IOTLB of a million
//! entries spans 16 MiB: on 4 KiB host pages nearly every probe would also miss the host's
//! TLB). Small tables stay on the heap. Safe code over `memmap2` and `bytemuck`.

use bytemuck::Pod;
use memmap2::{Advice, MmapMut, MmapOptions};

use crate::error::{Error, Result};

/// Tables smaller than this stay on the heap (a huge page would not hold more of them, and a
/// process has a bounded number of mappings).
pub const MIN_MAPPED_BYTES: usize = 2 << 20;

/// `len` values of `T`: in their own mapping from [`MIN_MAPPED_BYTES`] on, else on the heap.
pub struct HugeTable<T: Pod> {
    map: Option<MmapMut>,
    heap: Vec<T>,
    len: usize,
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
        if bytes < MIN_MAPPED_BYTES {
            let mut heap = Vec::new();
            heap.try_reserve_exact(len).map_err(|_| Error::HostMemory {
                bytes: bytes as u64,
                why: "no host memory for the table",
            })?;
            heap.resize(len, fill);
            return Ok(HugeTable {
                map: None,
                heap,
                len,
            });
        }
        let map = {
            let refuse = |why| Error::HostMemory {
                bytes: bytes as u64,
                why,
            };
            let n = bytes
                .checked_next_multiple_of(4096)
                .ok_or(refuse("table larger than the address space"))?;
            let map = MmapOptions::new()
                .len(n)
                .map_anon()
                .map_err(|_| refuse("the host refused the table's memory (mmap)"))?;
            // Only a hint: without transparent huge pages the table keeps 4 KiB pages.
            let _ = map.advise(Advice::HugePage);
            Some(map)
        };
        let mut t = HugeTable {
            map,
            heap: Vec::new(),
            len,
        };
        t.as_mut_slice().fill(fill);
        Ok(t)
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[T] {
        let bytes = self.len * core::mem::size_of::<T>();
        match &self.map {
            Some(m) => m.get(..bytes).map_or(&[], bytemuck::cast_slice),
            None => &self.heap,
        }
    }

    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let bytes = self.len * core::mem::size_of::<T>();
        match &mut self.map {
            Some(m) => m.get_mut(..bytes).map_or(&mut [], bytemuck::cast_slice_mut),
            None => &mut self.heap,
        }
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
        f.debug_struct("HugeTable").field("len", &self.len).finish()
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
        assert!(t.map.is_none(), "small tables stay on the heap");
        let mut big = HugeTable::new(MIN_MAPPED_BYTES / 8 + 1, 3u64).unwrap();
        assert!(big.map.is_some());
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
