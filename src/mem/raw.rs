//! The crate's only `unsafe` code: the memory that backs `PhysMem`'s nodes, seen as `u64` words.
//!
//! Two kinds of backing, both handed to the rest of the crate as plain `&[u64]` / `&mut [u64]`
//! slices, so every other module stays in safe Rust (the crate root denies `unsafe_code`; only
//! this module allows it):
//!
//! * [`Reservation`]: an anonymous private mapping made with `MAP_NORESERVE` (through `memmap2`):
//!   address space only, no swap reserved, every page reading as zeros until written, a written
//!   page costing one host page. [`Reservation::discard`] gives pages back with `MADV_DONTNEED`;
//!   [`Reservation::collapse`] asks the host to back a 2 MiB range with one huge page.
//! * [`prefetch`]: a cache hint for the batch engine.
//! * [`shared_u64s`], [`shared_u8s`]: an output slice seen as atomics, so the threads of a
//!   batch write their own requests' results into it, each index by one thread.
//! * [`External`]: memory the embedding program owns (with feature `python`, any object with
//!   the buffer protocol), used in place.
//! * [`Table`]: a fixed-length table of plain data (`bytemuck::Pod`) on the heap or in an
//!   anonymous mapping asked for huge pages, whose slice costs no check to make (the hot
//!   caches' sets are reached through it several times per translation).
//!
//! # Soundness
//!
//! `Reservation`: `memmap2` owns the mapping (unmapped on drop) and derefs to `[u8]` safely; the
//! mapping is page aligned and its length a multiple of 8, so `bytemuck::cast_slice` to `[u64]`
//! cannot fail. The one unsafe call is `MADV_DONTNEED` (`unchecked_advise_range`), unsafe in
//! `memmap2` because it changes what existing references to the range observe: it takes
//! `&mut self`, so no reference into the mapping is alive, the range is checked against the
//! mapping's length first, and on a private anonymous mapping the range reads as zeros afterwards,
//! a valid `u64` bit pattern.
//!
//! [`Reservation::collapse`] calls `madvise(MADV_COLLAPSE)` on a 2 MiB aligned range inside the
//! mapping (checked first), through a pointer derived from the mapping under `&mut self`. The
//! kernel copies the range's pages into one huge page at the same addresses and contents (pages
//! never written read as zeros, as before): no value any reference could observe changes, and
//! on failure nothing changes at all.
//!
//! [`prefetch`]: the `_mm_prefetch` intrinsic is `unsafe` only because it is a target-feature
//! function (SSE, which every x86_64 processor has); a prefetch is a hint that never faults
//! and changes no memory, and it is given the address of a live `&u64`.
//!
//! [`shared_u64s`] and [`shared_u8s`] turn `&mut [u64]` / `&mut [u8]` into `&[AtomicU64]` /
//! `&[AtomicU8]` over the same memory for the same lifetime, as the standard library's
//! `Atomic*::from_mut_slice` does: the unique borrow guarantees no other access for that
//! lifetime, each atomic has the size of its integer and, checked at compile time, its
//! alignment, and every bit pattern of the integer is a valid atomic.
//!
//! `External` from owned words: the words are kept as a `Vec` in `_owner` as long as `self`,
//! and the pointer is the `Vec`'s own (`as_mut_ptr`, valid for the whole buffer). The heap
//! memory does not move when the `Vec` does, and moving a `Vec` (unlike a `Box`, which the
//! aliasing model treats as a unique reference) leaves pointers into its buffer valid.
//!
//! `External` from a buffer: the pointer and length come from a numpy array made here, by `numpy.frombuffer`,
//! from the caller's object. That array holds a buffer export of the object for as long as it
//! lives, so the exporter can neither free nor move nor resize the memory (a `bytearray` raises
//! `BufferError` on resize, an `mmap` refuses to close); `External` owns the only reference to
//! the array (it never reaches Python code), so nobody can detach or reshape it either. The
//! pointer is checked to be 8-byte aligned and the length a multiple of 4 KiB before any slice
//! is made; the mutable slice is handed out only when the export is writable (numpy's
//! `WRITEABLE` flag, which follows the buffer's read-only flag). Slices are made afresh for each
//! borrow of `self` and never stored, so writes the program makes between two calls are seen.
//!
//! `Table`: the pointer and length are taken once, when the table is made, from memory `self`
//! owns and never frees or moves before it drops: a `Vec` (its heap memory stays put when the
//! `Vec` moves, and the pointer is its `as_mut_ptr`, which a move of the `Vec` leaves valid;
//! a `Box` would not do, as its move asserts unique access) or a `memmap2` mapping (the
//! mapping stays at its address until unmapped on drop, and the pointer was derived from it
//! before the mapping was moved in, which copies a raw pointer). The mapping's start is page aligned, and the table is made in a mapping
//! only when `T`'s alignment divides a page; its length in bytes is at least `len` values.
//! Every value is initialised before any slice is made (`T: Pod`: any bit pattern is valid,
//! and the mapping is filled with `fill`). Slices are made per borrow of `self`, shared from
//! `&self`, unique from `&mut self`, so Rust's borrow rules carry over. `T: Pod` is `Send` and
//! `Sync`, and so is the table.
//!
//! # Concurrency model
//!
//! Rust's rules: shared borrows read, a unique borrow writes. `PhysMem` is shared behind a
//! read-write lock (`py::mem::SharedMem`): walks in any number of threads hold the read guard,
//! every mutation holds the write guard, so no slice made here is ever read while it is written
//! through `PhysMem`. The memory of an [`External`] node is also reachable by the program that
//! owns it: it must not write that memory while a call that reads it runs with the interpreter
//! lock released (a batch translation), the same rule as for any buffer handed to native code
//! that releases the lock; calls that hold the lock see every write made before them.

use memmap2::{Advice, MmapMut, MmapOptions, UncheckedAdvice};

/// Ask the processor to bring the cache line holding `word` into its caches, without waiting
/// for it. Sound: a prefetch is a hint that reads no program state, cannot fault, and is given
/// an address that a live reference vouches for.
#[inline(always)]
pub fn prefetch(word: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has; a prefetch never
    // faults and changes no memory, whatever the address (here a live reference's).
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(word as *const u64 as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

// The atomics have the size and alignment of their integers (else the casts below would not
// compile: a constant that fails to evaluate stops the build).
const _: () = assert!(
    core::mem::size_of::<AtomicU64>() == core::mem::size_of::<u64>()
        && core::mem::align_of::<AtomicU64>() == core::mem::align_of::<u64>()
        && core::mem::size_of::<AtomicU8>() == 1
        && core::mem::align_of::<AtomicU8>() == 1
);

/// `words` seen as atomics for as long as it is borrowed: threads may then write distinct
/// indices of it at once.
#[inline]
pub fn shared_u64s(words: &mut [u64]) -> &[AtomicU64] {
    // SAFETY: see the module's text: unique borrow, same size and alignment (asserted above),
    // every bit pattern valid; the length is the slice's own.
    unsafe { core::slice::from_raw_parts(words.as_mut_ptr().cast::<AtomicU64>(), words.len()) }
}

/// [`shared_u64s`] for bytes.
#[inline]
pub fn shared_u8s(bytes: &mut [u8]) -> &[AtomicU8] {
    // SAFETY: as for `shared_u64s`.
    unsafe { core::slice::from_raw_parts(bytes.as_mut_ptr().cast::<AtomicU8>(), bytes.len()) }
}

use crate::error::{Error, Result};
use core::sync::atomic::{AtomicU64, AtomicU8};

/// An anonymous `MAP_NORESERVE` reservation of `len` bytes (a multiple of 4 KiB).
pub struct Reservation {
    map: MmapMut,
}

impl Reservation {
    /// Reserve `len` bytes of address space, zero filled, costing nothing until written.
    /// `huge`: ask for transparent huge pages (`MADV_HUGEPAGE`). Host refusal is `HostMemory`.
    pub fn new(len: u64, huge: bool) -> Result<Self> {
        let refuse = |why| Error::HostMemory { bytes: len, why };
        let n = usize::try_from(len).map_err(|_| refuse("larger than the address space"))?;
        if n == 0 || n % 4096 != 0 {
            return Err(refuse(
                "reservation length not a positive multiple of 4 KiB",
            ));
        }
        let map = MmapOptions::new()
            .len(n)
            .no_reserve_swap()
            .map_anon()
            .map_err(|_| refuse("the host refused to reserve the address space (mmap)"))?;
        if huge {
            // Only a hint: a kernel without transparent huge pages keeps 4 KiB pages.
            let _ = map.advise(Advice::HugePage);
        }
        Ok(Reservation { map })
    }

    /// The reservation as words (all zeros where never written).
    #[inline(always)]
    pub fn words(&self) -> &[u64] {
        bytemuck::cast_slice(&self.map[..])
    }

    #[inline(always)]
    pub fn words_mut(&mut self) -> &mut [u64] {
        bytemuck::cast_slice_mut(&mut self.map[..])
    }

    /// Give the pages of the byte range `[off, off + len)` back to the host: they read as zeros
    /// and cost nothing until written again. Out-of-range or unaligned requests do nothing.
    pub fn discard(&mut self, off: u64, len: u64) {
        let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
            return;
        };
        let in_range = off
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len());
        if !in_range || off % 4096 != 0 || len % 4096 != 0 || len == 0 {
            return;
        }
        // SAFETY: `&mut self`: no reference into the mapping is alive; the range lies inside
        // the mapping; the mapping is private and anonymous, so the range reads as zeros after.
        let done = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, off, len)
        };
        if done.is_err() {
            // Not expected on an anonymous private mapping; zero by hand so the contract holds.
            self.words_mut()[off / 8..(off + len) / 8].fill(0);
        }
    }
}

impl Reservation {
    /// Ask the host to back the 2 MiB aligned byte range `[off, off + HUGE_PAGE)` with one
    /// huge page (`MADV_COLLAPSE`, Linux 6.1 and later): the same contents at the same
    /// addresses, one TLB entry instead of 512. Only a hint: whether the host did it is not
    /// reported, and a range outside the mapping or unaligned is ignored.
    pub fn collapse(&mut self, off: u64) {
        let Ok(off) = usize::try_from(off) else {
            return;
        };
        let in_range = off
            .checked_add(HUGE_PAGE)
            .is_some_and(|end| end <= self.map.len());
        let base = self.map.as_mut_ptr() as usize;
        if !in_range || (base + off) % HUGE_PAGE != 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            /// `MADV_COLLAPSE` of the Linux ABI.
            const MADV_COLLAPSE: libc::c_int = 25;
            // SAFETY: the range lies inside the mapping `self` owns, and `&mut self` means no
            // reference into it is alive; collapsing keeps every page's contents at its
            // address (see the module's text), and a failure changes nothing.
            let _ = unsafe {
                libc::madvise(
                    self.map.as_mut_ptr().add(off).cast(),
                    HUGE_PAGE,
                    MADV_COLLAPSE,
                )
            };
        }
    }
}

/// The host's huge page size that [`Reservation::collapse`] asks for.
pub const HUGE_PAGE: usize = 2 << 20;

/// Memory the embedding program owns, used in place (see the module's soundness argument).
pub struct External {
    ptr: core::ptr::NonNull<u64>,
    words: usize,
    writable: bool,
    /// What keeps the memory alive and in place: the numpy array holding the buffer export
    /// (released with `self`), or the owned words of [`External::from_words`].
    _owner: Box<dyn core::any::Any + Send + Sync>,
}

// SAFETY: the memory is plain bytes reached only through `&self`/`&mut self` borrows (see the
// concurrency model above); the owner handle is itself `Send + Sync`.
unsafe impl Send for External {}
unsafe impl Sync for External {}

impl External {
    /// Memory owned here (a program's RAM image built in Rust, and the tests' stand-in for a
    /// buffer): moving the box does not move its heap words, which live as long as `self`.
    pub fn from_words(words: Box<[u64]>, writable: bool) -> Result<Self> {
        let n = words.len();
        if n == 0 || n % 512 != 0 {
            return Err(Error::invalid(
                "nodes",
                "a node needs a positive multiple of 4 KiB",
            ));
        }
        // Owned as a `Vec`, the pointer from `as_mut_ptr` (valid for the whole buffer): moving
        // a `Vec` does not invalidate pointers into its buffer, as moving a `Box` would.
        let mut words = words.into_vec();
        let ptr = core::ptr::NonNull::new(words.as_mut_ptr()).ok_or(Error::invalid(
            "nodes",
            "a node needs a positive multiple of 4 KiB",
        ))?;
        Ok(External {
            ptr,
            words: n,
            writable,
            _owner: Box::new(words),
        })
    }

    /// Use `buffer`'s memory in place. `what` names the argument in errors.
    #[cfg(feature = "python")]
    pub fn from_buffer(
        buffer: &pyo3::Bound<'_, pyo3::PyAny>,
        what: &'static str,
    ) -> Result<(Self, u64)> {
        use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
        use pyo3::intern;
        use pyo3::prelude::*;
        let py = buffer.py();
        let bad = |d: String| Error::invalid(what, d);
        let arr = py
            .import("numpy")
            .and_then(|np| np.getattr("frombuffer"))
            .and_then(|f| {
                let kw = pyo3::types::PyDict::new(py);
                kw.set_item("dtype", "uint8")?;
                f.call((buffer,), Some(&kw))
            })
            .map_err(|e| bad(format!("not a contiguous buffer: {e}")))?;
        let arr = arr
            .cast_into::<PyArray1<u8>>()
            .map_err(|_| bad("not a one-dimensional byte buffer".into()))?;
        let len = arr.len();
        let ptr = arr.data();
        let writable = arr
            .getattr(intern!(py, "flags"))
            .and_then(|f| f.getattr(intern!(py, "writeable")))
            .and_then(|w| w.extract::<bool>())
            .map_err(|e| bad(format!("cannot tell whether the buffer is writable: {e}")))?;
        if ptr.align_offset(8) != 0 {
            return Err(bad("the buffer's memory is not 8-byte aligned".into()));
        }
        if len == 0 || len % 4096 != 0 {
            return Err(bad(format!(
                "buffer of {len:#x} bytes: a node needs a positive multiple of 4 KiB"
            )));
        }
        let ptr = core::ptr::NonNull::new(ptr.cast::<u64>())
            .ok_or_else(|| bad("the buffer has no memory".into()))?;
        let ext = External {
            ptr,
            words: len / 8,
            writable,
            _owner: Box::new(arr.unbind()),
        };
        Ok((ext, len as u64))
    }

    #[inline(always)]
    pub fn words(&self) -> &[u64] {
        // SAFETY: `ptr` is 8-byte aligned, valid for `words` u64s while the export lives (as
        // long as `self`), and not written through `PhysMem` while `&self` is borrowed.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }

    /// The memory for writing, or None when the buffer is read-only.
    #[inline(always)]
    pub fn words_mut(&mut self) -> Option<&mut [u64]> {
        if !self.writable {
            return None;
        }
        // SAFETY: as `words`, and the export is writable; `&mut self` makes this the only
        // slice made from the pointer while it lives.
        Some(unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.words) })
    }

    pub fn writable(&self) -> bool {
        self.writable
    }
}

/// `len` values of `T`, either on the heap or in an anonymous mapping of their own asked for
/// transparent huge pages; a slice of them costs no check (see the soundness argument).
pub struct Table<T: bytemuck::Pod> {
    ptr: core::ptr::NonNull<T>,
    len: usize,
    _owner: TableOwner<T>,
}

enum TableOwner<T> {
    Heap(#[allow(dead_code)] Vec<T>),
    Map(#[allow(dead_code)] MmapMut),
}

// SAFETY: `T: Pod` values are plain data; the table is reached only through borrows of `self`.
unsafe impl<T: bytemuck::Pod + Send> Send for Table<T> {}
unsafe impl<T: bytemuck::Pod + Sync> Sync for Table<T> {}

impl<T: bytemuck::Pod> Table<T> {
    /// `len` copies of `fill` on the heap. Host refusal is `Error::HostMemory`.
    pub fn heap(len: usize, fill: T) -> Result<Self> {
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| Error::HostMemory {
            bytes: len.saturating_mul(core::mem::size_of::<T>()) as u64,
            why: "no host memory for the table",
        })?;
        v.resize(len, fill);
        // The pointer from `as_mut_ptr` is valid for the whole buffer, and stays valid when
        // the `Vec` moves (it is never turned into a `Box`, whose move would invalidate it).
        let ptr = core::ptr::NonNull::new(v.as_mut_ptr()).unwrap_or(core::ptr::NonNull::dangling());
        Ok(Table {
            ptr,
            len,
            _owner: TableOwner::Heap(v),
        })
    }

    /// `len` copies of `fill` in an anonymous mapping of their own, asked for transparent huge
    /// pages (a hint). Host refusal is `Error::HostMemory`.
    pub fn mapped(len: usize, fill: T) -> Result<Self> {
        let bytes = len.checked_mul(core::mem::size_of::<T>());
        let refuse = |why| Error::HostMemory {
            bytes: bytes.unwrap_or(usize::MAX) as u64,
            why,
        };
        let n = bytes
            .and_then(|b| b.checked_next_multiple_of(4096))
            .ok_or(refuse("table larger than the address space"))?;
        if n == 0 || 4096 % core::mem::align_of::<T>() != 0 {
            return Self::heap(len, fill);
        }
        let mut map = MmapOptions::new()
            .len(n)
            .map_anon()
            .map_err(|_| refuse("the host refused the table's memory (mmap)"))?;
        // Only a hint: a kernel without transparent huge pages keeps 4 KiB pages.
        let _ = map.advise(Advice::HugePage);
        let typed: &mut [T] =
            bytemuck::cast_slice_mut(&mut map[..n - n % core::mem::size_of::<T>()]);
        let typed = typed
            .get_mut(..len)
            .ok_or(refuse("mapping shorter than asked"))?;
        typed.fill(fill);
        let ptr = core::ptr::NonNull::from(typed).cast::<T>();
        Ok(Table {
            ptr,
            len,
            _owner: TableOwner::Map(map),
        })
    }

    /// True when the table lives in a mapping of its own.
    pub fn is_mapped(&self) -> bool {
        matches!(self._owner, TableOwner::Map(_))
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: see the module's soundness argument (`Table`).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: see the module's soundness argument (`Table`); `&mut self` is unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table reads what was written, for a value size that does not divide a page, after
    /// the table itself was moved (on the heap: a test Miri can run, `cargo +nightly miri
    /// test --lib heap_table`).
    fn check_moved(mapped: bool) {
        let len = if cfg!(miri) { 1003 } else { 100_003usize };
        let mut t: Table<[u64; 3]> = if mapped {
            Table::mapped(len, [1, 2, 3])
        } else {
            Table::heap(len, [1, 2, 3])
        }
        .unwrap();
        assert_eq!(t.is_mapped(), mapped);
        t.as_mut_slice()[len - 1] = [7, 8, 9];
        let moved = Box::new(t);
        let t = &*moved;
        assert_eq!(t.as_slice().len(), len);
        assert_eq!(t.as_slice()[0], [1, 2, 3]);
        assert_eq!(t.as_slice()[len - 1], [7, 8, 9]);
        assert_eq!(t.as_slice()[len / 2], [1, 2, 3]);
    }

    #[test]
    fn heap_table_keeps_its_values_when_moved() {
        check_moved(false);
        let empty: Table<u64> = Table::heap(0, 5).unwrap();
        assert!(empty.as_slice().is_empty());
    }

    /// Owned words used in place read and write through the node after it moved (Miri runs
    /// this one too).
    #[test]
    fn owned_words_survive_a_move() {
        let mut w = vec![0u64; 1024].into_boxed_slice();
        w[1023] = 9;
        let e = External::from_words(w, true).unwrap();
        let mut moved = Box::new(e);
        assert_eq!(moved.words()[1023], 9);
        if let Some(ws) = moved.words_mut() {
            ws[0] = 5;
        }
        let back = *moved;
        assert_eq!((back.words()[0], back.words().len()), (5, 1024));
        let ro = External::from_words(vec![1u64; 512].into_boxed_slice(), false).unwrap();
        assert!(!ro.writable());
    }

    /// Collapsing keeps every word; ranges outside the mapping or unaligned are ignored.
    #[test]
    #[cfg_attr(miri, ignore)] // Miri has no madvise.
    fn collapse_keeps_the_contents() {
        let len = 3 * HUGE_PAGE as u64;
        let mut r = Reservation::new(len, false).unwrap();
        let words = r.words_mut().len();
        for (i, w) in r.words_mut().iter_mut().enumerate().step_by(61) {
            *w = i as u64 ^ 0x5a5a;
        }
        let mid = (words / 2) as u64;
        for off in [0, HUGE_PAGE as u64, 4096, len, u64::MAX, mid * 8] {
            r.collapse(off);
        }
        for (i, &w) in r.words().iter().enumerate() {
            let want = if i % 61 == 0 { i as u64 ^ 0x5a5a } else { 0 };
            assert_eq!(w, want, "word {i}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // Miri has no madvise.
    fn mapped_table_keeps_its_values_when_moved() {
        check_moved(true);
        let empty: Table<u64> = Table::mapped(0, 5).unwrap();
        assert!(empty.as_slice().is_empty());
    }
}
