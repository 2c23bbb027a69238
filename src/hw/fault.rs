//! Fault reasons and fault recording of the remapping hardware (vtd-hardware.md §1.13).
//!
//! * [`FaultReason`]: the architectural codes with their names. The legacy-mode walk raises
//!   0x01-0x0E; the others exist so that records and counters can name any code.
//! * [`FaultRecorder`]: `n` fault recording registers (FRCD) used as a ring, with the
//!   architecture's (and QEMU's) rules: a set PFO drops every new fault; a fault whose SID
//!   already has a pending record is dropped (compression); a fault that finds the next register
//!   still pending sets PFO and is dropped. Fault processing disable (FPD) suppresses the
//!   "qualified" reasons only; for interrupt-remapping faults the flag is the IRTE's FPD, which
//!   suppresses 0x22, 0x24 and 0x26 only. Every fault, recorded or not, is counted by reason.

use std::collections::BTreeMap;

use crate::spec::FaultReason;

/// One fault as the hardware reports it: what a fault recording register holds, plus the full
/// request address (the register keeps only the page address, [`FaultRecord::fault_address`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    pub reason: FaultReason,
    /// Requester id (FRCD.SID).
    pub sid: u16,
    /// The request's input address.
    pub iova: u64,
    /// True for a write request (FRCD.T clear), false for a read. Interrupt requests are
    /// writes.
    pub write: bool,
    /// The interrupt index of an interrupt-remapping fault (0x20-0x26), when one was
    /// computed; `None` for DMA faults. `iova` is then the interrupt request's address.
    pub index: Option<u16>,
}

impl FaultRecord {
    /// FRCD.FI: the faulting page address (bits 63:12); for an interrupt-remapping fault the
    /// interrupt index in bits 63:48 (0 when none was computed) and bits 47:12 clear.
    pub const fn fault_address(&self) -> u64 {
        if self.reason.interrupt_remapping() {
            match self.index {
                Some(i) => (i as u64) << 48,
                None => 0,
            }
        } else {
            self.iova & !0xfff
        }
    }
}

/// What happened to a reported fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Recorded,
    /// FPD set and the reason is qualified.
    SuppressedFpd,
    /// A pending record has the same SID.
    Compressed,
    /// PFO was set, or the next register was still pending (which sets PFO).
    Overflow,
}

/// Counters of the recorder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Every fault reported, by reason code (recorded or not).
    pub by_reason: BTreeMap<u8, u64>,
    pub total: u64,
    pub recorded: u64,
    pub suppressed_fpd: u64,
    pub compressed: u64,
    pub overflow: u64,
}

/// The fault recording registers (a ring of `n`, FRCD[0..n]) and FSTS.PFO.
#[derive(Clone, Debug)]
pub struct FaultRecorder {
    /// Pending records (F set), with the sequence number they were written in.
    regs: Vec<Option<(u64, FaultRecord)>>,
    /// FSTS.FRI: the next register to write.
    next: usize,
    /// FSTS.PFO.
    pfo: bool,
    /// FSTS.FRI as software reads it: the register the first pending fault went to (latched
    /// when PPF goes from clear to set).
    fri: usize,
    /// Registers with F set.
    npending: usize,
    /// What each register last recorded (its content stays readable after F is cleared).
    last: Vec<Option<FaultRecord>>,
    seq: u64,
    counts: FaultCounts,
}

/// Most fault recording registers CAP.NFR can describe.
pub const MAX_FAULT_RECORDS: usize = 256;

impl FaultRecorder {
    /// `n` registers, 1..=256 (CAP.NFR + 1).
    pub fn new(n: usize) -> crate::Result<Self> {
        if n == 0 || n > MAX_FAULT_RECORDS {
            return Err(crate::Error::invalid(
                "fault_records",
                format!("{n}: the number of fault recording registers must be 1..=256"),
            ));
        }
        Ok(FaultRecorder {
            regs: vec![None; n],
            next: 0,
            pfo: false,
            fri: 0,
            npending: 0,
            last: vec![None; n],
            seq: 0,
            counts: FaultCounts::default(),
        })
    }

    /// Number of registers.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Always false: there is at least one register.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// FSTS.PFO.
    pub fn overflow(&self) -> bool {
        self.pfo
    }

    /// FSTS.PPF: some register is pending.
    pub fn pending(&self) -> bool {
        self.npending > 0
    }

    /// The register the next fault is written to.
    pub fn next_index(&self) -> usize {
        self.next
    }

    /// FSTS.FRI: the register the first pending fault was written to.
    pub fn fri(&self) -> usize {
        self.fri
    }

    /// The pending record in register `i` (F set), if any.
    pub fn record(&self, i: usize) -> Option<FaultRecord> {
        self.regs.get(i).copied().flatten().map(|(_, r)| r)
    }

    /// What register `i` last recorded, pending or not.
    pub fn content(&self, i: usize) -> Option<FaultRecord> {
        self.last.get(i).copied().flatten()
    }

    /// Software wrote 1 to register `i`'s F bit.
    pub fn clear(&mut self, i: usize) {
        if let Some(slot) = self.regs.get_mut(i) {
            if slot.take().is_some() {
                self.npending -= 1;
            }
        }
    }

    /// Software wrote 1 to FSTS.PFO.
    pub fn clear_overflow(&mut self) {
        self.pfo = false;
    }

    /// Translation turned off: the next fault goes to register 0 again.
    pub fn reset_index(&mut self) {
        self.next = 0;
    }

    pub fn counts(&self) -> &FaultCounts {
        &self.counts
    }

    /// Report a fault; `fpd` is the fault processing disable that applies (the context
    /// entry's for a DMA fault, the IRTE's for an interrupt-remapping fault).
    pub fn report(&mut self, rec: FaultRecord, fpd: bool) -> Outcome {
        let c = &mut self.counts;
        *c.by_reason.entry(rec.reason.code()).or_insert(0) += 1;
        c.total += 1;
        let outcome = if fpd && (rec.reason.qualified() || rec.reason.irte_qualified()) {
            Outcome::SuppressedFpd
        } else if self.pfo {
            Outcome::Overflow
        } else if self.regs.iter().flatten().any(|(_, r)| r.sid == rec.sid) {
            Outcome::Compressed
        } else if self.regs.get(self.next).is_some_and(Option::is_some) {
            self.pfo = true;
            Outcome::Overflow
        } else {
            if let Some(slot) = self.regs.get_mut(self.next) {
                *slot = Some((self.seq, rec));
            }
            if let Some(slot) = self.last.get_mut(self.next) {
                *slot = Some(rec);
            }
            if self.npending == 0 {
                self.fri = self.next;
            }
            self.npending += 1;
            self.seq += 1;
            self.next = (self.next + 1) % self.regs.len();
            Outcome::Recorded
        };
        match outcome {
            Outcome::Recorded => self.counts.recorded += 1,
            Outcome::SuppressedFpd => self.counts.suppressed_fpd += 1,
            Outcome::Compressed => self.counts.compressed += 1,
            Outcome::Overflow => self.counts.overflow += 1,
        }
        outcome
    }

    /// Software reads every pending record (oldest first), clears their F bits and PFO.
    /// FRI stays where it is, as in hardware.
    pub fn drain(&mut self) -> Vec<FaultRecord> {
        let mut v: Vec<(u64, FaultRecord)> =
            self.regs.iter_mut().filter_map(Option::take).collect();
        v.sort_by_key(|(s, _)| *s);
        self.pfo = false;
        self.npending = 0;
        v.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(reason: FaultReason, sid: u16) -> FaultRecord {
        FaultRecord {
            reason,
            sid,
            iova: 0x1234_5678,
            write: false,
            index: None,
        }
    }

    #[test]
    fn qualified_set_follows_the_spec() {
        let q: Vec<u8> = FaultReason::ALL
            .iter()
            .filter(|r| r.qualified())
            .map(|r| r.code())
            .collect();
        assert_eq!(
            q,
            [
                0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0xC, 0xD, 0xE, 0x47, 0x51, 0x59, 0x5B, 0x70, 0x71,
                0x72, 0x73, 0x80, 0x81, 0x85, 0x87, 0x91
            ]
        );
    }

    #[test]
    fn ring_compression_overflow_and_drain() {
        let mut f = FaultRecorder::new(2).unwrap();
        assert_eq!(
            f.report(rec(FaultReason::Read, 1), false),
            Outcome::Recorded
        );
        // Same SID pending: compressed.
        assert_eq!(
            f.report(rec(FaultReason::Write, 1), false),
            Outcome::Compressed
        );
        assert_eq!(
            f.report(rec(FaultReason::Read, 2), false),
            Outcome::Recorded
        );
        // Ring full: the next register is pending, PFO set.
        assert_eq!(
            f.report(rec(FaultReason::Read, 3), false),
            Outcome::Overflow
        );
        assert!(f.overflow());
        // PFO set drops even a fault of a new SID.
        assert_eq!(
            f.report(rec(FaultReason::Read, 4), false),
            Outcome::Overflow
        );
        let d = f.drain();
        assert_eq!(d.iter().map(|r| r.sid).collect::<Vec<_>>(), [1, 2]);
        assert!(!f.overflow() && !f.pending());
        // FRI wrapped to 0; recording resumes there.
        assert_eq!(f.next_index(), 0);
        assert_eq!(
            f.report(rec(FaultReason::Read, 5), false),
            Outcome::Recorded
        );
        assert_eq!(f.counts().total, 6);
        assert_eq!(f.counts().by_reason.get(&6), Some(&5));
    }

    #[test]
    fn fpd_suppresses_qualified_only() {
        let mut f = FaultRecorder::new(8).unwrap();
        assert_eq!(
            f.report(rec(FaultReason::Read, 1), true),
            Outcome::SuppressedFpd
        );
        assert_eq!(
            f.report(rec(FaultReason::ContextEntryRsvd, 1), true),
            Outcome::Recorded
        );
        assert_eq!(f.counts().suppressed_fpd, 1);
        // The IRTE's FPD: 0x22, 0x24, 0x26 suppressed; 0x21, 0x23 recorded.
        for (reason, sid, out) in [
            (FaultReason::IrEntryP, 10, Outcome::SuppressedFpd),
            (FaultReason::IrIrteRsvd, 11, Outcome::SuppressedFpd),
            (FaultReason::IrSidErr, 12, Outcome::SuppressedFpd),
            (FaultReason::IrIndexOver, 13, Outcome::Recorded),
            (FaultReason::IrRootInval, 14, Outcome::Recorded),
        ] {
            assert_eq!(f.report(rec(reason, sid), true), out, "{reason:?}");
        }
        // An interrupt fault's FI is the index in bits 63:48.
        let r = FaultRecord {
            index: Some(0x1234),
            ..rec(FaultReason::IrEntryP, 1)
        };
        assert_eq!(r.fault_address(), 0x1234 << 48);
        assert_eq!(rec(FaultReason::IrReqRsvd, 1).fault_address(), 0);
        assert!(FaultRecorder::new(0).is_err());
        assert!(FaultRecorder::new(257).is_err());
    }
}
