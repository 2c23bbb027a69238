//! The unit's configuration as the hardware uses it: CAP and ECAP decoded once, through
//! [`crate::spec::cap`], into the values the context lookup and the walk check.

use crate::spec::cap::sllps;
use crate::spec::{aw_to_levels, Cap, Ecap, PteReservedMasks, SuperpageSupport};

/// The default CAP: [`Cap::DEFAULT`] (QEMU's for aw-bits=48; vtd-hardware.md §1.3) with
/// NFR = 7, eight fault recording registers (decisions.md).
pub const DEFAULT_CAP: u64 = Cap::DEFAULT.with_nfr(7).bits();
/// The default ECAP ([`Ecap::DEFAULT`]).
pub const DEFAULT_ECAP: u64 = Ecap::DEFAULT.bits();

/// The unit's capabilities as the walk uses them, decoded once from CAP and ECAP.
#[derive(Clone, Debug)]
pub struct UnitConfig {
    /// CAP as reported (NFR set from the number of fault recording registers).
    pub cap: u64,
    pub ecap: u64,
    /// Supported AW values: bit `aw` set for AW 1, 2, 3 (SAGAW bits 1..=3; bits 0 and 4 ignored).
    pub sagaw: u32,
    /// MGAW + 1: the widest input address, in bits.
    pub aw_bits: u32,
    /// Host address width used for the reserved-bit checks (min(MGAW + 1, 52)).
    pub haw: u32,
    pub masks: PteReservedMasks,
    pub pt: bool,
    pub dt: bool,
    pub psi: bool,
    /// CAP.MAMV.
    pub mamv: u32,
    /// Mask of the DID bits CAP.ND supports (upper context DID bits are ignored).
    pub did_mask: u16,
}

impl UnitConfig {
    pub fn new(cap: u64, ecap: u64, fault_records: usize) -> crate::Result<Self> {
        if fault_records == 0 || fault_records > 256 {
            return Err(crate::Error::invalid(
                "fault_records",
                format!("{fault_records}: must be 1..=256 (CAP.NFR + 1)"),
            ));
        }
        let (cap, ecap) = (Cap(cap), Ecap(ecap));
        let aw_bits = cap.aw_bits();
        if aw_bits < 21 {
            return Err(crate::Error::invalid(
                "cap",
                format!(
                    "MGAW field {} gives a {aw_bits}-bit width; at least 21 bits needed",
                    aw_bits - 1
                ),
            ));
        }
        let haw = aw_bits.min(52);
        let sp = SuperpageSupport {
            sp2m: cap.sllps() & sllps::SP_2M != 0,
            sp1g: cap.sllps() & sllps::SP_1G != 0,
        };
        let cap = cap.with_nfr(fault_records as u64 - 1);
        Ok(UnitConfig {
            cap: cap.bits(),
            ecap: ecap.bits(),
            sagaw: (cap.sagaw() as u32) & 0b1110,
            aw_bits,
            haw,
            masks: PteReservedMasks::new(haw, sp, ecap.sc()),
            pt: ecap.pt(),
            dt: ecap.dt(),
            psi: cap.psi(),
            mamv: cap.mamv() as u32,
            did_mask: cap.did_mask(),
        })
    }

    /// Page-table depths supported (from SAGAW): a subset of [3, 4, 5].
    pub fn levels_supported(&self) -> Vec<u32> {
        (1..=3u32)
            .filter(|aw| self.sagaw & (1 << aw) != 0)
            .map(aw_to_levels)
            .collect()
    }
}
