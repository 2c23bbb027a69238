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
use vtdwalk::hw::Remapper;
use vtdwalk::{Maddr, PhysMem};

mod regs_rules;
use regs_rules::{Op, Rules, CAP, ECAPS, NFR, PAGE};

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
        let mut rules = Rules::new(with_qi_ir);
        for op in &ops {
            if let Err(e) = rules.step(&mut r, &mut mem, op) {
                prop_assert!(false, "{:?}: {}", op, e);
            }
        }
    }
}
