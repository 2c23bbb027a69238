//! The remapping hardware's translation of a DMA request, legacy mode (vtd-hardware.md §1.5,
//! §1.7, §2; decisions.md "Hardware side"): source-id -> root entry -> context entry ->
//! second-level table walk -> host address, or a fault with its architectural reason.
//!
//! Order of checks (each the first that fails decides the reason):
//! 1. no root table latched, or the root entry outside memory: 0x08; root P clear: 0x01;
//!    root reserved bits: 0x0A;
//! 2. context entry outside memory: 0x09; context P clear: 0x02; reserved bits: 0x0B;
//!    AW not in SAGAW: 0x03; TT reserved, or TT 1 without ECAP.DT, or TT 2 without ECAP.PT: 0x03;
//! 3. a translation request (ATS) to a context whose TT is not 1: 0x0D;
//! 4. pass-through (TT 2): identity, 4 KiB, read+write, not cached in the IOTLB;
//! 5. the address beyond 2^min(AGAW, MGAW + 1): 0x04;
//! 6. the IOTLB (tagged by DID): a hit re-checks the permission (0x05 / 0x06);
//! 7. the walk, at each level from the top: the PTE outside memory (0x03 at the top level, else
//!    0x07); the permission asked for missing (0x05 write, 0x06 read), at every level; reserved
//!    bits (0x0C, masks per level, width and page size from [`PteReservedMasks`]); a leaf at
//!    L1 or where PS is set, else descend. At most `levels` table reads.
//! 8. the output address in the interrupt range 0xFEE00000-0xFEEFFFFF: 0x0E (checked on the
//!    address of the access, so a 1 GiB page over 3-4 GiB still serves its other addresses).
//!
//! Fault processing disable comes from the context entry once it has been read (also when its
//! P bit is clear, as QEMU does).

use super::config::UnitConfig;
use super::context::fetch_context;
use super::context_cache::ContextCache;
use super::fault::{FaultRecord, FaultRecorder, Outcome};
use super::interrupt::Msi;
use super::iotlb::Iotlb;
use super::mmio::RegFile;
use super::walk::{beyond_width, walk, WalkJob, WalkOut, PERM_R, PERM_W};
use crate::mem::Memory;
use crate::spec::{Cap, Ecap, FaultReason, TranslationType};

/// The interrupt address range [0xFEE00000, 0xFEF00000).
pub const INTERRUPT_RANGE: (u64, u64) = (0xFEE0_0000, 0xFEF0_0000);

/// A translated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub hpa: u64,
    pub page_size: u64,
    pub read: bool,
    pub write: bool,
    pub domain_id: u16,
    /// Leaf level (1, 2, 3), or 0 for pass-through.
    pub level: u8,
}

/// One DMA request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub sid: u16,
    pub iova: u64,
    pub write: bool,
    /// An ATS translation request (allowed only through TT 1 contexts) rather than DMA.
    pub translation_request: bool,
}

/// Counters of a remapping unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub walks: u64,
    pub context_hits: u64,
    pub context_misses: u64,
}

/// One remapping unit: configuration, root table pointer, caches, fault registers, counters.
#[derive(Debug)]
pub struct Remapper {
    pub(super) cfg: UnitConfig,
    pub(super) rtaddr: Option<u64>,
    pub(super) ctx_cache: ContextCache,
    pub(super) iotlb: Iotlb,
    pub(super) faults: FaultRecorder,
    pub(super) stats: Stats,
    pub(super) regs: RegFile,
    /// Interrupt messages sent and not yet taken.
    pub(super) irqs: Vec<Msi>,
    /// The interrupt-entry cache.
    pub(super) iec: super::iec::InterruptEntryCache,
    /// The invalidation queue's latched configuration and device-TLB events.
    pub(super) qi: super::qi::QueueState,
}

impl Remapper {
    pub fn new(
        cap: u64,
        ecap: u64,
        rtaddr: Option<u64>,
        iotlb_entries: usize,
        fault_records: usize,
        context_cache: bool,
    ) -> crate::Result<Self> {
        let cfg = UnitConfig::new(cap, ecap, fault_records)?;
        let regs = RegFile::new(Cap(cfg.cap), Ecap(cfg.ecap), cfg.haw)?;
        let mut r = Remapper {
            cfg,
            rtaddr: None,
            ctx_cache: ContextCache::new(context_cache),
            iotlb: Iotlb::new(iotlb_entries)?,
            faults: FaultRecorder::new(fault_records)?,
            stats: Stats::default(),
            regs,
            irqs: Vec::new(),
            iec: super::iec::InterruptEntryCache::new(),
            qi: super::qi::QueueState::default(),
        };
        if rtaddr.is_some() {
            r.set_root_table(rtaddr);
        }
        Ok(r)
    }

    pub fn config(&self) -> &UnitConfig {
        &self.cfg
    }
    pub fn root_table(&self) -> Option<u64> {
        self.rtaddr
    }
    pub fn iotlb(&self) -> &Iotlb {
        &self.iotlb
    }
    pub fn context_cache(&self) -> &ContextCache {
        &self.ctx_cache
    }
    /// The interrupt-entry cache.
    pub fn interrupt_entry_cache(&self) -> &super::iec::InterruptEntryCache {
        &self.iec
    }
    pub fn fault_recorder(&self) -> &FaultRecorder {
        &self.faults
    }
    /// Software reads every pending fault record and writes 1 to its F bit and to FSTS.PFO.
    pub fn drain_faults(&mut self) -> Vec<FaultRecord> {
        let v = self.faults.drain();
        self.update_fault_ip();
        v
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn invalidate_iotlb_global(&mut self) {
        self.iotlb.invalidate_all();
    }
    /// Domain-selective IOTLB invalidation. A DID is its low CAP.ND-given bits everywhere the
    /// unit uses one: the bits above are ignored here as in the context entry.
    pub fn invalidate_iotlb_domain(&mut self, did: u16) {
        self.iotlb.invalidate_domain(did & self.cfg.did_mask);
    }
    /// Page-selective invalidation; without CAP.PSI the unit invalidates the whole domain, as
    /// hardware may invalidate at a coarser granularity. `am` above CAP.MAMV is refused.
    pub fn invalidate_iotlb_pages(&mut self, did: u16, addr: u64, am: u32) -> crate::Result<()> {
        let did = did & self.cfg.did_mask;
        if am > self.cfg.mamv {
            return Err(crate::Error::invalid(
                "am",
                format!("address mask {am} exceeds CAP.MAMV = {}", self.cfg.mamv),
            ));
        }
        if self.cfg.psi {
            self.iotlb.invalidate_pages(did, addr, am);
        } else {
            self.iotlb.invalidate_domain(did);
        }
        Ok(())
    }
    pub fn invalidate_context_global(&mut self) {
        self.ctx_cache.invalidate_all();
    }
    /// Domain-selective context-cache invalidation (the DID masked as the context entry's).
    pub fn invalidate_context_domain(&mut self, did: u16) {
        self.ctx_cache.invalidate_domain(did & self.cfg.did_mask);
    }
    pub fn invalidate_context_device(&mut self, sid: u16, fm: u32) -> crate::Result<()> {
        if fm > 3 {
            return Err(crate::Error::invalid(
                "fm",
                format!("function mask {fm} is not 0..=3"),
            ));
        }
        self.ctx_cache.invalidate_device(sid, fm);
        Ok(())
    }

    fn fault(&mut self, req: &Request, reason: FaultReason, fpd: bool) -> FaultRecord {
        let rec = FaultRecord {
            reason,
            sid: req.sid,
            iova: req.iova,
            write: req.write,
            index: None,
        };
        let before = self.fault_status_set();
        if self.faults.report(rec, fpd) == Outcome::Recorded {
            self.fault_event(before);
        }
        rec
    }

    /// Translate one request: the architectural result, with every side effect (caches,
    /// counters, fault recording). The common case (a cached context, an IOTLB hit or a
    /// walk to a leaf, the access allowed) is decided first without changing anything, then
    /// applied as the full step would; anything else takes the full step.
    pub fn translate<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        req: &Request,
    ) -> Result<Translation, FaultRecord> {
        if let Some(t) = self.try_fast(mem, req, None) {
            return Ok(t);
        }
        self.commit(mem, req, None)
    }

    /// The in-order step of a translation. `ahead` is a walk done ahead, used only if it is
    /// the very walk this request needs now.
    #[inline(always)]
    pub(super) fn commit<M: Memory + Sync + ?Sized>(
        &mut self,
        mem: &M,
        req: &Request,
        ahead: Option<&(WalkJob, WalkOut)>,
    ) -> Result<Translation, FaultRecord> {
        let cached = if self.ctx_cache.enabled() {
            self.ctx_cache.get(req.sid)
        } else {
            None
        };
        let ctx_res = match cached {
            Some(c) => {
                self.stats.context_hits += 1;
                Ok(c)
            }
            None => {
                self.stats.context_misses += 1;
                let r = fetch_context(mem, &self.cfg, self.rtaddr, req.sid);
                if let Ok(c) = r {
                    self.ctx_cache.insert(req.sid, c);
                }
                r
            }
        };
        let ctx = match ctx_res {
            Ok(c) => c,
            Err(f) => return Err(self.fault(req, f.reason, f.fpd)),
        };
        if req.translation_request && ctx.tt != TranslationType::MultiLevelDevIotlb {
            return Err(self.fault(req, FaultReason::ContextEntryTt, ctx.fpd));
        }
        if ctx.tt == TranslationType::PassThrough {
            return Ok(Translation {
                hpa: req.iova,
                page_size: 4096,
                read: true,
                write: true,
                domain_id: ctx.did,
                level: 0,
            });
        }
        let levels = ctx.levels as u32;
        if beyond_width(&self.cfg, levels, req.iova) {
            return Err(self.fault(req, FaultReason::AddrBeyondMgaw, ctx.fpd));
        }
        let entry = if self.iotlb.capacity() > 0 {
            let hit = self.iotlb.lookup(ctx.did, req.iova);
            if hit.is_some() {
                self.stats.hits += 1;
            } else {
                self.stats.misses += 1;
            }
            hit
        } else {
            self.stats.misses += 1;
            None
        };
        let entry = match entry {
            Some(e) => {
                let need = if req.write { PERM_W } else { PERM_R };
                if e.perm & need == 0 {
                    let r = if req.write {
                        FaultReason::Write
                    } else {
                        FaultReason::Read
                    };
                    return Err(self.fault(req, r, ctx.fpd));
                }
                e
            }
            None => {
                self.stats.walks += 1;
                let job = ctx.walk_job(req.iova, req.write);
                let w = match ahead {
                    Some((j, w)) if *j == job => *w,
                    _ => walk(mem, &self.cfg, &job),
                };
                if w.fault != 0 {
                    if let Some(r) = FaultReason::from_code(w.fault) {
                        return Err(self.fault(req, r, ctx.fpd));
                    }
                }
                let e = ctx.iotlb_entry(req.iova, &w);
                if self.iotlb.capacity() > 0 {
                    self.iotlb.insert(e);
                }
                e
            }
        };
        let size = crate::spec::level_size(entry.level as u32);
        let hpa = entry.hpa_base | (req.iova & (size - 1));
        if (INTERRUPT_RANGE.0..INTERRUPT_RANGE.1).contains(&hpa) {
            return Err(self.fault(req, FaultReason::InterruptAddr, ctx.fpd));
        }
        Ok(Translation {
            hpa,
            page_size: size,
            read: entry.perm & PERM_R != 0,
            write: entry.perm & PERM_W != 0,
            domain_id: ctx.did,
            level: entry.level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Maddr;
    use crate::hw::batch::WINDOW;
    use crate::hw::config::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::hw::walk::walk_prefetching;
    use crate::mem::Fast;
    use crate::mem::PhysMem;
    use crate::spec::cap::sllps;
    use crate::spec::{address_level_offset, levels_to_width, Cap, ContextEntry, Ecap, Pte};

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const SID: u16 = 0x0308; // 03:01.0
    /// Table pages for levels 5..1 of the first walk.
    const T: [u64; 5] = [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000];
    const IOVA: u64 = 0x0080_8060_4000;
    const CAP5: u64 = DEFAULT_CAP | (0x8 << 8) | (56u64 << 16);

    fn w(m: &mut PhysMem, a: u64, v: u64) {
        m.write_u64(Maddr(a), v).unwrap();
    }

    /// Memory [0, 64 MiB), root -> context (sid) -> a `levels`-deep walk of IOVA to 0x4567000.
    fn setup(levels: u32) -> (PhysMem, u64) {
        let mut m = PhysMem::new(&[(0, 64 << 20)]).unwrap();
        w(&mut m, ROOT + 3 * 16, CTX | 1);
        let top = T[(5 - levels) as usize];
        w(&mut m, CTX + 8 * 16, top | 1);
        w(&mut m, CTX + 8 * 16 + 8, (levels as u64 - 2) | (42 << 8));
        for l in (2..=levels).rev() {
            let t = T[(5 - l) as usize];
            let next = T[(5 - l + 1) as usize];
            w(&mut m, t + address_level_offset(IOVA, l) * 8, next | 3);
        }
        w(
            &mut m,
            T[4] + address_level_offset(IOVA, 1) * 8,
            0x456_7000 | 3,
        );
        (m, top)
    }

    fn unit(cap: u64) -> Remapper {
        Remapper::new(cap, DEFAULT_ECAP, Some(ROOT), 1024, 8, true).unwrap()
    }

    fn req(iova: u64, write: bool) -> Request {
        Request {
            sid: SID,
            iova,
            write,
            translation_request: false,
        }
    }

    fn reason(r: &mut Remapper, m: &PhysMem, iova: u64, write: bool) -> u8 {
        match r.translate(m, &req(iova, write)) {
            Ok(_) => 0,
            Err(f) => f.reason.code(),
        }
    }

    #[test]
    fn translates_at_3_4_5_levels() {
        for (levels, cap) in [(3, DEFAULT_CAP | (0x2 << 8)), (4, DEFAULT_CAP), (5, CAP5)] {
            let (m, _) = setup(levels);
            let mut r = unit(cap);
            let iova = IOVA & ((1u64 << levels_to_width(levels)) - 1);
            let (m, iova) = if levels == 3 {
                let (mut m, _) = (m, 0);
                // Rebuild for the 39-bit IOVA (the L3 index differs only in higher bits).
                for l in (2..=3).rev() {
                    let t = T[(5 - l) as usize];
                    let next = T[(5 - l + 1) as usize];
                    w(&mut m, t + address_level_offset(iova, l) * 8, next | 3);
                }
                (m, iova)
            } else {
                (m, iova)
            };
            let t = r.translate(&m, &req(iova | 0x123, true)).unwrap();
            assert_eq!(t.hpa, 0x456_7123, "levels {levels}");
            assert_eq!((t.page_size, t.level, t.domain_id), (4096, 1, 42));
            assert!(t.read && t.write);
            assert_eq!(r.stats().walks, 1);
            // Second time: an IOTLB hit.
            assert_eq!(r.translate(&m, &req(iova, false)).unwrap().hpa, 0x456_7000);
            assert_eq!(r.stats().hits, 1);
        }
    }

    #[test]
    fn every_context_fault() {
        let (mut m, top) = setup(4);
        let fresh = |m: &PhysMem| reason(&mut unit(DEFAULT_CAP), m, IOVA, false);
        assert_eq!(fresh(&m), 0);
        let ce = CTX + 8 * 16;
        // 0x8: no root table / root table outside memory.
        let mut r = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, None, 16, 8, true).unwrap();
        assert_eq!(reason(&mut r, &m, IOVA, false), 0x8);
        r.set_root_table(Some(1 << 40));
        assert_eq!(reason(&mut r, &m, IOVA, false), 0x8);
        // 0x1, 0xA.
        w(&mut m, ROOT + 48, CTX);
        assert_eq!(fresh(&m), 0x1);
        w(&mut m, ROOT + 48, CTX | 1 | 0x10);
        assert_eq!(fresh(&m), 0xA);
        w(&mut m, ROOT + 48, CTX | 1 | (1 << 50));
        assert_eq!(fresh(&m), 0xA);
        w(&mut m, ROOT + 48, CTX | 1);
        w(&mut m, ROOT + 56, 1);
        assert_eq!(fresh(&m), 0xA);
        w(&mut m, ROOT + 56, 0);
        // 0x9: context table outside memory.
        w(&mut m, ROOT + 48, (1 << 40) | 1);
        assert_eq!(fresh(&m), 0x9);
        w(&mut m, ROOT + 48, CTX | 1);
        // 0x2, 0xB, 0x3.
        w(&mut m, ce, top);
        assert_eq!(fresh(&m), 0x2);
        w(&mut m, ce, top | 1 | 0x100);
        assert_eq!(fresh(&m), 0xB);
        w(&mut m, ce, top | 1);
        w(&mut m, ce + 8, 2 | (42 << 8) | 0x80);
        assert_eq!(fresh(&m), 0xB);
        for aw in [0u64, 1, 3, 4, 7] {
            w(&mut m, ce + 8, aw | (42 << 8));
            // AW 1 (39 bits) is supported, and IOVA (bit 39 set) is beyond it.
            assert_eq!(fresh(&m), if aw == 1 { 0x4 } else { 0x3 }, "aw {aw}");
        }
        w(&mut m, ce + 8, 2 | (42 << 8));
        w(&mut m, ce, top | 1 | (3 << 2));
        assert_eq!(fresh(&m), 0x3);
        // TT 1 needs ECAP.DT; TT 2 needs ECAP.PT.
        w(&mut m, ce, top | 1 | (1 << 2));
        assert_eq!(fresh(&m), 0);
        let mut nodt = Remapper::new(
            DEFAULT_CAP,
            Ecap::DEFAULT.with_dt(false).bits(),
            Some(ROOT),
            16,
            8,
            true,
        )
        .unwrap();
        assert_eq!(reason(&mut nodt, &m, IOVA, false), 0x3);
        w(&mut m, ce, top | 1 | (2 << 2));
        let mut nopt = Remapper::new(
            DEFAULT_CAP,
            Ecap::DEFAULT.with_pt(false).bits(),
            Some(ROOT),
            16,
            8,
            true,
        )
        .unwrap();
        assert_eq!(reason(&mut nopt, &m, IOVA, false), 0x3);
        // Pass-through: identity, even beyond the width.
        let t = unit(DEFAULT_CAP)
            .translate(&m, &req(1 << 60, true))
            .unwrap();
        assert_eq!((t.hpa, t.level, t.page_size), (1 << 60, 0, 4096));
        // 0xD: a translation request needs TT 1.
        let mut tr = req(IOVA, false);
        tr.translation_request = true;
        assert_eq!(
            unit(DEFAULT_CAP)
                .translate(&m, &tr)
                .unwrap_err()
                .reason
                .code(),
            0xD
        );
        w(&mut m, ce, top | 1 | (1 << 2));
        assert!(unit(DEFAULT_CAP).translate(&m, &tr).is_ok());
        w(&mut m, ce, top | 1);
        assert_eq!(
            unit(DEFAULT_CAP)
                .translate(&m, &tr)
                .unwrap_err()
                .reason
                .code(),
            0xD
        );
    }

    #[test]
    fn every_walk_fault() {
        let (mut m, top) = setup(4);
        let fresh = |m: &PhysMem, iova: u64, wr: bool| reason(&mut unit(DEFAULT_CAP), m, iova, wr);
        // 0x4: beyond 48 bits.
        assert_eq!(fresh(&m, 1 << 48, false), 0x4);
        // 0x3: top-level table outside memory; 0x7 below.
        let ce = CTX + 8 * 16;
        w(&mut m, ce, (1 << 40) | 1);
        assert_eq!(fresh(&m, IOVA, false), 0x3);
        w(&mut m, ce, top | 1);
        let l4e = top + address_level_offset(IOVA, 4) * 8;
        w(&mut m, l4e, (1 << 40) | 3);
        // bit 40 < 48 is a valid address bit: the L3 table is simply outside memory.
        assert_eq!(fresh(&m, IOVA, false), 0x7);
        // 0x5/0x6 at a non-leaf level, then at the leaf.
        w(&mut m, l4e, T[2] | 1);
        assert_eq!(fresh(&m, IOVA, true), 0x5);
        assert_eq!(fresh(&m, IOVA, false), 0);
        w(&mut m, l4e, T[2] | 2);
        assert_eq!(fresh(&m, IOVA, false), 0x6);
        w(&mut m, l4e, T[2]);
        assert_eq!(fresh(&m, IOVA, true), 0x5);
        w(&mut m, l4e, T[2] | 3);
        let l3e = T[2] + address_level_offset(IOVA, 3) * 8;
        // 0xC: SNP on a non-leaf, bits above the width, TM.
        w(&mut m, l3e, T[3] | 3 | Pte::SNP);
        assert_eq!(fresh(&m, IOVA, false), 0xC);
        w(&mut m, l3e, T[3] | 3 | (1 << 49));
        assert_eq!(fresh(&m, IOVA, false), 0xC);
        w(&mut m, l3e, T[3] | 3 | (1 << 62));
        assert_eq!(fresh(&m, IOVA, false), 0xC);
        // Ignored bits 52-61, 63 and X, EMT/IPAT are fine.
        w(&mut m, l3e, T[3] | 3 | (0x3ff << 52) | (1 << 63) | 0x7c);
        assert_eq!(fresh(&m, IOVA, false), 0);
        w(&mut m, l3e, T[3] | 3);
        // PS at L4 is reserved.
        w(&mut m, l4e, T[2] | 3 | Pte::PS);
        assert_eq!(fresh(&m, IOVA, false), 0xC);
        w(&mut m, l4e, T[2] | 3);
        // Permission is checked before reserved bits: a non-present entry with junk is 0x6.
        w(&mut m, l3e, T[3] | Pte::SNP);
        assert_eq!(fresh(&m, IOVA, false), 0x6);
        w(&mut m, l3e, T[3] | 3);
        // 0xE: the output in the interrupt range.
        let l1e = T[4] + address_level_offset(IOVA, 1) * 8;
        w(&mut m, l1e, 0xFEE0_1000 | 3);
        assert_eq!(fresh(&m, IOVA, false), 0xE);
    }

    #[test]
    fn superpages_at_every_depth() {
        for (levels, cap) in [
            (3u32, DEFAULT_CAP | (0x2 << 8)),
            (4, DEFAULT_CAP),
            (5, CAP5),
        ] {
            let (mut m, _) = setup(levels);
            let iova = 0x7_4060_5123u64; // < 2^39
            for l in (3..=levels).rev() {
                let t = T[(5 - l) as usize];
                let next = T[(5 - l + 1) as usize];
                w(&mut m, t + address_level_offset(iova, l) * 8, next | 3);
            }
            // 2 MiB at L2.
            w(
                &mut m,
                T[3] + address_level_offset(iova, 2) * 8,
                0x4000_0000 | 3 | Pte::PS,
            );
            let t = unit(cap).translate(&m, &req(iova, false)).unwrap();
            assert_eq!(
                (t.hpa, t.level, t.page_size),
                (0x4000_0000 | (iova & 0x1f_ffff), 2, 2 << 20)
            );
            // Address bits below 2 MiB are reserved in a 2 MiB leaf.
            w(
                &mut m,
                T[3] + address_level_offset(iova, 2) * 8,
                0x4000_1000 | 3 | Pte::PS,
            );
            assert_eq!(reason(&mut unit(cap), &m, iova, false), 0xC);
            // 1 GiB at L3.
            w(
                &mut m,
                T[2] + address_level_offset(iova, 3) * 8,
                0x80_0000_0000 | 3 | Pte::PS,
            );
            let t = unit(cap).translate(&m, &req(iova, true)).unwrap();
            assert_eq!((t.hpa, t.level), (0x80_0000_0000 | (iova & 0x3fff_ffff), 3));
            // Without SLLPS 1G, PS at L3 is reserved.
            assert_eq!(
                reason(
                    &mut unit(Cap(cap).with_sllps(sllps::SP_2M).bits()),
                    &m,
                    iova,
                    false
                ),
                0xC
            );
        }
    }

    #[test]
    fn fpd_and_fault_recording() {
        let (mut m, top) = setup(4);
        let ce = CTX + 8 * 16;
        w(&mut m, ce, top | 1 | ContextEntry::FPD);
        let mut r = unit(DEFAULT_CAP);
        assert_eq!(reason(&mut r, &m, 1 << 50, false), 0x4);
        assert!(r.drain_faults().is_empty());
        assert_eq!(r.fault_recorder().counts().suppressed_fpd, 1);
        w(&mut m, ce + 8, 2 | (42 << 8) | 0x80); // 0xB is never suppressed
        let mut r = unit(DEFAULT_CAP);
        assert_eq!(reason(&mut r, &m, IOVA, false), 0xB);
        let d = r.drain_faults();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].sid, d[0].fault_address()), (SID, IOVA & !0xfff));
    }

    #[test]
    fn iotlb_rechecks_permission_and_stays_stale() {
        let (mut m, _) = setup(4);
        let l1e = T[4] + address_level_offset(IOVA, 1) * 8;
        w(&mut m, l1e, 0x456_7000 | 1);
        let mut r = unit(DEFAULT_CAP);
        assert!(r.translate(&m, &req(IOVA, false)).is_ok());
        // A write through the cached read-only entry faults, and is recorded.
        assert_eq!(reason(&mut r, &m, IOVA, true), 0x5);
        assert_eq!(r.stats().hits, 1);
        assert_eq!(r.drain_faults().len(), 1);
        // Stale until invalidated.
        w(&mut m, l1e, 0x999_9000 | 3);
        assert_eq!(r.translate(&m, &req(IOVA, false)).unwrap().hpa, 0x456_7000);
        r.invalidate_iotlb_pages(42, IOVA, 0).unwrap();
        assert_eq!(r.translate(&m, &req(IOVA, false)).unwrap().hpa, 0x999_9000);
        assert!(r.invalidate_iotlb_pages(42, IOVA, 19).is_err());
    }

    /// With CAP.ND = 2 a DID is its low 8 bits: a context entry's DID 0x1234 is cached as 0x34,
    /// and every invalidation by DID masks the DID it is given the same way.
    #[test]
    fn did_is_masked_to_cap_nd_everywhere() {
        let (mut m, _) = setup(4);
        let hi = CTX + 8 * 16 + 8;
        w(&mut m, hi, 2 | (0x1234 << 8));
        let cap = Cap(DEFAULT_CAP).with_nd(2).bits();
        let l1e = T[4] + address_level_offset(IOVA, 1) * 8;
        type Inv = fn(&mut Remapper);
        let invalidations: [(&str, Inv); 3] = [
            ("iotlb domain", |r| r.invalidate_iotlb_domain(0x1234)),
            ("iotlb page", |r| {
                r.invalidate_iotlb_pages(0x1234, IOVA, 0).unwrap()
            }),
            ("iotlb page, other high bits", |r| {
                r.invalidate_iotlb_pages(0xAB34, IOVA, 0).unwrap()
            }),
        ];
        for (what, inv) in invalidations {
            w(&mut m, l1e, 0x456_7000 | 3);
            let mut r = unit(cap);
            let t = r.translate(&m, &req(IOVA, false)).unwrap();
            assert_eq!(t.domain_id, 0x34, "{what}");
            w(&mut m, l1e, 0x999_9000 | 3);
            inv(&mut r);
            let t = r.translate(&m, &req(IOVA, false)).unwrap();
            assert_eq!(t.hpa, 0x999_9000, "{what}: the stale entry must be gone");
        }
        // Another domain (0x35 in the low bits) leaves the entry cached.
        w(&mut m, l1e, 0x456_7000 | 3);
        let mut r = unit(cap);
        r.translate(&m, &req(IOVA, false)).unwrap();
        w(&mut m, l1e, 0x999_9000 | 3);
        r.invalidate_iotlb_domain(0x1235);
        assert_eq!(r.translate(&m, &req(IOVA, false)).unwrap().hpa, 0x456_7000);
        // Context cache: domain-selective by 0x1234 drops the cached context (DID 0x34).
        let mut r = unit(cap);
        r.translate(&m, &req(IOVA, false)).unwrap();
        assert_eq!(r.context_cache().len(), 1);
        r.invalidate_context_domain(0x0135);
        assert_eq!(r.context_cache().len(), 1);
        r.invalidate_context_domain(0x1234);
        assert_eq!(r.context_cache().len(), 0);
        // With ND = 6 (16-bit DIDs) nothing is masked.
        let mut r = unit(DEFAULT_CAP);
        assert_eq!(
            r.translate(&m, &req(IOVA, false)).unwrap().domain_id,
            0x1234
        );
        r.invalidate_context_domain(0x34);
        assert_eq!(r.context_cache().len(), 1);
    }

    /// A batch leaves the unit exactly as the same single calls do: results, faults, counters
    /// and the IOTLB's content (so also which entries the CLOCK evicts), over several windows,
    /// with 4 KiB and 2 MiB pages, read-only pages and a small IOTLB.
    #[test]
    fn batch_equals_single_calls_and_iotlb_content() {
        let (mut m, _) = setup(4);
        let l1 = address_level_offset(IOVA, 1);
        let base = IOVA & !0x1f_ffff;
        for i in 0..64u64 {
            let perm = if i % 5 == 0 { 1 } else { 3 };
            w(
                &mut m,
                T[4] + ((l1 + i) % 512) * 8,
                (0x800_0000 + (i << 12)) | perm,
            );
        }
        let sp = base + (1 << 21);
        w(
            &mut m,
            T[3] + address_level_offset(sp, 2) * 8,
            0x4000_0000 | 3 | Pte::PS,
        );
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let reqs: Vec<Request> = (0..3 * WINDOW as u64 + 77)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let iova = match x % 4 {
                    0 => sp + (x >> 20) % (1 << 21),
                    _ => base + (((l1 + (x >> 8) % 70) % 512) << 12) + (x >> 40) % 4096,
                };
                req(iova, (x >> 30) % 3 == 0)
            })
            .collect();
        for (entries, threads) in [(16, 1), (16, 2), (64, 1), (1, 1)] {
            let mk = || Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(ROOT), entries, 8, true);
            let (mut one, mut many) = (mk().unwrap(), mk().unwrap());
            let mut hpa = vec![0u64; reqs.len()];
            let mut fault = vec![0u8; reqs.len()];
            many.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault);
            for (k, q) in reqs.iter().enumerate() {
                let (h, f) = match one.translate(&m, q) {
                    Ok(t) => (t.hpa, 0),
                    Err(r) => (0, r.reason.code()),
                };
                assert_eq!((hpa[k], fault[k]), (h, f), "request {k}");
            }
            assert_eq!(one.stats(), many.stats());
            assert!(one.stats().hits > 0 && one.iotlb().evictions > 0);
            assert_eq!(one.iotlb().evictions, many.iotlb().evictions);
            assert_eq!(one.iotlb().entries(), many.iotlb().entries());
            assert_eq!(one.drain_faults(), many.drain_faults());
        }
    }

    /// Batches on 1, 2 and 3 threads, with IOTLB and context-cache invalidations between
    /// them, leave a unit as the same single calls and invalidations do: hits, misses, walks,
    /// faults (read-only pages written, entries not present, a device with no context) and
    /// the caches' content.
    #[test]
    fn batches_equal_single_calls_with_invalidations_between() {
        let (mut m, _) = setup(4);
        let l1 = address_level_offset(IOVA, 1);
        let base = IOVA & !0x1f_ffff;
        for i in 0..200u64 {
            // Every 7th not present (0x6 / 0x5), every 5th read-only (0x5 on a write).
            let v = match i {
                _ if i % 7 == 3 => 0,
                _ if i % 5 == 0 => (0x800_0000 + (i << 12)) | 1,
                _ => (0x800_0000 + (i << 12)) | 3,
            };
            w(&mut m, T[4] + ((l1 + i) % 512) * 8, v);
        }
        const NO_CTX: u16 = 0x0310; // 03:02.0: context entry not present (0x2)
        let mut x = 0x5851_f42d_4c95_7f2du64;
        let mut batch = |n: usize| -> Vec<Request> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let iova = base + (((l1 + (x >> 8) % 220) % 512) << 12) + (x >> 40) % 4096;
                    let mut q = req(iova, (x >> 30) % 4 == 0);
                    if x % 97 == 0 {
                        q.sid = NO_CTX;
                    }
                    q
                })
                .collect()
        };
        type Inv = fn(&mut Remapper);
        let between: [Inv; 4] = [
            |r| r.invalidate_iotlb_pages(42, IOVA, 3).unwrap(),
            |r| r.invalidate_context_device(SID, 0).unwrap(),
            |r| r.invalidate_iotlb_domain(42),
            |r| r.invalidate_iotlb_global(),
        ];
        let batches: Vec<Vec<Request>> = [3 * WINDOW + 77, 5, 2 * WINDOW, WINDOW + 1, 4 * WINDOW]
            .iter()
            .map(|&n| batch(n))
            .collect();
        for (entries, threads) in [(64, 2), (64, 3), (16, 2), (0, 2), (256, 1)] {
            let mk = || Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(ROOT), entries, 8, true);
            let (mut one, mut many) = (mk().unwrap(), mk().unwrap());
            for (b, reqs) in batches.iter().enumerate() {
                let mut hpa = vec![1u64; reqs.len()];
                let mut fault = vec![0xffu8; reqs.len()];
                many.translate_batch(&m, reqs, threads, &mut hpa, &mut fault);
                let mut faults = 0;
                for (k, q) in reqs.iter().enumerate() {
                    let (h, f) = match one.translate(&m, q) {
                        Ok(t) => (t.hpa, 0),
                        Err(r) => (0, r.reason.code()),
                    };
                    faults += (f != 0) as u32;
                    assert_eq!((hpa[k], fault[k]), (h, f), "batch {b} request {k}");
                }
                assert!(faults > 0 || reqs.len() < 100);
                assert_eq!(one.stats(), many.stats(), "batch {b}");
                assert_eq!(one.iotlb().entries(), many.iotlb().entries(), "batch {b}");
                assert_eq!(one.iotlb().evictions, many.iotlb().evictions);
                assert_eq!(one.context_cache().len(), many.context_cache().len());
                assert_eq!(one.drain_faults(), many.drain_faults(), "batch {b}");
                if let Some(inv) = between.get(b % between.len()) {
                    inv(&mut one);
                    inv(&mut many);
                }
            }
            let s = one.stats();
            assert!(s.walks > 0 && s.context_misses > 1);
            if entries > 0 {
                assert!(s.hits > 0 && s.misses > 0);
            }
        }
    }

    #[test]
    fn prefetching_walks_equal_single_walks_on_random_tables() {
        // Random bits in a small memory: every walk must end (never panic) and agree.
        let mut rnd = crate::test_rng(0x1234_5678_9abc_def1u64);
        let mut m = PhysMem::new(&[(0, 1 << 20)]).unwrap();
        for i in 0..(1u64 << 17) {
            let v = rnd();
            // Mostly plausible entries pointing into memory, some garbage.
            let v = if v & 7 == 0 {
                v
            } else {
                (v & 0xf_f000 & !0x80) | (v >> 60)
            };
            w(&mut m, i * 8, v);
        }
        let cfg = UnitConfig::new(CAP5, DEFAULT_ECAP, 8).unwrap();
        let jobs: Vec<WalkJob> = (0..5000)
            .map(|_| WalkJob {
                root: rnd() & 0xf_f000,
                iova: rnd() >> (rnd() % 16),
                levels: 3 + (rnd() % 3) as u8,
                write: rnd() & 1 == 1,
            })
            .collect();
        let mut out = vec![WalkOut::default(); jobs.len()];
        walk_prefetching(&Fast::new(&m), &cfg, &jobs, &mut out);
        let mut ok = 0;
        for (j, o) in jobs.iter().zip(&out) {
            assert_eq!(walk(&m, &cfg, j), *o);
            ok += (o.fault == 0) as u32;
        }
        assert!(ok > 0);
    }
}
