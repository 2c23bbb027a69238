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
    /// Fault record index.
    pub const FRI_SHIFT: u32 = 8;
    pub const FRI_MASK: u32 = 0xff << FRI_SHIFT;
}

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
}
