//! The batch engine of a unit: the requests are translated in order, each through the same
//! step as a single translation, and nothing is done ahead that could need undoing. Memory is
//! read through a [`Fast`] view: nothing changes what backs it during a batch.
//!
//! * One thread: a request is looked at twice before its turn, and what was found is kept,
//!   a few bytes, for the turn.
//!   - Without an IOTLB, [`AHEAD`] requests before: its context is looked up and the levels
//!     above the leaf are walked then (few entries, and in cache), and the leaf entry asked
//!     for (a prefetch, which does not wait). The turn reads only the leaf.
//!   - With an IOTLB, [`AHEAD`] requests before: its context is looked up and the IOTLB set
//!     its look-up will probe asked for. Half as many before, that set (in cache by then) is
//!     probed: a way that holds its 4 KiB translation is kept, else the levels above the
//!     leaf are walked and the leaf asked for. At the turn a kept way that still holds the
//!     translation is what a probe would find (a key is in one way at most, and the 4 KiB
//!     look-up comes first), so the turn compares one key; anything else probes again (an
//!     insert since may have evicted the translation, or brought it).
//!
//!   The context a look-up found is kept too, with its source-id, for the next requests of
//!   that source-id. A context the cache held at a look-ahead is still the one it holds at
//!   the turn (during a batch the context cache only gains the source-ids it did not hold),
//!   so neither the turn nor a later look-ahead looks it up again, and no walk is compared.
//!   By the time the request is translated its misses are under way or done.
//! * More threads with an IOTLB of enough sets that holds no 2 MiB or 1 GiB entry: the
//!   batch is split by IOTLB set ([`super::split`]): each thread translates, in order, the
//!   requests whose set it owns, in rounds, and a request the common case does not decide
//!   stops the split there (what was done past it undone). From the stop a stretch runs on
//!   this thread, then the batch splits again.
//! * More threads with another IOTLB: the first window of [`WINDOW`] requests runs on this thread,
//!   and the rest too when fewer than one in [`FEW_MISSES`] of it missed (helper threads walk
//!   every request ahead, hits included, so they pay only when walks are frequent). Else
//!   threads are spawned once per batch: the rest is cut into windows of [`WINDOW`]
//!   requests. Any thread, this one included, takes the next window not yet taken (at most
//!   [`RING_PER_THREAD`] windows per thread ahead of the in-order pass) and does its walks:
//!   each request's context read from memory (not from the context cache, which only the
//!   in-order pass touches) and its second-level walk, the leaves prefetched ahead. A walk
//!   reads only memory, which no one changes during a batch. This thread translates the
//!   windows in order through the same step as a single translation, taking a walk done ahead
//!   only when it is the very walk that step needs (same table, address, depth and access): a
//!   stale context cache or IOTLB is honoured exactly as in a call by itself. It looks at the
//!   IOTLB ahead as one thread does, so a hit found then and still there takes the short
//!   turn. The caches, counters and fault records are touched by this thread alone, in
//!   request order, so nothing needs merging.
//! * More threads and no IOTLB (capacity 0): the batch is cut into one run per thread, and
//!   each thread decides at once the longest prefix of its run that the common-case step
//!   decides on its own (a cached context, a walk to a leaf, the access allowed), changing
//!   nothing. Then this thread, in order, adds each run's counters and translates the rest of
//!   the run as one thread does. With no IOTLB nothing a request decided this way does is seen
//!   by another, and an earlier run's full steps cannot undo a later run's decisions (see
//!   [`Remapper::run_split`]).
//!
//! Threads and look-ahead change the speed, never the outcome: results, faults, counters and
//! cache content are those of the same calls one by one.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::config::UnitConfig;
use super::context::{fetch_context, Context};
use super::context_cache::ContextCache;
use super::iotlb::{DomainTag, Iotlb, IotlbEntry};
use super::remapper::{Remapper, Request, Translation, INTERRUPT_RANGE};
use super::split::ROUND;
use super::walk::{
    beyond_width, leaf_4k, walk, walk_leaf, walk_prefetching, walk_upper_checked, Upper, WalkJob,
    WalkOut, PERM_R, PERM_W,
};
use crate::mem::{Fast, Memory};
use crate::spec::{level_size, levels_to_width, TranslationType};

/// Walks done ahead for one window: the walks, the index in the window of the request each
/// is for, and their results.
#[derive(Default)]
struct Scratch {
    jobs: Vec<WalkJob>,
    who: Vec<u32>,
    outs: Vec<WalkOut>,
}

/// Requests per window of a threaded batch.
pub(super) const WINDOW: usize = 1 << 12;
/// Fewest requests per thread worth a thread of its own.
pub(super) const MIN_PER_THREAD: usize = WINDOW;
/// With an IOTLB, a batch stays on one thread when fewer than one request in this many
/// of its first window missed: helper threads walk every request, hits included, and below
/// about a quarter of misses that costs more than the one-thread batch's walks (at 16M
/// mapped pages and 11% misses, two threads took 63.5-65.1 ns a request against one
/// thread's 59.1-60.1).
const FEW_MISSES: u64 = 4;
/// Windows walked ahead of the in-order pass, per thread.
const RING_PER_THREAD: usize = 4;
/// Longest stretch a threaded batch with an IOTLB runs on one thread after a split by set
/// stopped early, before it splits again.
const MAX_STRETCH: usize = 1 << 20;
/// How many requests ahead a one-thread batch asks for the memory a request will read.
pub(super) const AHEAD: usize = 32;
/// With an IOTLB, how many requests ahead a one-thread batch probes the IOTLB set it asked
/// for [`AHEAD`] requests ahead (and on a miss, walks above the leaf and asks for it).
pub(super) const LEAF_AHEAD: usize = AHEAD / 2;
/// Look-ahead records kept for the next requests of a one-thread batch (more than AHEAD).
const UPPER_RING: usize = 64;

/// What a translation decided by the common-case step does to the IOTLB.
#[derive(Clone, Copy)]
enum Effect {
    /// A hit on this slot (its referenced bit is set).
    Hit(u32),
    /// A walk to this leaf (inserted, when there is an IOTLB).
    Walk(WalkOut),
    /// A walk to this 4 KiB leaf, whose IOTLB key and set the look-ahead derived
    /// ([`Iotlb::key_set_4k`]): inserted there, when there is an IOTLB.
    Walk4k(WalkOut, u64, u32),
}

/// What the look-ahead of a one-thread batch found for a request (see
/// [`Remapper::look_ahead`]): small, as a ring of them is moved through every request.
#[derive(Clone, Copy, Default)]
struct Ahead {
    /// The walk above the leaf, when `kind` is [`Found::Walked`].
    upper: Upper,
    /// With an IOTLB: the key of its 4 KiB translation and the set a look-up of it probes
    /// ([`Iotlb::key_set_4k`]).
    key: u64,
    set: u32,
    /// For [`Found::Hit`]: the way of the set that held the translation.
    way: u8,
    /// The domain of the request's cached context (not [`Found::Slow`]).
    did: u16,
    kind: Found,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Found {
    /// No cached context that translates the request inside its width: its turn decides
    /// everything.
    #[default]
    Slow,
    /// A cached context, no walk done ahead (the IOTLB held the translation then, or the
    /// walk does not simply descend to a 4 KiB leaf).
    Context,
    /// A cached context and the walk above the leaf, the leaf entry asked for.
    Walked,
    /// A cached context, and the IOTLB held the 4 KiB translation (in way `way` of `set`).
    Hit,
}

/// The context a look-ahead last found cached and walking, with its source-id, the address
/// bits beyond its width and its domain's IOTLB tag. During a batch a context the cache
/// holds stays the one it holds (see the module's text), so it answers every later request
/// of that source-id without a look-up.
#[derive(Clone, Copy, Default)]
pub(super) struct Memo {
    /// `None`: nothing found yet.
    ctx: Option<Context>,
    sid: u16,
    /// Address bits a translation through `ctx` must not have (beyond its width).
    pub(super) beyond: u64,
    pub(super) tag: DomainTag,
}

/// Where the windows of a threaded batch stand.
struct Progress {
    /// Windows taken by a thread for walking (the next to take).
    taken: usize,
    /// Windows translated by the in-order pass.
    done: usize,
    /// Per ring slot: its window's walks are ready.
    ready: Vec<bool>,
    /// The in-order pass has ended (normally or not): threads stop.
    stop: bool,
}

/// What the threads of one batch share.
struct Shared<'a, M: ?Sized> {
    mem: &'a M,
    cfg: &'a UnitConfig,
    rtaddr: Option<u64>,
    reqs: &'a [Request],
    windows: usize,
    ring: Vec<Mutex<Scratch>>,
    progress: Mutex<Progress>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M: Memory + Sync + ?Sized> Shared<'_, M> {
    /// The next window to walk, if one may be taken now (taken by the caller).
    fn take(&self, p: &mut Progress) -> Option<usize> {
        let w = p.taken;
        (w < self.windows && w < p.done + self.ring.len()).then(|| {
            p.taken += 1;
            w
        })
    }

    /// Do window `w`'s walks into its ring slot, then say so (also when the walk panicked:
    /// then the slot holds no walk, and the in-order pass walks for itself).
    fn walk_window(&self, w: usize) {
        let slot = w % self.ring.len();
        let _ready = ReadyOnDrop { shared: self, slot };
        if let Some(m) = self.ring.get(slot) {
            let start = w.saturating_mul(WINDOW).min(self.reqs.len());
            let end = start.saturating_add(WINDOW).min(self.reqs.len());
            let reqs = self.reqs.get(start..end).unwrap_or_default();
            walk_from_memory(self.mem, self.cfg, self.rtaddr, reqs, &mut lock(m));
        }
    }

    /// A thread other than the in-order one: walk windows until there are none left.
    fn work(&self) {
        loop {
            let w = {
                let mut p = lock(&self.progress);
                loop {
                    if p.stop || p.taken >= self.windows {
                        return;
                    }
                    if let Some(w) = self.take(&mut p) {
                        break w;
                    }
                    p = self.changed.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
            };
            self.walk_window(w);
        }
    }

    /// Until window `w`'s walks are ready, walk windows that may be taken, else wait.
    fn wait_ready(&self, w: usize) {
        let slot = w % self.ring.len();
        loop {
            let next = {
                let mut p = lock(&self.progress);
                loop {
                    if p.ready.get(slot).copied().unwrap_or(true) {
                        return;
                    }
                    if let Some(n) = self.take(&mut p) {
                        break n;
                    }
                    p = self.changed.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
            };
            self.walk_window(next);
        }
    }

    /// Window `w` is translated: its slot may be reused.
    fn release(&self, w: usize) {
        let mut p = lock(&self.progress);
        if let Some(r) = p.ready.get_mut(w % self.ring.len()) {
            *r = false;
        }
        p.done = w + 1;
        self.changed.notify_all();
    }
}

/// Marks a ring slot's walks ready when its walk ends, however it ends; a walk that panicked
/// leaves no walk behind (none half done).
struct ReadyOnDrop<'s, 'a, M: ?Sized> {
    shared: &'s Shared<'a, M>,
    slot: usize,
}

impl<M: ?Sized> Drop for ReadyOnDrop<'_, '_, M> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(m) = self.shared.ring.get(self.slot) {
                let mut sc = lock(m);
                sc.jobs.clear();
                sc.who.clear();
                sc.outs.clear();
            }
        }
        let mut p = lock(&self.shared.progress);
        if let Some(r) = p.ready.get_mut(self.slot) {
            *r = true;
        }
        self.shared.changed.notify_all();
    }
}

/// Stops the other threads of a batch when the in-order pass ends, however it ends.
struct StopOnDrop<'s, 'a, M: ?Sized>(&'s Shared<'a, M>);

impl<M: ?Sized> Drop for StopOnDrop<'_, '_, M> {
    fn drop(&mut self) {
        lock(&self.0.progress).stop = true;
        self.0.changed.notify_all();
    }
}

/// The walks of `reqs` as memory says now (contexts read from the tables, the last one
/// remembered), into `sc`. Requests that need no walk (pass-through, translation
/// requests, a context that faults) get none.
fn walk_from_memory<M: Memory + ?Sized>(
    mem: &M,
    cfg: &UnitConfig,
    rtaddr: Option<u64>,
    reqs: &[Request],
    sc: &mut Scratch,
) {
    sc.jobs.clear();
    sc.who.clear();
    let mut last: Option<(u16, Option<Context>)> = None;
    for (k, r) in reqs.iter().enumerate() {
        let c = match last {
            Some((sid, c)) if sid == r.sid => c,
            _ => {
                let c = fetch_context(mem, cfg, rtaddr, r.sid).ok();
                last = Some((r.sid, c));
                c
            }
        };
        let Some(c) = c else { continue };
        if c.tt == TranslationType::PassThrough || r.translation_request {
            continue;
        }
        sc.jobs.push(c.walk_job(r.iova, r.write));
        sc.who.push(k as u32);
    }
    sc.outs.clear();
    sc.outs.resize(sc.jobs.len(), WalkOut::default());
    walk_prefetching(mem, cfg, &sc.jobs, &mut sc.outs);
}

/// The context `r` would use, as `cache` holds it now (`None`: not cached, or no walk needed).
#[inline(always)]
fn cached_walk_context(cache: &ContextCache, r: &Request) -> Option<Context> {
    let c = cache.get(r.sid)?;
    (c.tt != TranslationType::PassThrough && !r.translation_request).then_some(c)
}

/// The cached context request `r` walks through, when it has one (see
/// [`cached_walk_context`]) and its depth is one a walk takes: then `memo` holds it, the bits
/// beyond its width and its domain's tag. A context `memo` holds for the source-id answers
/// without a look-up (during a batch the cache only gains source-ids it did not hold).
#[inline(always)]
pub(super) fn remember(
    cache: &ContextCache,
    cfg: &UnitConfig,
    memo: &mut Memo,
    r: &Request,
) -> Option<Context> {
    if r.translation_request {
        return None;
    }
    if let Some(c) = memo.ctx {
        if memo.sid == r.sid {
            return Some(c);
        }
    }
    let c = cached_walk_context(cache, r)?;
    let w = levels_to_width(c.levels as u32).min(cfg.aw_bits);
    // A depth no walk takes (the walk faults at its start): left to the full step.
    if !(3..=5).contains(&c.levels) {
        return None;
    }
    *memo = Memo {
        ctx: Some(c),
        sid: r.sid,
        beyond: if w < 64 { u64::MAX << w } else { 0 },
        tag: DomainTag::of(c.did),
    };
    Some(c)
}

/// The host address of a 4 KiB translation to `base` with permissions `perm` for request
/// `r`, when the access is allowed and the result is outside the interrupt range (else the
/// full step decides).
#[inline(always)]
pub(super) fn allowed_4k(r: &Request, base: u64, perm: u8) -> Option<u64> {
    let need = if r.write { PERM_W } else { PERM_R };
    let hpa = base | (r.iova & 0xfff);
    (perm & need != 0 && !(INTERRUPT_RANGE.0..INTERRUPT_RANGE.1).contains(&hpa)).then_some(hpa)
}

/// `out` from `at` on (empty past its end).
#[inline]
fn tail<T>(out: &mut [T], at: usize) -> &mut [T] {
    let at = at.min(out.len());
    out.get_mut(at..).unwrap_or_default()
}

/// The first `n` of `out` (all of it when shorter).
#[inline]
fn first_n<T>(out: &mut [T], n: usize) -> &mut [T] {
    let n = n.min(out.len());
    out.get_mut(..n).unwrap_or_default()
}

/// Request `i`'s result into the outputs (shorter outputs: dropped).
#[inline(always)]
fn put(out_hpa: &mut [u64], out_fault: &mut [u8], i: usize, (hpa, fault): (u64, u8)) {
    if let Some(h) = out_hpa.get_mut(i) {
        *h = hpa;
    }
    if let Some(f) = out_fault.get_mut(i) {
        *f = fault;
    }
}

impl Remapper {
    /// The context `r` would use, as cached now (`None`: not cached, or no walk needed).
    #[inline(always)]
    fn cached_walk_context(&self, r: &Request) -> Option<Context> {
        cached_walk_context(&self.ctx_cache, r)
    }

    /// [`remember`] in this unit's context cache.
    #[inline(always)]
    fn remember(&self, memo: &mut Memo, r: &Request) -> Option<Context> {
        remember(&self.ctx_cache, &self.cfg, memo, r)
    }

    /// The common case of [`Remapper::commit`], decided without changing anything: the
    /// context cached and translating (not pass-through, not a translation request), the
    /// address inside the width, an IOTLB hit or a walk to a leaf, the access allowed, the
    /// result outside the interrupt range. Then its side effects are applied (the counters,
    /// the hit's referenced bit or the walk's insert) exactly as `commit` applies them, and
    /// the host address returned. `None`: nothing was changed; `commit` decides. A walk done
    /// ahead (`ahead`) is taken only when it is the very walk the context asks for.
    #[inline(always)]
    pub(super) fn try_fast<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        r: &Request,
        ahead: Option<(&WalkJob, &WalkOut)>,
    ) -> Option<Translation> {
        let c = self.cached_walk_context(r)?;
        if beyond_width(&self.cfg, c.levels as u32, r.iova) {
            return None;
        }
        self.try_fast_with(r, c.did, |s| {
            let job = c.walk_job(r.iova, r.write);
            Some(match ahead {
                Some((j, w)) if *j == job => *w,
                _ => walk(mem, &s.cfg, &job),
            })
        })
    }

    /// [`Remapper::try_fast`] once the request is known to have a cached context of domain
    /// `did` that translates it inside its width: `walk` gives the context's walk for the
    /// request when the IOTLB does not hold it (`None`: leave the request to `commit`).
    #[inline(always)]
    fn try_fast_with(
        &mut self,
        r: &Request,
        did: u16,
        walk: impl FnOnce(&Self) -> Option<WalkOut>,
    ) -> Option<Translation> {
        let (t, effect) = self.decide(r, did, walk)?;
        self.apply(r, did, effect);
        Some(t)
    }

    /// The decision of [`Remapper::try_fast_with`], changing nothing: the translation and
    /// what it does to the IOTLB (a hit on a slot, or a walk to insert).
    #[inline(always)]
    fn decide(
        &self,
        r: &Request,
        did: u16,
        walk: impl FnOnce(&Self) -> Option<WalkOut>,
    ) -> Option<(Translation, Effect)> {
        let hit = if self.iotlb.capacity() > 0 {
            self.iotlb.probe(did, r.iova)
        } else {
            None
        };
        self.decide_with(r, did, hit, walk)
    }

    /// [`Remapper::decide`] given what the IOTLB's probe returns now (`hit`).
    #[inline(always)]
    fn decide_with(
        &self,
        r: &Request,
        did: u16,
        hit: Option<(u32, IotlbEntry)>,
        walk: impl FnOnce(&Self) -> Option<WalkOut>,
    ) -> Option<(Translation, Effect)> {
        let need = if r.write { PERM_W } else { PERM_R };
        let (base, level, perm, effect) = match hit {
            Some((slot, e)) => {
                if e.perm & need == 0 {
                    return None;
                }
                (e.hpa_base, e.level, e.perm, Effect::Hit(slot))
            }
            None => {
                let w = walk(self)?;
                if w.fault != 0 {
                    return None;
                }
                (w.hpa_base, w.level, w.perm, Effect::Walk(w))
            }
        };
        let size = level_size(level as u32);
        let hpa = base | (r.iova & (size - 1));
        if (INTERRUPT_RANGE.0..INTERRUPT_RANGE.1).contains(&hpa) {
            return None;
        }
        let t = Translation {
            hpa,
            page_size: size,
            read: perm & PERM_R != 0,
            write: perm & PERM_W != 0,
            domain_id: did,
            level,
        };
        Some((t, effect))
    }

    /// Apply a decision of [`Remapper::decide`] as the full step would: the counters, and the
    /// hit's referenced bit or the walk's insert.
    #[inline(always)]
    fn apply(&mut self, r: &Request, did: u16, effect: Effect) {
        self.stats.context_hits += 1;
        match effect {
            Effect::Hit(slot) => {
                self.stats.hits += 1;
                self.iotlb.touch(slot);
            }
            Effect::Walk(w) => {
                self.stats.misses += 1;
                self.stats.walks += 1;
                if self.iotlb.capacity() > 0 {
                    self.iotlb.insert(IotlbEntry::of_walk(did, r.iova, &w));
                }
            }
            Effect::Walk4k(w, key, set) => {
                self.stats.misses += 1;
                self.stats.walks += 1;
                if self.iotlb.capacity() > 0 {
                    self.iotlb.insert_4k(set, key, w.hpa_base, w.perm);
                }
            }
        }
    }

    /// One request of a batch: [`Remapper::try_fast`], else the full step.
    #[inline(always)]
    fn step<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        r: &Request,
        ahead: Option<(&WalkJob, &WalkOut)>,
    ) -> (u64, u8) {
        if let Some(t) = self.try_fast(mem, r, ahead) {
            return (t.hpa, 0);
        }
        let a = ahead.map(|(j, o)| (*j, *o));
        self.slow_step(mem, r, a.as_ref())
    }

    /// Translate `reqs` in order with the walks `walked` done ahead for them, writing the
    /// results to the outputs (shorter outputs: the rest dropped).
    fn run_in_order<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        walked: &Scratch,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        // The IOTLB looked at ahead as a one-thread batch does (the walks come from the
        // helper threads instead): a hit found then and still there takes the short turn.
        let mut ring = [Ahead::default(); UPPER_RING];
        let mut memo = Memo::default();
        for (k, r) in reqs.iter().enumerate().take(AHEAD) {
            self.first_look(r, &mut memo, &mut ring[k % UPPER_RING]);
        }
        for (k, r) in reqs.iter().enumerate().take(LEAF_AHEAD) {
            self.probe_look(r, &mut ring[k % UPPER_RING]);
        }
        // The walks are in request order: the next one is for request `who[n]`.
        let mut n = 0usize;
        for (i, r) in reqs.iter().enumerate() {
            if let Some(x) = reqs.get(i + AHEAD) {
                self.first_look(x, &mut memo, &mut ring[(i + AHEAD) % UPPER_RING]);
            }
            if let Some(x) = reqs.get(i + LEAF_AHEAD) {
                self.probe_look(x, &mut ring[(i + LEAF_AHEAD) % UPPER_RING]);
            }
            let ahead = match walked.who.get(n) {
                Some(&w) if w as usize == i => {
                    n += 1;
                    walked.jobs.get(n - 1).zip(walked.outs.get(n - 1))
                }
                _ => None,
            };
            let a = &ring[i % UPPER_RING];
            let hit = match (a.kind, ahead) {
                (Found::Hit, _) => self.hit_turn(r, a),
                (Found::Context, Some((job, out))) => self.helper_turn(r, a, job, out),
                _ => None,
            };
            let res = match hit {
                Some(hpa) => (hpa, 0),
                None => self.step(mem, r, ahead),
            };
            put(out_hpa, out_fault, i, res);
        }
    }

    /// The batch on `threads` threads (see the module's text).
    fn run_threaded<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        threads: usize,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        let windows = reqs.len().div_ceil(WINDOW);
        let ring = (RING_PER_THREAD * threads).min(windows).max(1);
        let cfg = self.cfg.clone();
        let shared = Shared {
            mem,
            cfg: &cfg,
            rtaddr: self.rtaddr,
            reqs,
            windows,
            ring: (0..ring).map(|_| Mutex::new(Scratch::default())).collect(),
            progress: Mutex::new(Progress {
                taken: 0,
                done: 0,
                ready: vec![false; ring],
                stop: false,
            }),
            changed: Condvar::new(),
        };
        std::thread::scope(|s| {
            let sh = &shared;
            let _stop = StopOnDrop(sh);
            for _ in 1..threads {
                // A thread the host will not give is one helper fewer: this thread walks too.
                let spawned = std::thread::Builder::new().spawn_scoped(s, move || sh.work());
                if spawned.is_err() {
                    break;
                }
            }
            let mut hpa_parts = out_hpa.chunks_mut(WINDOW);
            let mut fault_parts = out_fault.chunks_mut(WINDOW);
            for (w, rs) in reqs.chunks(WINDOW).enumerate() {
                sh.wait_ready(w);
                if let Some(m) = sh.ring.get(w % ring) {
                    let walked = lock(m);
                    let hs = hpa_parts.next().unwrap_or_default();
                    let fs = fault_parts.next().unwrap_or_default();
                    self.run_in_order(mem, rs, &walked, hs, fs);
                }
                sh.release(w);
            }
        });
    }

    /// What the look-ahead finds for request `r` with no IOTLB: whether a cached context
    /// translates it inside its width, and the walk above the leaf, with the leaf entry asked
    /// for. Written into its ring slot `a` in place (a ring entry is moved through every
    /// request).
    #[inline(always)]
    fn look_ahead<M: Memory + ?Sized>(&self, mem: &M, r: &Request, memo: &mut Memo, a: &mut Ahead) {
        a.kind = Found::Slow;
        let Some(c) = self.remember(memo, r) else {
            return;
        };
        if r.iova & memo.beyond != 0 {
            return;
        }
        a.did = c.did;
        a.kind = Found::Context;
        if let Some(u) = walk_upper_checked(mem, &self.cfg, &c.walk_job(r.iova, r.write)) {
            mem.prefetch(u.leaf_entry());
            a.upper = u;
            a.kind = Found::Walked;
        }
    }

    /// The first look ahead at request `r` with an IOTLB: whether a cached context translates
    /// it inside its width, and the IOTLB set its look-up will probe, asked for.
    #[inline(always)]
    fn first_look(&self, r: &Request, memo: &mut Memo, a: &mut Ahead) {
        a.kind = Found::Slow;
        let Some(c) = self.remember(memo, r) else {
            return;
        };
        if r.iova & memo.beyond != 0 {
            return;
        }
        a.did = c.did;
        a.kind = Found::Context;
        (a.key, a.set) = self.iotlb.key_set_4k(memo.tag, r.iova);
        self.iotlb.prefetch_set(a.set);
    }

    /// The IOTLB part of [`Remapper::second_look`]: the way that holds the 4 KiB translation
    /// of `r` kept ([`Found::Hit`]), if one does. Whether a walk ahead is worth doing: the
    /// request has a cached context, and no translation of any size answers it now.
    #[inline(always)]
    fn probe_look(&self, r: &Request, a: &mut Ahead) -> bool {
        if a.kind != Found::Context {
            return false;
        }
        if let Some(w) = self.iotlb.way_4k(a.set, a.key) {
            a.way = w;
            a.kind = Found::Hit;
            return false;
        }
        !(self.iotlb.holds_large() && self.iotlb.probe(a.did, r.iova).is_some())
    }

    /// The second look ahead at request `r` with an IOTLB (after [`Remapper::first_look`],
    /// its set asked for then, so the probe reads cache): the slot of its 4 KiB translation
    /// when the IOTLB as it stands holds one, else the walk above the leaf, with the leaf
    /// entry asked for.
    #[inline(always)]
    fn second_look<M: Memory + ?Sized>(
        &self,
        mem: &M,
        r: &Request,
        memo: &mut Memo,
        a: &mut Ahead,
    ) {
        if !self.probe_look(r, a) {
            return;
        }
        let Some(c) = self.remember(memo, r) else {
            return;
        };
        if let Some(u) = walk_upper_checked(mem, &self.cfg, &c.walk_job(r.iova, r.write)) {
            mem.prefetch(u.leaf_entry());
            a.upper = u;
            a.kind = Found::Walked;
        }
    }

    /// Request `r`'s turn after look-ahead `a`: the common case decided with the walk found
    /// ahead ([`Remapper::decide_ahead`]) and applied, else the full step.
    ///
    /// A context the cache held at the look-ahead is the one it holds now: during a batch
    /// the context cache changes only when [`Remapper::commit`] fills the slot of a
    /// source-id it did not hold. The IOTLB is probed again (an insert since may have
    /// evicted the translation, or brought it).
    #[inline(always)]
    fn turn<M: Memory + Sync + ?Sized>(&mut self, mem: &M, r: &Request, a: &Ahead) -> (u64, u8) {
        match a.kind {
            Found::Hit => {
                if let Some(hpa) = self.hit_turn(r, a) {
                    return (hpa, 0);
                }
            }
            Found::Walked => {
                if let Some(hpa) = self.walked_turn(mem, r, a) {
                    return (hpa, 0);
                }
            }
            _ => {}
        }
        if let Some((t, effect)) = self.decide_ahead(mem, r, a) {
            self.apply(r, a.did, effect);
            return (t.hpa, 0);
        }
        self.slow_step(mem, r, None)
    }

    /// The turn of request `r` whose 4 KiB translation look-ahead `a` found in the IOTLB
    /// ([`Found::Hit`]): when that way still holds it (then it is what a probe returns), the
    /// access allowed and the result outside the interrupt range, the hit applied as
    /// [`Remapper::apply`] applies it: the host address. `None`: nothing was changed.
    /// [`Remapper::decide_with`]'s hit, without building its entry.
    #[inline(always)]
    fn hit_turn(&mut self, r: &Request, a: &Ahead) -> Option<u64> {
        let (slot, base, perm) = self.iotlb.hit_4k(a.set, a.way, a.key)?;
        let hpa = allowed_4k(r, base, perm)?;
        self.apply(r, a.did, Effect::Hit(slot));
        Some(hpa)
    }

    /// The turn of request `r` whose walk above the leaf look-ahead `a` did
    /// ([`Found::Walked`]): when the IOTLB still holds no translation of it (else a probe
    /// decides), its leaf is a 4 KiB leaf ([`leaf_4k`]), the access allowed and the result
    /// outside the interrupt range, the walk applied as [`Remapper::apply`] applies it: the
    /// host address. `None`: nothing was changed. [`Remapper::decide_with`]'s walk, without
    /// its general cases.
    #[inline(always)]
    fn walked_turn<M: Memory + ?Sized>(&mut self, mem: &M, r: &Request, a: &Ahead) -> Option<u64> {
        let (hpa, w) = self.decide_walked(mem, r, a)?;
        let effect = if self.iotlb.capacity() > 0 {
            Effect::Walk4k(w, a.key, a.set)
        } else {
            Effect::Walk(w)
        };
        self.apply(r, a.did, effect);
        Some(hpa)
    }

    /// The turn of request `r` in a threaded batch, for which a helper thread walked `job` to
    /// `out` and the look-ahead found a cached context but no 4 KiB translation in the IOTLB
    /// ([`Found::Context`]): when `job` is the very walk the cached context asks for, it
    /// reached a 4 KiB leaf, the IOTLB still holds no translation of `r`, the access is
    /// allowed and the result outside the interrupt range, the walk applied as
    /// [`Remapper::apply`] applies it: the host address. `None`: nothing was changed.
    #[inline(always)]
    fn helper_turn(&mut self, r: &Request, a: &Ahead, job: &WalkJob, out: &WalkOut) -> Option<u64> {
        let c = self.cached_walk_context(r)?;
        if c.walk_job(r.iova, r.write) != *job || out.fault != 0 || out.level != 1 {
            return None;
        }
        if self.iotlb.way_4k(a.set, a.key).is_some() || self.iotlb.holds_large() {
            return None;
        }
        let hpa = allowed_4k(r, out.hpa_base, out.perm)?;
        self.apply(r, a.did, Effect::Walk4k(*out, a.key, a.set));
        Some(hpa)
    }

    /// The decision of [`Remapper::walked_turn`], changing nothing: the host address and
    /// the walk.
    #[inline(always)]
    fn decide_walked<M: Memory + ?Sized>(
        &self,
        mem: &M,
        r: &Request,
        a: &Ahead,
    ) -> Option<(u64, WalkOut)> {
        if self.iotlb.capacity() > 0
            && (self.iotlb.way_4k(a.set, a.key).is_some() || self.iotlb.holds_large())
        {
            return None;
        }
        let (hpa_base, perm) = leaf_4k(mem, &self.cfg, &a.upper)?;
        let hpa = allowed_4k(r, hpa_base, perm)?;
        let w = WalkOut {
            hpa_base,
            level: 1,
            perm,
            fault: 0,
        };
        Some((hpa, w))
    }

    /// [`Remapper::decide`] for request `r` with what look-ahead `a` found (the walk above
    /// the leaf, or only the context), changing nothing.
    #[inline(always)]
    fn decide_ahead<M: Memory + ?Sized>(
        &self,
        mem: &M,
        r: &Request,
        a: &Ahead,
    ) -> Option<(Translation, Effect)> {
        let iotlb: &Iotlb = &self.iotlb;
        let hit = match a.kind {
            Found::Slow => return None,
            _ if iotlb.capacity() > 0 => iotlb.probe_in(a.set, a.did, r.iova),
            _ => None,
        };
        if a.kind == Found::Walked {
            return self.decide_with(r, a.did, hit, |s| Some(walk_leaf(mem, &s.cfg, &a.upper)));
        }
        self.decide_with(r, a.did, hit, |s| {
            let c = s.cached_walk_context(r)?;
            Some(walk(mem, &s.cfg, &c.walk_job(r.iova, r.write)))
        })
    }

    /// The full step of a request the common case did not decide, as (host address, fault
    /// code).
    #[inline(always)]
    fn slow_step<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        r: &Request,
        ahead: Option<&(WalkJob, WalkOut)>,
    ) -> (u64, u8) {
        match self.commit(mem, r, ahead) {
            Ok(t) => (t.hpa, 0),
            Err(rec) => (0, rec.reason.code()),
        }
    }

    /// Translate `reqs` in order on this thread: [`AHEAD`] requests before a request is
    /// translated its IOTLB set is asked for, and half as many before, its context looked up
    /// and its leaf entry asked for unless the IOTLB then holds its translation (without an
    /// IOTLB: the leaf, `AHEAD` before).
    fn run_prefetching<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        // What the look-ahead found for the next requests, by request index modulo its length.
        let mut ring = [Ahead::default(); UPPER_RING];
        let (mut first, mut second) = (Memo::default(), Memo::default());
        if self.iotlb.capacity() == 0 {
            for (k, r) in reqs.iter().enumerate().take(AHEAD) {
                self.look_ahead(mem, r, &mut first, &mut ring[k % UPPER_RING]);
            }
            for (i, r) in reqs.iter().enumerate() {
                if let Some(n) = reqs.get(i + AHEAD) {
                    let a = &mut ring[(i + AHEAD) % UPPER_RING];
                    self.look_ahead(mem, n, &mut first, a);
                }
                let t = self.turn(mem, r, &ring[i % UPPER_RING]);
                put(out_hpa, out_fault, i, t);
            }
            return;
        }
        for (k, r) in reqs.iter().enumerate().take(AHEAD) {
            self.first_look(r, &mut first, &mut ring[k % UPPER_RING]);
        }
        for (k, r) in reqs.iter().enumerate().take(LEAF_AHEAD) {
            self.second_look(mem, r, &mut second, &mut ring[k % UPPER_RING]);
        }
        for (i, r) in reqs.iter().enumerate() {
            if let Some(n) = reqs.get(i + AHEAD) {
                self.first_look(n, &mut first, &mut ring[(i + AHEAD) % UPPER_RING]);
            }
            if let Some(n) = reqs.get(i + LEAF_AHEAD) {
                let a = &mut ring[(i + LEAF_AHEAD) % UPPER_RING];
                self.second_look(mem, n, &mut second, a);
            }
            let t = self.turn(mem, r, &ring[i % UPPER_RING]);
            put(out_hpa, out_fault, i, t);
        }
    }

    /// The longest prefix of `reqs` the common-case step decides on its own, with no IOTLB
    /// (so deciding one request changes nothing another depends on), its results written:
    /// the prefix's length. Changes nothing; reads the context cache as it stands.
    fn decided_prefix<M: Memory + ?Sized>(
        &self,
        mem: &M,
        reqs: &[Request],
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) -> usize {
        let mut ring = [Ahead::default(); UPPER_RING];
        let mut memo = Memo::default();
        for (k, r) in reqs.iter().enumerate().take(AHEAD) {
            self.look_ahead(mem, r, &mut memo, &mut ring[k % UPPER_RING]);
        }
        for (i, r) in reqs.iter().enumerate() {
            if let Some(n) = reqs.get(i + AHEAD) {
                let a = &mut ring[(i + AHEAD) % UPPER_RING];
                self.look_ahead(mem, n, &mut memo, a);
            }
            let a = &ring[i % UPPER_RING];
            let walked = match a.kind {
                Found::Walked => self.decide_walked(mem, r, a).map(|(hpa, _)| hpa),
                _ => None,
            };
            let Some(hpa) = walked.or_else(|| self.decide_ahead(mem, r, a).map(|(t, _)| t.hpa))
            else {
                return i;
            };
            put(out_hpa, out_fault, i, (hpa, 0));
        }
        reqs.len()
    }

    /// The batch on `threads` threads without an IOTLB: the requests cut into one run per
    /// thread, each run's longest prefix the common-case step decides on its own decided
    /// at once, in parallel; then, in order, each run's counters applied and the rest of
    /// the run translated by the one-thread batch.
    ///
    /// The same as the calls one by one: with no IOTLB a decided request changes only
    /// counters (which add up the same in any order), and what an earlier run's full steps
    /// may change cannot undo a later run's decisions: the context cache only gains
    /// source-ids it did not hold (a prefix used only contexts it held), and a prefix has no
    /// fault to record, so faults stay in request order.
    fn run_split<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        threads: usize,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) {
        let part = reqs.len().div_ceil(threads).max(1);
        let runs: Vec<&[Request]> = reqs.chunks(part).collect();
        let mut hpas: Vec<&mut [u64]> = out_hpa.chunks_mut(part).collect();
        let mut faults: Vec<&mut [u8]> = out_fault.chunks_mut(part).collect();
        hpas.resize_with(runs.len(), Default::default);
        faults.resize_with(runs.len(), Default::default);
        let decided: Vec<usize> = {
            let this = &*self;
            std::thread::scope(|s| {
                let mut jobs = runs.iter().zip(hpas.iter_mut().zip(faults.iter_mut()));
                let first = jobs.next();
                // A run whose thread the host refuses is decided on this thread after all.
                let spawned: Vec<_> = jobs
                    .map(|(rs, (h, f))| {
                        let run = || this.decided_prefix(mem, rs, h, f);
                        std::thread::Builder::new()
                            .spawn_scoped(s, run)
                            .map_err(|_| ())
                    })
                    .collect();
                let mut done = Vec::with_capacity(runs.len());
                if let Some((rs, (h, f))) = first {
                    done.push(this.decided_prefix(mem, rs, h, f));
                }
                for j in spawned {
                    // A refused or failed thread decided nothing: its run takes the full path.
                    done.push(j.ok().and_then(|j| j.join().ok()).unwrap_or(0));
                }
                done
            })
        };
        for (((rs, h), f), k) in runs.iter().zip(hpas).zip(faults).zip(decided) {
            let k = k.min(rs.len());
            let n = k as u64;
            self.stats.context_hits += n;
            self.stats.misses += n;
            self.stats.walks += n;
            let rest = rs.get(k..).unwrap_or_default();
            let h = h.get_mut(k.min(h.len())..).unwrap_or_default();
            let f = f.get_mut(k.min(f.len())..).unwrap_or_default();
            self.run_prefetching(mem, rest, h, f);
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
        // Nothing changes what backs memory during the batch: read it through a view.
        let mem = &Fast::new(mem);
        if threads == 1 {
            self.run_prefetching(mem, reqs, out_hpa, out_fault);
            return;
        }
        if self.iotlb.capacity() == 0 {
            self.run_split(mem, reqs, threads, out_hpa, out_fault);
            return;
        }
        // Split by IOTLB set while it may be; from where a split stops, a stretch on this
        // thread (longer after each split that stopped early), then split again.
        let mut at = 0;
        let mut stretch = ROUND;
        while at < reqs.len() && self.can_split(threads, reqs.len() - at) {
            let done = self.run_split_by_set(
                mem,
                reqs.get(at..).unwrap_or_default(),
                threads,
                tail(out_hpa, at),
                tail(out_fault, at),
            );
            at += done;
            stretch = if done >= 4 * ROUND {
                ROUND
            } else {
                stretch.saturating_mul(2).min(MAX_STRETCH)
            };
            let end = at.saturating_add(stretch).min(reqs.len());
            let (h, f) = (tail(out_hpa, at), tail(out_fault, at));
            let (h, f) = (first_n(h, end - at), first_n(f, end - at));
            self.run_prefetching(mem, reqs.get(at..end).unwrap_or_default(), h, f);
            at = end;
        }
        let reqs = reqs.get(at..).unwrap_or_default();
        let (out_hpa, out_fault) = (tail(out_hpa, at), tail(out_fault, at));
        if reqs.is_empty() {
            return;
        }
        // With an IOTLB, helper threads pay only when walks are frequent: they walk every
        // request ahead, hits included. The first window runs on this thread, and the rest
        // stays here too when under [`FEW_MISSES`] of it missed.
        let head = WINDOW.min(reqs.len());
        let (first, rest) = reqs.split_at(head);
        let (h0, h1) = out_hpa.split_at_mut(head.min(out_hpa.len()));
        let (f0, f1) = out_fault.split_at_mut(head.min(out_fault.len()));
        let before = self.stats.misses;
        self.run_prefetching(mem, first, h0, f0);
        let missed = self.stats.misses.saturating_sub(before);
        let threads = threads.min(rest.len() / MIN_PER_THREAD).max(1);
        if threads == 1 || missed.saturating_mul(FEW_MISSES) < head as u64 {
            self.run_prefetching(mem, rest, h1, f1);
        } else {
            self.run_threaded(mem, rest, threads, h1, f1);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::addr::Maddr;
    use crate::hw::config::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::hw::remapper::{Remapper, Request};
    use crate::mem::PhysMem;
    use crate::spec::{address_level_offset, Pte};

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const T: [u64; 5] = [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000];
    /// Another 4-level table (L4 to L1), a context is moved to between batches.
    const U: [u64; 4] = [0x30_0000, 0x30_1000, 0x30_2000, 0x30_3000];
    const IOVA: u64 = 0x0080_8060_4000;
    /// Default CAP with SAGAW for 3, 4 and 5 levels and MGAW 57.
    const CAP345: u64 = DEFAULT_CAP | (0xe << 8) | (56u64 << 16);

    fn w(m: &mut PhysMem, a: u64, v: u64) {
        m.write_u64(Maddr(a), v).unwrap();
    }
    fn ctx(m: &mut PhysMem, devfn: u64, lo: u64, hi: u64) {
        w(m, CTX + devfn * 16, lo);
        w(m, CTX + devfn * 16 + 8, hi);
    }

    /// Root -> bus 3 contexts of every kind (4-, 3-, 5-level, pass-through, device-TLB type,
    /// FPD, not present) over shared tables with 4 KiB leaves (some read-only, some absent,
    /// some in the interrupt range), a 2 MiB and a 1 GiB superpage.
    fn build() -> PhysMem {
        let mut m = PhysMem::new(&[(0, 64 << 20), (0xC000_0000, 0x4000_0000)]).unwrap();
        w(&mut m, ROOT + 3 * 16, CTX | 1);
        for l in (2..=5u32).rev() {
            w(
                &mut m,
                T[(5 - l) as usize] + address_level_offset(IOVA, l) * 8,
                T[(5 - l + 1) as usize] | 3,
            );
        }
        let l1 = address_level_offset(IOVA, 1);
        for i in 0..300u64 {
            let v = match i {
                _ if i % 11 == 3 => 0,
                _ if i % 13 == 0 => 0xFEE0_0000 | 3, // interrupt range leaf
                _ if i % 5 == 0 => (0x80_0000 + (i << 12)) | 1,
                _ => (0x80_0000 + (i << 12)) | 3,
            };
            w(&mut m, T[4] + ((l1 + i) % 512) * 8, v);
        }
        // 1 GiB superpage at L3 over 3-4 GiB (interrupt range inside) at a neighbour slot.
        let sp = (IOVA & !((1 << 39) - 1)) + (3u64 << 30);
        w(
            &mut m,
            T[2] + address_level_offset(sp, 3) * 8,
            0xC000_0000 | 3 | Pte::PS,
        );
        // 2 MiB superpage
        let sp2 = (IOVA & !((1 << 30) - 1)) + (5u64 << 21);
        w(
            &mut m,
            T[3] + address_level_offset(sp2, 2) * 8,
            0x20_0000 | 3 | Pte::PS,
        );
        // contexts, bus 3
        ctx(&mut m, 8, T[1] | 1, 2 | (42 << 8)); // 4-level
        ctx(&mut m, 9, 1 | (2 << 2), 2 | (43 << 8)); // pass-through
        ctx(&mut m, 10, T[1] | 1 | (1 << 2), 2 | (42 << 8)); // TT1 dev-iotlb
        ctx(&mut m, 11, T[1] | 1 | 2, 2 | (44 << 8)); // FPD
        ctx(&mut m, 12, T[2] | 1, 1 | (45 << 8)); // 3-level
        ctx(&mut m, 13, 2, 0); // not present, FPD
        ctx(&mut m, 14, T[0] | 1, 3 | (46 << 8)); // 5-level
        m
    }

    fn gen(x: &mut u64, n: usize) -> Vec<Request> {
        let l1 = address_level_offset(IOVA, 1);
        let sp = (IOVA & !((1 << 39) - 1)) + (3u64 << 30);
        let sp2 = (IOVA & !((1 << 30) - 1)) + (5u64 << 21);
        (0..n)
            .map(|_| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                let r = *x;
                let iova = match r % 8 {
                    0 => sp + (r >> 20) % (1 << 30),
                    1 => sp + 0x3EE0_0000 + (r >> 20) % (1 << 20),
                    2 => sp2 + (r >> 20) % (1 << 21),
                    3 => (r >> 3) & ((1 << 58) - 1),
                    _ => {
                        (IOVA & !0x1f_ffff)
                            + (((l1 + (r >> 8) % 320) % 512) << 12)
                            + (r >> 40) % 4096
                    }
                };
                Request {
                    sid: 0x0308 + ((r >> 50) % 8) as u16,
                    iova,
                    write: (r >> 30) % 3 == 0,
                    translation_request: (r >> 33) % 17 == 0,
                }
            })
            .collect()
    }

    /// The counters, IOTLB content and evictions, context-cache size and interrupts of `one`
    /// (the full step, one request at a time) and `many` (batches) agree.
    fn assert_same_state(one: &Remapper, many: &Remapper, tag: &str) {
        assert_eq!(one.stats(), many.stats(), "{tag}");
        assert_eq!(one.iotlb().entries(), many.iotlb().entries(), "{tag}");
        assert_eq!(one.iotlb().evictions, many.iotlb().evictions, "{tag}");
        assert_eq!(
            one.context_cache().len(),
            many.context_cache().len(),
            "{tag}"
        );
        assert_eq!(one.irqs, many.irqs, "{tag}");
    }

    #[test]
    /// Batches on 1-4 threads, with outputs shorter than the requests and sizes off the
    /// window, equal the same calls one by one: results, counters, IOTLB and context-cache
    /// content, fault records and interrupts, while tables change under the caches between
    /// batches (stale contexts and leaves) and partial invalidations are sent.
    fn batches_equal_single_calls_across_contexts_caches_and_stale_tables() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        // Batches 1 and 4 run with stale contexts cached (changed in memory after batches 0
        // and 3, invalidated after 1 and 4): large enough for helper threads.
        let sizes = [
            2 * 4096 + 3,
            5 * 4096 + 1,
            3 * 4096,
            4096 * 4 + 4095,
            4 * 4096 + 7,
            100,
            7,
        ];
        for &entries in &[0usize, 1, 5, 1024] {
            for ccache in [true, false] {
                for threads in 1..=3 {
                    for fr in [1usize, 8] {
                        let mut m = build();
                        let mk = || {
                            Remapper::new(CAP345, DEFAULT_ECAP, Some(ROOT), entries, fr, ccache)
                                .unwrap()
                        };
                        let (mut one, mut many, mut single) = (mk(), mk(), mk());
                        for (b, &n) in sizes.iter().enumerate() {
                            let reqs = gen(&mut x, n);
                            let short = if b % 2 == 1 { n / 2 } else { n };
                            let mut hpa = vec![1u64; short];
                            let mut fault = vec![0xffu8; short];
                            many.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault);
                            // Against the full step alone (no common-case shortcut), one by one.
                            for (k, q) in reqs.iter().enumerate() {
                                let full = one.commit(&m, q, None);
                                // `translate` (its common case first) gives the same.
                                let t = single.translate(&m, q);
                                assert_eq!(t.as_ref().ok(), full.as_ref().ok(), "{q:?} e{entries} c{ccache} t{threads} b{b} k{k} batch {:?} full {:?}", hpa.get(k), full.as_ref().err().map(|r| r.reason));
                                assert_eq!(t.err().map(|r| r.reason), full.err().map(|r| r.reason));
                                let (h, f) = match full {
                                    Ok(t) => (t.hpa, 0),
                                    Err(r) => (0, r.reason.code()),
                                };
                                if k < short {
                                    assert_eq!(
                                        (hpa[k], fault[k]),
                                        (h, f),
                                        "e{entries} c{ccache} t{threads} b{b} k{k} {q:?}"
                                    );
                                }
                            }
                            let tag = format!("e{entries} c{ccache} t{threads} b{b}");
                            assert_same_state(&one, &many, &tag);
                            assert_eq!(one.stats(), single.stats(), "{tag}");
                            assert_eq!(one.iotlb().entries(), single.iotlb().entries(), "{tag}");
                            assert_eq!(
                                (
                                    one.fault_recorder().pending(),
                                    one.fault_recorder().overflow(),
                                    one.fault_recorder().fri(),
                                    one.fault_recorder().len()
                                ),
                                (
                                    many.fault_recorder().pending(),
                                    many.fault_recorder().overflow(),
                                    many.fault_recorder().fri(),
                                    many.fault_recorder().len()
                                ),
                                "{tag}"
                            );
                            if b % 3 == 2 {
                                assert_eq!(one.drain_faults(), many.drain_faults(), "{tag}");
                            }
                            // Change the tables under the caches: stale contexts and IOTLB.
                            match b % 3 {
                                0 => {
                                    ctx(&mut m, 8, T[2] | 1, 1 | (42 << 8)); // now 3-level, same DID
                                    ctx(&mut m, 9, T[1] | 1, 2 | (43 << 8)); // no longer PT
                                                                             // FPD's context now at other 4-level tables, whose walks
                                                                             // succeed to other pages: a cached context asks for the
                                                                             // old walk, helper threads read the new one.
                                    for l in (2..=4u32).rev() {
                                        let (at, next) = (U[(4 - l) as usize], U[(5 - l) as usize]);
                                        w(&mut m, at + address_level_offset(IOVA, l) * 8, next | 3);
                                    }
                                    for i in 0..300u64 {
                                        let a =
                                            U[3] + ((address_level_offset(IOVA, 1) + i) % 512) * 8;
                                        w(&mut m, a, (0xA0_0000 + (i << 12)) | 3);
                                    }
                                    ctx(&mut m, 11, U[0] | 1 | 2, 2 | (44 << 8));
                                }
                                1 => {
                                    let l1 = address_level_offset(IOVA, 1);
                                    for i in 0..40u64 {
                                        w(
                                            &mut m,
                                            T[4] + ((l1 + i) % 512) * 8,
                                            (0x90_0000 + (i << 12)) | 1,
                                        );
                                    }
                                    one.invalidate_context_device(0x0308, 3).unwrap();
                                    many.invalidate_context_device(0x0308, 3).unwrap();
                                    single.invalidate_context_device(0x0308, 3).unwrap();
                                }
                                _ => {
                                    one.invalidate_iotlb_domain(42);
                                    many.invalidate_iotlb_domain(42);
                                    single.invalidate_iotlb_domain(42);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    /// Batches on one and two threads equal the full step one request at a time over random
    /// tables: entries pointing anywhere among a few tables, into the interrupt range or
    /// nowhere, read-only or write-only, superpages; contexts of every depth and type sharing
    /// domains; repeated addresses; a guest width (MGAW) narrower than the contexts' depth on
    /// odd seeds; IOTLBs of 0 to 64 entries; and between batches, tables and contexts
    /// changed under the caches (stale translations of every size) with or without
    /// invalidation.
    #[test]
    fn batches_equal_the_full_step_over_random_tables() {
        let mut rnd = crate::test_rng(0xdead_beef_1234_5678u64);
        const TB: u64 = 0x10_0000;
        const NT: u64 = 12;
        let seeds: u64 = 24;
        for seed in 0..seeds {
            for &entries in &[0usize, 1, 2, 3, 5, 6, 12, 64] {
                for ccache in [true, false] {
                    for threads in [1usize, 2] {
                        let mut m =
                            PhysMem::new(&[(0, 64 << 20), (0xC000_0000, 0x4000_0000)]).unwrap();
                        w(&mut m, ROOT + 3 * 16, CTX | 1);
                        let fill =
                            |m: &mut PhysMem, rnd: &mut dyn FnMut() -> u64, t: u64, i: u64| {
                                let r = rnd();
                                let mut e = match r % 10 {
                                    0 => 0,
                                    1..=4 => TB + (rnd() % NT) * 4096,
                                    5 => 0xFEE0_0000 + ((rnd() % 16) << 12),
                                    _ => 0x80_0000 + ((rnd() % 1024) << 12),
                                };
                                if e != 0 {
                                    e |= match (r >> 8) % 6 {
                                        0 => 1,
                                        1 => 2,
                                        _ => 3,
                                    };
                                }
                                if (r >> 16) % 9 == 0 {
                                    e |= Pte::PS;
                                    e &= !0x1f_f000;
                                }
                                w(m, TB + t * 4096 + i * 8, e);
                            };
                        for t in 0..NT {
                            for i in 0..4u64 {
                                fill(&mut m, &mut rnd, t, i);
                            }
                        }
                        let mkctx = |m: &mut PhysMem, rnd: &mut dyn FnMut() -> u64, devfn: u64| {
                            let r = rnd();
                            let tt = if r % 11 == 0 {
                                2
                            } else if r % 13 == 0 {
                                1
                            } else {
                                0
                            };
                            let lo = (TB + ((r >> 4) % NT) * 4096)
                                | 1
                                | (tt << 2)
                                | (((r >> 12) % 2) << 1);
                            let aw = 1 + (r >> 20) % 3;
                            let did = 1 + (r >> 24) % 3;
                            ctx(m, devfn, lo, aw | (did << 8));
                        };
                        for d in 0..6u64 {
                            mkctx(&mut m, &mut rnd, d);
                        }
                        let capv = if seed % 2 == 1 {
                            (CAP345 & !(0x3f << 16)) | (38u64 << 16)
                        } else {
                            CAP345
                        };
                        let mk = || {
                            Remapper::new(capv, DEFAULT_ECAP, Some(ROOT), entries, 8, ccache)
                                .unwrap()
                        };
                        let (mut one, mut many) = (mk(), mk());
                        for b in 0..5 {
                            let n = if threads > 1 {
                                3 * 4096 + 17
                            } else {
                                700 + (rnd() % 300) as usize
                            };
                            let mut reqs = Vec::with_capacity(n);
                            for _ in 0..n {
                                let r = rnd();
                                let mut iova = 0u64;
                                for l in 0..5 {
                                    iova |= ((r >> (3 * l)) % 4) << (12 + 9 * l);
                                }
                                iova |= (r >> 40) & 0xfff;
                                if r % 29 == 0 {
                                    iova = rnd() & ((1 << 60) - 1);
                                }
                                // repeats: sometimes reuse a recent request's address
                                if r % 5 == 0 && reqs.len() > 8 {
                                    let k = reqs.len() - 1 - (rnd() % 8) as usize;
                                    let q: &Request = &reqs[k];
                                    iova = q.iova;
                                }
                                reqs.push(Request {
                                    sid: 0x0300 + ((r >> 50) % 6) as u16,
                                    iova,
                                    write: (r >> 30) % 3 == 0,
                                    translation_request: (r >> 33) % 31 == 0,
                                });
                            }
                            let mut hpa = vec![1u64; n];
                            let mut fault = vec![0xffu8; n];
                            many.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault);
                            for (k, q) in reqs.iter().enumerate() {
                                let full = one.commit(&m, q, None);
                                let (h, f) = match full {
                                    Ok(t) => (t.hpa, 0),
                                    Err(r) => (0, r.reason.code()),
                                };
                                assert_eq!(
                                    (hpa[k], fault[k]),
                                    (h, f),
                                    "s{seed} e{entries} c{ccache} t{threads} b{b} k{k} {q:?}"
                                );
                            }
                            let tag = format!("s{seed} e{entries} c{ccache} t{threads} b{b}");
                            assert_same_state(&one, &many, &tag);
                            assert_eq!(one.drain_faults(), many.drain_faults(), "{tag}");
                            // mutate tables: stale IOTLB / contexts
                            for _ in 0..6 {
                                let (t, i) = (rnd() % NT, rnd() % 4);
                                fill(&mut m, &mut rnd, t, i);
                            }
                            if rnd() % 2 == 0 {
                                let dv = rnd() % 6;
                                mkctx(&mut m, &mut rnd, dv);
                            }
                            match rnd() % 4 {
                                0 => {
                                    one.invalidate_context_global();
                                    many.invalidate_context_global();
                                }
                                1 => {
                                    let d = (1 + rnd() % 3) as u16;
                                    one.invalidate_iotlb_domain(d);
                                    many.invalidate_iotlb_domain(d);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
}
