//! The invalidation queue (vtd-hardware.md §1.12, VT-d §6.5.2): descriptors software places
//! in a ring in memory and hands to the unit by moving the tail (IQT).
//!
//! * **Enable.** GCMD.QIE latches IQA: the base (bits 63:12 within the host address width)
//!   and the size, 2^(QS+8) 128-bit descriptors, or 2^(QS+7) 256-bit ones when IQA.DW is set
//!   (DW needs ECAP.SMTS; with it clear DW is reserved, and a queue latched with it reports
//!   IQE as soon as it would run). A tail already past the head at enable runs at once (QEMU
//!   tolerates that for a tail that software set before enabling; the architecture expects
//!   IQT = IQH = 0, and running the descriptors is what the unit would do with them).
//! * **Processing** happens when IQT's low half is written (and at enable), synchronously and
//!   in order, from IQH to IQT with wrap-around, at most one lap of the ring: it always ends.
//!   IQH advances past each descriptor completed.
//! * **Errors (FSTS.IQE).** The tail beyond the ring, bit 4 of the tail set in a 256-bit
//!   queue, a descriptor whose memory cannot be read, an unknown type (0, 10 and above, or
//!   bits 11:9 set), a scalable-mode type 6-9 (this unit has no scalable mode), reserved bits
//!   set (in a 256-bit queue bits 255:128 of types 1-5 too), a reserved granularity, an IOTLB
//!   AM above CAP.MAMV, a device-TLB descriptor without ECAP.DT, an interrupt-entry-cache
//!   descriptor without ECAP.IR, a wait descriptor with PD without ECAP.PDS, and a wait
//!   status write that memory refuses (no memory at the address). IQH stays at the offending
//!   descriptor, nothing after it runs, and IQT writes do nothing until software clears IQE
//!   (write 1); the next IQT write then resumes from IQH. IQE raises a fault event through
//!   FECTL under the rules of §1.13 (none if PPF, PFO or IQE was already set).
//! * **ITE / ICE** are never set: no device-TLB in the model can time out or answer out of
//!   order (each device-TLB invalidation completes when the descriptor is processed).
//! * **Descriptors.** Context-cache and IOTLB descriptors act on the caches the registers
//!   reach (a domain-selective context-cache invalidation is domain-selective, where QEMU
//!   widens it to global; without CAP.PSI a page-selective IOTLB one is served for the whole
//!   domain). DR/DW and IH change nothing: the model has no write buffers, and the IOTLB holds
//!   leaf entries only. A device-TLB descriptor is kept as a [`DeviceTlbInvalidation`] for
//!   the embedding program. An interrupt-entry-cache descriptor invalidates `Remapper.iec`.
//!   A wait descriptor writes its status data (SW, 32 bits at the 4-byte aligned address),
//!   then with IF sets ICS.IWC and sends the completion event through IECTL/IEDATA/IEADDR/
//!   IEUADDR as FECTL does for faults (no new event while IWC is still set; IECTL.IP when
//!   masked; IP clears when software clears IWC). FN (fence) changes nothing: every
//!   descriptor has completed before the next one starts.
//! * **Disable.** Clearing QIE is honoured only when the queue is empty (IQH = IQT); a queue
//!   stopped by IQE stays enabled (QEMU also requires the last descriptor to have been a wait
//!   descriptor; the architecture does not). Disabling resets IQH to 0.
//! * **Register-based invalidation while QIE is set** is not performed: software must not
//!   issue it then; the command bit clears with actual granularity 0 (QEMU ignores it and
//!   leaves the command bit set).

use super::iec::IecScope;
use super::remapper::Remapper;
use crate::mem::MemoryBytes;
use crate::spec::qi::{device_tlb_range, DescError, Descriptor, Granularity};
use crate::spec::regs::iq::{self, OFFSET_MASK};
use crate::spec::regs::{ectl, fsts, gcmd, ics};
use crate::spec::Ecap;

/// Device-TLB invalidations kept (not yet taken) before the oldest are dropped.
const EVENTS_MAX: usize = 1 << 16;

/// The queue as latched at enable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// Base address (4 KiB aligned).
    pub base: u64,
    /// Descriptors in the ring.
    pub entries: u64,
    /// 256-bit descriptors (IQA.DW).
    pub wide: bool,
}

impl QueueConfig {
    /// Bytes per descriptor.
    pub const fn stride(self) -> u64 {
        if self.wide {
            32
        } else {
            16
        }
    }
    /// IQH/IQT value -> descriptor index shift.
    const fn shift(self) -> u32 {
        iq::shift(self.wide)
    }
}

/// A device-TLB invalidation the unit was asked to send to a device (descriptor type 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTlbInvalidation {
    /// The device (its requester id).
    pub sid: u16,
    /// First byte covered (aligned to `size`).
    pub address: u64,
    /// Bytes covered (4 KiB, or the ATS-encoded size; 2^64 for everything).
    pub size: u128,
    /// The device's invalidation queue depth as written (MIP; 0 means 32).
    pub qdep: u8,
    /// The physical function's source-id (for a virtual function).
    pub pfsid: u16,
}

/// The queue's state beside the registers.
#[derive(Clone, Debug, Default)]
pub struct QueueState {
    pub(super) cfg: QueueConfig,
    pub(super) device_tlb: std::collections::VecDeque<DeviceTlbInvalidation>,
    /// Descriptors completed, by type (index 1-5).
    pub(super) done: [u64; 6],
}

/// Why processing stopped.
enum Stop {
    Error,
}

impl Remapper {
    /// The queue as latched at the last enable.
    pub fn queue_config(&self) -> QueueConfig {
        self.qi.cfg
    }

    /// Descriptors completed since reset, by type number (index 1 context-cache .. 5 wait).
    pub fn queue_descriptors_done(&self) -> [u64; 6] {
        self.qi.done
    }

    /// Device-TLB invalidations requested since the last call, oldest first.
    pub fn take_device_tlb_invalidations(&mut self) -> Vec<DeviceTlbInvalidation> {
        std::mem::take(&mut self.qi.device_tlb).into()
    }

    /// IQH = IQT.
    pub(super) fn queue_empty(&self) -> bool {
        let r = &self.regs;
        r.val(r.i_iqh) & OFFSET_MASK == r.val(r.i_iqt) & OFFSET_MASK
    }

    /// QIE set: latch IQA.
    pub(super) fn latch_queue(&mut self) {
        let iqa = self.regs.val(self.regs.i_iqa);
        let wide = iqa & iq::DW != 0;
        let qs = (iqa & iq::QS_MASK) as u32;
        let haw = if self.cfg.haw >= 64 {
            u64::MAX
        } else {
            (1u64 << self.cfg.haw) - 1
        };
        self.qi.cfg = QueueConfig {
            base: iqa & iq::ADDR_MASK & haw,
            entries: iq::entries(qs, wide),
            wide,
        };
    }

    /// Run the descriptors from IQH to IQT (QIE set, IQE clear).
    pub(super) fn process_queue<M: MemoryBytes + ?Sized>(&mut self, mem: &mut M) {
        if self.regs.gsts() & gcmd::QIE == 0 {
            return;
        }
        let i_fsts = self.regs.i_fsts;
        if self.regs.val(i_fsts) as u32 & fsts::IQE != 0 {
            return;
        }
        let q = self.qi.cfg;
        let tail_reg = self.regs.val(self.regs.i_iqt);
        let smts = Ecap(self.cfg.ecap).smts();
        if q.wide && (!smts || tail_reg & iq::TAIL_BIT4 != 0) {
            self.queue_error();
            return;
        }
        let tail = (tail_reg & OFFSET_MASK) >> q.shift();
        if tail >= q.entries {
            self.queue_error();
            return;
        }
        let mut head = ((self.regs.val(self.regs.i_iqh) & OFFSET_MASK) >> q.shift()) % q.entries;
        let mut steps = 0;
        while head != tail && steps < q.entries {
            let at = q.base.wrapping_add(head * q.stride());
            if let Err(Stop::Error) = self.run_descriptor(mem, at, q.wide) {
                self.queue_error();
                return;
            }
            head = (head + 1) % q.entries;
            let h = self.regs.i_iqh;
            self.regs.set(h, head << q.shift());
            steps += 1;
        }
    }

    fn run_descriptor<M: MemoryBytes + ?Sized>(
        &mut self,
        mem: &mut M,
        at: u64,
        wide: bool,
    ) -> Result<(), Stop> {
        let word = |k: u64| mem.load_u64(at.wrapping_add(8 * k)).ok_or(Stop::Error);
        let (lo, hi) = (word(0)?, word(1)?);
        let d = if wide {
            Descriptor::decode_wide([lo, hi, word(2)?, word(3)?])
        } else {
            Descriptor::decode(lo, hi)
        };
        let d = d.map_err(|_: DescError| Stop::Error)?;
        let ecap = Ecap(self.cfg.ecap);
        match d {
            Descriptor::ContextCache {
                granularity,
                did,
                sid,
                fm,
            } => match granularity {
                Granularity::Global => self.invalidate_context_global(),
                Granularity::Domain => self.invalidate_context_domain(did),
                Granularity::Selective => self.ctx_cache.invalidate_device(sid, fm as u32),
            },
            Descriptor::Iotlb {
                granularity,
                did,
                addr,
                am,
                ..
            } => match granularity {
                Granularity::Global => self.invalidate_iotlb_global(),
                Granularity::Domain => self.invalidate_iotlb_domain(did),
                Granularity::Selective => self
                    .invalidate_iotlb_pages(did, addr, am as u32)
                    .map_err(|_| Stop::Error)?,
            },
            Descriptor::DeviceTlb {
                sid,
                addr,
                size,
                qdep,
                pfsid,
            } => {
                if !ecap.dt() {
                    return Err(Stop::Error);
                }
                let (address, size) = device_tlb_range(addr, size);
                if self.qi.device_tlb.len() >= EVENTS_MAX {
                    self.qi.device_tlb.pop_front();
                }
                self.qi.device_tlb.push_back(DeviceTlbInvalidation {
                    sid,
                    address,
                    size,
                    qdep,
                    pfsid,
                });
            }
            Descriptor::Iec { index, im } => {
                if !ecap.ir() {
                    return Err(Stop::Error);
                }
                self.iec.invalidate(match index {
                    None => IecScope::Global,
                    Some(index) => IecScope::Index { index, im },
                });
            }
            Descriptor::Wait {
                interrupt,
                status_write,
                drain,
                status_data,
                status_addr,
                ..
            } => {
                if drain && !ecap.pds() {
                    return Err(Stop::Error);
                }
                if status_write {
                    mem.write_bytes(status_addr, &status_data.to_le_bytes())
                        .map_err(|_| Stop::Error)?;
                }
                if interrupt {
                    self.completion_event();
                }
            }
            Descriptor::Scalable { .. } => return Err(Stop::Error),
        }
        if let Some(n) = self.qi.done.get_mut(d.ty() as usize) {
            *n += 1;
        }
        Ok(())
    }

    /// FSTS.IQE and its fault event (suppressed while PPF, PFO or IQE was set).
    fn queue_error(&mut self) {
        let before = self.fault_status_set();
        let i = self.regs.i_fsts;
        let v = self.regs.val(i) | fsts::IQE as u64;
        self.regs.set(i, v);
        self.fault_event(before);
    }

    /// A wait descriptor with IF completed: ICS.IWC and the invalidation completion event.
    fn completion_event(&mut self) {
        let i = self.regs.i_ics;
        let s = self.regs.val(i);
        if s as u32 & ics::IWC != 0 {
            return;
        }
        self.regs.set(i, s | ics::IWC as u64);
        let c = self.regs.i_iectl;
        let v = self.regs.val(c) as u32;
        if v & ectl::IP != 0 {
            return;
        }
        if v & ectl::IM != 0 {
            self.regs.set(c, (v | ectl::IP) as u64);
        } else {
            self.send_event(c);
        }
    }

    /// IECTL.IP clears once software has cleared ICS.IWC.
    pub(super) fn update_completion_ip(&mut self) {
        if self.regs.val(self.regs.i_ics) as u32 & ics::IWC == 0 {
            let c = self.regs.i_iectl;
            let v = self.regs.val(c) & !(ectl::IP as u64);
            self.regs.set(c, v);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Driven through registers and memory only; expected values from VT-d §6.5.2 and
    //! vtd-hardware.md §1.2, §1.12-§1.13, register offsets and bits written out here.
    use super::*;
    use crate::addr::Maddr;
    use crate::hw::{Request, DEFAULT_CAP, DEFAULT_ECAP};
    use crate::mem::PhysMem;

    const ROOT: u64 = 0x1000;
    const CTX: u64 = 0x2000;
    const L4: u64 = 0x3000;
    const L1: u64 = 0x6000;
    const QUEUE: u64 = 0x80_0000;
    const STATUS: u64 = 0x90_0000;
    const SID: u16 = 0x0008;
    const DID: u64 = 42;
    const GCMD: u64 = 0x18;
    const FSTS: u64 = 0x34;
    const FECTL: u64 = 0x38;
    const IQH: u64 = 0x80;
    const IQT: u64 = 0x88;
    const IQA: u64 = 0x90;
    const ICS: u64 = 0x9C;
    const IECTL: u64 = 0xA0;
    const TE: u64 = 1 << 31;
    const QIE: u64 = 1 << 26;
    const IQE: u64 = 1 << 4;

    fn unit_with(ecap: u64) -> Remapper {
        Remapper::new(DEFAULT_CAP, ecap, None, 64, 8, true).unwrap()
    }
    fn w(m: &mut PhysMem, a: u64, v: u64) {
        m.write_u64(Maddr(a), v).unwrap();
    }
    /// IOVA page i (i < 16) -> 0x10_0000 + i pages through a 4-level table, domain 42.
    fn memory() -> PhysMem {
        let mut m = PhysMem::new(&[(0, 1 << 24)]).unwrap();
        w(&mut m, ROOT, CTX | 1);
        w(&mut m, CTX + 16 * (SID as u64 & 0xff), L4 | 1);
        w(&mut m, CTX + 16 * (SID as u64 & 0xff) + 8, 2 | DID << 8);
        w(&mut m, L4, 0x4000 | 3);
        w(&mut m, 0x4000, 0x5000 | 3);
        w(&mut m, 0x5000, L1 | 3);
        for i in 0..16u64 {
            w(&mut m, L1 + 8 * i, (0x10_0000 + (i << 12)) | 3);
        }
        m
    }
    fn wr(r: &mut Remapper, m: &mut PhysMem, off: u64, size: u32, v: u64) {
        r.mmio_write(m, off, size, v).unwrap();
    }
    fn rd(r: &Remapper, off: u64) -> u64 {
        r.mmio_read(off, if off % 8 == 0 { 8 } else { 4 }).unwrap()
    }
    /// Root table, TE, and a 128-bit queue of 256 entries (QS 0) at QUEUE, enabled.
    fn up(ecap: u64) -> (Remapper, PhysMem) {
        let mut r = unit_with(ecap);
        let mut m = memory();
        wr(&mut r, &mut m, 0x20, 8, ROOT);
        wr(&mut r, &mut m, GCMD, 4, 1 << 30);
        wr(&mut r, &mut m, GCMD, 4, TE);
        wr(&mut r, &mut m, IQA, 8, QUEUE);
        wr(&mut r, &mut m, GCMD, 4, TE | QIE);
        assert_eq!(r.mmio_read(0x1C, 4).unwrap() & QIE, QIE);
        (r, m)
    }
    fn up_default() -> (Remapper, PhysMem) {
        up(DEFAULT_ECAP)
    }
    /// Put descriptors at ring index `at` onwards (128-bit) and move the tail past them.
    fn submit(r: &mut Remapper, m: &mut PhysMem, at: u64, descs: &[(u64, u64)]) -> u64 {
        let n = r.queue_config().entries;
        let mut i = at;
        for &(lo, hi) in descs {
            w(m, QUEUE + 16 * i, lo);
            w(m, QUEUE + 16 * i + 8, hi);
            i = (i + 1) % n;
        }
        wr(r, m, IQT, 8, i << 4);
        i
    }
    fn hpa(r: &mut Remapper, m: &PhysMem, iova: u64) -> u64 {
        let req = Request {
            sid: SID,
            iova,
            write: false,
            translation_request: false,
        };
        r.translate(m, &req).unwrap().hpa
    }
    fn head(r: &Remapper) -> u64 {
        rd(r, IQH) >> 4
    }
    fn enc(d: Descriptor) -> (u64, u64) {
        d.encode().unwrap()
    }

    #[test]
    fn enable_latches_iqa_and_sizes() {
        let mut r = unit_with(DEFAULT_ECAP);
        let mut m = memory();
        wr(&mut r, &mut m, IQA, 8, QUEUE | 3);
        wr(&mut r, &mut m, GCMD, 4, QIE);
        assert_eq!(
            r.queue_config(),
            QueueConfig {
                base: QUEUE,
                entries: 1 << 11,
                wide: false
            }
        );
        // IQA written after enable changes nothing latched.
        wr(&mut r, &mut m, IQA, 8, 0x10_0000);
        assert_eq!(r.queue_config().base, QUEUE);
        // 256-bit descriptors with ECAP.SMTS: 2^(QS+7).
        let mut r = unit_with(Ecap(DEFAULT_ECAP).with_smts(true).bits());
        wr(&mut r, &mut m, IQA, 8, QUEUE | 1 << 11 | 2);
        wr(&mut r, &mut m, GCMD, 4, QIE);
        assert_eq!(r.queue_config().entries, 1 << 9);
        assert!(r.queue_config().wide);
    }

    /// Each IOTLB granularity: a stale translation stays visible until a descriptor that
    /// covers it runs.
    #[test]
    fn iotlb_descriptors_drop_what_they_cover() {
        use Granularity::*;
        let cases: [(Granularity, u64, u64, u8, bool); 5] = [
            (Global, 0, 0, 0, true),
            (Domain, DID, 0, 0, true),
            (Domain, DID + 1, 0, 0, false),
            (Selective, DID, 0x5000, 0, true),
            // AM 1 at 0x2000 covers 0x2000-0x3fff, not 0x5000.
            (Selective, DID, 0x2000, 1, false),
        ];
        for (g, did, addr, am, gone) in cases {
            let (mut r, mut m) = up_default();
            assert_eq!(hpa(&mut r, &m, 0x5000), 0x10_5000);
            w(&mut m, L1 + 8 * 5, 0x77_7000 | 3);
            assert_eq!(hpa(&mut r, &m, 0x5000), 0x10_5000, "cached");
            let d = Descriptor::Iotlb {
                granularity: g,
                did: did as u16,
                addr,
                am,
                ih: false,
                dr: true,
                dw: true,
            };
            submit(&mut r, &mut m, 0, &[enc(d)]);
            assert_eq!(rd(&r, FSTS) & IQE, 0);
            assert_eq!(head(&r), 1);
            let want = if gone { 0x77_7000 } else { 0x10_5000 };
            assert_eq!(
                hpa(&mut r, &m, 0x5000),
                want,
                "{g:?} did {did} {addr:#x}/{am}"
            );
        }
    }

    #[test]
    fn context_cache_descriptors() {
        use Granularity::*;
        // (granularity, did, sid, fm, dropped)
        let cases = [
            (Global, 0, 0, 0, true),
            (Domain, DID as u16, 0, 0, true),
            (Domain, 7, 0, 0, false),
            (Selective, 0, SID, 0, true),
            (Selective, 0, SID | 3, 0, false),
            // FM 2 masks SID bits 2:1: bit 0 of 00:01.3 still differs from 00:01.0's.
            (Selective, 0, SID | 3, 2, false),
            // FM 3 masks bits 2:0: 00:01.3 covers 00:01.0.
            (Selective, 0, SID | 3, 3, true),
        ];
        for (g, did, sid, fm, dropped) in cases {
            let (mut r, mut m) = up_default();
            hpa(&mut r, &m, 0);
            assert_eq!(r.context_cache().len(), 1);
            let d = Descriptor::ContextCache {
                granularity: g,
                did,
                sid,
                fm,
            };
            submit(&mut r, &mut m, 0, &[enc(d)]);
            assert_eq!(rd(&r, FSTS) & IQE, 0);
            assert_eq!(
                r.context_cache().len(),
                !dropped as usize,
                "{g:?} {sid:#x}/{fm}"
            );
        }
    }

    #[test]
    fn iec_descriptors() {
        let (mut r, mut m) = up_default();
        for i in [0x10u16, 0x11, 0x13, 0x20] {
            r.iec.insert(i, (1, 0));
        }
        // Index 0x12 with IM 1 covers 0x12-0x13.
        submit(
            &mut r,
            &mut m,
            0,
            &[enc(Descriptor::Iec {
                index: Some(0x12),
                im: 1,
            })],
        );
        let left: Vec<bool> = [0x10, 0x11, 0x13, 0x20]
            .iter()
            .map(|&i| r.interrupt_entry_cache().get(i).is_some())
            .collect();
        assert_eq!(left, [true, true, false, true]);
        submit(
            &mut r,
            &mut m,
            1,
            &[enc(Descriptor::Iec { index: None, im: 0 })],
        );
        assert!(r.interrupt_entry_cache().is_empty());
    }

    #[test]
    fn device_tlb_descriptors_are_kept_as_events() {
        let (mut r, mut m) = up_default();
        let d = |addr, size| {
            enc(Descriptor::DeviceTlb {
                sid: 0x0310,
                addr,
                size,
                qdep: 8,
                pfsid: 0x0300,
            })
        };
        submit(
            &mut r,
            &mut m,
            0,
            &[d(0x12_3000, false), d(0x12_3000, true)],
        );
        let ev = r.take_device_tlb_invalidations();
        assert_eq!(
            ev,
            vec![
                DeviceTlbInvalidation {
                    sid: 0x0310,
                    address: 0x12_3000,
                    size: 4096,
                    qdep: 8,
                    pfsid: 0x0300
                },
                // 0x123 has two trailing ones: 8 KiB << 2 = 32 KiB at 0x12_0000.
                DeviceTlbInvalidation {
                    sid: 0x0310,
                    address: 0x12_0000,
                    size: 32768,
                    qdep: 8,
                    pfsid: 0x0300
                },
            ]
        );
        assert!(r.take_device_tlb_invalidations().is_empty());
        // Without ECAP.DT the descriptor is invalid.
        let (mut r, mut m) = up(Ecap(DEFAULT_ECAP).with_dt(false).bits());
        submit(&mut r, &mut m, 0, &[d(0, false)]);
        assert_eq!(rd(&r, FSTS) & IQE, IQE);
        assert_eq!(head(&r), 0);
    }

    #[test]
    fn wait_status_write_and_completion_event() {
        let (mut r, mut m) = up_default();
        wr(&mut r, &mut m, 0xA4, 4, 0x55);
        wr(&mut r, &mut m, 0xA8, 4, 0xFEE0_2000);
        let wait = |data, irq| {
            enc(Descriptor::Wait {
                interrupt: irq,
                status_write: true,
                fence: true,
                drain: false,
                status_data: data,
                status_addr: STATUS + 4,
            })
        };
        w(&mut m, STATUS, u64::MAX);
        submit(&mut r, &mut m, 0, &[wait(0xABCD_0123, false)]);
        // 32 bits written at the address, the neighbours untouched.
        assert_eq!(m.load_u64(STATUS), Some(0xABCD_0123_FFFF_FFFF));
        assert_eq!(r.mmio_read(ICS, 4).unwrap(), 0);
        assert!(!r.has_interrupts());
        // IF with IECTL.IM set (reset value): IWC, IP, no message.
        submit(&mut r, &mut m, 1, &[wait(1, true)]);
        assert_eq!(r.mmio_read(ICS, 4).unwrap(), 1);
        assert_eq!(r.mmio_read(IECTL, 4).unwrap(), 0xC000_0000);
        assert!(!r.has_interrupts());
        // Unmasking sends it and clears IP.
        wr(&mut r, &mut m, IECTL, 4, 0);
        let msgs = r.take_interrupts();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].address, msgs[0].data), (0xFEE0_2000, 0x55));
        assert_eq!(r.mmio_read(IECTL, 4).unwrap(), 0);
        // IWC still set: a new completion sends nothing.
        submit(&mut r, &mut m, 2, &[wait(2, true)]);
        assert!(!r.has_interrupts());
        // Cleared (W1C): the next one is sent at once.
        wr(&mut r, &mut m, ICS, 4, 1);
        assert_eq!(r.mmio_read(ICS, 4).unwrap(), 0);
        submit(&mut r, &mut m, 3, &[wait(3, true)]);
        assert_eq!(r.take_interrupts().len(), 1);
        // Masked then cleared before unmasking: IP goes with IWC, nothing is sent.
        wr(&mut r, &mut m, ICS, 4, 1);
        wr(&mut r, &mut m, IECTL, 4, 1 << 31);
        submit(&mut r, &mut m, 4, &[wait(4, true)]);
        assert_eq!(r.mmio_read(IECTL, 4).unwrap(), 0xC000_0000);
        wr(&mut r, &mut m, ICS, 4, 1);
        assert_eq!(r.mmio_read(IECTL, 4).unwrap(), 0x8000_0000);
        wr(&mut r, &mut m, IECTL, 4, 0);
        assert!(!r.has_interrupts());
        assert_eq!(m.load_u64(STATUS), Some(0x0000_0004_FFFF_FFFF));
    }

    /// Every IQE cause: IQH stays at the bad descriptor, nothing after it runs, IQT writes do
    /// nothing until IQE is cleared, then processing resumes from IQH.
    #[test]
    fn every_queue_error_stops_at_the_descriptor() {
        let good = enc(Descriptor::Iotlb {
            granularity: Granularity::Global,
            did: 0,
            addr: 0,
            am: 0,
            ih: false,
            dr: false,
            dw: false,
        });
        let bad: [(&str, u64, u64); 12] = [
            ("type 0", 0, 0),
            ("type 10", 10, 0),
            ("type bits 11:9", 0x200 | 2 | 1 << 4, 0),
            ("type 6", 6, 0),
            ("type 7", 7, 0),
            ("type 8", 8, 0),
            ("type 9", 9, 0),
            ("reserved lo", good.0 | 1 << 8, 0),
            ("reserved hi", good.0, 1 << 7),
            ("granularity 0", 2, 0),
            // Page-selective with AM 19 > CAP.MAMV 18.
            ("am above mamv", 2 | 3 << 4 | DID << 16, 19),
            // PD without ECAP.PDS.
            ("wait drain", 5 | 1 << 6 | 1 << 7, 0),
        ];
        for (what, lo, hi) in bad {
            let (mut r, mut m) = up_default();
            wr(&mut r, &mut m, FECTL, 4, 0);
            hpa(&mut r, &m, 0x5000);
            w(&mut m, L1 + 8 * 5, 0x77_7000 | 3);
            // good, bad, good: the first runs, then the unit stops at index 1.
            submit(&mut r, &mut m, 0, &[(0x4 | 1 << 4, 0), (lo, hi), good]);
            assert_eq!(rd(&r, FSTS) & IQE, IQE, "{what}");
            assert_eq!(head(&r), 1, "{what}");
            assert_eq!(
                hpa(&mut r, &m, 0x5000),
                0x10_5000,
                "{what}: nothing after it ran"
            );
            assert_eq!(r.take_interrupts().len(), 1, "{what}: one fault event");
            // IQT rewritten while IQE is set: nothing.
            wr(&mut r, &mut m, IQT, 8, 3 << 4);
            assert_eq!(head(&r), 1, "{what}");
            // Software fixes the descriptor and clears IQE; the next IQT write resumes.
            w(&mut m, QUEUE + 16, good.0);
            w(&mut m, QUEUE + 24, good.1);
            wr(&mut r, &mut m, FSTS, 4, IQE);
            assert_eq!(rd(&r, FSTS) & IQE, 0);
            assert_eq!(head(&r), 1, "{what}: clearing IQE alone runs nothing");
            wr(&mut r, &mut m, IQT, 8, 3 << 4);
            assert_eq!(head(&r), 3, "{what}");
            assert_eq!(hpa(&mut r, &m, 0x5000), 0x77_7000, "{what}");
        }
    }

    #[test]
    fn tail_errors_and_256_bit_queues() {
        // Tail beyond a 256-entry queue (IQT offset 0x1000 = index 256).
        let (mut r, mut m) = up_default();
        wr(&mut r, &mut m, IQT, 8, 256 << 4);
        assert_eq!(rd(&r, FSTS) & IQE, IQE);
        assert_eq!(head(&r), 0);
        // DW=1 without ECAP.SMTS is reserved: the queue reports IQE when it would run.
        let mut r = unit_with(DEFAULT_ECAP);
        wr(&mut r, &mut m, IQA, 8, QUEUE | 1 << 11);
        wr(&mut r, &mut m, GCMD, 4, QIE);
        wr(&mut r, &mut m, IQT, 8, 1 << 5);
        assert_eq!(rd(&r, FSTS) & IQE, IQE);
        // With SMTS: 32-byte descriptors, IQH/IQT in units of 32 bytes, bit 4 must be 0.
        let ecap = Ecap(DEFAULT_ECAP).with_smts(true).bits();
        let mut r = unit_with(ecap);
        wr(&mut r, &mut m, IQA, 8, QUEUE | 1 << 11);
        wr(&mut r, &mut m, GCMD, 4, QIE);
        let iec = enc(Descriptor::Iec { index: None, im: 0 });
        for k in 0..3u64 {
            w(&mut m, QUEUE + 32 * k, iec.0);
            w(&mut m, QUEUE + 32 * k + 8, 0);
            w(&mut m, QUEUE + 32 * k + 16, 0);
            w(&mut m, QUEUE + 32 * k + 24, 0);
        }
        wr(&mut r, &mut m, IQT, 8, 1 << 4);
        assert_eq!(rd(&r, FSTS) & IQE, IQE, "tail bit 4 in a 256-bit queue");
        wr(&mut r, &mut m, FSTS, 4, IQE);
        wr(&mut r, &mut m, IQT, 8, 2 << 5);
        assert_eq!((rd(&r, FSTS) & IQE, rd(&r, IQH)), (0, 2 << 5));
        // Bits 255:128 of a legacy descriptor are reserved.
        w(&mut m, QUEUE + 32 * 2 + 24, 1);
        wr(&mut r, &mut m, IQT, 8, 3 << 5);
        assert_eq!((rd(&r, FSTS) & IQE, rd(&r, IQH)), (IQE, 2 << 5));
    }

    #[test]
    fn unreadable_descriptor_or_status_is_a_queue_error() {
        // A queue whose base has no memory behind it.
        let mut r = unit_with(DEFAULT_ECAP);
        let mut m = memory();
        wr(&mut r, &mut m, IQA, 8, 0x4000_0000);
        wr(&mut r, &mut m, GCMD, 4, QIE);
        wr(&mut r, &mut m, IQT, 8, 1 << 4);
        assert_eq!((rd(&r, FSTS) & IQE, head(&r)), (IQE, 0));
        // A status address with no memory.
        let (mut r, mut m) = up_default();
        let wait = Descriptor::Wait {
            interrupt: true,
            status_write: true,
            fence: false,
            drain: false,
            status_data: 1,
            status_addr: 0x4000_0000,
        };
        submit(&mut r, &mut m, 0, &[enc(wait)]);
        assert_eq!((rd(&r, FSTS) & IQE, head(&r)), (IQE, 0));
        assert_eq!(
            r.mmio_read(ICS, 4).unwrap(),
            0,
            "no completion for a failed wait"
        );
    }

    #[test]
    fn queue_error_fault_event_follows_suppression_rules() {
        let (mut r, mut m) = up_default();
        wr(&mut r, &mut m, 0x3C, 4, 0x41);
        wr(&mut r, &mut m, 0x40, 4, 0xFEE0_0000);
        // FECTL.IM set (reset): IP, no message; unmasking sends it.
        submit(&mut r, &mut m, 0, &[(0, 0)]);
        assert_eq!(r.mmio_read(FECTL, 4).unwrap(), 0xC000_0000);
        assert!(!r.has_interrupts());
        wr(&mut r, &mut m, FECTL, 4, 0);
        assert_eq!(r.take_interrupts()[0].data, 0x41);
        // Clearing IQE and failing again: a new event.
        wr(&mut r, &mut m, FSTS, 4, IQE);
        wr(&mut r, &mut m, IQT, 8, 1 << 4);
        assert_eq!(r.take_interrupts().len(), 1);
        // A DMA fault pending (PPF) suppresses the IQE event.
        wr(&mut r, &mut m, FSTS, 4, IQE);
        let req = Request {
            sid: 0x0100,
            iova: 0,
            write: false,
            translation_request: false,
        };
        assert!(r.translate(&m, &req).is_err());
        assert_eq!(r.take_interrupts().len(), 1, "the DMA fault's event");
        wr(&mut r, &mut m, IQT, 8, 1 << 4);
        assert_eq!(rd(&r, FSTS) & IQE, IQE);
        assert!(!r.has_interrupts(), "suppressed while PPF is set");
    }

    #[test]
    fn wrap_around_and_bounded_laps() {
        let (mut r, mut m) = up_default();
        let iec = enc(Descriptor::Iec { index: None, im: 0 });
        // Move the head to 254 with a burst, then submit 4 that wrap to index 2.
        let burst = vec![iec; 254];
        submit(&mut r, &mut m, 0, &burst);
        assert_eq!(head(&r), 254);
        let before = r.queue_descriptors_done()[4];
        let end = submit(&mut r, &mut m, 254, &[iec; 4]);
        assert_eq!(end, 2);
        assert_eq!(head(&r), 2);
        assert_eq!(r.queue_descriptors_done()[4], before + 4);
        // Tail = head: nothing to do.
        wr(&mut r, &mut m, IQT, 8, 2 << 4);
        assert_eq!(r.queue_descriptors_done()[4], before + 4);
    }

    #[test]
    fn enable_with_pending_tail_runs_it_and_disable_needs_an_empty_queue() {
        let mut r = unit_with(DEFAULT_ECAP);
        let mut m = memory();
        let iec = enc(Descriptor::Iec { index: None, im: 0 });
        for k in 0..2 {
            w(&mut m, QUEUE + 16 * k, iec.0);
            w(&mut m, QUEUE + 16 * k + 8, iec.1);
        }
        wr(&mut r, &mut m, IQA, 8, QUEUE);
        wr(&mut r, &mut m, IQT, 8, 2 << 4);
        assert_eq!(head(&r), 0, "QIE clear: nothing runs");
        wr(&mut r, &mut m, GCMD, 4, QIE);
        assert_eq!(head(&r), 2);
        // Stop the queue with an error: disabling is refused while IQH != IQT.
        w(&mut m, QUEUE + 32, 0);
        w(&mut m, QUEUE + 40, 0);
        wr(&mut r, &mut m, IQT, 8, 3 << 4);
        assert_eq!(head(&r), 2);
        wr(&mut r, &mut m, GCMD, 4, 0);
        assert_eq!(r.mmio_read(0x1C, 4).unwrap() & QIE, QIE);
        // Software rewinds the tail to the head: the queue is empty, disable works, IQH = 0.
        wr(&mut r, &mut m, FSTS, 4, IQE);
        wr(&mut r, &mut m, IQT, 8, 2 << 4);
        wr(&mut r, &mut m, GCMD, 4, 0);
        assert_eq!(r.mmio_read(0x1C, 4).unwrap() & QIE, 0);
        assert_eq!(rd(&r, IQH), 0);
    }

    #[test]
    fn register_invalidation_is_not_performed_while_the_queue_is_on() {
        let (mut r, mut m) = up_default();
        hpa(&mut r, &m, 0x5000);
        w(&mut m, L1 + 8 * 5, 0x77_7000 | 3);
        wr(&mut r, &mut m, 0xF8, 8, 1 << 63 | 1 << 60);
        // IVT cleared, IAIG 0: not done.
        assert_eq!(rd(&r, 0xF8) >> 57 & 3, 0);
        assert_eq!(rd(&r, 0xF8) >> 63, 0);
        assert_eq!(hpa(&mut r, &m, 0x5000), 0x10_5000);
        wr(&mut r, &mut m, 0x28, 8, 1 << 63 | 1 << 61);
        assert_eq!(rd(&r, 0x28) >> 59 & 3, 0);
        assert_eq!(r.context_cache().len(), 1);
    }

    /// Events nobody takes are bounded: the newest EVENTS_MAX are kept.
    #[test]
    fn untaken_device_tlb_events_keep_the_newest() {
        let mut r = unit_with(DEFAULT_ECAP);
        let mut m = memory();
        wr(&mut r, &mut m, IQA, 8, QUEUE | 7); // 2^15 descriptors
        wr(&mut r, &mut m, GCMD, 4, QIE);
        let n = 1u64 << 15;
        for lap in 1..=3u16 {
            for i in 0..n {
                let (lo, hi) = enc(Descriptor::DeviceTlb {
                    sid: lap,
                    addr: i << 12,
                    size: false,
                    qdep: 0,
                    pfsid: 0,
                });
                w(&mut m, QUEUE + 16 * i, lo);
                w(&mut m, QUEUE + 16 * i + 8, hi);
            }
            wr(&mut r, &mut m, IQT, 8, (n - 1) << 4);
            wr(&mut r, &mut m, IQT, 8, 0);
        }
        let ev = r.take_device_tlb_invalidations();
        assert_eq!(ev.len(), EVENTS_MAX);
        assert_eq!((ev[0].sid, ev[0].address), (2, 0));
        assert_eq!(
            (ev[EVENTS_MAX - 1].sid, ev[EVENTS_MAX - 1].address),
            (3, (n - 1) << 12)
        );
    }

    #[test]
    fn iqt_high_half_alone_does_not_process() {
        let (mut r, mut m) = up_default();
        let iec = enc(Descriptor::Iec { index: None, im: 0 });
        w(&mut m, QUEUE, iec.0);
        w(&mut m, QUEUE + 8, iec.1);
        wr(&mut r, &mut m, IQT + 4, 4, 0);
        assert_eq!(head(&r), 0);
        wr(&mut r, &mut m, IQT, 4, 1 << 4);
        assert_eq!(head(&r), 1);
    }
}
