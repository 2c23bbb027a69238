//! The invalidation queue under byte-coded sequences of descriptor writes, IQT writes, IQE and
//! IWC clears, QIE toggles, IQA writes, page-table and context-entry changes and translations:
//! no panic, and after every step the unit agrees with the reference of `tests/qi_rules`
//! (shared with the proptest of `tests/prop_qi.rs`): IQE exactly at the first invalid
//! descriptor, IQH there or at IQT, wait status writes and completions, device-TLB requests,
//! and no translation a covering invalidation should have dropped.
//!
//! Input: a byte choosing CAP (bits 1:0) and ECAP (bits 3:2), a byte with QS (bits 1:0) and
//! DW (bit 2), then steps of a kind byte and a body: a submission is a count byte and 1-4
//! descriptors of 16 bytes (32 with bit 7 of the kind byte), other steps 9 bytes (a value and
//! a selector). The same layout as the atheris target `qi` of tests/fuzz/targets.py.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/qi_rules/mod.rs"]
#[allow(dead_code)] // the well-formed descriptors serve the proptest
mod qi_rules;
use qi_rules::{iqa_value, setup, steer, Op, CAPS, ECAPS};

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(i..i + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// One descriptor from `b` (16 or 32 bytes), its wait status address steered.
fn words(b: &[u8], wide: bool) -> [u64; 4] {
    let mut w = [u64_at(b, 0), u64_at(b, 8), 0, 0];
    if wide {
        w[2] = u64_at(b, 16);
        w[3] = u64_at(b, 24);
    }
    steer(w)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cap = CAPS[usize::from(data[0] & 3) % CAPS.len()];
    let ecap = ECAPS[usize::from(data[0] >> 2 & 3)];
    let (mut r, mut mem, mut model) = setup(cap, ecap, data[1] & 3, data[1] & 4 != 0);
    let mut rest = &data[2..];
    let mut steps = 0;
    while let Some((&kind, body)) = rest.split_first() {
        if steps == 64 {
            break;
        }
        steps += 1;
        let wide = kind & 0x80 != 0;
        let dlen = if wide { 32 } else { 16 };
        let v = u64_at(body, 0);
        let b8 = body.get(8).copied().unwrap_or(0);
        let (op, used) = match kind % 16 {
            0..=5 => {
                // Submit 1-4 descriptors (the count in the first byte).
                let n = 1 + usize::from(body.first().copied().unwrap_or(0) & 3);
                let raw = body.get(1..).unwrap_or(&[]);
                let raw = &raw[..raw.len().min(n * dlen)];
                let descs = raw.chunks(dlen).map(|c| words(c, wide)).collect();
                (Op::Submit { descs }, 1 + n * dlen)
            }
            6 => (
                Op::Put {
                    slot: b8.into(),
                    words: words(body.get(..dlen).unwrap_or(body), wide),
                },
                dlen + 1,
            ),
            7 => (
                Op::Tail {
                    value: if b8 & 4 != 0 { v } else { v & 0x3F0 },
                    how: b8 % 3,
                },
                9,
            ),
            8 => (Op::ClearIqe, 0),
            9 => (Op::ClearIwc, 0),
            10 => (Op::Qie(b8 & 1 != 0), 9),
            11 => (Op::Iqa(iqa_value(b8, v)), 9),
            12 => (
                Op::Remap {
                    table: usize::from(b8 & 1),
                    page: usize::from(b8 >> 1),
                    frame: (b8 & 0x80 == 0).then_some(v),
                },
                9,
            ),
            13 => (Op::Switch, 0),
            15 if b8 & 0x80 != 0 => (Op::Iectl(b8 & 1 != 0), 9),
            _ => (
                Op::Translate {
                    page: usize::from(b8),
                },
                9,
            ),
        };
        if let Err(e) = model.step(&mut r, &mut mem, &op) {
            panic!("{op:?}: {e}");
        }
        rest = body.get(used..).unwrap_or(&[]);
    }
});
