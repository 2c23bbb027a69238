//! [`Fast`]: the read view of memory the hardware's hot paths use.
//!
//! A walk reads a handful of words per request, and through [`PhysMem`] each read finds its
//! node, then the node's reservation, then the word. For the length of one call (a batch, a
//! translation) nothing changes what backs memory, so the view asks the memory once for its
//! contiguous runs of words ([`Memory::runs`]: a reservation of a node, the embedding
//! program's buffer) and from then on a read is a subtraction, one bounds check and one load
//! against the first run that holds it. Addresses no run covers (a node never written, a
//! node beyond the first [`MAX_RUNS`] runs) go to the memory itself, so the view answers
//! exactly as the memory does, only sooner.
//!
//! [`PhysMem`]: super::PhysMem

use super::{raw, Frame, Memory};
use crate::addr::ENTRIES_PER_PAGE;

/// Most runs a view holds (the default platform has two nodes, each one run).
pub const MAX_RUNS: usize = 4;

/// One contiguous run of memory: its first machine address (4 KiB aligned) and its words.
pub type Run<'a> = (u64, &'a [u64]);

/// A read view of `M` for the length of one call (see the module's text).
pub struct Fast<'a, M: Memory + ?Sized> {
    runs: [Run<'a>; MAX_RUNS],
    n: usize,
    inner: &'a M,
}

impl<'a, M: Memory + ?Sized> Fast<'a, M> {
    /// The view of `mem` as it stands.
    #[inline]
    pub fn new(mem: &'a M) -> Self {
        let mut runs: [Run<'a>; MAX_RUNS] = [(0, &[]); MAX_RUNS];
        let n = mem.runs(&mut runs).min(MAX_RUNS);
        Fast {
            runs,
            n,
            inner: mem,
        }
    }

    /// The runs in use.
    #[inline(always)]
    fn held(&self) -> &[Run<'a>] {
        self.runs.get(..self.n).unwrap_or(&[])
    }

    /// The word at `maddr` (8-byte aligned) when a run holds it. The first run is tried
    /// inline (tables usually live in one node); the others out of line.
    #[inline(always)]
    fn word(&self, maddr: u64) -> Option<&'a u64> {
        let (base, words) = self.runs[0];
        let i = maddr.wrapping_sub(base) >> 3;
        if i < words.len() as u64 {
            return words.get(i as usize);
        }
        self.word_after_first(maddr)
    }

    /// [`Fast::word`] in the runs after the first.
    #[cold]
    #[inline(never)]
    fn word_after_first(&self, maddr: u64) -> Option<&'a u64> {
        for &(base, words) in self.held().get(1..).unwrap_or(&[]) {
            let i = maddr.wrapping_sub(base) >> 3;
            if i < words.len() as u64 {
                return words.get(i as usize);
            }
        }
        None
    }
}

impl<M: Memory + ?Sized> Memory for Fast<'_, M> {
    #[inline(always)]
    fn load_u64(&self, maddr: u64) -> Option<u64> {
        match self.word(maddr) {
            Some(w) => Some(*w),
            None => self.inner.load_u64(maddr),
        }
    }

    #[inline(always)]
    fn frame(&self, pfn: u64) -> Option<Option<&Frame>> {
        if pfn >> 52 != 0 {
            // Beyond every machine address: no run holds it (a shift would wrap into one).
            return self.inner.frame(pfn);
        }
        let first = pfn << 12;
        for &(base, words) in self.held() {
            let i = first.wrapping_sub(base) >> 3;
            if i < words.len() as u64 {
                let i = i as usize;
                return Some(
                    words
                        .get(i..i + ENTRIES_PER_PAGE)
                        .and_then(|s| s.try_into().ok()),
                );
            }
        }
        self.inner.frame(pfn)
    }

    #[inline(always)]
    fn prefetch(&self, maddr: u64) {
        if let Some(w) = self.word(maddr) {
            raw::prefetch(w);
        }
    }

    fn runs<'s>(&'s self, out: &mut [Run<'s>]) -> usize {
        let n = self.n.min(out.len());
        for (o, w) in out.iter_mut().zip(self.held()) {
            *o = *w;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Maddr;
    use crate::mem::PhysMem;

    /// The view answers every address exactly as the memory does: inside written runs, in
    /// nodes never written, between and beyond nodes, at run edges.
    #[test]
    fn view_answers_as_the_memory() {
        let mut m = PhysMem::new(&[(0, 1 << 30), (1 << 32, 1 << 30), (1 << 40, 1 << 20)]).unwrap();
        for (a, v) in [
            (0x1000u64, 7u64),
            ((1 << 32) + 0x3ff8, 9),
            ((1 << 30) - 8, 5),
        ] {
            m.write_u64(Maddr(a), v).unwrap();
        }
        let f = Fast::new(&m);
        assert!(f.n >= 2, "both written nodes are runs");
        let probes = [
            0u64,
            0x1000,
            0x1008,
            (1 << 30) - 8,
            1 << 30,
            (1 << 32) - 8,
            1 << 32,
            (1 << 32) + 0x3ff8,
            (1 << 32) + (1 << 30),
            1 << 40,
            (1 << 40) + (1 << 20) - 8,
            (1 << 40) + (1 << 20),
            !7,
        ];
        // A frame number beyond 52 bits must not wrap into a run.
        for pfn in [1u64 << 52, (1 << 52) | 1, u64::MAX] {
            assert_eq!(f.frame(pfn).is_some(), m.frame(pfn).is_some(), "{pfn:#x}");
        }
        for a in probes {
            assert_eq!(f.load_u64(a), m.load_u64(a), "{a:#x}");
            let same = match (f.frame(a >> 12), m.frame(a >> 12)) {
                (None, None) => true,
                (Some(x), Some(y)) => x.map(|p| p.to_vec()) == y.map(|p| p.to_vec()),
                _ => false,
            };
            assert!(same, "frame of {a:#x}");
        }
    }
}
