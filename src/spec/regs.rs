//! Register offsets of a remapping unit's register page (vtd-hardware.md §1.2, offsets in
//! bytes from the unit's base) and the fields of the registers software writes.

/// VER: architecture version (32-bit, RO; 0x10 = v1.0).
pub const VER: u64 = 0x00;
/// CAP: capabilities (64-bit, RO; §1.3).
pub const CAP: u64 = 0x08;
/// ECAP: extended capabilities (64-bit, RO; §1.3).
pub const ECAP: u64 = 0x10;
/// GCMD: global command (32-bit, WO; §1.4).
pub const GCMD: u64 = 0x18;
/// GSTS: global status (32-bit, RO; §1.4).
pub const GSTS: u64 = 0x1C;
/// RTADDR: root table address (64-bit; address 63:12, SMT bit 10, TTM bit 11).
pub const RTADDR: u64 = 0x20;
/// CCMD: context command (64-bit; §1.11).
pub const CCMD: u64 = 0x28;
/// FSTS: fault status (32-bit; PFO bit 0, PPF bit 1, IQE bit 4, FRI 15:8; §1.13).
pub const FSTS: u64 = 0x34;
/// FECTL: fault event control (32-bit; IM bit 31, IP bit 30).
pub const FECTL: u64 = 0x38;
/// FEDATA / FEADDR / FEUADDR: fault event MSI data and address.
pub const FEDATA: u64 = 0x3C;
pub const FEADDR: u64 = 0x40;
pub const FEUADDR: u64 = 0x44;
/// AFLOG: advanced fault log (not implemented).
pub const AFLOG: u64 = 0x58;
/// PMEN: protected memory enable, and the protected low/high memory base and limit.
pub const PMEN: u64 = 0x64;
pub const PLMBASE: u64 = 0x68;
pub const PLMLIMIT: u64 = 0x6C;
pub const PHMBASE: u64 = 0x70;
pub const PHMLIMIT: u64 = 0x78;
/// IQH / IQT / IQA: invalidation queue head, tail and address (64-bit; §1.12).
pub const IQH: u64 = 0x80;
pub const IQT: u64 = 0x88;
pub const IQA: u64 = 0x90;
/// ICS: invalidation completion status (IWC bit 0, W1C).
pub const ICS: u64 = 0x9C;
/// IECTL / IEDATA / IEADDR / IEUADDR: invalidation event control and MSI.
pub const IECTL: u64 = 0xA0;
pub const IEDATA: u64 = 0xA4;
pub const IEADDR: u64 = 0xA8;
pub const IEUADDR: u64 = 0xAC;
/// IRTA: interrupt remapping table address (address 63:12, EIME bit 11, S 3:0; §1.10).
pub const IRTA: u64 = 0xB8;
/// PQH / PQT / PQA: page request queue (only with ECAP.PRS).
pub const PQH: u64 = 0xC0;
pub const PQT: u64 = 0xC8;
pub const PQA: u64 = 0xD0;
/// PRS: page request status (PPR bit 0, PRO bit 1, W1C).
pub const PRS: u64 = 0xDC;
/// PECTL / PEDATA / PEADDR / PEUADDR: page request event control and MSI.
pub const PECTL: u64 = 0xE0;
pub const PEDATA: u64 = 0xE4;
pub const PEADDR: u64 = 0xE8;
pub const PEUADDR: u64 = 0xEC;
/// IVA: invalidate address (address 63:12, IH bit 6, AM 5:0), at ECAP.IRO * 16.
pub const IVA: u64 = 0xF0;
/// IOTLB: IOTLB invalidate (IVT 63, IIRG 61:60, IAIG 58:57, DR 49, DW 48, DID 47:32).
pub const IOTLB: u64 = 0xF8;
/// MTRRCAP / MTRRDEF (not implemented).
pub const MTRRCAP: u64 = 0x100;
pub const MTRRDEF: u64 = 0x108;
/// FRCD[0]: the first fault recording register (128-bit), at CAP.FRO * 16.
pub const FRCD0: u64 = 0x220;
/// Bytes per fault recording register.
pub const FRCD_SIZE: u64 = 16;

/// GCMD / GSTS bits (§1.4).
pub mod gcmd {
    /// Translation enable / status.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer / status.
    pub const SRTP: u32 = 1 << 30;
    /// Set fault log.
    pub const SFL: u32 = 1 << 29;
    /// Advanced fault logging.
    pub const EAFL: u32 = 1 << 28;
    /// Write buffer flush.
    pub const WBF: u32 = 1 << 27;
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remap table pointer.
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility format interrupt.
    pub const CFI: u32 = 1 << 23;
}

/// FSTS bits (§1.13).
pub mod fsts {
    /// Primary fault overflow.
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault.
    pub const PPF: u32 = 1 << 1;
    /// Invalidation queue error.
    pub const IQE: u32 = 1 << 4;
    /// Invalidation completion error.
    pub const ICE: u32 = 1 << 5;
    /// Invalidation time-out error.
    pub const ITE: u32 = 1 << 6;
    /// Fault record index.
    pub const FRI_SHIFT: u32 = 8;
    pub const FRI_MASK: u32 = 0xff << FRI_SHIFT;
}

/// Size of the register page (one 4 KiB page; fault recording registers past it widen the set
/// to whole pages, see `hw::mmio`).
pub const PAGE: u64 = 4096;

/// CCMD fields (§1.11).
pub mod ccmd {
    /// Invalidate context cache (set by software, cleared by hardware on completion).
    pub const ICC: u64 = 1 << 63;
    /// Context invalidation request granularity, bits 62:61 (1 global, 2 domain, 3 device).
    pub const CIRG_SHIFT: u32 = 61;
    /// Context actual invalidation granularity, bits 60:59 (RO).
    pub const CAIG_SHIFT: u32 = 59;
    /// Function mask, bits 33:32 (WO).
    pub const FM_SHIFT: u32 = 32;
    /// Source-id, bits 31:16 (WO).
    pub const SID_SHIFT: u32 = 16;
    /// Domain id, bits 15:0.
    pub const DID_MASK: u64 = 0xffff;
    pub const GLOBAL: u64 = 1;
    pub const DOMAIN: u64 = 2;
    pub const DEVICE: u64 = 3;
}

/// IOTLB invalidate register fields (§1.11).
pub mod iotlb {
    /// Invalidate IOTLB (set by software, cleared by hardware on completion).
    pub const IVT: u64 = 1 << 63;
    /// IOTLB invalidation request granularity, bits 61:60 (1 global, 2 domain, 3 page).
    pub const IIRG_SHIFT: u32 = 60;
    /// IOTLB actual invalidation granularity, bits 58:57 (RO).
    pub const IAIG_SHIFT: u32 = 57;
    /// Drain reads / drain writes.
    pub const DR: u64 = 1 << 49;
    pub const DW: u64 = 1 << 48;
    /// Domain id, bits 47:32.
    pub const DID_SHIFT: u32 = 32;
    pub const GLOBAL: u64 = 1;
    pub const DOMAIN: u64 = 2;
    pub const PAGE: u64 = 3;
}

/// IVA fields: address 63:12, invalidation hint bit 6, address mask 5:0.
pub mod iva {
    pub const ADDR_MASK: u64 = !0xfff;
    pub const IH: u64 = 1 << 6;
    pub const AM_MASK: u64 = 0x3f;
}

/// FECTL / IECTL / PECTL bits.
pub mod ectl {
    /// Interrupt mask.
    pub const IM: u32 = 1 << 31;
    /// Interrupt pending.
    pub const IP: u32 = 1 << 30;
}

/// Fault recording register fields, as positions in the high qword (§1.13); the low qword
/// holds FI, the faulting page address, in bits 63:12.
pub mod frcd {
    /// Source-id, bits 15:0.
    pub const SID_MASK: u64 = 0xffff;
    /// PASID present.
    pub const PP: u64 = 1 << 31;
    /// Fault reason, bits 39:32.
    pub const FR_SHIFT: u32 = 32;
    /// PASID value, bits 59:40.
    pub const PV_SHIFT: u32 = 40;
    /// Type: set for a read request, clear for a write.
    pub const T: u64 = 1 << 62;
    /// Fault (pending), write 1 to clear.
    pub const F: u64 = 1 << 63;
}

/// IQA / IQH / IQT fields (§1.12).
pub mod iq {
    /// IQH / IQT: the queue offset in bytes, bits 18:4.
    pub const OFFSET_MASK: u64 = 0x7_FFF0;
    /// IQT bit 4: must be 0 with 256-bit descriptors.
    pub const TAIL_BIT4: u64 = 1 << 4;
    /// IQA: 256-bit descriptors (DW), bit 11.
    pub const DW: u64 = 1 << 11;
    /// IQA: queue size QS, bits 2:0 (2^QS pages of 4 KiB).
    pub const QS_MASK: u64 = 7;
    /// IQA: base address, bits 63:12.
    pub const ADDR_MASK: u64 = !0xfff;
    /// Descriptors in a queue of 2^`qs` pages: 2^(qs+8) of 128 bits, 2^(qs+7) of 256.
    pub const fn entries(qs: u32, wide: bool) -> u64 {
        1 << (qs + if wide { 7 } else { 8 })
    }
    /// Shift from a descriptor index to its IQH/IQT value.
    pub const fn shift(wide: bool) -> u32 {
        if wide {
            5
        } else {
            4
        }
    }
}

/// ICS bits: invalidation wait descriptor complete (W1C).
pub mod ics {
    pub const IWC: u32 = 1 << 0;
}

/// How a register behaves: where it is, its width, reset value and which bits software can
/// write (`wmask`), clear by writing 1 (`w1c`), or write but never read back (`wo`).
/// Bits outside all three masks are read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegSpec {
    pub name: &'static str,
    pub offset: u64,
    /// 32 or 64.
    pub width: u32,
    pub reset: u64,
    pub wmask: u64,
    pub w1c: u64,
    pub wo: u64,
}

impl RegSpec {
    const fn new(name: &'static str, offset: u64, width: u32, reset: u64, wmask: u64) -> Self {
        RegSpec {
            name,
            offset,
            width,
            reset,
            wmask,
            w1c: 0,
            wo: 0,
        }
    }
    const fn w1c(self, w1c: u64) -> Self {
        RegSpec { w1c, ..self }
    }
    const fn wo(self, wo: u64) -> Self {
        RegSpec { wo, ..self }
    }
    /// Bytes.
    pub const fn size(self) -> u64 {
        self.width as u64 / 8
    }
}

/// The registers at fixed offsets of the register page with the masks of a unit that has the
/// feature they belong to (vtd-hardware.md §1.2 and the VT-d specification's register
/// descriptions). CAP and ECAP are the unit's configuration; GSTS, FSTS's PPF and FRI, and
/// the IOTLB/fault recording registers (at ECAP.IRO / CAP.FRO) are handled by the unit.
/// A feature the unit lacks makes its registers read-only zero (see `hw::mmio`).
pub const FIXED: &[RegSpec] = &[
    RegSpec::new("VER", VER, 32, 0x10, 0),
    RegSpec::new("CAP", CAP, 64, 0, 0),
    RegSpec::new("ECAP", ECAP, 64, 0, 0),
    // Write-only: software writes the whole command, reads return 0.
    RegSpec::new("GCMD", GCMD, 32, 0, 0xff80_0000).wo(0xff80_0000),
    RegSpec::new("GSTS", GSTS, 32, 0, 0),
    RegSpec::new("RTADDR", RTADDR, 64, 0, 0xffff_ffff_ffff_fc00),
    RegSpec::new("CCMD", CCMD, 64, 0, 0xe000_0003_ffff_ffff).wo(0x3_ffff_0000),
    // PFO, IQE, ICE, ITE are write-1-to-clear; PPF and FRI are derived.
    RegSpec::new("FSTS", FSTS, 32, 0, 0).w1c(0x71),
    RegSpec::new("FECTL", FECTL, 32, 0x8000_0000, 0x8000_0000),
    RegSpec::new("FEDATA", FEDATA, 32, 0, 0xffff),
    RegSpec::new("FEADDR", FEADDR, 32, 0, 0xffff_fffc),
    // Writable only with ECAP.EIM (x2APIC destinations).
    RegSpec::new("FEUADDR", FEUADDR, 32, 0, 0xffff_ffff),
    // Writable only with CAP.AFL: fault log address 63:12, size 11:9.
    RegSpec::new("AFLOG", AFLOG, 64, 0, 0xffff_ffff_ffff_fe00),
    // Only with CAP.PLMR or CAP.PHMR: EPM bit 31 (PRS, bit 0, follows it).
    RegSpec::new("PMEN", PMEN, 32, 0, 0x8000_0000),
    // 2 MiB granular bases and limits (PLMR / PHMR).
    RegSpec::new("PLMBASE", PLMBASE, 32, 0, 0xffe0_0000),
    RegSpec::new("PLMLIMIT", PLMLIMIT, 32, 0, 0xffe0_0000),
    RegSpec::new("PHMBASE", PHMBASE, 64, 0, 0xffff_ffff_ffe0_0000),
    RegSpec::new("PHMLIMIT", PHMLIMIT, 64, 0, 0xffff_ffff_ffe0_0000),
    // Queued invalidation (ECAP.QI): head RO, tail 18:4, address 63:12 | DW 11 | QS 2:0.
    RegSpec::new("IQH", IQH, 64, 0, 0),
    RegSpec::new("IQT", IQT, 64, 0, 0x7fff0),
    RegSpec::new("IQA", IQA, 64, 0, 0xffff_ffff_ffff_f807),
    RegSpec::new("ICS", ICS, 32, 0, 0).w1c(0x1),
    RegSpec::new("IECTL", IECTL, 32, 0x8000_0000, 0x8000_0000),
    RegSpec::new("IEDATA", IEDATA, 32, 0, 0xffff_ffff),
    RegSpec::new("IEADDR", IEADDR, 32, 0, 0xffff_fffc),
    RegSpec::new("IEUADDR", IEUADDR, 32, 0, 0xffff_ffff),
    // Interrupt remapping (ECAP.IR): table address 63:12 | EIME 11 | S 3:0.
    RegSpec::new("IRTA", IRTA, 64, 0, 0xffff_ffff_ffff_f80f),
    // Page requests (ECAP.PRS).
    RegSpec::new("PQH", PQH, 64, 0, 0x7ffe0),
    RegSpec::new("PQT", PQT, 64, 0, 0x7ffe0),
    RegSpec::new("PQA", PQA, 64, 0, 0xffff_ffff_ffff_f007),
    RegSpec::new("PRS", PRS, 32, 0, 0).w1c(0x3),
    RegSpec::new("PECTL", PECTL, 32, 0x8000_0000, 0x8000_0000),
    RegSpec::new("PEDATA", PEDATA, 32, 0, 0xffff_ffff),
    RegSpec::new("PEADDR", PEADDR, 32, 0, 0xffff_fffc),
    RegSpec::new("PEUADDR", PEUADDR, 32, 0, 0xffff_ffff),
];

/// IVA (at ECAP.IRO * 16): address, IH, AM; write-only.
pub const IVA_SPEC: RegSpec =
    RegSpec::new("IVA", 0, 64, 0, 0xffff_ffff_ffff_f07f).wo(0xffff_ffff_ffff_f07f);
/// IOTLB (at ECAP.IRO * 16 + 8): IVT, IIRG, DR, DW, DID writable; IAIG read-only.
pub const IOTLB_SPEC: RegSpec = RegSpec::new("IOTLB", 8, 64, 0, 0xb003_ffff_0000_0000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_the_register_map() {
        // vtd-hardware.md §1.2, one row at a time.
        let table: [(u64, u64); 20] = [
            (VER, 0x00),
            (CAP, 0x08),
            (ECAP, 0x10),
            (GCMD, 0x18),
            (GSTS, 0x1C),
            (RTADDR, 0x20),
            (CCMD, 0x28),
            (FSTS, 0x34),
            (FECTL, 0x38),
            (FEADDR, 0x40),
            (PMEN, 0x64),
            (IQH, 0x80),
            (IQT, 0x88),
            (IQA, 0x90),
            (ICS, 0x9C),
            (IECTL, 0xA0),
            (IRTA, 0xB8),
            (IVA, 0xF0),
            (IOTLB, 0xF8),
            (FRCD0, 0x220),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
        // IVA and IOTLB sit at ECAP.IRO * 16 (IRO = 0xF); FRCD at CAP.FRO * 16 (FRO = 0x22).
        assert_eq!(0xF * 16, IVA);
        assert_eq!(IVA + 8, IOTLB);
        assert_eq!(0x22 * 16, FRCD0);
    }

    #[test]
    fn register_table_is_consistent() {
        // Offsets are those of the constants, registers do not overlap, 64-bit ones are
        // 8-byte aligned, and no mask reaches past the register's width.
        let mut seen = std::collections::BTreeMap::new();
        for r in FIXED {
            assert!(r.width == 32 || r.width == 64, "{}", r.name);
            assert_eq!(r.offset % r.size(), 0, "{}", r.name);
            for b in r.offset..r.offset + r.size() {
                assert!(seen.insert(b, r.name).is_none(), "{} overlaps", r.name);
            }
            let width_mask = if r.width == 64 { u64::MAX } else { 0xffff_ffff };
            for m in [r.reset, r.wmask, r.w1c, r.wo] {
                assert_eq!(m & !width_mask, 0, "{}", r.name);
            }
            assert_eq!(
                r.wo & !r.wmask,
                0,
                "{}: write-only bits are writable",
                r.name
            );
        }
        let at = |o: u64| FIXED.iter().find(|r| r.offset == o).map(|r| r.name);
        for (o, n) in [
            (GCMD, "GCMD"),
            (FSTS, "FSTS"),
            (IQA, "IQA"),
            (IRTA, "IRTA"),
            (PEUADDR, "PEUADDR"),
        ] {
            assert_eq!(at(o), Some(n));
        }
    }
}
