//! Root entry -> context entry for a source-id, with steps 1-2 of the order of checks (see
//! [`super::remapper`]): what the context cache holds, or the fault and the FPD that applies.

use super::config::UnitConfig;
use super::iotlb::IotlbEntry;
use super::walk::{WalkJob, WalkOut};
use crate::mem::Memory;
use crate::spec::{
    aw_to_levels, ContextEntry, FaultReason, RootEntry, TranslationType, CONTEXT_ENTRY_SIZE,
    ROOT_ENTRY_SIZE,
};

/// A context entry the hardware accepted (what the context cache holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Domain id (masked to CAP.ND's width).
    pub did: u16,
    /// Page-table levels (3, 4 or 5).
    pub levels: u8,
    pub tt: TranslationType,
    /// Second-level table root.
    pub slptptr: u64,
    /// Fault processing disable.
    pub fpd: bool,
}

impl Context {
    /// The second-level walk a request for `iova` (a write or not) makes under this context.
    #[inline(always)]
    pub fn walk_job(&self, iova: u64, write: bool) -> WalkJob {
        WalkJob {
            root: self.slptptr,
            iova,
            levels: self.levels,
            write,
        }
    }

    /// The IOTLB entry for the leaf that walk `w` (no fault) reached for `iova`.
    #[inline(always)]
    pub fn iotlb_entry(&self, iova: u64, w: &WalkOut) -> IotlbEntry {
        IotlbEntry::of_walk(self.did, iova, w)
    }
}

/// A context fetch that faulted: the reason and the FPD that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxFault {
    pub reason: FaultReason,
    pub fpd: bool,
}

/// Root entry -> context entry for `sid`, with every check of step 1-2 above.
pub fn fetch_context<M: Memory + ?Sized>(
    mem: &M,
    cfg: &UnitConfig,
    rtaddr: Option<u64>,
    sid: u16,
) -> Result<Context, CtxFault> {
    let nofpd = |reason| CtxFault { reason, fpd: false };
    let rta = rtaddr.ok_or(nofpd(FaultReason::RootTableInv))?;
    let bus = (sid >> 8) as u64;
    let devfn = (sid & 0xff) as u64;
    let ra = rta.wrapping_add(bus * ROOT_ENTRY_SIZE);
    let (Some(lo), Some(hi)) = (mem.load_u64(ra), mem.load_u64(ra.wrapping_add(8))) else {
        return Err(nofpd(FaultReason::RootTableInv));
    };
    let root = RootEntry { lo, hi };
    if !root.present() {
        return Err(nofpd(FaultReason::RootEntryP));
    }
    if root.reserved(cfg.haw) {
        return Err(nofpd(FaultReason::RootEntryRsvd));
    }
    let ca = root.ctp().wrapping_add(devfn * CONTEXT_ENTRY_SIZE);
    let (Some(lo), Some(hi)) = (mem.load_u64(ca), mem.load_u64(ca.wrapping_add(8))) else {
        return Err(nofpd(FaultReason::ContextTableInv));
    };
    let ce = ContextEntry { lo, hi };
    let fpd = ce.fpd();
    let fault = |reason| CtxFault { reason, fpd };
    if !ce.present() {
        return Err(fault(FaultReason::ContextEntryP));
    }
    if ce.reserved(cfg.haw) {
        return Err(fault(FaultReason::ContextEntryRsvd));
    }
    let aw = ce.aw();
    if cfg.sagaw & (1 << aw) == 0 {
        return Err(fault(FaultReason::ContextEntryInv));
    }
    let tt = ce.tt();
    let tt_ok = match tt {
        TranslationType::MultiLevel => true,
        TranslationType::MultiLevelDevIotlb => cfg.dt,
        TranslationType::PassThrough => cfg.pt,
        TranslationType::Reserved => false,
    };
    if !tt_ok {
        return Err(fault(FaultReason::ContextEntryInv));
    }
    Ok(Context {
        did: ce.did() & cfg.did_mask,
        levels: aw_to_levels(aw) as u8,
        tt,
        slptptr: ce.slptptr(),
        fpd,
    })
}
