//! The unit's register set as software reaches it: 4- and 8-byte reads and writes at offsets
//! from the unit's base (vtd-hardware.md §1.2-§1.4, §1.11, §1.13).
//!
//! * Each register has a reset value and masks of writable, write-1-to-clear and write-only
//!   bits ([`crate::spec::regs::RegSpec`]); a write stores `(old & !wmask) | (val & wmask)`,
//!   then clears the W1C bits written as 1; a read returns the value without its write-only
//!   bits. Registers of a feature the unit lacks (ECAP.QI, IR, EIM, PRS; CAP.AFL, PLMR,
//!   PHMR) are read-only zero. Offsets no register covers read 0 and ignore writes.
//! * A 64-bit register is reached whole or as two 32-bit halves; a 32-bit write to the high
//!   half of CCMD or of the IOTLB register triggers the invalidation as the 64-bit write does.
//!   An 8-byte access over two 32-bit registers is the low one, then the high one.
//! * GCMD: level bits (TE, QIE, IRE, CFI, EAFL) act when they differ from the status, one-shot
//!   bits (SRTP, SIRTP, SFL, WBF) whenever written as 1. SRTP latches RTADDR (the walk uses
//!   only the latched value) and, with CAP.ESRTPS, flushes the IOTLB and the context cache.
//!   Toggling TE flushes both as well; turning it off sends the next fault to FRCD 0.
//! * Register-based invalidation executes at the granularity asked for and reports it in
//!   CAIG / IAIG (0 when the request cannot be served: a reserved granularity, or IVA.AM above
//!   CAP.MAMV). Without CAP.PSI a page-selective request is served domain-selectively.
//! * Fault recording registers at CAP.FRO * 16, CAP.NFR + 1 of them: the F bit is W1C; FSTS.PPF
//!   is derived from them, FRI names the first pending one. A recorded fault raises a fault
//!   event unless PPF, PFO or IQE were already set: FECTL.IP is set, and when IM is clear the
//!   message (FEUADDR:FEADDR, FEDATA) is sent and IP cleared. Unmasking IM with IP set sends
//!   it; IP clears when software clears every status bit that caused it.
//!
//! * Queued invalidation (ECAP.QI): IQA is latched at QIE enable, a write to IQT's low half
//!   runs the queue, ICS.IWC and IECTL carry the completion event; see [`super::qi`].
//!   Register-based invalidation while QIE is set is not performed (CAIG / IAIG 0).
//!
//! The register set is one 4 KiB page, or more whole pages when the fault recording registers
//! run past the first.

#[cfg(test)]
use super::dma::DmaError;
use super::interrupt::Msi;
use super::remapper::Remapper;
use crate::mem::MemoryBytes;
use crate::spec::regs::{
    self, ccmd, ectl, frcd, fsts, gcmd, iotlb, iva, RegSpec, FIXED, IOTLB_SPEC, IVA_SPEC,
};
use crate::spec::{Cap, Ecap};

const NONE: u16 = u16::MAX;

/// The stored state of the register set.
#[derive(Clone, Debug)]
pub struct RegFile {
    /// Every register but FRCD, masks resolved for the unit's features.
    defs: Vec<RegSpec>,
    vals: Vec<u64>,
    /// Register index of each dword of the set (`NONE` where there is none).
    slot: Vec<u16>,
    /// Bytes in the set.
    size: u64,
    frcd_base: u64,
    nfr: u64,
    gsts: u32,
    /// IRTA as latched by SIRTP (the interrupt remapping table in use).
    irta: Option<u64>,
    /// Indices of the registers with behaviour.
    i_gcmd: usize,
    i_rtaddr: usize,
    i_ccmd: usize,
    pub(super) i_fsts: usize,
    i_fectl: usize,
    pub(super) i_iectl: usize,
    pub(super) i_iqh: usize,
    pub(super) i_iqt: usize,
    pub(super) i_iqa: usize,
    pub(super) i_ics: usize,
    i_iva: usize,
    i_iotlb: usize,
    haw_mask: u64,
}

fn has(spec: &RegSpec, cap: Cap, ecap: Ecap) -> bool {
    match spec.name {
        "FEUADDR" | "IEUADDR" | "PEUADDR" if !ecap.eim() => false,
        "IQH" | "IQT" | "IQA" | "ICS" | "IECTL" | "IEDATA" | "IEADDR" | "IEUADDR" => ecap.qi(),
        "IRTA" => ecap.ir(),
        "PQH" | "PQT" | "PQA" | "PRS" | "PECTL" | "PEDATA" | "PEADDR" | "PEUADDR" => ecap.prs(),
        "AFLOG" => cap.afl(),
        "PMEN" => cap.plmr() || cap.phmr(),
        "PLMBASE" | "PLMLIMIT" => cap.plmr(),
        "PHMBASE" | "PHMLIMIT" => cap.phmr(),
        _ => true,
    }
}

/// GSTS bits that follow GCMD's level bits.
const LEVEL: u32 = gcmd::TE | gcmd::QIE | gcmd::IRE | gcmd::CFI | gcmd::EAFL;

impl RegFile {
    /// The register set of a unit with `cap` (NFR already set) and `ecap`; `haw` bits of host
    /// address.
    pub fn new(cap: Cap, ecap: Ecap, haw: u32) -> crate::Result<Self> {
        let haw_mask = if haw >= 64 {
            u64::MAX
        } else {
            (1u64 << haw) - 1
        };
        let iro = ecap.iro() * 16;
        let fro = cap.fro() * 16;
        let nfr = cap.nfr() + 1;
        let fixed_end = FIXED.iter().map(|r| r.offset + r.size()).max().unwrap_or(0);
        if iro < fixed_end {
            return Err(crate::Error::invalid(
                "ecap",
                format!(
                    "IRO {:#x} puts the IOTLB registers over the fixed registers",
                    iro / 16
                ),
            ));
        }
        let frcd_end = fro + 16 * nfr;
        if fro < fixed_end || (fro < iro + 16 && iro < frcd_end) {
            return Err(crate::Error::invalid(
                "cap",
                format!(
                    "FRO {:#x} puts the fault recording registers over other registers",
                    fro / 16
                ),
            ));
        }
        let end = frcd_end.max(iro + 16);
        let size = end.div_ceil(regs::PAGE) * regs::PAGE;
        let mut defs: Vec<RegSpec> = FIXED
            .iter()
            .map(|r| {
                let mut r = *r;
                if !has(&r, cap, ecap) {
                    r.reset = 0;
                    r.wmask = 0;
                    r.w1c = 0;
                    r.wo = 0;
                }
                if matches!(r.name, "PHMBASE" | "PHMLIMIT") {
                    r.wmask &= haw_mask;
                }
                r
            })
            .collect();
        defs.push(RegSpec {
            offset: iro,
            ..IVA_SPEC
        });
        defs.push(RegSpec {
            offset: iro + 8,
            ..IOTLB_SPEC
        });
        let mut slot = vec![NONE; (size / 4) as usize];
        for (i, r) in defs.iter().enumerate() {
            for d in 0..r.size() / 4 {
                if let Some(s) = slot.get_mut((r.offset / 4 + d) as usize) {
                    *s = i as u16;
                }
            }
        }
        let find = |name: &str| defs.iter().position(|r| r.name == name).unwrap_or(0);
        Ok(RegFile {
            vals: defs.iter().map(|r| r.reset).collect(),
            i_gcmd: find("GCMD"),
            i_rtaddr: find("RTADDR"),
            i_ccmd: find("CCMD"),
            i_fsts: find("FSTS"),
            i_fectl: find("FECTL"),
            i_iectl: find("IECTL"),
            i_iqh: find("IQH"),
            i_iqt: find("IQT"),
            i_iqa: find("IQA"),
            i_ics: find("ICS"),
            i_iva: find("IVA"),
            i_iotlb: find("IOTLB"),
            defs,
            slot,
            size,
            frcd_base: fro,
            nfr,
            gsts: 0,
            irta: None,
            haw_mask,
        })
    }

    /// Bytes of the register set (a whole number of 4 KiB pages).
    pub fn size(&self) -> u64 {
        self.size
    }
    /// GSTS.
    pub fn gsts(&self) -> u32 {
        self.gsts
    }
    /// Translation enabled (GSTS.TES).
    #[inline]
    pub fn translation_enabled(&self) -> bool {
        self.gsts & gcmd::TE != 0
    }
    /// The interrupt remapping table latched by SIRTP (IRTA's value then).
    pub fn irta(&self) -> Option<u64> {
        self.irta
    }
    /// The stored value of a register by name (for the unit's own use and tests).
    pub fn stored(&self, name: &str) -> Option<u64> {
        self.defs
            .iter()
            .position(|r| r.name == name)
            .and_then(|i| self.vals.get(i).copied())
    }
    pub(super) fn val(&self, i: usize) -> u64 {
        self.vals.get(i).copied().unwrap_or(0)
    }
    pub(super) fn set(&mut self, i: usize, v: u64) {
        if let Some(x) = self.vals.get_mut(i) {
            *x = v;
        }
    }
    fn def(&self, i: usize) -> RegSpec {
        self.defs.get(i).copied().unwrap_or(IVA_SPEC)
    }
    /// Store a write of `v` over the bits in `lanes`, with the register's masks.
    fn store(&mut self, i: usize, v: u64, lanes: u64) {
        let d = self.def(i);
        let old = self.val(i);
        let w = d.wmask & lanes;
        let new = ((old & !w) | (v & w)) & !(v & d.w1c & lanes);
        self.set(i, new);
    }
}

/// Check an access: 4 or 8 bytes, aligned, inside the register set.
fn check(off: u64, size: u32, limit: u64) -> crate::Result<()> {
    if size != 4 && size != 8 {
        return Err(crate::Error::invalid(
            "size",
            format!("{size}: register accesses are 4 or 8 bytes"),
        ));
    }
    if off % size as u64 != 0 {
        return Err(crate::Error::invalid(
            "offset",
            format!("{off:#x} is not aligned to the {size}-byte access"),
        ));
    }
    if off.checked_add(size as u64).is_none_or(|e| e > limit) {
        return Err(crate::Error::invalid(
            "offset",
            format!("{off:#x}: outside the {limit:#x}-byte register set"),
        ));
    }
    Ok(())
}

impl Remapper {
    /// Bytes of the unit's register set.
    pub fn mmio_size(&self) -> u64 {
        self.regs.size
    }

    /// Read `size` (4 or 8) bytes at `off` of the register set.
    pub fn mmio_read(&self, off: u64, size: u32) -> crate::Result<u64> {
        check(off, size, self.regs.size)?;
        if size == 8 {
            if let Some(i) = self.reg64_at(off) {
                return Ok(self.read_reg(i));
            }
            let lo = self.read32(off);
            let hi = self.read32(off + 4);
            return Ok(lo as u64 | (hi as u64) << 32);
        }
        Ok(self.read32(off) as u64)
    }

    /// Write `size` (4 or 8) bytes of `value` at `off` of the register set, with every side
    /// effect. A failed call changes nothing.
    /// Queue processing (an IQT write, QIE set) reads descriptors and writes wait status
    /// through `mem`.
    pub fn mmio_write<M: MemoryBytes + ?Sized>(
        &mut self,
        mem: &mut M,
        off: u64,
        size: u32,
        value: u64,
    ) -> crate::Result<()> {
        check(off, size, self.regs.size)?;
        if size == 4 && value > u32::MAX as u64 {
            return Err(crate::Error::invalid(
                "value",
                format!("{value:#x} does not fit a 4-byte access"),
            ));
        }
        if size == 8 {
            if let Some(i) = self.reg64_at(off) {
                self.write_reg(mem, i, value, u64::MAX);
                return Ok(());
            }
            if self.frcd_of(off).is_some() {
                self.write_frcd(off, value, 8);
                return Ok(());
            }
            self.write32(mem, off, value as u32);
            self.write32(mem, off + 4, (value >> 32) as u32);
            return Ok(());
        }
        self.write32(mem, off, value as u32);
        Ok(())
    }

    /// The 64-bit register starting at `off`.
    fn reg64_at(&self, off: u64) -> Option<usize> {
        let i = self.regs.slot.get((off / 4) as usize).copied()?;
        let d = self.regs.defs.get(i as usize)?;
        (i != NONE && d.width == 64 && d.offset == off).then_some(i as usize)
    }

    /// The fault recording register index and byte offset within it at `off`.
    fn frcd_of(&self, off: u64) -> Option<(usize, u64)> {
        let r = off.checked_sub(self.regs.frcd_base)?;
        (r < 16 * self.regs.nfr).then_some(((r / 16) as usize, r % 16))
    }

    fn frcd_value(&self, i: usize) -> (u64, u64) {
        let Some(rec) = self.faults.content(i) else {
            return (0, 0);
        };
        let lo = rec.fault_address();
        let mut hi = rec.sid as u64 & frcd::SID_MASK | (rec.reason.code() as u64) << frcd::FR_SHIFT;
        if !rec.write {
            hi |= frcd::T;
        }
        if self.faults.record(i).is_some() {
            hi |= frcd::F;
        }
        (lo, hi)
    }

    fn fsts_value(&self) -> u32 {
        let mut v = self.regs.val(self.regs.i_fsts) as u32;
        if self.faults.overflow() {
            v |= fsts::PFO;
        }
        if self.faults.pending() {
            v |= fsts::PPF | ((self.faults.fri() as u32) << fsts::FRI_SHIFT) & fsts::FRI_MASK;
        }
        v
    }

    fn read_reg(&self, i: usize) -> u64 {
        let d = self.regs.def(i);
        match d.offset {
            regs::CAP => self.cfg.cap,
            regs::ECAP => self.cfg.ecap,
            regs::GSTS => self.regs.gsts as u64,
            regs::FSTS => self.fsts_value() as u64,
            regs::PMEN => {
                // PRS (bit 0) follows EPM.
                let v = self.regs.val(i);
                v | (v >> 31) & 1
            }
            _ => self.regs.val(i) & !d.wo,
        }
    }

    fn read32(&self, off: u64) -> u32 {
        if let Some((n, b)) = self.frcd_of(off) {
            let (lo, hi) = self.frcd_value(n);
            let q = if b < 8 { lo } else { hi };
            return (q >> (8 * (b % 8))) as u32;
        }
        let Some(&i) = self.regs.slot.get((off / 4) as usize) else {
            return 0;
        };
        if i == NONE {
            return 0;
        }
        let d = self.regs.def(i as usize);
        (self.read_reg(i as usize) >> (8 * (off - d.offset))) as u32
    }

    fn write_frcd(&mut self, off: u64, v: u64, size: u32) {
        // Only F (bit 127: bit 63 of the high qword, bit 31 of its high dword) is writable.
        let Some((n, b)) = self.frcd_of(off) else {
            return;
        };
        let f = match (b, size) {
            (8, 8) => v & frcd::F != 0,
            (12, 4) => v & (1 << 31) != 0,
            _ => false,
        };
        if f {
            self.faults.clear(n);
            self.update_fault_ip();
        }
    }

    fn write32<M: MemoryBytes + ?Sized>(&mut self, mem: &mut M, off: u64, v: u32) {
        if self.frcd_of(off).is_some() {
            self.write_frcd(off, v as u64, 4);
            return;
        }
        let Some(&i) = self.regs.slot.get((off / 4) as usize) else {
            return;
        };
        if i == NONE {
            return;
        }
        let i = i as usize;
        let d = self.regs.def(i);
        let shift = 8 * (off - d.offset);
        self.write_reg(mem, i, (v as u64) << shift, 0xffff_ffffu64 << shift);
    }

    /// A write of `v` to the bits of register `i` in `lanes`, then its side effects.
    fn write_reg<M: MemoryBytes + ?Sized>(&mut self, mem: &mut M, i: usize, v: u64, lanes: u64) {
        let r = &self.regs;
        if i == r.i_gcmd {
            if self.gcmd(v as u32) {
                self.process_queue(mem);
            }
        } else if i == r.i_iqt {
            self.regs.store(i, v, lanes);
            // The low half holds the tail: a write to IQT_HI alone does not move it.
            if lanes & 0xffff_ffff != 0 {
                self.process_queue(mem);
            }
        } else if i == r.i_ics {
            self.regs.store(i, v, lanes);
            self.update_completion_ip();
        } else if i == r.i_fsts {
            if v & fsts::PFO as u64 != 0 {
                self.faults.clear_overflow();
            }
            self.regs.store(i, v, lanes);
            self.update_fault_ip();
        } else if i == r.i_fectl || i == r.i_iectl {
            self.regs.store(i, v, lanes);
            self.unmask_event(i);
        } else if i == r.i_ccmd {
            self.regs.store(i, v, lanes);
            if lanes >> 32 != 0 {
                self.ccmd();
            }
        } else if i == r.i_iotlb {
            self.regs.store(i, v, lanes);
            if lanes >> 32 != 0 {
                self.iotlb_reg();
            }
        } else {
            self.regs.store(i, v, lanes);
        }
    }

    /// A GCMD write; true when it enabled the queue (whose pending descriptors then run).
    fn gcmd(&mut self, v: u32) -> bool {
        let (cap, ecap) = (Cap(self.cfg.cap), Ecap(self.cfg.ecap));
        let mut changed = (self.regs.gsts ^ v) & LEVEL;
        if changed & gcmd::QIE != 0 && v & gcmd::QIE == 0 && !self.queue_empty() {
            // Disabling a queue that still holds descriptors (stopped by IQE) is refused.
            changed &= !gcmd::QIE;
        }
        if v & gcmd::SRTP != 0 {
            let rta = self.regs.val(self.regs.i_rtaddr) & !0xfff & self.regs.haw_mask;
            self.rtaddr = Some(rta);
            if cap.esrtps() {
                self.iotlb.invalidate_all();
                self.ctx_cache.invalidate_all();
            }
            self.regs.gsts |= gcmd::SRTP;
        }
        if v & gcmd::SFL != 0 && cap.afl() {
            self.regs.gsts |= gcmd::SFL;
        }
        // WBF: the write buffer is always empty, so the flush completes at once (WBFS 0).
        if v & gcmd::SIRTP != 0 && ecap.ir() {
            self.regs.irta = self.regs.stored("IRTA");
            self.iec.invalidate(super::iec::IecScope::Global);
            self.regs.gsts |= gcmd::SIRTP;
        }
        let mut toggle = |bit: u32, ok: bool| {
            if changed & bit != 0 && ok {
                self.regs.gsts ^= bit;
                true
            } else {
                false
            }
        };
        let te = toggle(gcmd::TE, true);
        let qie = toggle(gcmd::QIE, ecap.qi());
        toggle(gcmd::IRE, ecap.ir());
        toggle(gcmd::CFI, ecap.ir());
        toggle(gcmd::EAFL, cap.afl());
        if te {
            self.iotlb.invalidate_all();
            self.ctx_cache.invalidate_all();
            if self.regs.gsts & gcmd::TE == 0 {
                self.faults.reset_index();
            }
        }
        if qie && self.regs.gsts & gcmd::QIE == 0 {
            let h = self.regs.i_iqh;
            self.regs.set(h, 0);
        }
        if qie && self.regs.gsts & gcmd::QIE != 0 {
            self.latch_queue();
            return true;
        }
        false
    }

    fn ccmd(&mut self) {
        let i = self.regs.i_ccmd;
        let v = self.regs.val(i);
        if v & ccmd::ICC == 0 {
            return;
        }
        if self.regs.gsts & gcmd::QIE != 0 {
            // Register-based invalidation while the queue is enabled: not performed (CAIG 0).
            self.regs.set(i, v & !ccmd::ICC & !(3 << ccmd::CAIG_SHIFT));
            return;
        }
        let did = (v & ccmd::DID_MASK) as u16;
        let sid = (v >> ccmd::SID_SHIFT) as u16;
        let fm = ((v >> ccmd::FM_SHIFT) & 3) as u32;
        let caig = match (v >> ccmd::CIRG_SHIFT) & 3 {
            ccmd::GLOBAL => {
                self.invalidate_context_global();
                ccmd::GLOBAL
            }
            ccmd::DOMAIN => {
                self.invalidate_context_domain(did);
                ccmd::DOMAIN
            }
            ccmd::DEVICE => {
                self.ctx_cache.invalidate_device(sid, fm);
                ccmd::DEVICE
            }
            _ => 0,
        };
        let v = (v & !ccmd::ICC & !(3 << ccmd::CAIG_SHIFT)) | caig << ccmd::CAIG_SHIFT;
        self.regs.set(i, v);
    }

    fn iotlb_reg(&mut self) {
        let i = self.regs.i_iotlb;
        let v = self.regs.val(i);
        if v & iotlb::IVT == 0 {
            return;
        }
        if self.regs.gsts & gcmd::QIE != 0 {
            // Register-based invalidation while the queue is enabled: not performed (IAIG 0).
            self.regs
                .set(i, v & !iotlb::IVT & !(3 << iotlb::IAIG_SHIFT));
            return;
        }
        let did = (v >> iotlb::DID_SHIFT) as u16;
        let a = self.regs.val(self.regs.i_iva);
        let iaig = match (v >> iotlb::IIRG_SHIFT) & 3 {
            iotlb::GLOBAL => {
                self.invalidate_iotlb_global();
                iotlb::GLOBAL
            }
            iotlb::DOMAIN => {
                self.invalidate_iotlb_domain(did);
                iotlb::DOMAIN
            }
            iotlb::PAGE if !self.cfg.psi => {
                self.invalidate_iotlb_domain(did);
                iotlb::DOMAIN
            }
            iotlb::PAGE => {
                let am = (a & iva::AM_MASK) as u32;
                // IH (a hint that only leaf entries changed) keeps nothing more here: the
                // IOTLB holds leaf translations only.
                match self.invalidate_iotlb_pages(did, a & iva::ADDR_MASK, am) {
                    Ok(()) => iotlb::PAGE,
                    Err(_) => 0,
                }
            }
            _ => 0,
        };
        let v = (v & !iotlb::IVT & !(3 << iotlb::IAIG_SHIFT)) | iaig << iotlb::IAIG_SHIFT;
        self.regs.set(i, v);
    }

    /// FECTL or IECTL written: IM clear with IP set sends the pending message.
    fn unmask_event(&mut self, i: usize) {
        let c = self.regs.val(i) as u32;
        if c & ectl::IM == 0 && c & ectl::IP != 0 {
            self.regs.set(i, (c & !ectl::IP) as u64);
            self.send_event(i);
        }
    }

    pub(super) fn send_event(&mut self, ctl: usize) {
        let base = self.regs.def(ctl).offset;
        let at = |o: u64| {
            self.regs
                .slot
                .get((o / 4) as usize)
                .map_or(0, |&k| self.regs.val(k as usize))
        };
        let (data, addr, uaddr) = (at(base + 4), at(base + 8), at(base + 12));
        self.irqs.push(Msi::new(uaddr << 32 | addr, data as u32));
    }

    /// A fault was recorded: the fault event, unless one is already outstanding (`before`:
    /// PPF, PFO or IQE set before the fault).
    pub(super) fn fault_event(&mut self, before: bool) {
        if before {
            return;
        }
        let i = self.regs.i_fectl;
        let c = self.regs.val(i) as u32;
        if c & ectl::IP != 0 {
            return;
        }
        if c & ectl::IM != 0 {
            self.regs.set(i, (c | ectl::IP) as u64);
        } else {
            self.send_event(i);
        }
    }

    /// PPF, PFO or IQE set: what suppresses a new fault event.
    #[inline]
    pub(super) fn fault_status_set(&self) -> bool {
        self.faults.pending() || self.faults.overflow() || self.fsts_value() & fsts::IQE != 0
    }

    /// FECTL.IP clears once software has cleared every status bit that causes fault events.
    pub(super) fn update_fault_ip(&mut self) {
        let s = self.fsts_value();
        if s & (fsts::PFO | fsts::PPF | fsts::IQE | fsts::ICE | fsts::ITE) == 0 {
            let i = self.regs.i_fectl;
            let c = self.regs.val(i) & !(ectl::IP as u64);
            self.regs.set(i, c);
        }
    }

    /// The register set's state.
    pub fn registers(&self) -> &RegFile {
        &self.regs
    }

    /// Interrupt messages sent since the last call, oldest first.
    pub fn take_interrupts(&mut self) -> Vec<Msi> {
        std::mem::take(&mut self.irqs)
    }

    /// True when messages wait in [`Remapper::take_interrupts`].
    #[inline]
    pub fn has_interrupts(&self) -> bool {
        !self.irqs.is_empty()
    }

    /// The shortcut of table-only users: RTADDR = `rtaddr`, SRTP, TE (and, without
    /// CAP.ESRTPS, the global context and IOTLB invalidations a driver issues after SRTP).
    /// `None`: translation off and no root table latched.
    pub fn set_root_table(&mut self, rtaddr: Option<u64>) {
        match rtaddr {
            Some(r) => {
                let i = self.regs.i_rtaddr;
                self.regs.set(i, r & self.regs.def(i).wmask);
                let keep = self.regs.gsts & LEVEL;
                self.gcmd(keep | gcmd::SRTP);
                self.iotlb.invalidate_all();
                self.ctx_cache.invalidate_all();
                self.rtaddr = Some(r);
                self.gcmd(keep | gcmd::TE);
            }
            None => {
                let keep = self.regs.gsts & LEVEL;
                self.gcmd(keep & !gcmd::TE);
                self.rtaddr = None;
                self.regs.gsts &= !gcmd::SRTP;
                let i = self.regs.i_rtaddr;
                self.regs.set(i, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected values are those of vtd-hardware.md §1.2-§1.4, §1.11, §1.13 and the VT-d
    //! register descriptions, written out here independently of `spec::regs`.
    use super::*;
    use crate::addr::Maddr;
    use crate::hw::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::mem::PhysMem;

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const L4: u64 = 0x3000;
    const L3: u64 = 0x4000;
    const L2: u64 = 0x5000;
    const L1: u64 = 0x6000;
    /// Source-id 00:01.0, domain 42.
    const SID: u16 = 0x0008;
    const DID: u64 = 42;

    fn unit() -> Remapper {
        Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, None, 64, 8, true).unwrap()
    }
    fn w(m: &mut PhysMem, a: u64, v: u64) {
        m.write_u64(Maddr(a), v).unwrap();
    }
    /// A 4-level table: IOVA page i (i < 16) -> 0x10_0000 + i pages, read+write, except page
    /// 3, read-only.
    fn tables() -> PhysMem {
        let mut m = PhysMem::new(&[(0, 1 << 24)]).unwrap();
        w(&mut m, ROOT, CTX | 1);
        w(&mut m, CTX + 16 * (SID as u64 & 0xff), L4 | 1);
        w(&mut m, CTX + 16 * (SID as u64 & 0xff) + 8, 2 | DID << 8);
        w(&mut m, L4, L3 | 3);
        w(&mut m, L3, L2 | 3);
        w(&mut m, L2, L1 | 3);
        for i in 0..16u64 {
            let perm = if i == 3 { 1 } else { 3 };
            w(&mut m, L1 + 8 * i, (0x10_0000 + (i << 12)) | perm);
        }
        m
    }
    fn rd(r: &Remapper, off: u64, size: u32) -> u64 {
        r.mmio_read(off, size).unwrap()
    }
    /// Memory the register writes of these tests reach (none of them touches it).
    fn scratch() -> PhysMem {
        PhysMem::new(&[(0, 1 << 12)]).unwrap()
    }
    fn wr(r: &mut Remapper, off: u64, size: u32, v: u64) {
        r.mmio_write(&mut scratch(), off, size, v).unwrap();
    }
    /// The bring-up: RTADDR, SRTP, global context and IOTLB invalidation, TE.
    fn bring_up(r: &mut Remapper) {
        wr(r, 0x20, 8, ROOT);
        wr(r, 0x18, 4, 1 << 30);
        wr(r, 0x28, 8, 1 << 63 | 1 << 61);
        wr(r, 0xF8, 8, 1 << 63 | 1 << 60);
        wr(r, 0x18, 4, 1 << 31);
    }
    fn hpa(r: &mut Remapper, m: &PhysMem, iova: u64) -> Result<u64, u8> {
        let req = crate::hw::Request {
            sid: SID,
            iova,
            write: false,
            translation_request: false,
        };
        r.translate(m, &req)
            .map(|t| t.hpa)
            .map_err(|f| f.reason.code())
    }

    /// (name, offset, bytes, reset, read-back after writing all ones, after writing zeros)
    /// for the registers without side effects, with the default CAP (NFR 7) and ECAP (QI, DT,
    /// IR, PT; no EIM, no PRS, no AFL, no PLMR/PHMR).
    #[test]
    fn reset_values_and_read_back_masks() {
        let cap = 0x80D2_078C_222F_0606u64;
        let table: [(&str, u64, u32, u64, u64, u64); 26] = [
            ("VER", 0x00, 4, 0x10, 0x10, 0x10),
            ("CAP", 0x08, 8, cap, cap, cap),
            ("ECAP", 0x10, 8, 0xF0_0F4E, 0xF0_0F4E, 0xF0_0F4E),
            ("GSTS", 0x1C, 4, 0, 0, 0),
            ("RTADDR", 0x20, 8, 0, 0xFFFF_FFFF_FFFF_FC00, 0),
            ("FEDATA", 0x3C, 4, 0, 0xFFFF, 0),
            ("FEADDR", 0x40, 4, 0, 0xFFFF_FFFC, 0),
            ("FEUADDR (no EIM)", 0x44, 4, 0, 0, 0),
            ("AFLOG (no AFL)", 0x58, 8, 0, 0, 0),
            ("PMEN (no PLMR/PHMR)", 0x64, 4, 0, 0, 0),
            ("PLMBASE", 0x68, 4, 0, 0, 0),
            ("PLMLIMIT", 0x6C, 4, 0, 0, 0),
            ("PHMBASE", 0x70, 8, 0, 0, 0),
            ("PHMLIMIT", 0x78, 8, 0, 0, 0),
            ("IQH", 0x80, 8, 0, 0, 0),
            ("IQT", 0x88, 8, 0, 0x7FFF0, 0),
            ("IQA", 0x90, 8, 0, 0xFFFF_FFFF_FFFF_F807, 0),
            ("IEDATA", 0xA4, 4, 0, 0xFFFF_FFFF, 0),
            ("IEADDR", 0xA8, 4, 0, 0xFFFF_FFFC, 0),
            ("IEUADDR (no EIM)", 0xAC, 4, 0, 0, 0),
            ("IRTA", 0xB8, 8, 0, 0xFFFF_FFFF_FFFF_F80F, 0),
            ("PQH (no PRS)", 0xC0, 8, 0, 0, 0),
            ("PQA (no PRS)", 0xD0, 8, 0, 0, 0),
            ("PECTL (no PRS)", 0xE0, 4, 0, 0, 0),
            ("IVA (write-only)", 0xF0, 8, 0, 0, 0),
            ("MTRRCAP (none)", 0x100, 8, 0, 0, 0),
        ];
        for (name, off, size, reset, ones, zeros) in table {
            let mut r = unit();
            assert_eq!(rd(&r, off, size), reset, "{name} reset");
            let all = if size == 8 { u64::MAX } else { 0xFFFF_FFFF };
            wr(&mut r, off, size, all);
            assert_eq!(rd(&r, off, size), ones, "{name} after ones");
            wr(&mut r, off, size, 0);
            assert_eq!(rd(&r, off, size), zeros, "{name} after zeros");
        }
        // Registers with side effects, at reset.
        let r = unit();
        for (name, off, size, reset) in [
            ("GCMD", 0x18, 4, 0),
            ("CCMD", 0x28, 8, 0),
            ("FSTS", 0x34, 4, 0),
            ("FECTL", 0x38, 4, 0x8000_0000),
            ("ICS", 0x9C, 4, 0),
            ("IECTL", 0xA0, 4, 0x8000_0000),
            ("IOTLB", 0xF8, 8, 0),
            ("FRCD0 lo", 0x220, 8, 0),
            ("FRCD7 hi", 0x220 + 7 * 16 + 8, 8, 0),
        ] {
            assert_eq!(rd(&r, off, size), reset, "{name}");
        }
        assert_eq!(r.mmio_size(), 4096);
        // With EIM the upper address registers are writable.
        let eim = Ecap(DEFAULT_ECAP).with_eim(true).bits();
        let mut r = Remapper::new(DEFAULT_CAP, eim, None, 64, 8, true).unwrap();
        wr(&mut r, 0x44, 4, 0xFFFF_FFFF);
        wr(&mut r, 0xAC, 4, 0x1234_5678);
        assert_eq!(
            (rd(&r, 0x44, 4), rd(&r, 0xAC, 4)),
            (0xFFFF_FFFF, 0x1234_5678)
        );
        // Without QI the invalidation queue registers are read-only zero.
        let noqi = Ecap(DEFAULT_ECAP).with_qi(false).bits();
        let mut r = Remapper::new(DEFAULT_CAP, noqi, None, 64, 8, true).unwrap();
        wr(&mut r, 0x88, 8, 0x7FFF0);
        assert_eq!((rd(&r, 0x88, 8), rd(&r, 0xA0, 4)), (0, 0));
    }

    #[test]
    fn fault_recording_registers_past_the_first_page() {
        // 256 records at 0x220 end at 0x1220: the register set is two pages.
        let mut r = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, None, 64, 256, true).unwrap();
        assert_eq!((r.mmio_size(), rd(&r, 0x08, 8) >> 40 & 0xff), (8192, 255));
        assert_eq!(rd(&r, 0x220 + 255 * 16 + 8, 8), 0);
        assert!(r.mmio_read(8192, 4).is_err());
        // FRO or IRO over the fixed registers is refused.
        let low = Cap(DEFAULT_CAP).with_fro(0x8).bits();
        assert!(Remapper::new(low, DEFAULT_ECAP, None, 64, 8, true).is_err());
        let low = Ecap(DEFAULT_ECAP).with_iro(0x2).bits();
        assert!(Remapper::new(DEFAULT_CAP, low, None, 64, 8, true).is_err());
        // IOTLB registers moved to 0x500 (IRO 0x50): a page-selective request works there.
        let moved = Ecap(DEFAULT_ECAP).with_iro(0x50).bits();
        r = Remapper::new(DEFAULT_CAP, moved, None, 64, 8, true).unwrap();
        wr(&mut r, 0x508, 8, 1 << 63 | 1 << 60);
        assert_eq!(
            rd(&r, 0x508, 8),
            1 << 60 | 1 << 57,
            "IVT clear, IIRG kept, IAIG global"
        );
        assert_eq!(rd(&r, 0xF8, 8), 0);
    }

    #[test]
    fn halves_of_64_bit_registers() {
        let mut r = unit();
        wr(&mut r, 0x20, 4, 0x1234_5FFF);
        wr(&mut r, 0x24, 4, 0xABCD);
        assert_eq!(rd(&r, 0x20, 8), 0xABCD_1234_5C00);
        assert_eq!((rd(&r, 0x20, 4), rd(&r, 0x24, 4)), (0x1234_5C00, 0xABCD));
        // An 8-byte access over two 32-bit registers: FEDATA (0x3C) is the high half of 0x38.
        wr(&mut r, 0x38, 8, 0x0000_0041_0000_0000);
        assert_eq!(rd(&r, 0x38, 8), 0x0000_0041_0000_0000);
        assert_eq!(rd(&r, 0x3C, 4), 0x41);
    }

    #[test]
    fn bad_accesses_are_refused_and_change_nothing() {
        let mut r = unit();
        for size in [0u32, 1, 2, 3, 16] {
            assert!(r.mmio_read(0x20, size).is_err(), "size {size}");
            assert!(
                r.mmio_write(&mut scratch(), 0x20, size, 1 << 12).is_err(),
                "size {size}"
            );
        }
        assert!(r.mmio_read(0x22, 4).is_err());
        assert!(r.mmio_read(0x24, 8).is_err());
        assert!(r.mmio_write(&mut scratch(), 0x1C, 8, 0).is_err());
        assert!(r.mmio_read(4096, 4).is_err());
        assert!(r.mmio_read(4092, 8).is_err());
        assert!(r.mmio_read(u64::MAX - 3, 4).is_err());
        assert!(r.mmio_write(&mut scratch(), 0x3C, 4, 1 << 32).is_err());
        assert_eq!((rd(&r, 0x20, 8), rd(&r, 0x3C, 4)), (0, 0));
        assert_eq!(rd(&r, 4092, 4), 0);
    }

    #[test]
    fn gcmd_level_and_one_shot_bits() {
        let m = tables();
        let mut r = unit();
        // GCMD reads 0; GSTS follows.
        wr(&mut r, 0x20, 8, ROOT);
        wr(&mut r, 0x18, 4, 1 << 30);
        assert_eq!((rd(&r, 0x18, 4), rd(&r, 0x1C, 4)), (0, 1 << 30));
        assert_eq!(r.root_table(), Some(ROOT));
        // RTADDR is latched only at SRTP.
        wr(&mut r, 0x20, 8, 0x80_0000);
        assert_eq!(r.root_table(), Some(ROOT));
        assert_eq!(hpa(&mut r, &m, 0x1000), Ok(0x10_1000));
        // Level bits: TE, QIE, IRE, CFI follow what is written; one-shot WBF reads 0 after.
        wr(
            &mut r,
            0x18,
            4,
            1 << 31 | 1 << 26 | 1 << 25 | 1 << 23 | 1 << 27,
        );
        assert_eq!(
            rd(&r, 0x1C, 4),
            1 << 31 | 1 << 30 | 1 << 26 | 1 << 25 | 1 << 23
        );
        // Rewriting the status with SRTP masked changes nothing; TE alone off.
        let s = rd(&r, 0x1C, 4) & 0x96FF_FFFF;
        wr(&mut r, 0x18, 4, s & !(1 << 31));
        assert_eq!(rd(&r, 0x1C, 4), 1 << 30 | 1 << 26 | 1 << 25 | 1 << 23);
        assert!(!r.registers().translation_enabled());
        // SIRTP latches IRTA (IRTPS set).
        wr(&mut r, 0xB8, 8, 0x7000 | 1 << 11 | 7);
        wr(&mut r, 0x18, 4, (s & !(1 << 31)) | 1 << 24);
        assert_eq!(rd(&r, 0x1C, 4) & 1 << 24, 1 << 24);
        assert_eq!(r.registers().irta(), Some(0x7000 | 1 << 11 | 7));
        // Without AFL, SFL and EAFL do nothing.
        wr(&mut r, 0x18, 4, 1 << 29 | 1 << 28);
        assert_eq!(rd(&r, 0x1C, 4) & (3 << 28), 0);
        assert_eq!(rd(&r, 0x1C, 4) & 1 << 26, 0, "QIE was turned off above");
        // A second SRTP latches the new RTADDR.
        wr(&mut r, 0x18, 4, 1 << 30);
        assert_eq!(r.root_table(), Some(0x80_0000));
    }

    #[test]
    fn stale_entries_until_each_register_invalidation() {
        let mut m = tables();
        let mut r = unit();
        bring_up(&mut r);
        assert_eq!(rd(&r, 0x1C, 4), 0xC000_0000);
        // CAIG / IAIG report global.
        assert_eq!(rd(&r, 0x28, 8) >> 59 & 3, 1);
        assert_eq!(rd(&r, 0xF8, 8) >> 57 & 3, 1);
        assert_eq!(rd(&r, 0x28, 8) >> 63, 0);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x10_2000));
        let rewrite = |m: &mut PhysMem, v: u64| w(m, L1 + 16, v | 3);
        rewrite(&mut m, 0x90_0000);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x10_2000), "stale");
        // Domain-selective IOTLB for another domain keeps it; for DID 42 drops it.
        wr(&mut r, 0xF8, 8, 1 << 63 | 2 << 60 | 41 << 32);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x10_2000));
        wr(&mut r, 0xF8, 8, 1 << 63 | 2 << 60 | DID << 32);
        assert_eq!(rd(&r, 0xF8, 8) >> 57 & 3, 2);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x90_0000));
        // Page-selective through IVA, as two 32-bit halves (the high half triggers).
        rewrite(&mut m, 0xA0_0000);
        wr(&mut r, 0xF0, 8, 0x1000 | 1); // AM 1: pages 0x0000-0x1fff do not cover 0x2000
        wr(&mut r, 0xF8, 4, 0);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x90_0000));
        wr(&mut r, 0xFC, 4, 1 << 31 | 3 << 28 | DID);
        assert_eq!(rd(&r, 0xF8, 8) >> 57 & 3, 3);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0x90_0000));
        wr(&mut r, 0xF0, 8, 0x2000 | 1 << 6); // AM 0, IH
        wr(&mut r, 0xF8, 8, 1 << 63 | 3 << 60 | DID << 32);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0xA0_0000));
        // AM above MAMV (18): IAIG 0 and nothing invalidated.
        rewrite(&mut m, 0xB0_0000);
        wr(&mut r, 0xF0, 8, 19);
        wr(&mut r, 0xF8, 8, 1 << 63 | 3 << 60 | DID << 32);
        assert_eq!(rd(&r, 0xF8, 8) >> 57 & 3, 0);
        assert_eq!(hpa(&mut r, &m, 0x2000), Ok(0xA0_0000));
        // Context cache: rewrite the context entry's DID; stale until invalidated.
        let ce = CTX + 16 * (SID as u64 & 0xff) + 8;
        w(&mut m, ce, 2 | 43 << 8);
        let did = |r: &mut Remapper, m: &PhysMem| {
            let req = crate::hw::Request {
                sid: SID,
                iova: 0x1000,
                write: false,
                translation_request: false,
            };
            r.translate(m, &req).map(|t| t.domain_id).unwrap()
        };
        assert_eq!(did(&mut r, &m), 42);
        // Device-selective for 00:01.1 with FM 0 keeps it; with FM 3 (bits 2:0 ignored) drops.
        wr(
            &mut r,
            0x28,
            8,
            1 << 63 | 3 << 61 | ((SID as u64 | 1) << 16),
        );
        assert_eq!(rd(&r, 0x28, 8) >> 59 & 3, 3);
        assert_eq!(did(&mut r, &m), 42);
        wr(&mut r, 0x28, 4, (SID as u64 | 1) << 16);
        wr(&mut r, 0x2C, 4, 1 << 31 | 3 << 29 | 3);
        assert_eq!(did(&mut r, &m), 43);
        // SID and FM are write-only.
        assert_eq!(rd(&r, 0x28, 8) & 0x3_FFFF_0000, 0);
        // Domain-selective: by the cached DID (43), not another.
        w(&mut m, ce, 2 | 44 << 8);
        wr(&mut r, 0x28, 8, 1 << 63 | 2 << 61 | 42);
        assert_eq!(did(&mut r, &m), 43);
        wr(&mut r, 0x28, 8, 1 << 63 | 2 << 61 | 43);
        assert_eq!(rd(&r, 0x28, 8) >> 59 & 3, 2);
        assert_eq!(did(&mut r, &m), 44);
        // A write of the low half alone triggers nothing.
        w(&mut m, ce, 2 | 45 << 8);
        wr(&mut r, 0x28, 4, 0);
        assert_eq!(did(&mut r, &m), 44);
        // TE toggle flushes both caches.
        wr(&mut r, 0x18, 4, 0);
        wr(&mut r, 0x18, 4, 1 << 31);
        assert_eq!(did(&mut r, &m), 45);
    }

    /// FRCD value (lo, hi) for a fault: FI, SID, FR, T (set = read), F.
    fn frcd(r: &Remapper, i: u64) -> (u64, u64) {
        (rd(r, 0x220 + 16 * i, 8), rd(r, 0x228 + 16 * i, 8))
    }

    #[test]
    fn fault_recording_ring_and_events() {
        let m = tables();
        let cap = Cap(DEFAULT_CAP).with_nfr(1).bits(); // 2 records
        let mut r = Remapper::new(cap, DEFAULT_ECAP, None, 64, 2, true).unwrap();
        bring_up(&mut r);
        wr(&mut r, 0x40, 4, 0xFEE0_1000);
        wr(&mut r, 0x3C, 4, 0x4041);
        let req = |sid: u16, iova: u64, write: bool| crate::hw::Request {
            sid,
            iova,
            write,
            translation_request: false,
        };
        // Write to the read-only page 3: fault 0x5, recorded in FRCD 0; PPF, FRI 0; the event
        // is masked (IM set at reset): IP set, nothing sent.
        assert!(r.translate(&m, &req(SID, 0x3123, true)).is_err());
        assert_eq!(frcd(&r, 0), (0x3000, 1 << 63 | 5 << 32 | SID as u64));
        assert_eq!(rd(&r, 0x34, 4), 0x2);
        assert_eq!(rd(&r, 0x38, 4), 0xC000_0000);
        assert!(r.take_interrupts().is_empty());
        // Unmasking with IP set sends the message and clears IP.
        wr(&mut r, 0x38, 4, 0);
        assert_eq!(rd(&r, 0x38, 4), 0);
        assert_eq!(r.take_interrupts(), [Msi::new(0xFEE0_1000, 0x4041)]);
        // Same source pending: compressed (no record, no event). Another source (bus 1: root
        // entry not present, 0x1): FRCD 1, read (T), no event since PPF was set.
        assert!(r.translate(&m, &req(SID, 0x5000, true)).is_ok());
        assert!(r.translate(&m, &req(SID, 1 << 50, false)).is_err());
        assert!(r.translate(&m, &req(0x100, 0x7000, false)).is_err());
        assert_eq!(frcd(&r, 1), (0x7000, 1 << 63 | 1 << 62 | 1 << 32 | 0x100));
        assert!(r.take_interrupts().is_empty());
        // Ring full: the next (FRCD 0) is pending: PFO.
        assert!(r.translate(&m, &req(0x200, 0, false)).is_err());
        assert_eq!(rd(&r, 0x34, 4), 0x3);
        // Clearing F of FRCD 0 (32-bit write to its top dword): PPF stays (FRCD 1), FRI stays.
        wr(&mut r, 0x22C, 4, 1 << 31);
        assert_eq!(
            frcd(&r, 0),
            (0x3000, 5 << 32 | SID as u64),
            "content stays, F clear"
        );
        assert_eq!(rd(&r, 0x34, 4), 0x3);
        // PFO still drops a new fault even with a free register.
        assert!(r.translate(&m, &req(0x300, 0, false)).is_err());
        assert_eq!(frcd(&r, 0).1 >> 63, 0);
        // Clear PFO and FRCD 1 (64-bit write): all clear.
        wr(&mut r, 0x34, 4, 1);
        wr(&mut r, 0x238, 8, 1 << 63);
        assert_eq!(rd(&r, 0x34, 4), 0);
        // The next fault goes to FRCD 0 (the ring went round): FRI 0, event sent at once.
        assert!(r.translate(&m, &req(0x400, 0, true)).is_err());
        assert_eq!(rd(&r, 0x34, 4), 0x2);
        assert_eq!(frcd(&r, 0).1, 1 << 63 | 1 << 32 | 0x400);
        assert_eq!(r.take_interrupts().len(), 1);
        // Masked: IP set; clearing the record (the only status) clears IP without a message.
        wr(&mut r, 0x38, 4, 1 << 31);
        wr(&mut r, 0x22C, 4, 1 << 31);
        assert!(r.translate(&m, &req(0x500, 0, true)).is_err());
        assert_eq!((rd(&r, 0x34, 4), rd(&r, 0x38, 4)), (0x102, 0xC000_0000));
        wr(&mut r, 0x23C, 4, 1 << 31);
        assert_eq!((rd(&r, 0x34, 4), rd(&r, 0x38, 4)), (0, 0x8000_0000));
        wr(&mut r, 0x38, 4, 0);
        assert!(r.take_interrupts().is_empty());
        // TE off: the next fault goes to FRCD 0.
        wr(&mut r, 0x18, 4, 0);
        wr(&mut r, 0x18, 4, 1 << 31);
        assert!(r.translate(&m, &req(0x600, 0, true)).is_err());
        assert_eq!(rd(&r, 0x34, 4), 0x2);
    }

    #[test]
    fn fpd_suppresses_recording_and_events() {
        let mut m = tables();
        let mut r = unit();
        bring_up(&mut r);
        wr(&mut r, 0x38, 4, 0);
        let lo = CTX + 16 * (SID as u64 & 0xff);
        w(&mut m, lo, L4 | 1 | 2); // FPD
        let q = crate::hw::Request {
            sid: SID,
            iova: 0x3000,
            write: true,
            translation_request: false,
        };
        assert!(r.translate(&m, &q).is_err());
        assert_eq!((rd(&r, 0x34, 4), frcd(&r, 0).1), (0, 0));
        assert!(r.take_interrupts().is_empty());
    }

    #[test]
    fn dma_split_at_pages_and_transferred() {
        let mut m = tables();
        let mut r = unit();
        // Translation off: untranslated.
        r.dma_write(&mut m, SID, 0x70_0FFC, b"abcdefgh").unwrap();
        let mut b = [0u8; 8];
        m.read(Maddr(0x70_0FFC), &mut b).unwrap();
        assert_eq!(&b, b"abcdefgh");
        bring_up(&mut r);
        // IOVA 0x1FFC..0x2004 -> 0x10_1FFC..0x10_2000 and 0x10_2000..0x10_2004.
        r.dma_write(&mut m, SID, 0x1FFC, b"12345678").unwrap();
        m.read(Maddr(0x10_1FFC), &mut b).unwrap();
        assert_eq!(&b, b"12345678");
        let mut out = [0u8; 8];
        r.dma_read(&m, SID, 0x1FFC, &mut out).unwrap();
        assert_eq!(&out, b"12345678");
        // A write over pages 2, 3 (read-only), 4: page 2's part completes, the rest does not.
        let data = [0xAAu8; 0x1800];
        let e = r.dma_write(&mut m, SID, 0x2C00, &data).unwrap_err();
        match e {
            DmaError::Fault {
                record,
                transferred,
            } => {
                assert_eq!(
                    (record.reason.code(), record.iova, transferred),
                    (5, 0x3000, 0x400)
                );
            }
            other => panic!("{other:?}"),
        }
        let mut b = [0u8; 4];
        m.read(Maddr(0x10_2FFC), &mut b).unwrap();
        assert_eq!(b, [0xAA; 4]);
        m.read(Maddr(0x10_3000), &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        // Reading page 3 is allowed.
        let mut out = [1u8; 16];
        r.dma_read(&m, SID, 0x3000, &mut out).unwrap();
        assert_eq!(out, [0; 16]);
        // Wrapping the address space is refused before any request.
        let mut out = [0u8; 2];
        assert!(matches!(
            r.dma_read(&m, SID, u64::MAX, &mut out),
            Err(DmaError::Invalid(_))
        ));
    }
}
