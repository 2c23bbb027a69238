//! The second-level walk (steps 5 and 7 of the order of checks in [`super::remapper`]): one
//! walk at a time ([`walk`], or split at the leaf: [`walk_upper`], [`walk_leaf`]) or many in
//! order with their leaves prefetched ahead ([`walk_prefetching`]), generic over the
//! [`Memory`] they read and monomorphised for each backing.

use super::config::UnitConfig;
use crate::mem::Memory;
use crate::spec::{
    address_level_offset, level_size, levels_to_width, FaultReason, Pte, PteReservedMasks,
    ADDR_HI_MASK,
};

/// Read and write permission bits as carried through a walk.
pub const PERM_R: u8 = 1;
pub const PERM_W: u8 = 2;

/// True when `iova` is beyond the width a context with `levels` levels can translate.
#[inline]
pub fn beyond_width(cfg: &UnitConfig, levels: u32, iova: u64) -> bool {
    let w = levels_to_width(levels).min(cfg.aw_bits);
    w < 64 && iova >> w != 0
}

/// The outcome of one walk: a leaf (fault 0) or a fault code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkOut {
    /// The host page start (aligned to the leaf's size).
    pub hpa_base: u64,
    /// Leaf level (1, 2, 3).
    pub level: u8,
    /// Accumulated permissions (AND over the levels).
    pub perm: u8,
    /// 0 for a leaf, else the fault reason code.
    pub fault: u8,
}

/// One walk to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkJob {
    pub root: u64,
    pub iova: u64,
    pub levels: u8,
    pub write: bool,
}

/// The state of one walk in flight.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    table: u64,
    level: u32,
    perm: u8,
}

enum Step {
    Descend,
    Done(WalkOut),
}

#[inline]
fn fault_out(r: FaultReason) -> WalkOut {
    WalkOut {
        fault: r.code(),
        ..WalkOut::default()
    }
}

/// One level of a walk: read the PTE, check permission, reserved bits, leaf or descend.
#[inline(always)]
fn step<M: Memory + ?Sized>(
    mem: &M,
    masks: &PteReservedMasks,
    job: &WalkJob,
    c: &mut Cursor,
) -> Step {
    let addr = c
        .table
        .wrapping_add(address_level_offset(job.iova, c.level) * 8);
    let top = c.level == job.levels as u32;
    check(masks, job.write, top, c, mem.load_u64(addr))
}

/// The checks of one level on the PTE read (`None`: the read fell outside memory) for a
/// write or a read; `top`: the level the context entry points at.
#[inline(always)]
fn check(
    masks: &PteReservedMasks,
    write: bool,
    top: bool,
    c: &mut Cursor,
    raw: Option<u64>,
) -> Step {
    let level = c.level;
    let Some(raw) = raw else {
        return Step::Done(fault_out(if top {
            FaultReason::ContextEntryInv
        } else {
            FaultReason::PagingEntryInv
        }));
    };
    let pte = Pte(raw);
    if write {
        if !pte.write() {
            return Step::Done(fault_out(FaultReason::Write));
        }
    } else if !pte.read() {
        return Step::Done(fault_out(FaultReason::Read));
    }
    if masks.reserved(level, pte) {
        return Step::Done(fault_out(FaultReason::PagingEntryRsvd));
    }
    c.perm &= (raw & 3) as u8;
    if level == 1 || pte.superpage() {
        let size_mask = level_size(level) - 1;
        return Step::Done(WalkOut {
            hpa_base: pte.addr() & !size_mask,
            level: level as u8,
            perm: c.perm,
            fault: 0,
        });
    }
    c.table = pte.addr();
    c.level = level - 1;
    Step::Descend
}

#[inline]
fn start(cfg: &UnitConfig, job: &WalkJob) -> Result<Cursor, WalkOut> {
    if !(3..=5).contains(&job.levels) {
        return Err(fault_out(FaultReason::ContextEntryInv));
    }
    if beyond_width(cfg, job.levels as u32, job.iova) {
        return Err(fault_out(FaultReason::AddrBeyondMgaw));
    }
    Ok(Cursor {
        table: job.root & ADDR_HI_MASK,
        level: job.levels as u32,
        perm: PERM_R | PERM_W,
    })
}

/// One walk, start to end (at most `levels` table reads), the depth a compile-time
/// parameter of the loop (so it unrolls and each level's masks are constants).
#[inline(always)]
pub fn walk<M: Memory + ?Sized>(mem: &M, cfg: &UnitConfig, job: &WalkJob) -> WalkOut {
    let c = match start(cfg, job) {
        Ok(c) => c,
        Err(o) => return o,
    };
    match job.levels {
        3 => walk_depth::<M, 3>(mem, &cfg.masks, job, c),
        4 => walk_depth::<M, 4>(mem, &cfg.masks, job, c),
        _ => walk_depth::<M, 5>(mem, &cfg.masks, job, c),
    }
}

/// The `L` levels of a walk started by [`start`] (which checked that `job.levels == L`).
#[inline(always)]
fn walk_depth<M: Memory + ?Sized, const L: u32>(
    mem: &M,
    masks: &PteReservedMasks,
    job: &WalkJob,
    mut c: Cursor,
) -> WalkOut {
    for _ in 0..L {
        if let Step::Done(o) = step(mem, masks, job, &mut c) {
            return o;
        }
    }
    // Not reached: a walk ends at level 1 at the latest.
    fault_out(FaultReason::PagingEntryInv)
}

/// A walk stopped above its last level: every level above level 1 read, checked and
/// descended (no fault, no superpage); the level-1 entry it reads last, the permissions so
/// far and the access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upper {
    leaf: u64,
    perm: u8,
    write: bool,
}

impl Upper {
    /// The address of the leaf entry the walk reads last.
    #[inline(always)]
    pub fn leaf_entry(&self) -> u64 {
        self.leaf
    }
}

/// The levels of `job` above level 1, when each descends (`None`: a level faults or is a
/// superpage leaf, or the job fails its start checks: [`walk`] decides those).
#[inline(always)]
pub fn walk_upper<M: Memory + ?Sized>(mem: &M, cfg: &UnitConfig, job: &WalkJob) -> Option<Upper> {
    start(cfg, job).ok()?;
    walk_upper_checked(mem, cfg, job)
}

/// [`walk_upper`] of a job known to pass the start checks of a walk: 3 to 5 levels, the
/// address inside the width (as a batch's look-ahead knows from the context it keeps).
/// A job that does not is not walked: `None`.
#[inline(always)]
pub fn walk_upper_checked<M: Memory + ?Sized>(
    mem: &M,
    cfg: &UnitConfig,
    job: &WalkJob,
) -> Option<Upper> {
    let c = Cursor {
        table: job.root & ADDR_HI_MASK,
        level: job.levels as u32,
        perm: PERM_R | PERM_W,
    };
    let c = match job.levels {
        3 => upper_depth::<M, 3>(mem, &cfg.masks, job, c),
        4 => upper_depth::<M, 4>(mem, &cfg.masks, job, c),
        5 => upper_depth::<M, 5>(mem, &cfg.masks, job, c),
        _ => None,
    }?;
    Some(Upper {
        leaf: c.table.wrapping_add(address_level_offset(job.iova, 1) * 8),
        perm: c.perm,
        write: job.write,
    })
}

/// The `L - 1` levels above the leaf of a walk started by [`start`] (`job.levels == L`),
/// unrolled: the cursor at level 1, or `None` when a level ends the walk.
///
/// A level descends exactly when [`check`] would: the entry is backed, has the access's
/// permission bit, and none of [`PteReservedMasks::descend_mask`] (its reserved bits as a
/// table pointer, and PS). Both conditions are tested at once, without deciding which fault
/// it would be: a walk that does not descend is left to [`walk`].
#[inline(always)]
fn upper_depth<M: Memory + ?Sized, const L: u32>(
    mem: &M,
    masks: &PteReservedMasks,
    job: &WalkJob,
    c: Cursor,
) -> Option<Cursor> {
    let need = if job.write { PERM_W } else { PERM_R } as u64;
    let mut c = c;
    // Each level a constant: its index bits and its mask are known at compile time.
    if L >= 5 {
        descend(mem, masks, need, job.iova, 5, &mut c)?;
    }
    if L >= 4 {
        descend(mem, masks, need, job.iova, 4, &mut c)?;
    }
    descend(mem, masks, need, job.iova, 3, &mut c)?;
    descend(mem, masks, need, job.iova, 2, &mut c)?;
    Some(c)
}

/// One level above the leaf of [`upper_depth`]: the entry for `iova` at `level` in the
/// cursor's table read, and descended through when it simply points at the next table.
#[inline(always)]
fn descend<M: Memory + ?Sized>(
    mem: &M,
    masks: &PteReservedMasks,
    need: u64,
    iova: u64,
    level: u32,
    c: &mut Cursor,
) -> Option<()> {
    let raw = mem.load_u64(c.table.wrapping_add(address_level_offset(iova, level) * 8))?;
    if raw & need == 0 || raw & masks.descend_mask(level) != 0 {
        return None;
    }
    c.perm &= (raw & 3) as u8;
    c.table = raw & Pte::ADDR_MASK;
    c.level = level - 1;
    Some(())
}

/// The rest of the walk `u` stopped at: its level-1 entry read and checked. Together with
/// [`walk_upper`], the same result as [`walk`] of the same job over the same memory.
#[inline(always)]
pub fn walk_leaf<M: Memory + ?Sized>(mem: &M, cfg: &UnitConfig, u: &Upper) -> WalkOut {
    // The common case first; anything else is checked in full.
    if let Some((hpa_base, perm)) = leaf_4k(mem, cfg, u) {
        return WalkOut {
            hpa_base,
            level: 1,
            perm,
            fault: 0,
        };
    }
    let raw = mem.load_u64(u.leaf);
    let mut c = Cursor {
        table: 0,
        level: 1,
        perm: u.perm,
    };
    // Level 1 is never the top: a context's tables have 3 levels at least.
    match check(&cfg.masks, u.write, false, &mut c, raw) {
        Step::Done(o) => o,
        // Not reached: level 1 always ends a walk.
        Step::Descend => fault_out(FaultReason::PagingEntryInv),
    }
}

/// The common case of [`walk_leaf`]: a backed level-1 entry with the access's permission
/// and no reserved bit is a 4 KiB leaf (PS is ignored at level 1): its host page and the
/// walk's permissions. `None`: [`walk_leaf`] decides.
#[inline(always)]
pub fn leaf_4k<M: Memory + ?Sized>(mem: &M, cfg: &UnitConfig, u: &Upper) -> Option<(u64, u8)> {
    let raw = mem.load_u64(u.leaf)?;
    let need = if u.write { PERM_W } else { PERM_R } as u64;
    (raw & need != 0 && raw & cfg.masks.leaf_mask() == 0)
        .then_some((raw & Pte::ADDR_MASK, u.perm & (raw & 3) as u8))
}

/// How many walks ahead [`walk_prefetching`] starts a walk's leaf read.
const LEAF_AHEAD: usize = 16;
/// Walks kept between their upper levels and their leaf (more than [`LEAF_AHEAD`]).
const LEAF_RING: usize = 32;

/// Many independent walks in order, each one's levels above the leaf walked and its leaf
/// entry prefetched [`LEAF_AHEAD`] walks before it is finished, so the leaves' cache misses
/// overlap. Same results as [`walk`].
pub fn walk_prefetching<M: Memory + ?Sized>(
    mem: &M,
    cfg: &UnitConfig,
    jobs: &[WalkJob],
    out: &mut [WalkOut],
) {
    let upper = |job: &WalkJob| {
        let u = walk_upper(mem, cfg, job)?;
        mem.prefetch(u.leaf_entry());
        Some(u)
    };
    let mut ring = [None::<Upper>; LEAF_RING];
    for (k, job) in jobs.iter().enumerate().take(LEAF_AHEAD) {
        ring[k % LEAF_RING] = upper(job);
    }
    for (i, (job, o)) in jobs.iter().zip(out.iter_mut()).enumerate() {
        let u = ring[i % LEAF_RING].take();
        if let Some(a) = jobs.get(i + LEAF_AHEAD) {
            ring[(i + LEAF_AHEAD) % LEAF_RING] = upper(a);
        }
        *o = match u {
            Some(u) => walk_leaf(mem, cfg, &u),
            None => walk(mem, cfg, job),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Maddr;
    use crate::hw::config::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::mem::PhysMem;

    /// The walk split at the leaf ([`walk_upper_checked`] then [`walk_leaf`], and the leaf's
    /// common case [`leaf_4k`] alone) gives what the full [`walk`] gives, over random tables
    /// whose entries mix permissions, reserved bits, superpages and addresses outside memory,
    /// at 3 to 5 levels, for reads and writes.
    #[test]
    fn split_walks_equal_the_full_walk() {
        let mut rnd = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        let cfg = UnitConfig::new(DEFAULT_CAP, DEFAULT_ECAP, 8).unwrap();
        let tables = 24u64;
        let mut mem = PhysMem::new(&[(0, 1 << 30)]).unwrap();
        let base = 1u64 << 20;
        let (mut split, mut common) = (0, 0);
        for round in 0..40 {
            // Table t at base + t * 4 KiB; an entry points at another table, at memory
            // outside the node, or is a random leaf, with random low and high bits.
            for t in 0..tables {
                for i in 0..512u64 {
                    let r = rnd();
                    let target = match r % 8 {
                        0 => 1u64 << 40,
                        1..=5 => base + (rnd() % tables) * 4096,
                        _ => (rnd() % (1 << 20)) << 12,
                    };
                    let mut e = target | (r >> 8) & 3;
                    if r % 5 == 0 {
                        e |= Pte::PS;
                    }
                    if r % 7 == 0 {
                        // Any one bit: reserved above the host width, or not.
                        e |= 1 << (32 + (r >> 20) % 32);
                    }
                    if r % 3 == 0 {
                        e |= 3;
                    }
                    mem.write_u64(Maddr(base + t * 4096 + i * 8), e).unwrap();
                }
            }
            for _ in 0..400 {
                let levels = 3 + (rnd() % 3) as u8;
                let job = WalkJob {
                    root: base + (rnd() % tables) * 4096,
                    // Few distinct indices per level, so walks meet the same entries often.
                    iova: (rnd() & 0x0001_8c63_18c6_3fff) >> (9 * (5 - levels as u64)),
                    levels,
                    write: rnd() % 2 == 0,
                };
                let full = walk(&mem, &cfg, &job);
                if start(&cfg, &job).is_err() {
                    continue;
                }
                if let Some(u) = walk_upper_checked(&mem, &cfg, &job) {
                    split += 1;
                    assert_eq!(walk_leaf(&mem, &cfg, &u), full, "round {round} {job:?}");
                    if let Some((hpa_base, perm)) = leaf_4k(&mem, &cfg, &u) {
                        common += 1;
                        let o = WalkOut {
                            hpa_base,
                            level: 1,
                            perm,
                            fault: 0,
                        };
                        assert_eq!(o, full, "round {round} {job:?}");
                    }
                }
            }
        }
        // Both paths were taken often enough to mean something.
        assert!(
            split > 500 && common > 100,
            "split {split}, common {common}"
        );
    }
}
