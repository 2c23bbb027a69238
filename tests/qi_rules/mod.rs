//! The invalidation queue's rules (vtd-hardware.md §1.2, §1.4, §1.12; VT-d §6.5.2) checked
//! after each step of a random sequence of descriptor writes, IQT writes, FSTS.IQE and ICS.IWC
//! clears, QIE toggles, IQA writes, page-table and context-entry changes and translations;
//! shared by the proptest (`tests/prop_qi.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/qi.rs`).
//!
//! [`Model`] is a small reference written from the architecture text, not from the unit's
//! code: which descriptors are valid (types, reserved bits, granularity, what ECAP allows),
//! where the head stops, what a wait descriptor writes and signals, which device-TLB
//! invalidations go out, and which translations a cache may still serve after a change in
//! memory (a set of allowed results per page that a covering invalidation collapses to the
//! value in memory).

use vtdwalk::hw::{Remapper, Request};
use vtdwalk::{Maddr, PhysMem};

/// Memory: `[0, MEM)`.
pub const MEM: u64 = 0x2_0000;
pub const ROOT: u64 = 0x0000;
pub const CTX: u64 = 0x1000;
/// The page tables of the two contexts (4 levels each): A at 0x2000.., B at 0x6000...
pub const TABLES: [u64; 2] = [0x2000, 0x6000];
/// The domain ids of the two contexts; distinct in their low 4 bits, with bits above 8 set
/// so that a unit with fewer DID bits ignores them (CAP.ND).
pub const DIDS: [u16; 2] = [0x0105, 0x0206];
/// Wait descriptors write their status here.
pub const STATUS: u64 = 0xA000;
/// The queue memory: up to 8 pages (QS 0..=3).
pub const QUEUE: u64 = 0x1_0000;
pub const QUEUE_PAGES: u64 = 8;
/// The device translated: 00:01.0.
pub const SID: u16 = 0x0008;
/// IOVA pages 0..PAGES are mapped in both tables.
pub const PAGES: usize = 8;
pub const IEADDR: u64 = 0xFEE0_1000;
pub const IEDATA: u32 = 0x55;
pub const FEADDR: u64 = 0xFEE0_2000;
pub const FEDATA: u32 = 0x41;

pub const GCMD: u64 = 0x18;
pub const FSTS: u64 = 0x34;
pub const FECTL: u64 = 0x38;
pub const IQH: u64 = 0x80;
pub const IQT: u64 = 0x88;
pub const IQA: u64 = 0x90;
pub const ICS: u64 = 0x9C;
pub const IECTL: u64 = 0xA0;
pub const TE: u64 = 1 << 31;
pub const SRTP: u64 = 1 << 30;
pub const QIE: u64 = 1 << 26;
pub const IQE: u64 = 1 << 4;

/// CAP variants: the model's default (ND 6, PSI, MAMV 18, NFR 7), without PSI, and with
/// ND 2 (8-bit DIDs) and MAMV 9.
pub const CAPS: [u64; 3] = [
    0x80D2_078C_222F_0606,
    0x80D2_078C_222F_0606 & !(1 << 39),
    (0x80D2_078C_222F_0606 & !(0x3F << 48) & !7) | 9 << 48 | 2,
];
/// ECAP variants: QI+DT+IR+PT (IRO 0xF); QI+PT only; with PDS; with SMTS (256-bit queues).
pub const ECAPS: [u64; 4] = [
    0xF0_0F4E,
    0xF0_0F42,
    0xF0_0F4E | 1 << 42,
    0xF0_0F4E | 1 << 43,
];

#[derive(Clone, Debug)]
pub enum Op {
    /// Write a descriptor's words at ring slot `slot` (modulo the ring) of the queue memory.
    Put {
        slot: u16,
        words: [u64; 4],
    },
    /// Write descriptors from the slot IQT names and move IQT past them.
    Submit {
        descs: Vec<[u64; 4]>,
    },
    /// An IQT write: 0 a 64-bit write, 1 the low half, 2 the high half alone.
    Tail {
        value: u64,
        how: u8,
    },
    ClearIqe,
    ClearIwc,
    /// GCMD with TE and with or without QIE.
    Qie(bool),
    /// IECTL with IM set (masked) or clear.
    Iectl(bool),
    /// An IQA write.
    Iqa(u64),
    /// A leaf of table `table` changed (None: not present).
    Remap {
        table: usize,
        page: usize,
        frame: Option<u64>,
    },
    /// The context entry of the device switched to the other table and DID.
    Switch,
    Translate {
        page: usize,
    },
}

/// IQA values worth drawing: the queue memory at sizes QS 0..=7 (from QS 5 on the ring runs
/// past the end of memory), with and without DW, a base elsewhere in memory (tables, zero
/// pages, the queue memory at an offset: nothing there is a valid descriptor that writes
/// status outside the status page), and a base with no memory behind it.
pub fn iqa_value(sel: u8, raw: u64) -> u64 {
    let qs = u64::from(sel & 3 | (sel >> 5 & 1) << 2);
    let dw = u64::from(sel & 4 != 0) << 11;
    match sel >> 3 & 3 {
        0 | 1 => QUEUE | dw | qs,
        2 => {
            let page = match raw % (MEM / 4096) {
                0xA => 0xB,
                p => p,
            };
            page << 12 | dw | qs
        }
        _ => raw & 0x7FFF_FFFF_F000 | 1 << 40 | dw | qs,
    }
}

/// A wait descriptor's status address pointed at the status page (three times in four), or at
/// an address with no memory; the reserved bits 1:0 kept. Other types pass unchanged.
pub fn steer(mut w: [u64; 4]) -> [u64; 4] {
    if w[0] & 0xE0F == 5 {
        w[1] = if w[1] >> 62 == 3 {
            w[1] | 1 << 63
        } else {
            STATUS | (w[1] & 0xFFF)
        };
    }
    w
}

/// Well-formed descriptors (VT-d §6.5.2), for seeds and for sequences that mostly run.
pub mod desc {
    pub fn cc_global() -> [u64; 4] {
        [1 | 1 << 4, 0, 0, 0]
    }
    pub fn cc_domain(did: u16) -> [u64; 4] {
        [1 | 2 << 4 | u64::from(did) << 16, 0, 0, 0]
    }
    pub fn cc_device(sid: u16, fm: u8) -> [u64; 4] {
        [
            1 | 3 << 4 | u64::from(sid) << 32 | u64::from(fm & 3) << 48,
            0,
            0,
            0,
        ]
    }
    pub fn iotlb_global() -> [u64; 4] {
        [2 | 1 << 4, 0, 0, 0]
    }
    pub fn iotlb_domain(did: u16) -> [u64; 4] {
        [2 | 2 << 4 | u64::from(did) << 16, 0, 0, 0]
    }
    pub fn iotlb_page(did: u16, addr: u64, am: u8) -> [u64; 4] {
        [
            2 | 3 << 4 | 3 << 6 | u64::from(did) << 16,
            addr & !0xFFF | u64::from(am & 0x3F),
            0,
            0,
        ]
    }
    pub fn device_tlb(sid: u16, addr: u64, size: bool) -> [u64; 4] {
        [
            3 | 4 << 16 | u64::from(sid) << 32,
            addr & !0xFFF | u64::from(size),
            0,
            0,
        ]
    }
    pub fn iec(index: Option<u16>) -> [u64; 4] {
        let lo = match index {
            Some(i) => 4 | 1 << 4 | u64::from(i) << 32,
            None => 4,
        };
        [lo, 0, 0, 0]
    }
    pub fn wait(sw: bool, irq: bool, data: u32, addr: u64) -> [u64; 4] {
        [
            5 | u64::from(irq) << 4 | u64::from(sw) << 5 | u64::from(data) << 32,
            addr & !3,
            0,
            0,
        ]
    }
}

/// A unit set up for the sequence: translation on through the root table at 0, IECTL
/// unmasked towards IEADDR/IEDATA, FECTL unmasked towards FEADDR/FEDATA, and a queue of 2^(QS+8) descriptors at QUEUE (DW when
/// `wide`), enabled.
pub fn setup(cap: u64, ecap: u64, qs: u8, wide: bool) -> (Remapper, PhysMem, Model) {
    let mut mem = PhysMem::new(&[(0, MEM)]).expect("memory");
    let mut model = Model::new(cap, ecap);
    let w = |m: &mut PhysMem, a: u64, v: u64| m.write_u64(Maddr(a), v).expect("in memory");
    w(&mut mem, ROOT, CTX | 1);
    for (t, &base) in TABLES.iter().enumerate() {
        // L4 -> L3 -> L2 -> L1 at consecutive pages; IOVA page i -> frame of `frame0(t, i)`.
        for l in 0..3 {
            w(&mut mem, base + l * 0x1000, (base + (l + 1) * 0x1000) | 3);
        }
        for p in 0..PAGES {
            let f = frame0(t, p);
            w(&mut mem, base + 0x3000 + 8 * p as u64, f | 3);
            model.leaf[t][p] = vec![Some(f)];
        }
    }
    let (lo, hi) = context_entry(0);
    w(&mut mem, CTX + 16 * u64::from(SID & 0xFF), lo);
    w(&mut mem, CTX + 16 * u64::from(SID & 0xFF) + 8, hi);
    let mut r = Remapper::new(cap, ecap, None, 16, 8, true).expect("unit");
    let wr = |r: &mut Remapper, mem: &mut PhysMem, off, size, v| {
        r.mmio_write(mem, off, size, v).expect("register write");
    };
    wr(&mut r, &mut mem, 0x20, 8, ROOT);
    wr(&mut r, &mut mem, GCMD, 4, SRTP);
    wr(&mut r, &mut mem, GCMD, 4, TE);
    wr(&mut r, &mut mem, 0xA4, 4, u64::from(IEDATA));
    wr(&mut r, &mut mem, 0xA8, 4, IEADDR);
    wr(&mut r, &mut mem, IECTL, 4, 0);
    wr(&mut r, &mut mem, 0x3C, 4, u64::from(FEDATA));
    wr(&mut r, &mut mem, 0x40, 4, FEADDR);
    wr(&mut r, &mut mem, FECTL, 4, 0);
    let iqa = QUEUE | u64::from(wide) << 11 | u64::from(qs & 3);
    wr(&mut r, &mut mem, IQA, 8, iqa);
    model.iqa = iqa;
    wr(&mut r, &mut mem, GCMD, 4, TE | QIE);
    model.enable(&mem);
    // A queue latched with DW but no SMTS has already failed (and signalled it).
    r.take_interrupts();
    (r, mem, model)
}

/// The frame page `p` of table `t` maps at first.
pub fn frame0(t: usize, p: usize) -> u64 {
    0x100_0000 * (t as u64 + 1) + 0x1000 * p as u64
}

/// The context entry of context `c`: present, table `TABLES[c]`, AW 48-bit (4 levels),
/// translation type 0, domain `DIDS[c]`.
pub fn context_entry(c: usize) -> (u64, u64) {
    (TABLES[c] | 1, 2 | u64::from(DIDS[c]) << 8)
}

/// The reference: what the architecture says the registers, memory and translations must
/// show after each step.
#[derive(Clone, Debug)]
pub struct Model {
    did_mask: u16,
    psi: bool,
    mamv: u64,
    dt: bool,
    ir: bool,
    pds: bool,
    smts: bool,
    pub iqa: u64,
    qie: bool,
    base: u64,
    entries: u64,
    wide: bool,
    head: u64,
    iqt: u64,
    iqe: bool,
    iwc: bool,
    /// IECTL.IM and IECTL.IP.
    ie_masked: bool,
    ie_pending: bool,
    /// Status writes the unit must have made: (address, data), the latest per address last.
    status: Vec<(u64, u32)>,
    /// Device-TLB invalidations the unit must have asked for, not yet taken.
    dtlb: Vec<(u16, u64, u128, u8, u16)>,
    /// Completion messages the unit must have sent, not yet taken.
    completions: usize,
    /// The context in memory, and which contexts a context cache may still hold.
    ctx: usize,
    ctx_allowed: [bool; 2],
    /// Per table and page: the leaf in memory first, then what an IOTLB may still hold.
    pub leaf: [[Vec<Option<u64>>; PAGES]; 2],
    /// Descriptors completed, by type.
    done: [u64; 6],
    /// The last step ran the queue (QIE set, IQE clear when it started).
    ran: bool,
}

impl Model {
    pub fn new(cap: u64, ecap: u64) -> Self {
        let nd = (cap & 7) as u32;
        let bits = (4 + 2 * nd).min(16);
        Model {
            did_mask: if bits >= 16 {
                u16::MAX
            } else {
                (1u16 << bits) - 1
            },
            psi: cap >> 39 & 1 != 0,
            mamv: cap >> 48 & 0x3F,
            dt: ecap >> 2 & 1 != 0,
            ir: ecap >> 3 & 1 != 0,
            pds: ecap >> 42 & 1 != 0,
            smts: ecap >> 43 & 1 != 0,
            iqa: 0,
            qie: false,
            base: 0,
            entries: 0,
            wide: false,
            head: 0,
            iqt: 0,
            iqe: false,
            iwc: false,
            ie_masked: false,
            ie_pending: false,
            status: Vec::new(),
            dtlb: Vec::new(),
            completions: 0,
            ctx: 0,
            ctx_allowed: [true, false],
            leaf: Default::default(),
            done: [0; 6],
            ran: false,
        }
    }

    fn shift(&self) -> u32 {
        if self.wide {
            5
        } else {
            4
        }
    }

    /// The stride and entries of the queue as IQA stands (latched at the next enable).
    fn iqa_geometry(&self) -> (u64, u64) {
        let qs = self.iqa & 7;
        if self.iqa & 1 << 11 != 0 {
            (32, 1 << (qs + 7))
        } else {
            (16, 1 << (qs + 8))
        }
    }

    /// QIE going from clear to set: latch IQA, then run what the tail already holds.
    fn enable(&mut self, mem: &PhysMem) {
        self.qie = true;
        self.base = self.iqa & !0xFFF;
        self.wide = self.iqa & 1 << 11 != 0;
        self.entries = self.iqa_geometry().1;
        self.run(mem);
    }

    /// The architecture's validity rules for one descriptor, with what the unit must do for
    /// it (VT-d §6.5.2; vtd-hardware.md §1.12 and the unit's choices stated in src/hw/qi.rs:
    /// no scalable mode, PFSID a field).
    fn check(&self, w: [u64; 4]) -> Option<Effect> {
        let (lo, hi) = (w[0], w[1]);
        let ty = (lo & 0xF) | (lo >> 9 & 7) << 4;
        // Reserved bits of lo and hi, type by type.
        let (rlo, rhi) = match ty {
            1 => (0xFFFC_0000_0000_F1C0, u64::MAX),
            2 => (0xFFFF_FFFF_0000_F100, 0xF80),
            3 => (0x000F_0000_FFE0_01F0, 0xFFE),
            4 => (0xFFFF_0000_07FF_F1E0, u64::MAX),
            5 => (0xFFFF_F100 | if self.pds { 0 } else { 0x80 }, 3),
            _ => return None, // 0, 6-9 (scalable mode), 10 and above
        };
        if lo & rlo != 0 || hi & rhi != 0 || (self.wide && (w[2] | w[3]) != 0) {
            return None;
        }
        let g = lo >> 4 & 3;
        let did = (lo >> 16) as u16 & self.did_mask;
        Some(match ty {
            1 => match g {
                0 => return None,
                1 => Effect::Context(None),
                2 => Effect::Context(Some(Scope::Did(did))),
                _ => Effect::Context(Some(Scope::Sid((lo >> 32) as u16, (lo >> 48 & 3) as u8))),
            },
            2 => match g {
                0 => return None,
                1 => Effect::Iotlb(None, None),
                2 => Effect::Iotlb(Some(did), None),
                _ => {
                    let am = hi & 0x3F;
                    if am > self.mamv {
                        return None;
                    }
                    if self.psi {
                        let first = (hi >> 12) & !((1 << am) - 1);
                        Effect::Iotlb(Some(did), Some((first, 1 << am)))
                    } else {
                        Effect::Iotlb(Some(did), None)
                    }
                }
            },
            3 => {
                if !self.dt {
                    return None;
                }
                // ATS size encoding: S clear one page; S set 8 KiB << (trailing ones of
                // ADDR[63:12]), the address aligned down to the size.
                let page = hi & !0xFFF;
                let (addr, size) = if hi & 1 == 0 {
                    (page, 4096u128)
                } else {
                    let ones = (page >> 12).trailing_ones();
                    if ones >= 51 {
                        (0, 1u128 << 64)
                    } else {
                        let size = 8192u128 << ones;
                        (page & !(size as u64 - 1), size)
                    }
                };
                let pfsid = (lo >> 12 & 0xF | (lo >> 52) << 4) as u16;
                Effect::DeviceTlb(
                    (lo >> 32) as u16,
                    addr,
                    size,
                    (lo >> 16 & 0x1F) as u8,
                    pfsid,
                )
            }
            4 => {
                if !self.ir {
                    return None;
                }
                Effect::Nothing
            }
            _ => {
                let sw = lo >> 5 & 1 != 0;
                let addr = hi & !3;
                if sw && addr.checked_add(4).is_none_or(|end| end > MEM) {
                    return None; // the status write has no memory to go to
                }
                Effect::Wait(sw.then_some((addr, (lo >> 32) as u32)), lo >> 4 & 1 != 0)
            }
        })
    }

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::Context(scope) => {
                let hit = |c: usize| match scope {
                    None => true,
                    Some(Scope::Did(d)) => DIDS[c] & self.did_mask == d,
                    Some(Scope::Sid(s, fm)) => {
                        let m = [0u16, 0b100, 0b110, 0b111][fm as usize];
                        s & !m == SID & !m
                    }
                };
                for c in 0..2 {
                    if c != self.ctx && hit(c) {
                        self.ctx_allowed[c] = false;
                    }
                }
            }
            Effect::Iotlb(did, pages) => {
                for (t, &own) in DIDS.iter().enumerate() {
                    if did.is_some_and(|d| d != own & self.did_mask) {
                        continue;
                    }
                    for p in 0..PAGES {
                        let covered = match pages {
                            None => true,
                            Some((first, n)) => (p as u64).wrapping_sub(first) < n,
                        };
                        if covered {
                            self.leaf[t][p].truncate(1);
                        }
                    }
                }
            }
            Effect::DeviceTlb(sid, addr, size, qdep, pfsid) => {
                self.dtlb.push((sid, addr, size, qdep, pfsid))
            }
            Effect::Nothing => {}
            Effect::Wait(sw, irq) => {
                if let Some((a, d)) = sw {
                    self.status.retain(|&(x, _)| x != a);
                    self.status.push((a, d));
                }
                // IF: IWC; the completion event unless IWC was already set; held in IECTL.IP
                // while IECTL.IM is set.
                if irq && !self.iwc {
                    self.iwc = true;
                    if self.ie_masked {
                        self.ie_pending = true;
                    } else {
                        self.completions += 1;
                    }
                }
            }
        }
    }

    /// The unit runs the queue: from the head to the tail, stopping at the first descriptor
    /// that is invalid or cannot be read (IQE), nothing at all while IQE is set or QIE clear.
    fn run(&mut self, mem: &PhysMem) {
        if !self.qie || self.iqe {
            return;
        }
        self.ran = true;
        if self.wide && (!self.smts || self.iqt & 0x10 != 0) {
            self.iqe = true;
            return;
        }
        let tail = self.iqt >> self.shift();
        if tail >= self.entries {
            self.iqe = true;
            return;
        }
        let stride = 1u64 << self.shift();
        while self.head != tail {
            let at = self.base + self.head * stride;
            let n = if self.wide { 4 } else { 2 };
            let mut w = [0u64; 4];
            for (k, word) in w.iter_mut().enumerate().take(n) {
                match mem.load_u64(at + 8 * k as u64) {
                    Some(v) => *word = v,
                    None => {
                        self.iqe = true;
                        return;
                    }
                }
            }
            let Some(e) = self.check(w) else {
                self.iqe = true;
                return;
            };
            let ty = (w[0] & 0xF) as usize;
            self.done[ty] += 1;
            self.apply(e);
            self.head = (self.head + 1) % self.entries;
        }
    }

    /// Run `op` on the unit and on the model, then compare them; the first rule broken,
    /// described.
    pub fn step(&mut self, r: &mut Remapper, mem: &mut PhysMem, op: &Op) -> Result<(), String> {
        // PPF, PFO or IQE already set suppress the fault event of a queue error (§1.13).
        let fsts = r.mmio_read(FSTS, 4).map_err(|e| e.to_string())?;
        let (iqe_before, quiet) = (self.iqe, fsts & 0x13 != 0);
        let wr = |r: &mut Remapper, mem: &mut PhysMem, off, size, v| {
            r.mmio_write(mem, off, size, v)
                .map_err(|e| format!("write {off:#x}: {e}"))
        };
        let put = |mem: &mut PhysMem, at: u64, words: &[u64]| {
            for (k, &v) in words.iter().enumerate() {
                mem.write_u64(Maddr(at + 8 * k as u64), v)
                    .map_err(|e| format!("queue memory: {e}"))?;
            }
            Ok::<(), String>(())
        };
        match op {
            Op::Put { slot, words } => {
                let (stride, entries) = self.ring();
                let at = QUEUE + stride * (u64::from(*slot) % entries);
                put(mem, at, &words[..(stride / 8) as usize])?;
            }
            Op::Submit { descs } => {
                let (stride, entries) = self.ring();
                let mut i = (self.iqt / stride) % entries;
                for d in descs {
                    put(mem, QUEUE + stride * i, &d[..(stride / 8) as usize])?;
                    i = (i + 1) % entries;
                }
                wr(r, mem, IQT, 8, i * stride)?;
                self.iqt = (i * stride) & 0x7FFF0;
                self.run(mem);
            }
            &Op::Tail { value, how } => {
                match how {
                    0 => wr(r, mem, IQT, 8, value)?,
                    1 => wr(r, mem, IQT, 4, value & 0xFFFF_FFFF)?,
                    _ => wr(r, mem, IQT + 4, 4, value & 0xFFFF_FFFF)?,
                }
                if how < 2 {
                    self.iqt = value & 0x7FFF0;
                    self.run(mem);
                }
            }
            Op::ClearIqe => {
                wr(r, mem, FSTS, 4, IQE)?;
                self.iqe = false;
            }
            Op::ClearIwc => {
                wr(r, mem, ICS, 4, 1)?;
                self.iwc = false;
                self.ie_pending = false; // IP goes with IWC
            }
            &Op::Iectl(masked) => {
                wr(r, mem, IECTL, 4, if masked { 1 << 31 } else { 0 })?;
                self.ie_masked = masked;
                if !masked && self.ie_pending {
                    self.ie_pending = false; // unmasking sends what was held
                    self.completions += 1;
                }
            }
            &Op::Qie(on) => {
                wr(r, mem, GCMD, 4, TE | if on { QIE } else { 0 })?;
                if on && !self.qie {
                    self.enable(mem);
                } else if !on && self.qie && self.head << self.shift() == self.iqt {
                    // Disabling is honoured only with an empty queue; IQH goes back to 0.
                    self.qie = false;
                    self.head = 0;
                }
            }
            &Op::Iqa(v) => {
                wr(r, mem, IQA, 8, v)?;
                self.iqa = v & 0xFFFF_FFFF_FFFF_F807;
            }
            &Op::Remap { table, page, frame } => {
                let (t, p) = (table % 2, page % PAGES);
                // Frames from 4 GiB up, below 2^37: inside the host address width and away
                // from the interrupt address range.
                let now = frame.map(|f| 1 << 32 | f & 0xF_FFFF_F000);
                mem.write_u64(
                    Maddr(TABLES[t] + 0x3000 + 8 * p as u64),
                    now.map_or(0, |f| f | 3),
                )
                .map_err(|e| format!("table: {e}"))?;
                let l = &mut self.leaf[t][p];
                l.retain(|&x| x != now);
                l.insert(0, now);
            }
            Op::Switch => {
                self.ctx ^= 1;
                self.ctx_allowed[self.ctx] = true;
                let (lo, hi) = context_entry(self.ctx);
                let at = CTX + 16 * u64::from(SID & 0xFF);
                mem.write_u64(Maddr(at), lo).map_err(|e| e.to_string())?;
                mem.write_u64(Maddr(at + 8), hi)
                    .map_err(|e| e.to_string())?;
            }
            &Op::Translate { page } => {
                let p = page % PAGES;
                let req = Request {
                    sid: SID,
                    iova: (p as u64) << 12,
                    write: false,
                    translation_request: false,
                };
                let got = r.translate(mem, &req).ok().map(|t| t.hpa);
                let ok = (0..2)
                    .filter(|&c| self.ctx_allowed[c])
                    .any(|c| self.leaf[c][p].contains(&got));
                if !ok {
                    return Err(format!(
                        "page {p}: {got:x?}, allowed {:x?} of contexts {:?}",
                        self.leaf, self.ctx_allowed
                    ));
                }
            }
        }
        let msgs = r.take_interrupts();
        let events = msgs.iter().filter(|m| m.address == FEADDR).count();
        let done: Vec<u32> = msgs
            .iter()
            .filter(|m| m.address == IEADDR)
            .map(|m| m.data)
            .collect();
        if done.len() != self.completions || done.iter().any(|&d| d != IEDATA) {
            return Err(format!(
                "completion messages {done:x?}, {} expected",
                self.completions
            ));
        }
        self.completions = 0;
        if !matches!(op, Op::Translate { .. }) {
            let want = usize::from(self.iqe && !iqe_before && !quiet);
            if events != want {
                return Err(format!("{events} fault events, {want} expected"));
            }
        }
        self.compare(r, mem)
    }

    /// Stride and entries of the ring the ops fill: the latched queue, or IQA's before enable.
    fn ring(&self) -> (u64, u64) {
        let (stride, entries) = if self.qie {
            (1 << self.shift(), self.entries)
        } else {
            self.iqa_geometry()
        };
        (stride, entries.min(QUEUE_PAGES * 4096 / stride))
    }

    fn compare(&mut self, r: &mut Remapper, mem: &PhysMem) -> Result<(), String> {
        let rd = |o: u64, n: u32| r.mmio_read(o, n).map_err(|e| format!("read {o:#x}: {e}"));
        let ensure = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        let fsts = rd(FSTS, 4)?;
        ensure(
            (fsts & IQE != 0) == self.iqe,
            format!("FSTS {fsts:#x}, IQE expected {}", self.iqe),
        )?;
        let iqh = rd(IQH, 8)?;
        let stride = 1u64 << self.shift();
        ensure(
            iqh % stride == 0 && (!self.qie || iqh / stride < self.entries),
            format!("IQH {iqh:#x} unaligned or outside the queue"),
        )?;
        ensure(
            iqh == self.head << self.shift(),
            format!("IQH {iqh:#x}, expected {:#x}", self.head << self.shift()),
        )?;
        if std::mem::take(&mut self.ran) && !self.iqe {
            ensure(
                iqh == self.iqt,
                format!("IQH {iqh:#x} != IQT {:#x}", self.iqt),
            )?;
        }
        let gsts = rd(0x1C, 4)?;
        ensure(
            (gsts & QIE != 0) == self.qie,
            format!("GSTS {gsts:#x}, QIES expected {}", self.qie),
        )?;
        let ics = rd(ICS, 4)?;
        ensure(
            (ics & 1 != 0) == self.iwc,
            format!("ICS {ics:#x}, IWC expected {}", self.iwc),
        )?;
        for &(a, d) in &self.status {
            let word = mem.load_u64(a & !7).ok_or("status page")?;
            let got = (word >> (8 * (a & 4))) as u32;
            ensure(
                got == d,
                format!("status at {a:#x}: {got:#x}, expected {d:#x}"),
            )?;
        }
        let iectl = rd(IECTL, 4)?;
        let want = u64::from(self.ie_masked) << 31 | u64::from(self.ie_pending) << 30;
        ensure(
            iectl == want,
            format!("IECTL {iectl:#x}, expected {want:#x}"),
        )?;
        let got: Vec<_> = r
            .take_device_tlb_invalidations()
            .into_iter()
            .map(|d| (d.sid, d.address, d.size, d.qdep, d.pfsid))
            .collect();
        ensure(
            got == self.dtlb,
            format!("device-TLB {got:x?}, expected {:x?}", self.dtlb),
        )?;
        self.dtlb.clear();
        let done = r.queue_descriptors_done();
        ensure(
            done[1..] == self.done[1..],
            format!("descriptors done {done:?}, expected {:?}", self.done),
        )?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    Did(u16),
    Sid(u16, u8),
}

#[derive(Clone, Copy, Debug)]
enum Effect {
    /// Context-cache: global (None), domain or device.
    Context(Option<Scope>),
    /// IOTLB: domain (None: all), pages (first page number, count; None: the whole domain).
    Iotlb(Option<u16>, Option<(u64, u64)>),
    DeviceTlb(u16, u64, u128, u8, u16),
    Nothing,
    /// Wait: the status write (address, data), and IF.
    Wait(Option<(u64, u32)>, bool),
}
