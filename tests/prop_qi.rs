//! Property test of the invalidation queue through the public API (`vtdwalk::hw::Remapper`,
//! `vtdwalk::PhysMem`): random descriptor sequences (well-formed ones of every type, and raw
//! words), IQT writes, FSTS.IQE and ICS.IWC clears, QIE toggles, IQA writes, page-table and
//! context-entry changes and translations, on units with and without IR, DT, PDS, SMTS, PSI
//! and with 8-bit DIDs. After every step the unit agrees with the reference of
//! `tests/qi_rules` (VT-d §6.5.2, vtd-hardware.md §1.12):
//!
//! * FSTS.IQE is set exactly when the queue stopped at a descriptor the architecture calls
//!   invalid (or one it cannot read, or a tail outside the ring), and IQH stays there;
//!   otherwise IQH = IQT after the write; IQH is always aligned and inside the ring;
//! * a wait descriptor with SW writes its data at its address, with IF sets ICS.IWC and sends
//!   one completion message while IWC was clear (held in IECTL.IP while IECTL.IM is set);
//! * a queue error raises one fault event unless PPF, PFO or IQE was already set;
//! * device-TLB descriptors ask for the ATS-encoded ranges;
//! * a translation gives the value in memory or one a cache may still hold: after a covering
//!   IOTLB or context-cache invalidation, only the value in memory.
//!
//! 256 cases (proptest's default); `PROPTEST_CASES=N` runs more (`make fuzz`).

use proptest::prelude::*;

mod qi_rules;
use qi_rules::{desc, iqa_value, setup, steer, Op, CAPS, DIDS, ECAPS, PAGES, SID, STATUS};

/// A descriptor: well-formed ones of each type (with fields drawn), or raw words.
fn descriptor() -> impl Strategy<Value = [u64; 4]> {
    let did = prop_oneof![prop::sample::select(DIDS.to_vec()), any::<u16>()];
    let page = (0u64..PAGES as u64 + 2).prop_map(|p| p << 12);
    let sid = prop_oneof![Just(SID), any::<u16>()];
    let d = prop_oneof![
        Just(desc::cc_global()),
        did.clone().prop_map(desc::cc_domain),
        (sid.clone(), 0u8..4).prop_map(|(s, fm)| desc::cc_device(s, fm)),
        Just(desc::iotlb_global()),
        did.clone().prop_map(desc::iotlb_domain),
        (did, page.clone(), 0u8..4).prop_map(|(d, a, am)| desc::iotlb_page(d, a, am)),
        (sid, any::<u64>(), any::<bool>()).prop_map(|(s, a, z)| desc::device_tlb(s, a, z)),
        prop::option::of(any::<u16>()).prop_map(desc::iec),
        (any::<bool>(), any::<bool>(), any::<u32>(), 0u64..1024)
            .prop_map(|(sw, irq, data, k)| desc::wait(sw, irq, data, STATUS + 4 * k)),
    ];
    // A well-formed descriptor, one with a bit flipped, or raw words.
    prop_oneof![
        6 => d.clone(),
        2 => (d, 0usize..256).prop_map(|(mut w, b)| {
            w[b / 64] ^= 1 << (b % 64);
            w
        }),
        1 => any::<[u64; 4]>(),
    ]
    .prop_map(steer)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(descriptor(), 1..6).prop_map(|descs| Op::Submit { descs }),
        1 => (any::<u16>(), descriptor()).prop_map(|(slot, words)| Op::Put { slot, words }),
        1 => (any::<u64>(), 0u8..3, any::<bool>()).prop_map(|(v, how, small)| Op::Tail {
            value: if small { v & 0x3F0 } else { v },
            how,
        }),
        1 => Just(Op::ClearIqe),
        1 => Just(Op::ClearIwc),
        1 => any::<bool>().prop_map(Op::Qie),
        1 => any::<bool>().prop_map(Op::Iectl),
        1 => (any::<u8>(), any::<u64>()).prop_map(|(s, raw)| Op::Iqa(iqa_value(s, raw))),
        2 => (0usize..2, 0usize..PAGES, prop::option::of(any::<u64>()))
            .prop_map(|(table, page, frame)| Op::Remap { table, page, frame }),
        1 => Just(Op::Switch),
        4 => (0usize..PAGES).prop_map(|page| Op::Translate { page }),
    ]
}

proptest! {
    #[test]
    fn the_queue_keeps_the_architecture_rules(
        cap in prop::sample::select(CAPS.to_vec()),
        ecap in prop::sample::select(ECAPS.to_vec()),
        qs in 0u8..4,
        wide in any::<bool>(),
        ops in prop::collection::vec(op(), 1..48),
    ) {
        let (mut r, mut mem, mut model) = setup(cap, ecap, qs, wide);
        for op in &ops {
            if let Err(e) = model.step(&mut r, &mut mem, op) {
                prop_assert!(false, "{:?}: {}", op, e);
            }
        }
    }
}
