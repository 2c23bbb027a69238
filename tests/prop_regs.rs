//! Property test of the register file through the public API (`vtdwalk::hw::{Remapper,
//! Request}`, `vtdwalk::PhysMem`): random register reads and writes (any offset, size and
//! value) interleaved with translations over memory proptest draws. Whatever the sequence, the
//! register page keeps the rules of vtd-hardware.md §1.2, §1.4 and §1.13:
//!
//! * only a 4- or 8-byte access, aligned and inside the page, is accepted (else an
//!   `InvalidArgument` and nothing changes);
//! * VER, CAP, ECAP and the registers of features the unit lacks never change;
//! * GCMD, CCMD's FM and SID, and IVA read 0 (write-only);
//! * a 1 written to a write-1-to-clear bit (FSTS PFO/IQE, ICS.IWC, FRCD.F) clears it, and a
//!   write that starts no hardware work (GCMD, CCMD, IOTLB, IQT) sets none;
//! * GSTS shows only the bits of features the unit has, and only a GCMD write moves it;
//! * FSTS.PPF is set exactly when a fault recording register holds a fault.
//!
//! 256 cases (proptest's default); `PROPTEST_CASES=N` runs more (`make fuzz`).

use proptest::prelude::*;
use vtdwalk::hw::{Remapper, Request};
use vtdwalk::{Error, Maddr, PhysMem};

/// The model's default CAP (QEMU's aw48 with NFR 7: FRO 0x22, no AFL, PLMR, PHMR or RWBF).
const CAP: u64 = 0x80D2_078C_222F_0606;
/// QI + IR + PT + DT (IRO 0xF), and the same without QI and IR.
const ECAPS: [u64; 2] = [0xF0_0F4E, 0xF0_0F44];
const FRO: u64 = 0x220;
const NFR: u64 = 8;
const IRO: u64 = 0xF0;
const PAGE: u64 = 0x1000;
const GCMD: u64 = 0x18;
const GSTS: u64 = 0x1C;
const FSTS: u64 = 0x34;

/// Registers that keep their value whatever is written: (offset, bytes, value).
const CONSTANT: [(u64, u32, u64); 19] = [
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
const QI_IR: [(u64, u32); 8] = [
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
const TRIGGERS: [(u64, u64); 4] = [(GCMD, 4), (0x28, 8), (IRO + 8, 8), (0x88, 8)];
/// GSTS: TES RTPS FLS AFLS WBFS QIES IRES IRTPS CFIS, less AFLS and WBFS (no CAP.AFL, RWBF).
const GSTS_ALLOWED: u64 = 0xFF80_0000 & !(1 << 28) & !(1 << 27);
const GSTS_QI_IR: u64 = (1 << 26) | (1 << 25) | (1 << 24);

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
enum Op {
    Write { off: u64, size: u32, value: u64 },
    Read { off: u64, size: u32 },
    Translate { sid: u16, iova: u64, write: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop::sample::select(vec![4u32, 8, 4, 8, 0, 1, 2, 3, 16]);
    // Offsets mostly on register boundaries and inside the page; some anywhere.
    let off = prop_oneof![
        4 => (0u64..(PAGE + 0x100) / 4).prop_map(|d| d * 4),
        1 => any::<u64>(),
    ];
    // Values: often the bits that start work (GCMD commands, ICC, IVT, F), else anything.
    let value = prop_oneof![
        2 => any::<u64>(),
        1 => prop::sample::select(vec![
            1u64 << 31, 1 << 30, 1 << 26, 1 << 25, 1 << 24, 0, 0x11, 1 << 63,
            (1 << 63) | (1 << 61), (1 << 63) | (1 << 60), u64::MAX,
        ]),
    ];
    prop_oneof![
        4 => (off.clone(), size.clone(), value).prop_map(|(off, size, value)| Op::Write {
            off,
            size,
            value: if size == 4 { value & 0xFFFF_FFFF } else { value },
        }),
        2 => (off, size).prop_map(|(off, size)| Op::Read { off, size }),
        2 => (any::<u16>(), any::<u64>(), any::<bool>())
            .prop_map(|(sid, iova, write)| Op::Translate { sid, iova, write }),
    ]
}

proptest! {
    #[test]
    fn the_register_page_keeps_the_architecture_rules(
        with_qi_ir in any::<bool>(),
        words in prop::collection::vec(any::<u64>(), 0..256),
        ops in prop::collection::vec(op(), 1..64),
    ) {
        let ecap = ECAPS[usize::from(!with_qi_ir)];
        let mut mem = PhysMem::new(&[(0, 4 * 4096)]).unwrap();
        mem.write_u64s(Maddr(0), &words).unwrap();
        let mut r = Remapper::new(CAP, ecap, None, 8, NFR as usize, true).unwrap();
        prop_assert_eq!(r.mmio_size(), PAGE);
        let w1c = w1c();
        let mut constant: Vec<(u64, u32, u64)> = CONSTANT.to_vec();
        constant.push((0x10, 8, ecap));
        let mut allowed = GSTS_ALLOWED;
        if !with_qi_ir {
            constant.extend(QI_IR.iter().map(|&(o, n)| (o, n, 0)));
            allowed &= !GSTS_QI_IR;
        }
        let mut ppf = false;
        for op in &ops {
            let rd = |r: &Remapper, o: u64, n: u32| r.mmio_read(o, n).unwrap();
            match *op {
                Op::Write { off, size, value } => {
                    let gsts = rd(&r, GSTS, 4);
                    let before: Vec<u64> = w1c.iter().map(|&(o, n, _)| rd(&r, o, n)).collect();
                    match r.mmio_write(off, size, value) {
                        Err(Error::InvalidArgument { .. }) => {
                            prop_assert!(bad_shape(off, size), "{:#x}/{}", off, size);
                            continue;
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                        Ok(()) => prop_assert!(!bad_shape(off, size), "{:#x}/{}", off, size),
                    }
                    let size64 = u64::from(size);
                    let starts = TRIGGERS.iter().any(|&(o, n)| overlap(off, size64, o, n));
                    for (&(o, n, mask), &old) in w1c.iter().zip(&before) {
                        let now = rd(&r, o, n) & mask;
                        if overlap(off, size64, o, u64::from(n)) {
                            prop_assert_eq!(now & part(off, value, o, n), 0, "W1C at {:#x}", o);
                        }
                        if !starts {
                            prop_assert_eq!(now & !old, 0, "a write set W1C bits at {:#x}", o);
                        }
                    }
                    if !overlap(off, size64, GCMD, 4) {
                        prop_assert_eq!(rd(&r, GSTS, 4), gsts, "GSTS moved by {:#x}", off);
                    }
                }
                Op::Read { off, size } => match r.mmio_read(off, size) {
                    Err(Error::InvalidArgument { .. }) => {
                        prop_assert!(bad_shape(off, size));
                        continue;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                    Ok(v) => {
                        prop_assert!(!bad_shape(off, size));
                        prop_assert!(size == 8 || v <= 0xFFFF_FFFF);
                    }
                },
                Op::Translate { sid, iova, write } => {
                    let req = Request { sid, iova, write, translation_request: false };
                    if let Ok(t) = r.translate(&mem, &req) {
                        prop_assert!([1u64 << 12, 1 << 21, 1 << 30].contains(&t.page_size));
                    }
                }
            }
            for &(o, n, v) in &constant {
                prop_assert_eq!(rd(&r, o, n), v, "register {:#x} changed", o);
            }
            prop_assert_eq!(rd(&r, GCMD, 4), 0);
            prop_assert_eq!(rd(&r, 0x28, 8) & 0x3_FFFF_0000, 0);
            prop_assert_eq!(rd(&r, IRO, 8), 0);
            let g = rd(&r, GSTS, 4);
            prop_assert_eq!(g & !allowed, 0, "GSTS {:#x}", g);
            let fsts = rd(&r, FSTS, 4);
            let pending: Vec<u64> =
                (0..NFR).filter(|i| rd(&r, FRO + 16 * i + 8, 8) >> 63 != 0).collect();
            prop_assert_eq!(fsts & 2 != 0, !pending.is_empty(), "FSTS {:#x}", fsts);
            if !pending.is_empty() && !ppf {
                prop_assert!(pending.contains(&((fsts >> 8) & 0xFF)), "FRI of {:#x}", fsts);
            }
            ppf = !pending.is_empty();
        }
    }
}
