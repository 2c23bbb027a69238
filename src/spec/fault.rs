//! Fault reasons (vtd-hardware.md §1.13): the architectural codes (`VTD_FR_*`) with their names,
//! and which of them fault processing disable suppresses. The legacy-mode walk raises
//! 0x01-0x0E; the interrupt-remapping (0x2x), scalable-mode and first-stage codes exist so that
//! records and counters can name any code.

/// An architectural fault reason code (`VTDFaultReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FaultReason {
    RootEntryP = 0x01,
    ContextEntryP = 0x02,
    ContextEntryInv = 0x03,
    AddrBeyondMgaw = 0x04,
    Write = 0x05,
    Read = 0x06,
    PagingEntryInv = 0x07,
    RootTableInv = 0x08,
    ContextTableInv = 0x09,
    RootEntryRsvd = 0x0A,
    ContextEntryRsvd = 0x0B,
    PagingEntryRsvd = 0x0C,
    ContextEntryTt = 0x0D,
    InterruptAddr = 0x0E,
    IrReqRsvd = 0x20,
    IrIndexOver = 0x21,
    IrEntryP = 0x22,
    IrRootInval = 0x23,
    IrIrteRsvd = 0x24,
    IrReqCompat = 0x25,
    IrSidErr = 0x26,
    SmPreAbs = 0x47,
    PasidDirAccessErr = 0x50,
    PasidDirEntryP = 0x51,
    PasidTableAccessErr = 0x58,
    PasidEntryP = 0x59,
    PasidTableEntryInv = 0x5B,
    FsPagingEntryInv = 0x70,
    FsPagingEntryP = 0x71,
    FsPagingEntryRsvd = 0x72,
    PasidEntryFsptptrInv = 0x73,
    FsNonCanonical = 0x80,
    FsPagingEntryUs = 0x81,
    SmWrite = 0x85,
    SmInterruptAddr = 0x87,
    FsBitUpdateFailed = 0x91,
}

impl FaultReason {
    /// Every reason, in code order.
    pub const ALL: [FaultReason; 36] = {
        use FaultReason::*;
        [
            RootEntryP,
            ContextEntryP,
            ContextEntryInv,
            AddrBeyondMgaw,
            Write,
            Read,
            PagingEntryInv,
            RootTableInv,
            ContextTableInv,
            RootEntryRsvd,
            ContextEntryRsvd,
            PagingEntryRsvd,
            ContextEntryTt,
            InterruptAddr,
            IrReqRsvd,
            IrIndexOver,
            IrEntryP,
            IrRootInval,
            IrIrteRsvd,
            IrReqCompat,
            IrSidErr,
            SmPreAbs,
            PasidDirAccessErr,
            PasidDirEntryP,
            PasidTableAccessErr,
            PasidEntryP,
            PasidTableEntryInv,
            FsPagingEntryInv,
            FsPagingEntryP,
            FsPagingEntryRsvd,
            PasidEntryFsptptrInv,
            FsNonCanonical,
            FsPagingEntryUs,
            SmWrite,
            SmInterruptAddr,
            FsBitUpdateFailed,
        ]
    };

    /// The code (FRCD.FR).
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason with this code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The spec's name (`VTD_FR_<name>`).
    pub const fn name(self) -> &'static str {
        use FaultReason::*;
        match self {
            RootEntryP => "ROOT_ENTRY_P",
            ContextEntryP => "CONTEXT_ENTRY_P",
            ContextEntryInv => "CONTEXT_ENTRY_INV",
            AddrBeyondMgaw => "ADDR_BEYOND_MGAW",
            Write => "WRITE",
            Read => "READ",
            PagingEntryInv => "PAGING_ENTRY_INV",
            RootTableInv => "ROOT_TABLE_INV",
            ContextTableInv => "CONTEXT_TABLE_INV",
            RootEntryRsvd => "ROOT_ENTRY_RSVD",
            ContextEntryRsvd => "CONTEXT_ENTRY_RSVD",
            PagingEntryRsvd => "PAGING_ENTRY_RSVD",
            ContextEntryTt => "CONTEXT_ENTRY_TT",
            InterruptAddr => "INTERRUPT_ADDR",
            IrReqRsvd => "IR_REQ_RSVD",
            IrIndexOver => "IR_INDEX_OVER",
            IrEntryP => "IR_ENTRY_P",
            IrRootInval => "IR_ROOT_INVAL",
            IrIrteRsvd => "IR_IRTE_RSVD",
            IrReqCompat => "IR_REQ_COMPAT",
            IrSidErr => "IR_SID_ERR",
            SmPreAbs => "SM_PRE_ABS",
            PasidDirAccessErr => "PASID_DIR_ACCESS_ERR",
            PasidDirEntryP => "PASID_DIR_ENTRY_P",
            PasidTableAccessErr => "PASID_TABLE_ACCESS_ERR",
            PasidEntryP => "PASID_ENTRY_P",
            PasidTableEntryInv => "PASID_TABLE_ENTRY_INV",
            FsPagingEntryInv => "FS_PAGING_ENTRY_INV",
            FsPagingEntryP => "FS_PAGING_ENTRY_P",
            FsPagingEntryRsvd => "FS_PAGING_ENTRY_RSVD",
            PasidEntryFsptptrInv => "PASID_ENTRY_FSPTPTR_INV",
            FsNonCanonical => "FS_NON_CANONICAL",
            FsPagingEntryUs => "FS_PAGING_ENTRY_US",
            SmWrite => "SM_WRITE",
            SmInterruptAddr => "SM_INTERRUPT_ADDR",
            FsBitUpdateFailed => "FS_BIT_UPDATE_FAILED",
        }
    }

    /// True for the reasons that fault processing disable suppresses (§1.13 "qualified").
    pub const fn qualified(self) -> bool {
        use FaultReason::*;
        matches!(
            self,
            ContextEntryP
                | ContextEntryInv
                | AddrBeyondMgaw
                | Write
                | Read
                | PagingEntryInv
                | PagingEntryRsvd
                | ContextEntryTt
                | InterruptAddr
                | PasidDirEntryP
                | PasidEntryP
                | PasidTableEntryInv
                | FsPagingEntryInv
                | FsPagingEntryP
                | FsPagingEntryRsvd
                | PasidEntryFsptptrInv
                | FsNonCanonical
                | FsPagingEntryUs
                | SmWrite
                | SmInterruptAddr
                | FsBitUpdateFailed
                | SmPreAbs
        )
    }

    /// True for the interrupt-remapping reasons (0x20-0x26): their fault record holds the
    /// interrupt index (FRCD bits 63:48) instead of a page address.
    pub const fn interrupt_remapping(self) -> bool {
        (self as u8) >= 0x20 && (self as u8) <= 0x26
    }

    /// True for the interrupt-remapping reasons the IRTE's FPD suppresses (0x22, 0x24, 0x26:
    /// the ones found after the entry was read; §1.13).
    pub const fn irte_qualified(self) -> bool {
        use FaultReason::*;
        matches!(self, IrEntryP | IrIrteRsvd | IrSidErr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_remapping_reasons_and_irte_fpd() {
        let ir: Vec<u8> = FaultReason::ALL
            .iter()
            .filter(|r| r.interrupt_remapping())
            .map(|r| r.code())
            .collect();
        assert_eq!(ir, [0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26]);
        let q: Vec<u8> = FaultReason::ALL
            .iter()
            .filter(|r| r.irte_qualified())
            .map(|r| r.code())
            .collect();
        assert_eq!(q, [0x22, 0x24, 0x26]);
    }

    #[test]
    fn codes_and_names_from_the_spec() {
        // vtd-hardware.md §1.13 (and §1.10 for the IR codes).
        for (code, name) in [
            (0x01, "ROOT_ENTRY_P"),
            (0x02, "CONTEXT_ENTRY_P"),
            (0x03, "CONTEXT_ENTRY_INV"),
            (0x04, "ADDR_BEYOND_MGAW"),
            (0x05, "WRITE"),
            (0x06, "READ"),
            (0x07, "PAGING_ENTRY_INV"),
            (0x08, "ROOT_TABLE_INV"),
            (0x09, "CONTEXT_TABLE_INV"),
            (0x0A, "ROOT_ENTRY_RSVD"),
            (0x0B, "CONTEXT_ENTRY_RSVD"),
            (0x0C, "PAGING_ENTRY_RSVD"),
            (0x0D, "CONTEXT_ENTRY_TT"),
            (0x0E, "INTERRUPT_ADDR"),
            (0x20, "IR_REQ_RSVD"),
            (0x21, "IR_INDEX_OVER"),
            (0x26, "IR_SID_ERR"),
            (0x5B, "PASID_TABLE_ENTRY_INV"),
        ] {
            let r = FaultReason::from_code(code).expect("a spec code");
            assert_eq!((r.code(), r.name()), (code, name));
        }
        assert_eq!(FaultReason::from_code(0x00), None);
        assert_eq!(FaultReason::from_code(0x0F), None);
        assert_eq!(FaultReason::from_code(0xFF), None);
        // Strictly ascending: every code once.
        assert!(FaultReason::ALL
            .windows(2)
            .all(|w| w[0].code() < w[1].code()));
    }
}
