//! Entry formats of legacy-mode VT-d: root entries, context entries and second-level PTEs, with
//! spec-named accessors and the reserved-bit masks the hardware checks. Shared by the driver side
//! (which writes only well-formed entries) and the hardware walk (which trusts nothing).
//! Room here, when they land: PASID directory/table entries (§1.6) and first-stage PTEs (§1.8).
//!
//! Bit positions: vtd-hardware.md §1.5 and §1.7; xen-driver.md §4.1, §4.2 and §5.1.

use super::width::{above_width_mask, level_size};

/// Bytes per root or context entry (a table is 256 of them in one 4 KiB page).
pub const ROOT_ENTRY_SIZE: u64 = 16;
pub const CONTEXT_ENTRY_SIZE: u64 = 16;

/// Address field of 4 KiB aligned pointers (bits 63:12).
pub const ADDR_HI_MASK: u64 = !0xfff;

// ---------------------------------------------------------------------------------------------
// Root entry

/// A legacy root entry (indexed by bus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RootEntry {
    pub lo: u64,
    pub hi: u64,
}

impl RootEntry {
    pub const P: u64 = 1;
    /// Reserved bits of `lo` below the pointer.
    pub const LO_RSVD: u64 = 0xffe;

    /// A present root entry pointing at the context table at `ctp`.
    pub const fn new(ctp: u64) -> Self {
        RootEntry {
            lo: (ctp & ADDR_HI_MASK) | Self::P,
            hi: 0,
        }
    }
    #[inline]
    pub const fn present(&self) -> bool {
        self.lo & Self::P != 0
    }
    /// Context-table pointer (CTP, bits 63:12).
    #[inline]
    pub const fn ctp(&self) -> u64 {
        self.lo & ADDR_HI_MASK
    }
    /// True when a reserved bit is set for a host address width of `haw` bits (fault 0x0A).
    #[inline]
    pub const fn reserved(&self, haw: u32) -> bool {
        self.lo & (Self::LO_RSVD | above_width_mask(haw)) != 0 || self.hi != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Context entry

/// Translation type (context entry `lo` bits 3:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TranslationType {
    /// Untranslated requests walk the second-level table.
    MultiLevel = 0,
    /// As MultiLevel, and translation requests (ATS) are allowed.
    MultiLevelDevIotlb = 1,
    /// Untranslated requests pass through 1:1.
    PassThrough = 2,
    /// Reserved (fault 0x03).
    Reserved = 3,
}

impl TranslationType {
    pub const fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => TranslationType::MultiLevel,
            1 => TranslationType::MultiLevelDevIotlb,
            2 => TranslationType::PassThrough,
            _ => TranslationType::Reserved,
        }
    }
}

/// A legacy context entry (indexed by devfn).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContextEntry {
    pub lo: u64,
    pub hi: u64,
}

impl ContextEntry {
    pub const P: u64 = 1;
    pub const FPD: u64 = 1 << 1;
    pub const TT_SHIFT: u32 = 2;
    pub const LO_RSVD: u64 = 0xff0;
    pub const HI_RSVD: u64 = 0xffff_ffff_ff00_0080;
    pub const AW_MASK: u64 = 7;
    pub const DID_SHIFT: u32 = 8;

    /// A present context entry: table root `slptptr`, AW field `aw`, domain `did`, type `tt`.
    pub const fn new(slptptr: u64, aw: u32, did: u16, tt: TranslationType) -> Self {
        ContextEntry {
            lo: (slptptr & ADDR_HI_MASK) | ((tt as u64) << Self::TT_SHIFT) | Self::P,
            hi: ((aw as u64) & Self::AW_MASK) | ((did as u64) << Self::DID_SHIFT),
        }
    }
    #[inline]
    pub const fn present(&self) -> bool {
        self.lo & Self::P != 0
    }
    /// Fault processing disable.
    #[inline]
    pub const fn fpd(&self) -> bool {
        self.lo & Self::FPD != 0
    }
    #[inline]
    pub const fn tt(&self) -> TranslationType {
        TranslationType::from_bits(self.lo >> Self::TT_SHIFT)
    }
    /// Second-level page-table pointer (SLPTPTR / ASR, bits 63:12).
    #[inline]
    pub const fn slptptr(&self) -> u64 {
        self.lo & ADDR_HI_MASK
    }
    /// The AW field (hi bits 2:0).
    #[inline]
    pub const fn aw(&self) -> u32 {
        (self.hi & Self::AW_MASK) as u32
    }
    /// Domain id (hi bits 23:8).
    #[inline]
    pub const fn did(&self) -> u16 {
        (self.hi >> Self::DID_SHIFT) as u16
    }
    /// True when a reserved bit is set for a host address width of `haw` bits (fault 0x0B).
    #[inline]
    pub const fn reserved(&self, haw: u32) -> bool {
        self.lo & (Self::LO_RSVD | above_width_mask(haw)) != 0 || self.hi & Self::HI_RSVD != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Second-level PTE

/// A second-level page-table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Pte(pub u64);

impl Pte {
    pub const R: u64 = 1;
    pub const W: u64 = 1 << 1;
    pub const X: u64 = 1 << 2;
    /// Page size: a superpage leaf at L2 (2 MiB) or L3 (1 GiB).
    pub const PS: u64 = 1 << 7;
    /// Snoop behaviour.
    pub const SNP: u64 = 1 << 11;
    /// Transient mapping.
    pub const TM: u64 = 1 << 62;
    /// The address field up to the architectural 52 bits (`dma_pte_addr`).
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// An intermediate entry pointing at the table `next`: always R+W, only leaves carry the
    /// mapping's permissions.
    #[inline]
    pub const fn table(next: u64) -> Self {
        Pte((next & Self::ADDR_MASK) | Self::R | Self::W)
    }
    /// A leaf for `maddr`; `superpage` sets PS (for an L2 or L3 leaf).
    #[inline]
    pub const fn leaf(maddr: u64, read: bool, write: bool, snoop: bool, superpage: bool) -> Self {
        let mut v = maddr & Self::ADDR_MASK;
        if read {
            v |= Self::R;
        }
        if write {
            v |= Self::W;
        }
        if snoop {
            v |= Self::SNP;
        }
        if superpage {
            v |= Self::PS;
        }
        Pte(v)
    }
    #[inline]
    pub const fn read(self) -> bool {
        self.0 & Self::R != 0
    }
    #[inline]
    pub const fn write(self) -> bool {
        self.0 & Self::W != 0
    }
    #[inline]
    pub const fn superpage(self) -> bool {
        self.0 & Self::PS != 0
    }
    #[inline]
    pub const fn snoop(self) -> bool {
        self.0 & Self::SNP != 0
    }
    /// Present as Xen defines it: R or W set.
    #[inline]
    pub const fn present(self) -> bool {
        self.0 & (Self::R | Self::W) != 0
    }
    /// The address field (`dma_pte_addr`).
    #[inline]
    pub const fn addr(self) -> u64 {
        self.0 & Self::ADDR_MASK
    }
}

/// Superpage sizes a unit supports (CAP.SLLPS bits 34, 35).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SuperpageSupport {
    pub sp2m: bool,
    pub sp1g: bool,
}

/// The reserved-bit masks the hardware checks on second-level PTEs, per level and kind, for a
/// host address width and a set of unit features (vtd-hardware.md §1.7):
/// bit 62 (TM), bits 51:haw, SNP unless snoop control, PS where the level has no superpage,
/// and for superpage leaves the address bits below the page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteReservedMasks {
    /// Index by level (1..=5): mask of an entry without PS (a table pointer, or the L1 leaf).
    non_leaf: [u64; 6],
    /// Index by level: mask of an entry with PS set (a superpage leaf at L2 / L3).
    large: [u64; 6],
}

impl PteReservedMasks {
    pub fn new(haw: u32, sp: SuperpageSupport, snoop_control: bool) -> Self {
        // Bits 51:haw (bits 52-61 and 63 are ignored by the hardware).
        let width = above_width_mask(haw) & 0x000f_ffff_ffff_ffff;
        let base = Pte::TM | width;
        let snp = if snoop_control { 0 } else { Pte::SNP };
        let mut non_leaf = [0u64; 6];
        let mut large = [0u64; 6];
        for level in 1..=5u32 {
            let l = level as usize;
            // Non-leaf entries always have SNP reserved (as QEMU); the L1 leaf only without SC.
            non_leaf[l] = base | if level == 1 { snp } else { Pte::SNP };
            let ps_ok = match level {
                2 => sp.sp2m,
                3 => sp.sp1g,
                _ => false,
            };
            if !ps_ok && level > 1 {
                // PS where no superpage exists is reserved: the entry faults as reserved.
                non_leaf[l] |= Pte::PS;
                large[l] = non_leaf[l];
            } else if level > 1 {
                let low = level_size(level) - 1;
                large[l] = base | snp | (low & ADDR_HI_MASK);
            }
        }
        PteReservedMasks { non_leaf, large }
    }

    /// The mask that applies to `pte` read at `level`.
    #[inline]
    pub fn mask(&self, level: u32, pte: Pte) -> u64 {
        let l = level as usize;
        if pte.superpage() && level > 1 {
            self.large[l]
        } else {
            self.non_leaf[l]
        }
    }

    /// The bits of an entry at `level` (above 1) that keep a walk from simply descending
    /// through it: its reserved bits as a table pointer, and PS (a superpage leaf, or
    /// reserved where no superpage exists). An entry with the access's permission and none
    /// of these is a table pointer that passes every check.
    #[inline(always)]
    pub fn descend_mask(&self, level: u32) -> u64 {
        self.non_leaf
            .get(level as usize)
            .copied()
            .unwrap_or(u64::MAX)
            | Pte::PS
    }

    /// The reserved bits of a level-1 entry (a 4 KiB leaf: PS is ignored there).
    #[inline(always)]
    pub fn leaf_mask(&self) -> u64 {
        self.non_leaf[1]
    }

    /// True when `pte` at `level` has a reserved bit set (fault 0x0C).
    #[inline]
    pub fn reserved(&self, level: u32, pte: Pte) -> bool {
        pte.0 & self.mask(level, pte) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: SuperpageSupport = SuperpageSupport {
        sp2m: true,
        sp1g: true,
    };

    #[test]
    fn masks_match_the_spec_table_aw48() {
        // vtd-hardware.md §1.7, aw = 48, no snoop control.
        let m = PteReservedMasks::new(48, BOTH, false);
        assert_eq!(m.mask(1, Pte(0)), 0x400F000000000800);
        assert_eq!(m.mask(2, Pte(0)), 0x400F000000000800);
        assert_eq!(m.mask(3, Pte(0)), 0x400F000000000800);
        assert_eq!(m.mask(4, Pte(0)), 0x400F000000000880);
        assert_eq!(m.mask(2, Pte(Pte::PS)), 0x400F0000001FF800);
        assert_eq!(m.mask(3, Pte(Pte::PS)), 0x400F00003FFFF800);
    }

    #[test]
    fn masks_match_the_spec_table_aw39() {
        let m = PteReservedMasks::new(39, BOTH, false);
        assert_eq!(m.mask(1, Pte(0)), 0x400FFF8000000800);
    }

    #[test]
    fn snoop_control_frees_snp_on_leaves_only() {
        let m = PteReservedMasks::new(48, BOTH, true);
        assert_eq!(m.mask(1, Pte(0)) & Pte::SNP, 0);
        assert_eq!(m.mask(2, Pte(Pte::PS)) & Pte::SNP, 0);
        assert_ne!(m.mask(2, Pte(0)) & Pte::SNP, 0);
    }

    #[test]
    fn ps_reserved_without_superpage_support() {
        let m = PteReservedMasks::new(
            48,
            SuperpageSupport {
                sp2m: true,
                sp1g: false,
            },
            false,
        );
        assert!(m.reserved(3, Pte(Pte::PS | Pte::R)));
        assert!(!m.reserved(2, Pte(Pte::PS | Pte::R | 0x20_0000)));
        assert!(m.reserved(2, Pte(Pte::PS | Pte::R | 0x1000)));
        assert!(m.reserved(5, Pte(Pte::PS | Pte::R)));
    }

    #[test]
    fn context_entry_fields() {
        let c = ContextEntry::new(0x1234_5000, 2, 0xabcd, TranslationType::MultiLevelDevIotlb);
        assert!(c.present());
        assert_eq!(c.slptptr(), 0x1234_5000);
        assert_eq!(c.aw(), 2);
        assert_eq!(c.did(), 0xabcd);
        assert_eq!(c.tt(), TranslationType::MultiLevelDevIotlb);
        assert!(!c.reserved(48));
        assert!(ContextEntry {
            lo: c.lo | 0x10,
            hi: c.hi
        }
        .reserved(48));
        assert!(ContextEntry {
            lo: c.lo,
            hi: c.hi | 0x80
        }
        .reserved(48));
        assert!(ContextEntry {
            lo: c.lo | (1 << 50),
            hi: c.hi
        }
        .reserved(48));
    }

    #[test]
    fn root_entry_fields() {
        let r = RootEntry::new(0x7000);
        assert!(r.present() && r.ctp() == 0x7000 && !r.reserved(48));
        assert!(RootEntry {
            lo: r.lo | 2,
            hi: 0
        }
        .reserved(48));
        assert!(RootEntry { lo: r.lo, hi: 1 }.reserved(48));
    }
}
