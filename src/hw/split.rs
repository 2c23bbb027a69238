//! A batch with an IOTLB on several threads, split by IOTLB set.
//!
//! What the common-case step does to a request (a cached context, an IOTLB hit or a walk to a
//! 4 KiB leaf, the access allowed) reads and changes one IOTLB set only: the set its 4 KiB
//! look-up probes, as long as the IOTLB holds no 2 MiB or 1 GiB entry (a look-up then probes
//! no other set) and the request inserts none. So the sets are cut into one run of
//! neighbouring sets per thread ([`Iotlb::shards`]), and each thread translates, in request
//! order, the requests whose set it owns: each set then sees the same requests in the same
//! order as in the calls one by one, and ends the same. The counters add up the same in any
//! order, and each request's result is written by the one thread that owns its set.
//!
//! Anything else stops the split at that request (its index, the *stop*): a context not
//! cached (or a request that does not walk, or an address beyond the width) is seen by every
//! thread alike when it reads the round's requests, and the rest (a fault, a superpage, a
//! result in the interrupt range) by the thread that meets it. Then what the threads did at
//! and after the stop is undone: the requests are taken in rounds of [`ROUND`], each thread
//! keeps the sets it changes as they were before, and at the end of a round all threads meet,
//! agree on the first stop, and put back the sets they changed for requests from the stop
//! on. The batch goes on from the stop on one thread ([`Remapper::translate_batch`]), and
//! later splits again. Nothing else changes while a split runs: the context cache, the fault
//! records and memory are only read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::batch::{allowed_4k, remember, Memo, AHEAD, LEAF_AHEAD};
use super::config::UnitConfig;
use super::context_cache::ContextCache;
use super::iotlb::{key_level, IotlbShard, Put, SavedSet, SetIndex};
use super::remapper::{Remapper, Request};
use super::walk::{leaf_4k, walk_upper_checked, Upper};
use crate::mem::raw::{shared_u64s, shared_u8s};
use crate::mem::Memory;

/// Requests per round: every thread meets the others once per round.
pub(super) const ROUND: usize = 1 << 13;
/// Fewest IOTLB sets per thread worth a split (fewer: the threads' shares of requests, which
/// follow the sets, are too uneven).
pub(super) const MIN_SETS_PER_THREAD: usize = 256;
/// Spins at a meeting before a thread yields the processor between looks.
const SPINS: u32 = 1 << 12;

/// A request of a round whose set a thread owns.
#[derive(Clone, Copy, Default)]
struct Owned {
    /// Its index in the requests.
    idx: u32,
    /// Its 4 KiB IOTLB key and set.
    set: u32,
    key: u64,
}

/// What the look-ahead found for an owned request (kept in a ring, for the next requests).
#[derive(Clone, Copy, Default)]
struct Looked {
    look: Look,
    /// [`Look::Hit`]: the way that held the key.
    way: u8,
    /// [`Look::Walked`]: the walk above the leaf.
    upper: Upper,
}

/// Look-ahead records kept (more than [`AHEAD`]).
const RING: usize = 64;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Look {
    /// Not looked at yet, or no walk above the leaf (a superpage or a fault on the way).
    #[default]
    Nothing,
    /// The set held the key in way `way`.
    Hit,
    /// The set did not hold it: the walk above the leaf done, the leaf asked for.
    Walked,
}

/// A change a thread made to its sets, kept until its round is agreed.
enum Change {
    /// A hit marked way `way` of `set` referenced.
    Mark { idx: u32, set: u32, way: u8 },
    /// A walk's insert: the set as it was, and what the insert did.
    Insert { idx: u32, saved: SavedSet, put: Put },
}

/// The counts of a thread's agreed requests.
#[derive(Clone, Copy, Default)]
struct Tally {
    /// Requests translated (each a context-cache hit).
    done: u64,
    /// Walks (each an IOTLB miss and an insert).
    walks: u64,
    /// Inserts into unused ways.
    filled: usize,
    /// Per leaf level, entries evicted by inserts.
    evicted: [u64; 4],
}

/// Where the threads meet at the end of each round, spinning (a round is short) and then
/// yielding. Broken when a thread panics, so that no one waits for it.
struct Gate {
    parties: AtomicUsize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    broken: AtomicBool,
}

impl Gate {
    fn new(parties: usize) -> Self {
        Gate {
            parties: AtomicUsize::new(parties),
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Wait until every party has arrived; `false` when the gate is broken. Everything a
    /// party did before arriving is seen by every party after.
    fn wait(&self) -> bool {
        // Read before arriving: the generation cannot move on until this party has arrived.
        let generation = self.generation.load(Ordering::Acquire);
        let arrived = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if arrived >= self.parties.load(Ordering::Acquire) {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return !self.broken.load(Ordering::Acquire);
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.broken.load(Ordering::Acquire) {
                return false;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        !self.broken.load(Ordering::Acquire)
    }
}

/// Breaks the gate when its thread unwinds.
struct BreakOnPanic<'g>(&'g Gate);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Release);
        }
    }
}

/// What the threads of one split share: read only, but for the first stop, the outputs
/// (each index written by one thread) and the gate.
struct Env<'a, M: ?Sized> {
    mem: &'a M,
    cfg: &'a UnitConfig,
    contexts: &'a ContextCache,
    index: SetIndex,
    reqs: &'a [Request],
    out_hpa: &'a [AtomicU64],
    out_fault: &'a [AtomicU8],
    /// The first stop any thread met (`usize::MAX`: none yet).
    stop: AtomicUsize,
    /// Set once every thread runs (a thread the host refused makes the split stop at once).
    go: AtomicBool,
    gate: Gate,
}

/// One thread's part of a split: its sets, and its round's requests and changes.
struct Lane<'a> {
    shard: IotlbShard<'a>,
    /// The round's owned requests: the first `n_owned` (room for a whole round and one).
    owned: Vec<Owned>,
    n_owned: usize,
    looks: [Looked; RING],
    /// Of `owned`, how many were translated this round.
    turned: usize,
    changes: Vec<Change>,
    tally: Tally,
    /// The contexts of the round's reading and of its walks.
    memo: Memo,
    walk_memo: Memo,
}

impl<'a> Lane<'a> {
    fn new(shard: IotlbShard<'a>) -> Self {
        Lane {
            shard,
            owned: vec![Owned::default(); ROUND + 1],
            n_owned: 0,
            looks: [Looked::default(); RING],
            turned: 0,
            changes: Vec::new(),
            tally: Tally::default(),
            memo: Memo::default(),
            walk_memo: Memo::default(),
        }
    }

    /// Run rounds until the split stops or the requests end: where it stopped (every lane
    /// returns the same).
    fn run<M: Memory + Sync + ?Sized>(&mut self, env: &Env<'_, M>) -> usize {
        let _break = BreakOnPanic(&env.gate);
        let mut spins = 0u32;
        while !env.go.load(Ordering::Acquire) {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut start = 0;
        while start < env.reqs.len() {
            let end = start.saturating_add(ROUND).min(env.reqs.len());
            let read = self.round(env, start, end);
            if !env.gate.wait() {
                // A thread panicked: nothing of this round is agreed.
                self.settle(start);
                return start;
            }
            let stop = env.stop.load(Ordering::Acquire).min(read);
            self.settle(stop);
            if stop < end {
                return stop;
            }
            start = end;
        }
        env.reqs.len()
    }

    /// The requests `start..end` of this lane's sets translated in order, until a request
    /// the common case does not decide (its index put in `env.stop`) or one at or after the
    /// stop another lane met. What the round read: `end`, or the first request no lane
    /// translates (no cached context that walks it inside its width).
    fn round<M: Memory + ?Sized>(&mut self, env: &Env<'_, M>, start: usize, end: usize) -> usize {
        self.turned = 0;
        let mut read = end;
        let mut n = 0;
        for (i, r) in env.reqs.iter().enumerate().take(end).skip(start) {
            if remember(env.contexts, env.cfg, &mut self.memo, r).is_none()
                || r.iova & self.memo.beyond != 0
            {
                read = i;
                break;
            }
            let (key, set) = env.index.key_set_4k(self.memo.tag, r.iova);
            // Written whether owned or not, kept only when owned: no branch to mispredict.
            if let Some(o) = self.owned.get_mut(n) {
                *o = Owned {
                    idx: i as u32,
                    set,
                    key,
                };
            }
            n += self.shard.owns(set) as usize;
        }
        let n = n.min(ROUND);
        self.n_owned = n;
        for k in 0..n.min(AHEAD) {
            self.prefetch(k);
        }
        for k in 0..n.min(LEAF_AHEAD) {
            self.look(env, k);
        }
        for k in 0..n {
            if k + AHEAD < n {
                self.prefetch(k + AHEAD);
            }
            if k + LEAF_AHEAD < n {
                self.look(env, k + LEAF_AHEAD);
            }
            let Some(&o) = self.owned.get(k) else { break };
            if o.idx as usize >= env.stop.load(Ordering::Relaxed) {
                break;
            }
            let found = self.looks[k % RING];
            if !self.turn(env, &o, &found) {
                env.stop.fetch_min(o.idx as usize, Ordering::AcqRel);
                break;
            }
            self.turned = k + 1;
        }
        read
    }

    #[inline(always)]
    fn prefetch(&self, k: usize) {
        if let Some(o) = self.owned.get(k) {
            self.shard.prefetch_set(o.set);
        }
    }

    /// The look-ahead at owned request `k` (its set asked for [`AHEAD`] before): the way
    /// that holds its key, else the walk above its leaf, with the leaf asked for.
    #[inline(always)]
    fn look<M: Memory + ?Sized>(&mut self, env: &Env<'_, M>, k: usize) {
        let Some(o) = self.owned.get(k).copied() else {
            return;
        };
        let look = if let Some(w) = self.shard.way_4k(o.set, o.key) {
            (Look::Hit, w, Upper::default())
        } else {
            match self.walk_upper(env, o.idx) {
                Some(u) => {
                    env.mem.prefetch(u.leaf_entry());
                    (Look::Walked, 0, u)
                }
                None => (Look::Nothing, 0, Upper::default()),
            }
        };
        let l = &mut self.looks[k % RING];
        (l.look, l.way, l.upper) = look;
    }

    /// The walk above the leaf for request `idx` through its cached context.
    #[inline(always)]
    fn walk_upper<M: Memory + ?Sized>(&mut self, env: &Env<'_, M>, idx: u32) -> Option<Upper> {
        let r = env.reqs.get(idx as usize)?;
        let c = remember(env.contexts, env.cfg, &mut self.walk_memo, r)?;
        walk_upper_checked(env.mem, env.cfg, &c.walk_job(r.iova, r.write))
    }

    /// Owned request `o`'s turn, as the common-case step takes it with the IOTLB holding no
    /// 2 MiB or 1 GiB entry: a hit when its set holds its key (marked referenced), else a
    /// walk to a 4 KiB leaf (inserted); the access allowed and the result outside the
    /// interrupt range. `false`: anything else, nothing changed.
    #[inline(always)]
    fn turn<M: Memory + ?Sized>(&mut self, env: &Env<'_, M>, o: &Owned, f: &Looked) -> bool {
        let Some(r) = env.reqs.get(o.idx as usize) else {
            return false;
        };
        // The way found ahead, if it still holds the key; else the set probed now (this
        // lane's inserts since may have brought the key, or evicted it).
        let hit = match f.look {
            Look::Hit => self
                .shard
                .hit_4k(o.set, f.way, o.key)
                .map(|h| (f.way, h))
                .or_else(|| self.probe(o)),
            _ => self.probe(o),
        };
        let hpa = if let Some((way, (base, perm, referenced))) = hit {
            let Some(hpa) = allowed_4k(r, base, perm) else {
                return false;
            };
            if !referenced {
                self.shard.mark(o.set, way, true);
                self.changes.push(Change::Mark {
                    idx: o.idx,
                    set: o.set,
                    way,
                });
            }
            hpa
        } else {
            let upper = match f.look {
                Look::Walked => f.upper,
                _ => match self.walk_upper(env, o.idx) {
                    Some(u) => u,
                    None => return false,
                },
            };
            let Some((base, perm)) = leaf_4k(env.mem, env.cfg, &upper) else {
                return false;
            };
            let Some(hpa) = allowed_4k(r, base, perm) else {
                return false;
            };
            let Some((put, saved)) = self.shard.insert_4k(o.set, o.key, base, perm) else {
                return false;
            };
            self.changes.push(Change::Insert {
                idx: o.idx,
                saved,
                put,
            });
            hpa
        };
        let i = o.idx as usize;
        if let Some(h) = env.out_hpa.get(i) {
            h.store(hpa, Ordering::Relaxed);
        }
        if let Some(f) = env.out_fault.get(i) {
            f.store(0, Ordering::Relaxed);
        }
        true
    }

    #[inline(always)]
    fn probe(&self, o: &Owned) -> Option<(u8, (u64, u8, bool))> {
        let w = self.shard.way_4k(o.set, o.key)?;
        Some((w, self.shard.hit_4k(o.set, w, o.key)?))
    }

    /// The round agreed up to `stop`: the changes for requests from `stop` on undone (in
    /// reverse order), the requests before it counted.
    fn settle(&mut self, stop: usize) {
        let turned = self.owned.get(..self.turned).unwrap_or_default();
        let kept = turned.partition_point(|o| (o.idx as usize) < stop);
        let mut walks = 0u64;
        for c in self.changes.iter().rev() {
            match *c {
                Change::Mark { idx, set, way } if idx as usize >= stop => {
                    self.shard.mark(set, way, false);
                }
                Change::Insert { idx, ref saved, .. } if idx as usize >= stop => {
                    self.shard.restore(saved);
                }
                Change::Insert { put, .. } => {
                    walks += 1;
                    match put {
                        Put::Filled => self.tally.filled += 1,
                        Put::Evicted(old) => {
                            if let Some(e) = self.tally.evicted.get_mut(key_level(old)) {
                                *e += 1;
                            }
                        }
                        Put::Replaced => {}
                    }
                }
                Change::Mark { .. } => {}
            }
        }
        self.changes.clear();
        self.tally.done += kept as u64;
        self.tally.walks += walks;
    }
}

impl Remapper {
    /// Whether a batch of `n` more requests on `threads` threads may be split by IOTLB set
    /// now: an IOTLB with enough sets per thread and no 2 MiB or 1 GiB entry, enough
    /// requests per thread.
    pub(super) fn can_split(&self, threads: usize, n: usize) -> bool {
        threads >= 2
            && self.iotlb.capacity() > 0
            && self.iotlb.sets() >= MIN_SETS_PER_THREAD * threads
            && !self.iotlb.holds_large()
            && n >= super::batch::MIN_PER_THREAD * threads
    }

    /// Translate `reqs` split by IOTLB set on `threads` threads (see the module's text) until
    /// the split stops: how many requests it translated (their results written, their
    /// counters and IOTLB changes applied). Nothing of the rest is kept but results written
    /// to the outputs past that count, which whoever translates those requests overwrites.
    pub(super) fn run_split_by_set<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[Request],
        threads: usize,
        out_hpa: &mut [u64],
        out_fault: &mut [u8],
    ) -> usize {
        let Remapper {
            cfg,
            ctx_cache,
            iotlb,
            stats,
            ..
        } = self;
        let (index, shards) = iotlb.shards(threads);
        if shards.len() < 2 {
            return 0;
        }
        let env = Env {
            mem,
            cfg,
            contexts: ctx_cache,
            index,
            reqs,
            out_hpa: shared_u64s(out_hpa),
            out_fault: shared_u8s(out_fault),
            stop: AtomicUsize::new(usize::MAX),
            go: AtomicBool::new(false),
            gate: Gate::new(shards.len()),
        };
        let (done, tallies) = std::thread::scope(|s| {
            let env = &env;
            let mut lanes = shards.into_iter().map(Lane::new);
            let mut mine = lanes.next();
            let mut helpers = Vec::new();
            for mut lane in lanes {
                let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                    lane.run(env);
                    lane.tally
                });
                match spawned {
                    Ok(h) => helpers.push(h),
                    // A thread the host will not give: its sets are nobody's, so the split
                    // stops before its first request (the others undo what they did).
                    Err(_) => {
                        env.stop.store(0, Ordering::Release);
                        env.gate.parties.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            env.go.store(true, Ordering::Release);
            let done = mine.as_mut().map_or(0, |l| l.run(env));
            let mut tallies: Vec<Tally> = mine.map(|l| l.tally).into_iter().collect();
            for h in helpers {
                match h.join() {
                    Ok(t) => tallies.push(t),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            (done, tallies)
        });
        let mut filled = 0;
        let mut evicted = [0u64; 4];
        for t in &tallies {
            stats.context_hits += t.done;
            stats.hits += t.done - t.walks;
            stats.misses += t.walks;
            stats.walks += t.walks;
            filled += t.filled;
            for (e, n) in evicted.iter_mut().zip(t.evicted) {
                *e += n;
            }
        }
        iotlb.account_4k(filled, evicted);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::ROUND;
    use crate::addr::Maddr;
    use crate::hw::config::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::hw::remapper::{Remapper, Request};
    use crate::mem::PhysMem;
    use crate::spec::Pte;

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    /// One 4-level hierarchy: L4, L3, L2, then `L1S` level-1 tables.
    const L4: u64 = 0x10_0000;
    const L3: u64 = 0x10_1000;
    const L2: u64 = 0x10_2000;
    const L1: u64 = 0x20_0000;
    const L1S: u64 = 64;
    const PAGES: u64 = L1S * 512;
    /// Where the pages map to.
    const HOST: u64 = 0x100_0000;

    fn w(m: &mut PhysMem, a: u64, v: u64) {
        m.write_u64(Maddr(a), v).unwrap();
    }

    /// The leaf entry of page `p`: normally its page, read-write.
    fn good(p: u64) -> u64 {
        (HOST + (p << 12)) | 3
    }

    /// A leaf entry the common case does not decide: not present, read-only (a write
    /// faults), in the interrupt range, or with a reserved bit (51, above the host width).
    fn bad(p: u64, kind: u64) -> u64 {
        match kind % 4 {
            0 => 0,
            1 => (HOST + (p << 12)) | 1,
            2 => 0xFEE0_0000 | 3,
            _ => (HOST + (p << 12)) | 3 | (1 << 51),
        }
    }

    /// Root -> bus 3: devfn 0-3 4-level contexts over the one hierarchy (domains 1, 2, 1, 3),
    /// devfn 4 pass-through, devfn 5 not present. Every page mapped read-write.
    fn build() -> PhysMem {
        let mut m = PhysMem::new(&[(0, 256 << 20)]).unwrap();
        w(&mut m, ROOT + 3 * 16, CTX | 1);
        for (devfn, did) in [(0u64, 1u64), (1, 2), (2, 1), (3, 3)] {
            w(&mut m, CTX + devfn * 16, L4 | 1);
            w(&mut m, CTX + devfn * 16 + 8, 2 | (did << 8));
        }
        w(&mut m, CTX + 4 * 16, L4 | 1 | (2 << 2));
        w(&mut m, CTX + 4 * 16 + 8, 2 | (9 << 8));
        w(&mut m, L4, L3 | 3);
        w(&mut m, L3, L2 | 3);
        for k in 0..L1S {
            w(&mut m, L2 + k * 8, (L1 + k * 4096) | 3);
            for i in 0..512 {
                w(&mut m, L1 + k * 4096 + i * 8, good(k * 512 + i));
            }
        }
        m
    }

    fn iova(p: u64, off: u64) -> u64 {
        (p << 12) | (off & 0xfff)
    }

    fn req(sid: u16, iova: u64, write: bool) -> Request {
        Request {
            sid,
            iova,
            write,
            translation_request: false,
        }
    }

    fn assert_same(one: &Remapper, many: &Remapper, tag: &str) {
        assert_eq!(one.stats(), many.stats(), "{tag}");
        assert_eq!(one.iotlb().raw_state(), many.iotlb().raw_state(), "{tag}");
        assert_eq!(one.iotlb().len(), many.iotlb().len(), "{tag}");
        assert_eq!(one.iotlb().evictions, many.iotlb().evictions, "{tag}");
        assert_eq!(one.iotlb().entries(), many.iotlb().entries(), "{tag}");
    }

    /// The full step, one request at a time: the reference.
    fn one_by_one(r: &mut Remapper, m: &PhysMem, reqs: &[Request]) -> Vec<(u64, u8)> {
        reqs.iter()
            .map(|q| match r.commit(m, q, None) {
                Ok(t) => (t.hpa, 0),
                Err(f) => (0, f.reason.code()),
            })
            .collect()
    }

    #[test]
    /// A split by set translates up to the first request the common case does not decide,
    /// exactly: there it stops, and the results, counters and the IOTLB's every way,
    /// referenced bit and clock hand are those of the same requests one by one up to it.
    /// Requests after the stop that another thread translated are undone.
    fn a_split_stops_at_the_first_undecided_request_and_undoes_the_rest() {
        let mut rnd = crate::test_rng(0x5eed_0f5e_7500_0001_u64);
        let n = 3 * ROUND + 77;
        for (case, (threads, entries)) in [(2usize, 4096usize), (3, 3000), (2, 1 << 14), (4, 8192)]
            .into_iter()
            .enumerate()
        {
            for stop_at in [
                None,
                Some(0),
                Some(5),
                Some(ROUND - 1),
                Some(ROUND + 4000),
                Some(n - 1),
            ] {
                let mut m = build();
                let mut reqs: Vec<Request> = (0..n)
                    .map(|_| {
                        let r = rnd();
                        let p = r % 6000; // a working set larger than the smaller IOTLBs
                        req(
                            0x300 + ((r >> 20) % 4) as u16,
                            iova(p, r >> 32),
                            r >> 40 & 1 == 1,
                        )
                    })
                    .collect();
                if let Some(k) = stop_at {
                    // Request k alone reads a not-present leaf.
                    let p = PAGES - 1;
                    w(&mut m, L1 + (p / 512) * 4096 + (p % 512) * 8, 0);
                    reqs[k] = req(0x300, iova(p, 0), false);
                }
                let mk = || {
                    Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(ROOT), entries, 8, true).unwrap()
                };
                let (mut one, mut many) = (mk(), mk());
                // Contexts cached, and a first batch in both, so that the IOTLB holds entries.
                let warm: Vec<Request> = (0..4).map(|d| req(0x300 + d, 0, false)).collect();
                let warm_more: Vec<Request> = (0..3000u64)
                    .map(|i| req(0x300 + (i % 4) as u16, iova((i * 7) % 6000, 0), false))
                    .collect();
                for r in [&mut one, &mut many] {
                    one_by_one(r, &m, &warm);
                    one_by_one(r, &m, &warm_more);
                }
                let mut hpa = vec![1u64; n];
                let mut fault = vec![0xffu8; n];
                let mem = crate::mem::Fast::new(&m);
                let done = many.run_split_by_set(&mem, &reqs, threads, &mut hpa, &mut fault);
                let tag = format!("case {case} stop {stop_at:?}");
                assert_eq!(done, stop_at.unwrap_or(n), "{tag}");
                let want = one_by_one(&mut one, &m, &reqs[..done]);
                for (k, wv) in want.iter().enumerate() {
                    assert_eq!((hpa[k], fault[k]), *wv, "{tag} k{k}");
                }
                assert_same(&one, &many, &tag);
                if done > ROUND {
                    assert!(one.stats().misses > 0 && one.stats().hits > 0, "{tag}");
                }
            }
        }
    }

    #[test]
    /// Threaded batches with an IOTLB large enough to split by set equal the full step one
    /// request at a time, over many seeds: faults, read-only pages, the interrupt range,
    /// superpages, pass-through and absent contexts and reserved bits at random densities
    /// (none to frequent), repeated addresses, IOTLBs smaller and larger than the working set
    /// (power-of-two set counts and not), 2-4 threads, outputs shorter than the requests,
    /// and tables changed and invalidated under the caches between batches. The IOTLB is
    /// compared way by way, referenced bits and clock hands included.
    fn split_batches_equal_the_full_step() {
        let mut rnd = crate::test_rng(0x0ddc_0ffe_e15e_7001_u64);
        for seed in 0..16u64 {
            let mut m = build();
            let entries = [2048usize, 3000, 8192, 1 << 16][(seed % 4) as usize];
            let threads = 2 + (seed % 3) as usize;
            // One request in `rare` meets a bad leaf, an odd context or a superpage.
            let rare = [0u64, 40_000, 3_000, 200][(seed / 4) as usize];
            let span = if seed % 2 == 0 { 5000 } else { PAGES };
            let mk =
                || Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(ROOT), entries, 8, true).unwrap();
            let (mut one, mut many) = (mk(), mk());
            let mut sp_slot = None;
            for b in 0..4 {
                let n = 3 * ROUND + (rnd() % 5000) as usize;
                let mut reqs: Vec<Request> = Vec::with_capacity(n);
                for _ in 0..n {
                    let r = rnd();
                    let mut q = req(
                        0x300 + ((r >> 20) % 4) as u16,
                        iova(r % span, r >> 32),
                        r >> 44 & 1 == 1,
                    );
                    if rare != 0 && (r >> 50) % rare == 0 {
                        match (r >> 24) % 4 {
                            0 => q.sid = 0x304 + ((r >> 28) % 2) as u16,
                            1 => q.iova |= 1 << 50,
                            2 => q.translation_request = true,
                            _ => {
                                let p = r % span;
                                w(
                                    &mut m,
                                    L1 + (p / 512) * 4096 + (p % 512) * 8,
                                    bad(p, r >> 30),
                                );
                            }
                        }
                    }
                    if r % 7 == 0 && reqs.len() > 8 {
                        q.iova = reqs[reqs.len() - 1 - (rnd() % 8) as usize].iova;
                    }
                    reqs.push(q);
                }
                if rare != 0 && b == 2 {
                    // A 2 MiB superpage over one level-1 table's range.
                    let k = rnd() % L1S;
                    w(&mut m, L2 + k * 8, (0x4000_0000 + (k << 21)) | 3 | Pte::PS);
                    sp_slot = Some(k);
                }
                let short = if b == 1 { n - 1000 } else { n };
                let mut hpa = vec![1u64; short];
                let mut fault = vec![0xffu8; short];
                many.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault);
                let want = one_by_one(&mut one, &m, &reqs);
                let tag = format!("seed {seed} batch {b}");
                for k in 0..short {
                    assert_eq!((hpa[k], fault[k]), want[k], "{tag} k{k} {:?}", reqs[k]);
                }
                assert_same(&one, &many, &tag);
                assert_eq!(one.drain_faults(), many.drain_faults(), "{tag}");
                // Change tables under the caches (stale entries), then invalidate some.
                for _ in 0..50 {
                    let p = rnd() % span;
                    let v = if rnd() % 2 == 0 {
                        good((p + 1) % PAGES)
                    } else {
                        bad(p, rnd())
                    };
                    w(&mut m, L1 + (p / 512) * 4096 + (p % 512) * 8, v);
                }
                if let Some(k) = sp_slot.take() {
                    w(&mut m, L2 + k * 8, (L1 + k * 4096) | 3);
                }
                match rnd() % 3 {
                    0 => {
                        one.invalidate_iotlb_domain(1);
                        many.invalidate_iotlb_domain(1);
                    }
                    1 => {
                        one.invalidate_context_global();
                        many.invalidate_context_global();
                    }
                    _ => {}
                }
            }
        }
    }
}
