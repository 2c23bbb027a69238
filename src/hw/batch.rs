//! The batch engine of a unit: the requests are translated in order, each through the same
//! step as a single translation, and nothing is done ahead that could need undoing.
//!
//! * One thread: [`AHEAD`] requests before a request is translated, the processor is asked
//!   (a prefetch, which does not wait) for the IOTLB set it will probe and, unless the IOTLB
//!   as it stands holds its translation, its leaf entry; the entries above the leaf are read
//!   then (few, and in cache). By the time the request is translated its misses are under way
//!   or done.
//! * More threads: the batch goes in windows; the walks of each window's requests that miss
//!   the IOTLB as it stands are done on the threads at once, interleaved (a walk reads only
//!   memory, which no one changes during a batch); the in-order pass then takes a walk done
//!   ahead only when it is the very walk it needs (same table, address and access).
//!
//! Threads and look-ahead change the speed, never the outcome: results, faults, counters and
//! cache content are those of the same calls one by one.

use super::context::Context;
use super::remapper::{Remapper, Request};
use super::walk::{walk_interleaved, WalkJob, WalkOut};
use crate::mem::Memory;
use crate::spec::{address_level_offset, Pte, TranslationType, ADDR_HI_MASK};

/// Walks done ahead for one part of a window: the walks, the index in the part of the
/// request each is for, and their results.
#[derive(Default)]
struct Scratch {
    jobs: Vec<WalkJob>,
    who: Vec<u32>,
    outs: Vec<WalkOut>,
}

/// Requests per thread per window of a threaded batch.
pub(super) const WINDOW: usize = 1 << 13;
/// Fewest requests per thread worth a thread of its own.
const MIN_PER_THREAD: usize = 1 << 12;
/// How many requests ahead a one-thread batch asks for the memory a request will read.
const AHEAD: usize = 32;

impl Remapper {
    /// The context `r` would use, as cached now (`None`: not cached, or no walk needed).
    #[inline(always)]
    fn cached_walk_context(&self, r: &Request) -> Option<Context> {
        let c = self.ctx_cache.get(r.sid)?;
        (c.tt != TranslationType::PassThrough && !r.translation_request).then_some(c)
    }

    /// The walks of the requests of `reqs` that miss the IOTLB as it stands, interleaved, into
    /// `sc` (read-only: run on several threads at once).
    fn walk_ahead<M: Memory + Sync + ?Sized>(&self, mem: &M, reqs: &[Request], sc: &mut Scratch) {
        sc.jobs.clear();
        sc.who.clear();
        let iotlb = !self.iotlb.is_empty();
        for (k, r) in reqs.iter().enumerate() {
            let Some(c) = self.cached_walk_context(r) else {
                continue;
            };
            if iotlb && self.iotlb.probe(c.did, r.iova).is_some() {
                continue;
            }
            sc.jobs.push(WalkJob {
                root: c.slptptr,
                iova: r.iova,
                levels: c.levels,
                write: r.write,
            });
            sc.who.push(k as u32);
        }
        sc.outs.clear();
        sc.outs.resize(sc.jobs.len(), WalkOut::default());
        walk_interleaved(mem, &self.cfg, &sc.jobs, &mut sc.outs);
    }

    /// Translate `reqs` in order with the walks `walked` done ahead for them, writing the
    /// results to the slots given (`None`: dropped).
    fn run_in_order<'o, M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        walked: &Scratch,
        mut outs: impl Iterator<Item = (Option<&'o mut u64>, Option<&'o mut u8>)>,
    ) {
        // A part's walks are in request order: the next one is for request `who[n]`.
        let mut n = 0usize;
        for (i, r) in reqs.iter().enumerate() {
            let ahead = match walked.who.get(n) {
                Some(&w) if w as usize == i => {
                    n += 1;
                    walked.jobs.get(n - 1).zip(walked.outs.get(n - 1))
                }
                _ => None,
            };
            let a = ahead.map(|(j, o)| (*j, *o));
            let (hpa, fault) = match self.commit(mem, r, a.as_ref()) {
                Ok(t) => (t.hpa, 0),
                Err(rec) => (0, rec.reason.code()),
            };
            if let Some((h, f)) = outs.next() {
                if let Some(h) = h {
                    *h = hpa;
                }
                if let Some(f) = f {
                    *f = fault;
                }
            }
        }
    }

    /// Start bringing into cache what request `r` will read: its IOTLB set and, unless the
    /// IOTLB holds its translation, its leaf entry (the entries above are read now: few and
    /// hot).
    #[inline(always)]
    fn prefetch_request<M: Memory + ?Sized>(&self, mem: &M, r: &Request, iotlb: bool) {
        let Some(c) = self.cached_walk_context(r) else {
            return;
        };
        if iotlb {
            self.iotlb.prefetch(c.did, r.iova);
        }
        let mut table = c.slptptr & ADDR_HI_MASK;
        let mut level = c.levels as u32;
        while level > 1 {
            let at = table.wrapping_add(address_level_offset(r.iova, level) * 8);
            let Some(raw) = mem.load_u64(at) else {
                return;
            };
            let pte = Pte(raw);
            if raw & 3 == 0 || pte.superpage() {
                return;
            }
            table = pte.addr();
            level -= 1;
        }
        mem.prefetch(table.wrapping_add(address_level_offset(r.iova, 1) * 8));
    }

    /// Translate `reqs` in order on this thread, each request's IOTLB set and leaf entry
    /// asked for [`AHEAD`] requests before it is translated.
    fn run_prefetching<'o, M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        mut outs: impl Iterator<Item = (Option<&'o mut u64>, Option<&'o mut u8>)>,
    ) {
        let iotlb = self.iotlb.capacity() > 0;
        for r in reqs.iter().take(AHEAD) {
            self.prefetch_request(mem, r, iotlb);
        }
        for (i, r) in reqs.iter().enumerate() {
            if let Some(a) = reqs.get(i + AHEAD) {
                self.prefetch_request(mem, a, iotlb);
            }
            let (hpa, fault) = match self.commit(mem, r, None) {
                Ok(t) => (t.hpa, 0),
                Err(rec) => (0, rec.reason.code()),
            };
            if let Some((h, f)) = outs.next() {
                if let Some(h) = h {
                    *h = hpa;
                }
                if let Some(f) = f {
                    *f = fault;
                }
            }
        }
    }

    /// Translate many requests: exactly the results, side effects and counters of the same
    /// calls to [`Remapper::translate`] one by one, in order (see the module's text for how
    /// look-ahead and `threads` make it faster without changing that). Outputs shorter than
    /// the requests: the rest is translated, the results dropped.
    pub fn translate_batch<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        threads: usize,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        let threads = threads.clamp(1, 64).min(reqs.len() / MIN_PER_THREAD).max(1);
        if threads == 1 {
            let outs = slots(Some(out_hpa)).zip(slots(Some(out_fault)));
            self.run_prefetching(mem, reqs, outs);
            return;
        }
        let window = WINDOW * threads;
        let mut scratch: Vec<Scratch> = (0..threads).map(|_| Scratch::default()).collect();
        let mut base = 0usize;
        for win in reqs.chunks(window) {
            let t = threads.min(win.len() / MIN_PER_THREAD).max(1);
            let per = win.len().div_ceil(t).max(1);
            {
                let this = &*self;
                std::thread::scope(|s| {
                    let mut parts = win.chunks(per).zip(scratch.iter_mut());
                    // The first part on this thread, the others on their own.
                    let first = parts.next();
                    for (rs, sc) in parts {
                        s.spawn(move || this.walk_ahead(mem, rs, sc));
                    }
                    if let Some((rs, sc)) = first {
                        this.walk_ahead(mem, rs, sc);
                    }
                });
            }
            let hpa_out = out_hpa.get_mut(base..).unwrap_or_default();
            let fault_out = out_fault.get_mut(base..).unwrap_or_default();
            let hpa_parts = hpa_out.chunks_mut(per).map(Some);
            let hpa_parts = hpa_parts.chain(std::iter::repeat_with(|| None));
            let fault_parts = fault_out.chunks_mut(per).map(Some);
            let fault_parts = fault_parts.chain(std::iter::repeat_with(|| None));
            let outs = hpa_parts.zip(fault_parts);
            for ((rs, sc), (hs, fs)) in win.chunks(per).zip(&scratch).zip(outs) {
                self.run_in_order(mem, rs, sc, slots(hs).zip(slots(fs)));
            }
            base += win.len();
        }
    }
}

/// The elements of an optional slice as `Some(&mut x)`, then `None` for ever.
fn slots<T>(s: Option<&mut [T]>) -> impl Iterator<Item = Option<&mut T>> {
    s.into_iter()
        .flat_map(|s| s.iter_mut())
        .map(Some)
        .chain(std::iter::repeat_with(|| None))
}
