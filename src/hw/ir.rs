//! Interrupt remapping (vtd-hardware.md §1.10, §1.13; VT-d §5.1): what the unit does with an
//! interrupt request, a DWORD write of `data` to `address` in the interrupt window by the
//! device `sid`.
//!
//! Order of checks (the first that fails decides the fault; each is recorded as §1.13 says,
//! with the interrupt index in the record, and raises a fault event as a DMA fault does):
//! 1. interrupt remapping off (GSTS.IRES clear): the message passes as it is (an address
//!    outside the interrupt window is not an interrupt request at all: refused as misuse);
//! 2. the address outside the window 0xFEE0_0000-0xFEEF_FFFF (upper address bits set, or bits
//!    31:20 not 0xFEE): 0x20;
//! 3. compatibility format (address bit 4 clear): passes as it is when GSTS.CFIS is set,
//!    else 0x25 (the architecture's rule; QEMU ignores CFI and never raises 0x25);
//! 4. remappable format with SHV set and data bits 31:16 not zero: 0x20;
//! 5. index = handle (+ data\[15:0\] when SHV) at or above the table's 2^(S+1) entries: 0x21;
//! 6. the IRTE, from the interrupt-entry cache or read from the table latched by SIRTP (IRTA:
//!    address, S, EIME; EIME counts only with ECAP.EIM); memory that is not there: 0x23;
//! 7. P clear: 0x22; a reserved bit (including IM, and DST bits outside 15:8 in xAPIC mode):
//!    0x24; source validation by SVT/SQ failed (SVT 3 always fails): 0x26. The IRTE's FPD
//!    suppresses the recording of these three only.
//! 8. delivered: the compatibility-format message of the IRTE (vector, delivery mode, trigger
//!    mode, destination mode, redirection hint, destination in xAPIC or x2APIC form).
//!
//! Faults 0x20 and 0x25 have no index (the record's index field is 0), nor has 0x21 when
//! handle + subhandle passes 0xFFFF. Present entries are cached by index as read; the cache
//! keeps serving them after software changes the table until an interrupt-entry-cache
//! invalidation covers them or SIRTP latches a table again. Entries not present are not cached.
//!
//! Every delivered or passed-through message is queued with the unit's other interrupts
//! ([`Remapper::take_interrupts`]) and returned; [`Remapper::msi_batch`] writes them to arrays
//! instead (the other effects are the same as the single calls', in order).
//!
//! SVT 2 reads SID as VT-d §9.10 defines it, start bus in bits 15:8 and end bus in 7:0, the
//! way Xen and Linux write it (QEMU takes bits 15:8 as the end, which only agrees when the
//! range is one bus).

use super::fault::{FaultRecord, Outcome};
use super::interrupt::Msi;
use super::remapper::Remapper;
use crate::mem::Memory;
use crate::spec::irte::{irta, msi, Irte, IRTE_SIZE};
use crate::spec::regs::gcmd;
use crate::spec::{Ecap, FaultReason};

/// Why an interrupt request was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// The unit blocked it with an interrupt-remapping fault (recorded unless FPD, compression
    /// or overflow kept it out of the fault recording registers).
    Fault(FaultRecord),
    /// Not an interrupt request (an address outside the window with remapping off).
    Invalid(crate::Error),
}

/// The interrupt remapping table latched by SIRTP: base, entries, extended interrupt mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrTable {
    pub base: u64,
    pub entries: u32,
    pub eime: bool,
}

impl Remapper {
    /// The table the unit uses (IRTA as SIRTP latched it; before any SIRTP, IRTA's reset
    /// value: two entries at address 0).
    pub fn interrupt_table(&self) -> IrTable {
        let v = self.regs.irta().unwrap_or(0);
        IrTable {
            base: v & irta::ADDR_MASK & self.cfg_haw_mask(),
            entries: irta::entries(v),
            eime: v & irta::EIME != 0 && Ecap(self.cfg.ecap).eim(),
        }
    }

    fn cfg_haw_mask(&self) -> u64 {
        if self.cfg.haw >= 64 {
            u64::MAX
        } else {
            (1u64 << self.cfg.haw) - 1
        }
    }

    /// Record an interrupt-remapping fault (the IRTE's `fpd`), with its fault event.
    fn ir_fault(
        &mut self,
        sid: u16,
        address: u64,
        reason: FaultReason,
        index: Option<u32>,
        fpd: bool,
    ) -> MsiError {
        let rec = FaultRecord {
            reason,
            sid,
            iova: address,
            write: true,
            index: index.and_then(|i| u16::try_from(i).ok()),
        };
        let before = self.fault_status_set();
        if self.faults.report(rec, fpd) == Outcome::Recorded {
            self.fault_event(before);
        }
        MsiError::Fault(rec)
    }

    /// The interrupt request of device `sid`: `data` written to `address`. The delivered
    /// message (also queued with the unit's interrupts), or why it was blocked.
    pub fn msi<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        sid: u16,
        address: u64,
        data: u32,
    ) -> Result<Msi, MsiError> {
        let m = self.remap(mem, sid, address, data)?;
        self.irqs.push(m);
        Ok(m)
    }

    /// Many interrupt requests, in order, with the effects of [`Remapper::msi`] on the unit
    /// (cache, fault recording and events) but the delivered messages written to `address` /
    /// `data` instead of being queued; `fault` gets the reason code (0: delivered; a request
    /// that is not an interrupt request at all, with remapping off, gets 0x20). Slices of the
    /// requests' length.
    pub fn msi_batch<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        reqs: &[(u16, u64, u32)],
        address: &mut [u64],
        data: &mut [u32],
        fault: &mut [u8],
    ) {
        let outs = address
            .iter_mut()
            .zip(data.iter_mut())
            .zip(fault.iter_mut());
        for (&(sid, a, d), ((oa, od), of)) in reqs.iter().zip(outs) {
            (*oa, *od, *of) = match self.remap(mem, sid, a, d) {
                Ok(m) => (m.address, m.data, 0),
                Err(MsiError::Fault(f)) => (0, 0, f.reason.code()),
                Err(MsiError::Invalid(_)) => (0, 0, FaultReason::IrReqRsvd.code()),
            };
        }
    }

    /// [`Remapper::msi`] without queueing the message.
    fn remap<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        sid: u16,
        address: u64,
        data: u32,
    ) -> Result<Msi, MsiError> {
        let gsts = self.regs.gsts();
        let pass = Msi {
            address,
            data,
            sid: Some(sid),
            index: None,
        };
        if gsts & gcmd::IRE == 0 {
            if !msi::in_window(address) {
                return Err(MsiError::Invalid(crate::Error::invalid(
                    "address",
                    format!("{address:#x} is not in the interrupt window 0xfee00000-0xfeefffff"),
                )));
            }
            return Ok(pass);
        }
        if !msi::in_window(address) {
            return Err(self.ir_fault(sid, address, FaultReason::IrReqRsvd, None, false));
        }
        if address & msi::FORMAT_REMAPPABLE == 0 {
            if gsts & gcmd::CFI == 0 {
                return Err(self.ir_fault(sid, address, FaultReason::IrReqCompat, None, false));
            }
            return Ok(pass);
        }
        let shv = address & msi::SHV != 0;
        if shv && data & msi::DATA_RSVD_SHV != 0 {
            return Err(self.ir_fault(sid, address, FaultReason::IrReqRsvd, None, false));
        }
        let index = msi::handle(address) as u32 + if shv { data & 0xffff } else { 0 };
        let table = self.interrupt_table();
        if index >= table.entries {
            let f = self.ir_fault(sid, address, FaultReason::IrIndexOver, Some(index), false);
            return Err(f);
        }
        // index < 2^16 from here.
        let key = index as u16;
        let irte = match self.iec.get(key) {
            Some((lo, hi)) => Irte { lo, hi },
            None => {
                let at = table.base + index as u64 * IRTE_SIZE;
                let read = mem
                    .load_u64(at)
                    .zip(at.checked_add(8).and_then(|a| mem.load_u64(a)));
                let Some((lo, hi)) = read else {
                    let f =
                        self.ir_fault(sid, address, FaultReason::IrRootInval, Some(index), false);
                    return Err(f);
                };
                let e = Irte { lo, hi };
                if e.present() {
                    self.iec.insert(key, (lo, hi));
                }
                e
            }
        };
        let reason = if !irte.present() {
            Some(FaultReason::IrEntryP)
        } else if irte.reserved(table.eime) {
            Some(FaultReason::IrIrteRsvd)
        } else if !irte.source_ok(sid) {
            Some(FaultReason::IrSidErr)
        } else {
            None
        };
        if let Some(r) = reason {
            return Err(self.ir_fault(sid, address, r, Some(index), irte.fpd()));
        }
        let (a, d) = irte.message(table.eime);
        let m = Msi {
            address: a,
            data: d,
            sid: Some(sid),
            index: Some(key),
        };
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    //! Expected values from VT-d §5.1 and §9.10 and vtd-hardware.md §1.10, §1.13, written out
    //! here independently of `spec::irte`.
    use super::*;
    use crate::addr::Maddr;
    use crate::hw::dma::DmaError;
    use crate::hw::iec::IecScope;
    use crate::hw::{DEFAULT_CAP, DEFAULT_ECAP};
    use crate::mem::PhysMem;

    const IRT: u64 = 0x10_0000;
    const SID: u16 = 0x0308; // 03:01.0

    /// Register write (the one place that knows `mmio_write`'s signature).
    fn wr(r: &mut Remapper, m: &mut PhysMem, off: u64, size: u32, v: u64) {
        r.mmio_write(m, off, size, v).unwrap();
    }
    fn rd(r: &Remapper, off: u64, size: u32) -> u64 {
        r.mmio_read(off, size).unwrap()
    }
    fn mem() -> PhysMem {
        PhysMem::new(&[(0, 16 << 20)]).unwrap()
    }
    /// IRTE `i` of the table at IRT.
    fn put(m: &mut PhysMem, i: u64, lo: u64, hi: u64) {
        m.write_u64(Maddr(IRT + 16 * i), lo).unwrap();
        m.write_u64(Maddr(IRT + 16 * i + 8), hi).unwrap();
    }
    /// A unit with IRTA = IRT | s (| EIME), SIRTP, IRE (and CFI when `cfi`).
    fn unit(ecap: u64, m: &mut PhysMem, s: u64, eime: bool, cfi: bool) -> Remapper {
        let mut r = Remapper::new(DEFAULT_CAP, ecap, None, 64, 8, true).unwrap();
        wr(&mut r, m, 0xB8, 8, IRT | s | if eime { 1 << 11 } else { 0 });
        wr(&mut r, m, 0x18, 4, 1 << 24);
        let cfi = if cfi { 1 << 23 } else { 0 };
        wr(&mut r, m, 0x18, 4, 1 << 25 | cfi);
        assert_eq!(rd(&r, 0x1C, 4), 1 << 25 | 1 << 24 | cfi);
        r
    }
    /// Remappable address of handle `h` (bits 19:5 and 2), SHV optional.
    fn remap_addr(h: u64, shv: bool) -> u64 {
        0xFEE0_0000 | (h & 0x7fff) << 5 | 1 << 4 | (h >> 15) << 2 | if shv { 1 << 3 } else { 0 }
    }
    /// lo of a present entry: vector, xAPIC destination `d` (DST bits 15:8).
    fn lo(vector: u64, d: u64) -> u64 {
        1 | vector << 16 | (d << 8) << 32
    }
    fn reason(r: Result<Msi, MsiError>) -> u8 {
        match r {
            Ok(_) => 0,
            Err(MsiError::Fault(f)) => f.reason.code(),
            Err(MsiError::Invalid(_)) => 0xff,
        }
    }

    #[test]
    fn ir_off_passes_messages_as_they_are() {
        let m = mem();
        let mut r = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, None, 64, 8, true).unwrap();
        for (a, d) in [
            (0xFEE0_1000u64, 0x41u32),
            (remap_addr(5, true), 0xFFFF_0000),
        ] {
            let got = r.msi(&m, SID, a, d).unwrap();
            assert_eq!(
                (got.address, got.data, got.sid, got.index),
                (a, d, Some(SID), None)
            );
        }
        assert_eq!(r.take_interrupts().len(), 2);
        // Outside the window it is not an interrupt request.
        assert!(matches!(
            r.msi(&m, SID, 0x1000, 0),
            Err(MsiError::Invalid(_))
        ));
        assert!(r.take_interrupts().is_empty());
    }

    #[test]
    fn remapped_fields_in_xapic_and_x2apic_mode() {
        let mut m = mem();
        // P, DM logical, RH, TM level, DLM 1 (lowest priority), vector 0x41, APIC id 0x12;
        // SVT 0.
        put(
            &mut m,
            3,
            1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 0x41 << 16 | 0x1200 << 32,
            0,
        );
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, false);
        let got = r.msi(&m, SID, remap_addr(3, false), 0).unwrap();
        // Address 0xFEE0_0000 | id << 12 | RH << 3 | DM << 2; data vector | DLM << 8 | TM << 15.
        assert_eq!((got.address, got.data), (0xFEE1_200C, 0x8141));
        assert_eq!((got.sid, got.index), (Some(SID), Some(3)));
        assert_eq!(
            (
                got.destination(),
                got.vector(),
                got.delivery_mode(),
                got.trigger_mode()
            ),
            (0x12, 0x41, 1, 1)
        );
        assert_eq!(r.take_interrupts(), [got]);
        // x2APIC (ECAP.EIM, IRTA.EIME): the 32-bit DST. Without ECAP.EIM, EIME does nothing
        // and DST bits outside 15:8 are reserved (0x24).
        put(&mut m, 4, 1 | 0x30 << 16 | 0x0001_2345 << 32, 0);
        let eim = Ecap(DEFAULT_ECAP).with_eim(true).bits();
        let mut r = unit(eim, &mut m, 7, true, false);
        let got = r.msi(&m, SID, remap_addr(4, false), 0).unwrap();
        assert_eq!(
            (got.address, got.data),
            (0x0001_2300 << 32 | 0xFEE4_5000, 0x30)
        );
        assert_eq!(got.destination(), 0x0001_2345);
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, true, false);
        assert_eq!(reason(r.msi(&m, SID, remap_addr(4, false), 0)), 0x24);
    }

    #[test]
    fn subhandles_and_the_table_size() {
        let mut m = mem();
        for i in 0..8 {
            put(&mut m, i, lo(0x40 + i, 1), 0);
        }
        // S = 2: 8 entries.
        let mut r = unit(DEFAULT_ECAP, &mut m, 2, false, false);
        // Handle 4 + subhandle 3 = entry 7.
        let got = r.msi(&m, SID, remap_addr(4, true), 3).unwrap();
        assert_eq!((got.vector(), got.index), (0x47, Some(7)));
        // Without SHV the data is not a subhandle.
        assert_eq!(
            r.msi(&m, SID, remap_addr(4, false), 3).unwrap().vector(),
            0x44
        );
        // Handle 4 + 4 = 8: beyond 8 entries (0x21); handle 0x8000 likewise.
        assert_eq!(reason(r.msi(&m, SID, remap_addr(4, true), 4)), 0x21);
        assert_eq!(
            reason(r.msi(&m, 0x0400, remap_addr(0x8000, false), 0)),
            0x21
        );
    }

    /// FRCD `i`: (lo, hi).
    fn frcd(r: &Remapper, i: u64) -> (u64, u64) {
        (rd(r, 0x220 + 16 * i, 8), rd(r, 0x228 + 16 * i, 8))
    }

    #[test]
    fn every_fault_reason_with_its_record() {
        let mut m = PhysMem::new(&[(0, 2 << 20)]).unwrap();
        put(&mut m, 1, 0, 0); // not present
        put(&mut m, 2, lo(0x50, 1) | 1 << 13, 0); // reserved bit 13
        put(&mut m, 3, lo(0x51, 1), 0x0310 | 1 << 18); // SVT 1, SID 03:02.0
        put(&mut m, 4, lo(0x52, 1), 0); // fine
        let cases: [(u16, u64, u32, u8, u64); 8] = [
            // (sid, address, data, reason, index in FRCD)
            (0x0100, 0x1_FEE0_0010, 0, 0x20, 0), // upper address
            (0x0101, 0xFED0_0010, 0, 0x20, 0),   // not 0xFEE
            (0x0102, remap_addr(4, true), 0x1_0000, 0x20, 0), // data 31:16 with SHV
            (0x0103, remap_addr(300, false), 0, 0x21, 300),
            (0x0104, remap_addr(1, false), 0, 0x22, 1),
            (0x0105, remap_addr(2, false), 0, 0x24, 2),
            (0x0106, remap_addr(3, false), 0, 0x26, 3),
            (0x0107, 0xFEE0_1000, 0x30, 0x25, 0), // compatibility format, CFIS clear
        ];
        let cap = crate::spec::Cap(DEFAULT_CAP).with_nfr(15).bits();
        let mut r = Remapper::new(cap, DEFAULT_ECAP, None, 64, 16, true).unwrap();
        // S = 7 (256 entries); fault events unmasked.
        wr(&mut r, &mut m, 0xB8, 8, IRT | 7);
        wr(&mut r, &mut m, 0x18, 4, 1 << 24);
        wr(&mut r, &mut m, 0x18, 4, 1 << 25);
        wr(&mut r, &mut m, 0x40, 4, 0xFEE0_2000);
        wr(&mut r, &mut m, 0x3C, 4, 0x77);
        wr(&mut r, &mut m, 0x38, 4, 0);
        for (k, &(sid, a, d, code, index)) in cases.iter().enumerate() {
            assert_eq!(reason(r.msi(&m, sid, a, d)), code, "case {k}");
            // FRCD: lo = index << 48; hi = F | FR << 32 | SID, T clear (a write).
            assert_eq!(
                frcd(&r, k as u64),
                (index << 48, 1 << 63 | (code as u64) << 32 | sid as u64),
                "case {k}"
            );
        }
        // One fault event (the first fault; PPF stayed set after it).
        let ev = r.take_interrupts();
        assert_eq!(ev, [Msi::new(0xFEE0_2000, 0x77)]);
        assert_eq!(rd(&r, 0x34, 4), 0x2, "PPF, FRI 0");
        // The table outside memory: 0x23 with the index.
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, false);
        wr(&mut r, &mut m, 0xB8, 8, (1 << 30) | 7);
        wr(&mut r, &mut m, 0x18, 4, 1 << 25 | 1 << 24);
        assert_eq!(reason(r.msi(&m, SID, remap_addr(9, false), 0)), 0x23);
        assert_eq!(frcd(&r, 0), (9 << 48, 1 << 63 | 0x23 << 32 | SID as u64));
        // CFIS set: the compatibility-format message passes.
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, true);
        let got = r.msi(&m, SID, 0xFEE0_1000, 0x30).unwrap();
        assert_eq!(
            (got.address, got.data, got.index),
            (0xFEE0_1000, 0x30, None)
        );
        // Compression: a second fault of the same SID while the first is pending.
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, false);
        assert_eq!(reason(r.msi(&m, SID, remap_addr(1, false), 0)), 0x22);
        assert_eq!(reason(r.msi(&m, SID, remap_addr(2, false), 0)), 0x24);
        assert_eq!(frcd(&r, 1).1 >> 63, 0);
        assert_eq!(r.fault_recorder().counts().compressed, 1);
    }

    #[test]
    fn irte_fpd_suppresses_0x22_0x24_0x26_only() {
        let mut m = mem();
        let fpd = 1 << 1;
        put(&mut m, 1, fpd, 0); // not present, FPD
        put(&mut m, 2, lo(0x50, 1) | 1 << 31 | fpd, 0);
        put(&mut m, 3, lo(0x51, 1) | fpd, 0x0310 | 1 << 18);
        let mut r = unit(DEFAULT_ECAP, &mut m, 3, false, false);
        for (h, code) in [(1u64, 0x22u8), (2, 0x24), (3, 0x26)] {
            assert_eq!(reason(r.msi(&m, SID, remap_addr(h, false), 0)), code);
        }
        assert_eq!((rd(&r, 0x34, 4), frcd(&r, 0).1), (0, 0));
        assert_eq!(r.fault_recorder().counts().suppressed_fpd, 3);
        // 0x21 (no entry read) is recorded whatever the entries say.
        assert_eq!(reason(r.msi(&m, SID, remap_addr(16, false), 0)), 0x21);
        assert_eq!(frcd(&r, 0), (16 << 48, 1 << 63 | 0x21 << 32 | SID as u64));
    }

    #[test]
    fn source_validation_cases() {
        let mut m = mem();
        let sid_of = |svt: u64, sq: u64, sid: u64| sid | sq << 16 | svt << 18;
        // (hi, requester, delivered)
        let cases = [
            (sid_of(0, 0, 0x0308), 0xABCD, true),
            (sid_of(1, 0, 0x0308), 0x0308, true),
            (sid_of(1, 0, 0x0308), 0x030C, false),
            (sid_of(1, 1, 0x0308), 0x030C, true), // bit 2 ignored
            (sid_of(1, 1, 0x0308), 0x030A, false),
            (sid_of(1, 2, 0x0308), 0x030E, true), // bits 2:1 ignored
            (sid_of(1, 2, 0x0308), 0x0309, false),
            (sid_of(1, 3, 0x0308), 0x030F, true), // bits 2:0 ignored
            (sid_of(1, 3, 0x0308), 0x0310, false),
            (sid_of(2, 0, 0x0406), 0x0400, true), // buses 4..=6
            (sid_of(2, 0, 0x0406), 0x06FF, true),
            (sid_of(2, 0, 0x0406), 0x0300, false),
            (sid_of(2, 0, 0x0406), 0x0700, false),
            (sid_of(3, 0, 0x0308), 0x0308, false), // SVT 3 reserved
        ];
        for (k, &(hi, _, _)) in cases.iter().enumerate() {
            put(&mut m, k as u64, lo(0x60, 2), hi);
        }
        let mut r = unit(DEFAULT_ECAP, &mut m, 4, false, false);
        for (k, &(_, req, ok)) in cases.iter().enumerate() {
            let got = reason(r.msi(&m, req, remap_addr(k as u64, false), 0));
            assert_eq!(got, if ok { 0 } else { 0x26 }, "case {k}");
        }
    }

    #[test]
    fn the_cache_serves_entries_until_invalidated() {
        let mut m = mem();
        put(&mut m, 5, lo(0x40, 1), 0);
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, false);
        let vec = |r: &mut Remapper, m: &PhysMem| r.msi(m, SID, remap_addr(5, false), 0);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x40);
        // Rewritten in memory: the cached entry is still used, even once cleared.
        put(&mut m, 5, lo(0x41, 1), 0);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x40);
        put(&mut m, 5, 0, 0);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x40);
        // An index invalidation of another block keeps it; one covering it (index 4, IM 1:
        // entries 4-5) drops it: not present now.
        r.iec.invalidate(IecScope::Index { index: 6, im: 1 });
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x40);
        r.iec.invalidate(IecScope::Index { index: 4, im: 1 });
        assert_eq!(reason(vec(&mut r, &m)), 0x22);
        // Not-present entries are not cached: present again is seen at once.
        put(&mut m, 5, lo(0x42, 1), 0);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x42);
        // SIRTP drops every entry.
        put(&mut m, 5, lo(0x43, 1), 0);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x42);
        wr(&mut r, &mut m, 0x18, 4, 1 << 25 | 1 << 24);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x43);
        // A global invalidation too.
        put(&mut m, 5, lo(0x44, 1), 0);
        r.iec.invalidate(IecScope::Global);
        assert_eq!(vec(&mut r, &m).unwrap().vector(), 0x44);
    }

    #[test]
    fn a_batch_equals_single_calls() {
        let mut m = mem();
        for i in 0..16 {
            let hi = if i % 5 == 0 { 0x0310 | 1 << 18 } else { 0 };
            put(&mut m, i, if i % 7 == 3 { 0 } else { lo(0x40 + i, i) }, hi);
        }
        let reqs: Vec<(u16, u64, u32)> = (0..200u64)
            .map(|k| {
                let a = match k % 11 {
                    10 => 0xFEE0_1000,
                    9 => 0xFED0_0000,
                    _ => remap_addr(k * 7 % 40, k % 3 == 0),
                };
                (SID + (k % 2) as u16, a, (k % 4) as u32)
            })
            .collect();
        let mut one = unit(DEFAULT_ECAP, &mut m, 4, false, false);
        let mut many = unit(DEFAULT_ECAP, &mut m, 4, false, false);
        let n = reqs.len();
        let (mut a, mut d, mut f) = (vec![1u64; n], vec![1u32; n], vec![1u8; n]);
        many.msi_batch(&m, &reqs, &mut a, &mut d, &mut f);
        let mut faults = 0;
        for (k, &(sid, addr, data)) in reqs.iter().enumerate() {
            let want = match one.msi(&m, sid, addr, data) {
                Ok(x) => (x.address, x.data, 0),
                Err(e) => (0, 0, reason(Err(e))),
            };
            faults += (want.2 != 0) as u32;
            assert_eq!((a[k], d[k], f[k]), want, "request {k}");
        }
        assert!(faults > 10 && faults < 190);
        assert!(many.take_interrupts().len() <= 1, "only the fault event");
        assert_eq!(one.drain_faults(), many.drain_faults());
        assert_eq!(
            one.fault_recorder().counts(),
            many.fault_recorder().counts()
        );
    }

    #[test]
    fn dma_into_the_window_is_an_interrupt_request() {
        // Memory under the window too, to see that nothing reaches it.
        let mut m = PhysMem::new(&[(0, 16 << 20), (0xFE00_0000, 32 << 20)]).unwrap();
        put(&mut m, 2, lo(0x70, 3), 0);
        let mut r = unit(DEFAULT_ECAP, &mut m, 7, false, false);
        let (a, d) = (remap_addr(2, false), 0u32);
        r.dma_write(&mut m, SID, a, &d.to_le_bytes()).unwrap();
        let got = r.take_interrupts();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].vector(), got[0].destination()), (0x70, 3));
        // Nothing reached memory at the window's address.
        let mut b = [0u8; 4];
        m.read(Maddr(a), &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        // A blocked one: the fault, nothing written.
        match r.dma_write(&mut m, SID, remap_addr(3, false), &[0; 4]) {
            Err(DmaError::Interrupt {
                error: MsiError::Fault(f),
                transferred: 0,
            }) => assert_eq!((f.reason.code(), f.index), (0x22, Some(3))),
            other => panic!("{other:?}"),
        }
        // Other sizes, unaligned DWORDs and reads: unsupported, nothing done.
        for (at, len) in [(a, 8usize), (a, 2), (a + 2, 4), (a, 4096)] {
            let e = r.dma_write(&mut m, SID, at, &vec![0xAA; len]).unwrap_err();
            assert!(
                matches!(e, DmaError::Memory { transferred: 0, .. }),
                "{at:#x} {len}"
            );
        }
        let mut out = [0u8; 4];
        assert!(matches!(
            r.dma_read(&m, SID, a, &mut out),
            Err(DmaError::Memory { .. })
        ));
        m.read(Maddr(a), &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        assert!(r.take_interrupts().is_empty());
        assert_eq!(r.fault_recorder().counts().total, 1);
    }
}
