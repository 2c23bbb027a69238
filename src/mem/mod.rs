//! Machine memory as the hardware and the driver side reach it.
//!
//! * [`Memory`]: the read access a walk needs (an 8-byte load, a 4 KiB frame). The hardware
//!   walks are generic over it, so another backing (a memory-mapped arena, an emulator's own
//!   guest RAM) slots in without touching a walk; each use is monomorphised.
//! * [`arena`]: `PhysMem`, the sparse NUMA arena with its page allocator, the backing used today.
//!
//! * [`view`]: [`Fast`], the read view the hot paths use: a memory's contiguous runs asked for
//!   once per call, then a read is one bounds check and one load.
//! * [`raw`]: the crate's only `unsafe` code, fenced, with its soundness argument and the
//!   concurrency model: the host's sparse anonymous memory and memory the embedding program
//!   owns, both seen as `u64` slices.
//!
//! Addresses are machine addresses; ranges are half-open `[start, end)`.

pub mod arena;
pub mod huge;
#[allow(unsafe_code)]
pub mod raw;
pub mod view;

pub use arena::{Frame, NodeSpec, NodeStats, PhysMem, CHUNK_BYTES, MAX_MADDR_BITS, MAX_NODES};
pub use raw::External;
pub use view::{Fast, Run, MAX_RUNS};

/// Read access to machine memory, what the hardware walks are generic over.
pub trait Memory {
    /// The 8-byte word at `maddr` (8-byte aligned), or None when no memory backs it.
    fn load_u64(&self, maddr: u64) -> Option<u64>;
    /// The 4 KiB frame holding `pfn`: `Some(None)` when memory backs it but it reads as zeros
    /// (never written), `None` when no memory backs it.
    fn frame(&self, pfn: u64) -> Option<Option<&Frame>>;
    /// Start bringing the word at `maddr` into the processor's caches (a hint; nothing when no
    /// memory backs it).
    #[inline(always)]
    fn prefetch(&self, maddr: u64) {
        if let Some(Some(f)) = self.frame(maddr >> 12) {
            if let Some(w) = f.get(((maddr >> 3) & 511) as usize) {
                raw::prefetch(w);
            }
        }
    }
    /// Up to `out.len()` contiguous runs of this memory as words (first machine address,
    /// words), for [`Fast`] to read without asking again; the number written. A run must read
    /// exactly as `load_u64` does for every address in it. Default: none.
    #[inline]
    fn runs<'s>(&'s self, out: &mut [Run<'s>]) -> usize {
        let _ = out;
        0
    }
}

/// Byte access to machine memory, what a DMA port moves data with.
pub trait MemoryBytes: Memory {
    /// Read `out.len()` bytes at `maddr` (inside one backing range).
    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> crate::Result<()>;
    /// Write `data` at `maddr` (inside one backing range).
    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> crate::Result<()>;
}

impl MemoryBytes for PhysMem {
    #[inline]
    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> crate::Result<()> {
        self.read(crate::addr::Maddr(maddr), out)
    }
    #[inline]
    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> crate::Result<()> {
        self.write(crate::addr::Maddr(maddr), data)
    }
}

impl Memory for PhysMem {
    #[inline(always)]
    fn load_u64(&self, maddr: u64) -> Option<u64> {
        PhysMem::load_u64(self, maddr)
    }
    #[inline(always)]
    fn frame(&self, pfn: u64) -> Option<Option<&Frame>> {
        PhysMem::frame(self, pfn)
    }
    #[inline]
    fn runs<'s>(&'s self, out: &mut [Run<'s>]) -> usize {
        PhysMem::runs(self, out)
    }
}
