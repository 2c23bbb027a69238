//! The register page's rules (vtd-hardware.md §1.2, §1.4, §1.13) checked after each step of
//! a random sequence of register accesses and translations; shared by the proptest
//! (`tests/prop_regs.rs`) and the cargo-fuzz target (`fuzz/fuzz_targets/regs.rs`).

use vtdwalk::hw::{Remapper, Request};
use vtdwalk::{Error, PhysMem};

/// The model's default CAP (QEMU's aw48 with NFR 7: FRO 0x22, no AFL, PLMR, PHMR or RWBF).
pub const CAP: u64 = 0x80D2_078C_222F_0606;
/// QI + IR + PT + DT (IRO 0xF), and the same without QI and IR.
pub const ECAPS: [u64; 2] = [0xF0_0F4E, 0xF0_0F44];
pub const FRO: u64 = 0x220;
pub const NFR: u64 = 8;
pub const IRO: u64 = 0xF0;
pub const PAGE: u64 = 0x1000;
pub const GCMD: u64 = 0x18;
pub const GSTS: u64 = 0x1C;
pub const FSTS: u64 = 0x34;

/// Registers that keep their value whatever is written: (offset, bytes, value).
pub const CONSTANT: [(u64, u32, u64); 19] = [
    (0x00, 4, 0x10),
    (0x08, 8, CAP),
    (0x44, 4, 0), // FEUADDR: no ECAP.EIM
    (0x58, 8, 0), // AFLOG: no CAP.AFL
    (0x64, 4, 0), // PMEN, PLMBASE, PLMLIMIT, PHMBASE, PHMLIMIT: no CAP.PLMR/PHMR
    (0x68, 4, 0),
    (0x6C, 4, 0),
    (0x70, 8, 0),
    (0x78, 8, 0),
    (0xAC, 4, 0), // IEUADDR: no ECAP.EIM
    (0xC0, 8, 0), // the page request registers: no ECAP.PRS
    (0xC8, 8, 0),
    (0xD0, 8, 0),
    (0xDC, 4, 0),
    (0xE0, 8, 0),
    (0xE8, 8, 0),
    (0x100, 8, 0), // MTRRCAP / MTRRDEF: not implemented
    (0x108, 8, 0),
    (FRO + 16 * NFR, 8, 0), // past the last fault recording register
];
/// The QI and IR registers: read-only zero on a unit without those features.
pub const QI_IR: [(u64, u32); 8] = [
    (0x80, 8),
    (0x88, 8),
    (0x90, 8),
    (0x9C, 4),
    (0xA0, 4),
    (0xA4, 4),
    (0xA8, 4),
    (0xB8, 8),
];
/// Writes that start hardware work: GCMD, CCMD, IOTLB, IQT.
pub const TRIGGERS: [(u64, u64); 4] = [(GCMD, 4), (0x28, 8), (IRO + 8, 8), (0x88, 8)];
/// GSTS: TES RTPS FLS AFLS WBFS QIES IRES IRTPS CFIS, less AFLS and WBFS (no CAP.AFL, RWBF).
pub const GSTS_ALLOWED: u64 = 0xFF80_0000 & !(1 << 28) & !(1 << 27);
pub const GSTS_QI_IR: u64 = (1 << 26) | (1 << 25) | (1 << 24);

fn w1c() -> Vec<(u64, u32, u64)> {
    let mut v = vec![(FSTS, 4, 0x11), (0x9C, 4, 0x1)];
    v.extend((0..NFR).map(|i| (FRO + 16 * i + 8, 8, 1u64 << 63)));
    v
}

fn overlap(off: u64, size: u64, o: u64, n: u64) -> bool {
    off < o + n && o < off + size
}

/// The bits of `value` written at `off` that land in the register at `o` of `n` bytes.
fn part(off: u64, value: u64, o: u64, n: u32) -> u64 {
    let v = if off <= o {
        value.checked_shr(8 * (o - off) as u32).unwrap_or(0)
    } else {
        value.checked_shl(8 * (off - o) as u32).unwrap_or(0)
    };
    if n == 8 {
        v
    } else {
        v & 0xFFFF_FFFF
    }
}

fn bad_shape(off: u64, size: u32) -> bool {
    !(size == 4 || size == 8) || off % u64::from(size) != 0 || off + u64::from(size) > PAGE
}

#[derive(Clone, Debug)]
pub enum Op {
    Write { off: u64, size: u32, value: u64 },
    Read { off: u64, size: u32 },
    Translate { sid: u16, iova: u64, write: bool },
}

/// What the checker remembers between steps.
pub struct Rules {
    w1c: Vec<(u64, u32, u64)>,
    constant: Vec<(u64, u32, u64)>,
    allowed: u64,
    ppf: bool,
}

impl Rules {
    /// The rules of a unit with `CAP` and `ECAPS[0]` (`with_qi_ir`) or `ECAPS[1]`.
    pub fn new(with_qi_ir: bool) -> Self {
        let ecap = ECAPS[usize::from(!with_qi_ir)];
        let mut constant: Vec<(u64, u32, u64)> = CONSTANT.to_vec();
        constant.push((0x10, 8, ecap));
        let mut allowed = GSTS_ALLOWED;
        if !with_qi_ir {
            constant.extend(QI_IR.iter().map(|&(o, n)| (o, n, 0)));
            allowed &= !GSTS_QI_IR;
        }
        Rules {
            w1c: w1c(),
            constant,
            allowed,
            ppf: false,
        }
    }

    /// Run `op` on `r` (over `mem`) and check the rules; the first one broken, described.
    pub fn step(&mut self, r: &mut Remapper, mem: &mut PhysMem, op: &Op) -> Result<(), String> {
        let rd = |r: &Remapper, o: u64, n: u32| {
            r.mmio_read(o, n)
                .map_err(|e| format!("read of {o:#x}/{n}: {e}"))
        };
        let ensure = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        match *op {
            Op::Write { off, size, value } => {
                let gsts = rd(r, GSTS, 4)?;
                let mut before = Vec::new();
                for &(o, n, _) in &self.w1c {
                    before.push(rd(r, o, n)?);
                }
                match r.mmio_write(mem, off, size, value) {
                    Err(Error::InvalidArgument { .. }) => {
                        return ensure(bad_shape(off, size), format!("{off:#x}/{size} refused"));
                    }
                    Err(e) => return Err(format!("unexpected {e}")),
                    Ok(()) => ensure(!bad_shape(off, size), format!("{off:#x}/{size} taken"))?,
                }
                let size64 = u64::from(size);
                let starts = TRIGGERS.iter().any(|&(o, n)| overlap(off, size64, o, n));
                for (&(o, n, mask), &old) in self.w1c.iter().zip(&before) {
                    let now = rd(r, o, n)? & mask;
                    if overlap(off, size64, o, u64::from(n)) {
                        ensure(now & part(off, value, o, n) == 0, format!("W1C at {o:#x}"))?;
                    }
                    if !starts {
                        ensure(now & !old == 0, format!("a write set W1C bits at {o:#x}"))?;
                    }
                }
                if !overlap(off, size64, GCMD, 4) {
                    ensure(rd(r, GSTS, 4)? == gsts, format!("GSTS moved by {off:#x}"))?;
                }
            }
            Op::Read { off, size } => match r.mmio_read(off, size) {
                Err(Error::InvalidArgument { .. }) => {
                    return ensure(bad_shape(off, size), format!("{off:#x}/{size} refused"));
                }
                Err(e) => return Err(format!("unexpected {e}")),
                Ok(v) => {
                    ensure(!bad_shape(off, size), format!("{off:#x}/{size} taken"))?;
                    ensure(size == 8 || v <= 0xFFFF_FFFF, format!("{v:#x} in 4 bytes"))?;
                }
            },
            Op::Translate { sid, iova, write } => {
                let req = Request {
                    sid,
                    iova,
                    write,
                    translation_request: false,
                };
                if let Ok(t) = r.translate(mem, &req) {
                    let sizes = [1u64 << 12, 1 << 21, 1 << 30];
                    ensure(
                        sizes.contains(&t.page_size),
                        format!("page {:#x}", t.page_size),
                    )?;
                }
            }
        }
        for &(o, n, v) in &self.constant {
            ensure(rd(r, o, n)? == v, format!("register {o:#x} changed"))?;
        }
        ensure(rd(r, GCMD, 4)? == 0, "GCMD read back".into())?;
        ensure(
            rd(r, 0x28, 8)? & 0x3_FFFF_0000 == 0,
            "CCMD FM/SID read back".into(),
        )?;
        ensure(rd(r, IRO, 8)? == 0, "IVA read back".into())?;
        let g = rd(r, GSTS, 4)?;
        ensure(g & !self.allowed == 0, format!("GSTS {g:#x}"))?;
        let fsts = rd(r, FSTS, 4)?;
        let mut pending = Vec::new();
        for i in 0..NFR {
            if rd(r, FRO + 16 * i + 8, 8)? >> 63 != 0 {
                pending.push(i);
            }
        }
        ensure(
            (fsts & 2 != 0) != pending.is_empty(),
            format!("PPF of FSTS {fsts:#x}"),
        )?;
        if !pending.is_empty() && !self.ppf {
            ensure(
                pending.contains(&((fsts >> 8) & 0xFF)),
                format!("FRI of {fsts:#x}"),
            )?;
        }
        self.ppf = !pending.is_empty();
        Ok(())
    }
}
