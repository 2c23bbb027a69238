//! The batch engine of a unit: a window of requests is first looked at ahead, read-only and
//! on several threads (context look-ups, IOTLB probes, interleaved walks of the misses), then
//! committed in order through the same step as a single translation. Threads and look-ahead
//! change the speed, never the outcome: results, faults, counters and cache content are those
//! of the same calls one by one.

use super::context::{fetch_context, Context};
use super::iotlb::Ahead;
use super::remapper::{Remapper, Request};
use super::walk::{walk_interleaved, WalkJob, WalkOut};
use crate::mem::Memory;
use crate::spec::TranslationType;

/// Buffers of the look-ahead of one part of a window: the walks to do, the index in the part
/// of the request each is for, and their results.
#[derive(Default)]
struct Scratch {
    jobs: Vec<WalkJob>,
    who: Vec<u32>,
    outs: Vec<WalkOut>,
    /// Per request of the part: its IOTLB look-up done ahead, and the IOTLB's epoch then.
    probes: Vec<Ahead>,
    epoch: u64,
}

/// Requests whose IOTLB sets the look-ahead reads in one go, a group ahead of their probes,
/// so that the cache misses of that many look-ups overlap.
const PROBE_AHEAD: usize = 64;

/// Requests per window of a batch: the speculative pass covers a window, then the in-order
/// pass commits it. Small enough that the IOTLB sets probed ahead are still in cache at commit.
pub(super) const WINDOW: usize = 1 << 13;
/// Fewest requests per thread worth a thread of its own.
const MIN_PER_THREAD: usize = 1 << 12;

impl Remapper {
    /// The read-only look-ahead of a slice of a window: the walks the requests that miss the
    /// IOTLB (as it stands) will need, done interleaved, into `sc` (whose buffers are reused
    /// from window to window).
    fn speculate<M: Memory + Sync + ?Sized>(&self, mem: &M, reqs: &[Request], sc: &mut Scratch) {
        sc.jobs.clear();
        sc.who.clear();
        sc.probes.clear();
        sc.epoch = self.iotlb.epoch();
        let cached = self.iotlb.capacity() > 0;
        let iotlb_on = cached && !self.iotlb.is_empty();
        // Read the IOTLB sets of the next group of requests, in a tight loop, before probing
        // this group's: their cache misses overlap with each other and with this group's work
        // (a load outstanding for long blocks the core only once it is the oldest, so the
        // reads must be issued close together); the probes then find their sets in cache, and
        // so does the in-order pass, which re-checks the slot found here.
        let warm = |rg: &[Request]| {
            let mut sets = [0usize; PROBE_AHEAD];
            let mut n = 0;
            // The last source-id's context, as a batch is mostly of few devices.
            let mut last: Option<(u16, Option<Context>)> = None;
            for (r, s) in rg.iter().zip(sets.iter_mut()) {
                let c = match last {
                    Some((sid, c)) if sid == r.sid => c,
                    _ => {
                        let c = self.ctx_cache.get(r.sid);
                        last = Some((r.sid, c));
                        c
                    }
                };
                if let Some(c) = c {
                    *s = self.iotlb.set_index(c.did, r.iova);
                    n += 1;
                }
            }
            let sets = sets.get(..n).unwrap_or(&[]);
            std::hint::black_box(self.iotlb.warm_sets(sets));
        };
        if iotlb_on {
            warm(reqs.get(..PROBE_AHEAD.min(reqs.len())).unwrap_or(&[]));
        }
        for (k, r) in reqs.iter().enumerate() {
            if iotlb_on && k % PROBE_AHEAD == 0 {
                let from = k + PROBE_AHEAD;
                let to = (from + PROBE_AHEAD).min(reqs.len());
                warm(reqs.get(from..to).unwrap_or(&[]));
            }
            let mut probe = Ahead::Unknown;
            let c = match self.ctx_cache.get(r.sid) {
                Some(c) => Some(c),
                None => fetch_context(mem, &self.cfg, self.rtaddr, r.sid).ok(),
            };
            if let Some(c) = c {
                if c.tt != TranslationType::PassThrough && !r.translation_request {
                    if cached {
                        probe = self.iotlb.probe_ahead(c.did, r.iova);
                    }
                    match probe {
                        Ahead::Hit { .. } => {}
                        _ => {
                            sc.jobs.push(WalkJob {
                                root: c.slptptr,
                                iova: r.iova,
                                levels: c.levels,
                                write: r.write,
                            });
                            sc.who.push(k as u32);
                        }
                    }
                }
            }
            if cached {
                sc.probes.push(probe);
            }
        }
        sc.outs.clear();
        sc.outs.resize(sc.jobs.len(), WalkOut::default());
        walk_interleaved(mem, &self.cfg, &sc.jobs, &mut sc.outs);
    }

    /// Translate many requests: exactly the results, side effects and counters of the same
    /// calls to [`Remapper::translate`] one by one, in order. Each window is first looked at
    /// ahead, read-only (split over `threads`): the requests that miss the IOTLB as it stands
    /// get their walks done, interleaved. Then an in-order pass runs each request exactly as
    /// [`Remapper::translate`] does (context cache, IOTLB, fault recording, counters), taking a
    /// walk done ahead only when it is the very walk needed (same table root, levels, address
    /// and direction): a walk reads only memory, which no one changes during the batch. So
    /// threads and look-ahead change the speed, never the outcome.
    pub fn translate_batch<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        threads: usize,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        let threads = threads.clamp(1, 64);
        let window = WINDOW * threads;
        let mut scratch: Vec<Scratch> = (0..threads).map(|_| Scratch::default()).collect();
        let mut base = 0usize;
        for win in reqs.chunks(window) {
            let t = threads.min(win.len() / MIN_PER_THREAD).max(1);
            let per = win.len().div_ceil(t).max(1);
            if t <= 1 {
                if let Some(sc) = scratch.first_mut() {
                    self.speculate(mem, win, sc);
                }
            } else {
                let this = &*self;
                std::thread::scope(|s| {
                    for (rs, sc) in win.chunks(per).zip(scratch.iter_mut()) {
                        s.spawn(move || this.speculate(mem, rs, sc));
                    }
                });
            }
            let hpa_out = out_hpa.get_mut(base..).unwrap_or_default();
            let fault_out = out_fault.get_mut(base..).unwrap_or_default();
            // (Outputs shorter than the requests: the rest is translated, the results dropped.)
            let hpa_parts = hpa_out.chunks_mut(per).map(Some);
            let hpa_parts = hpa_parts.chain(std::iter::repeat_with(|| None));
            let fault_parts = fault_out.chunks_mut(per).map(Some);
            let fault_parts = fault_parts.chain(std::iter::repeat_with(|| None));
            let outs = hpa_parts.zip(fault_parts);
            for ((rs, sc), (hs, fs)) in win.chunks(per).zip(&scratch).zip(outs) {
                // A part's walks are in request order: the next one is for request `who[n]`.
                let mut n = 0usize;
                let probes = sc.probes.iter().map(|&p| (p, sc.epoch));
                let unknown = std::iter::repeat((Ahead::Unknown, 0));
                let probes = probes.chain(unknown);
                for (((i, r), probe), (h, f)) in rs
                    .iter()
                    .enumerate()
                    .zip(probes)
                    .zip(slots(hs).zip(slots(fs)))
                {
                    let walked = match sc.who.get(n) {
                        Some(&w) if w as usize == i => {
                            n += 1;
                            sc.jobs.get(n - 1).zip(sc.outs.get(n - 1))
                        }
                        _ => None,
                    };
                    let a = walked.map(|(j, o)| (*j, *o));
                    let (hpa, fault) = match self.commit(mem, r, a.as_ref(), probe) {
                        Ok(t) => (t.hpa, 0),
                        Err(rec) => (0, rec.reason.code()),
                    };
                    if let Some(h) = h {
                        *h = hpa;
                    }
                    if let Some(f) = f {
                        *f = fault;
                    }
                }
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
