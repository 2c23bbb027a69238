//! The register file under random register reads and writes (any offset, size and value)
//! interleaved with translations, over memory filled from the input: no panic, and after every
//! step the register page keeps the architecture's rules (`tests/regs_rules`, shared with the
//! proptest of `tests/prop_regs.rs`).
//!
//! Input: a byte choosing the unit (with or without QI and IR), a count of 12-byte steps
//! (kind, offset 2, size selector, value 8), the steps, then up to four pages of memory from
//! address 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtdwalk::hw::Remapper;
use vtdwalk::{Maddr, PhysMem};

#[path = "../../tests/regs_rules/mod.rs"]
mod regs_rules;
use regs_rules::{Op, Rules, CAP, ECAPS, NFR, PAGE};

const SIZES: [u32; 9] = [4, 8, 4, 8, 0, 1, 2, 3, 16];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let with_qi_ir = data[0] & 1 == 0;
    let n = usize::from(data[1].min(64));
    let rest = &data[2..];
    let (steps, image) = rest.split_at((12 * n).min(rest.len()));
    let image = &image[..image.len().min(4 * 4096)];
    let Ok(mut mem) = PhysMem::new(&[(0, 4 * 4096)]) else {
        return;
    };
    if mem.write(Maddr(0), image).is_err() {
        return;
    }
    let ecap = ECAPS[usize::from(!with_qi_ir)];
    let mut r = Remapper::new(CAP, ecap, None, 8, NFR as usize, true).unwrap();
    assert_eq!(r.mmio_size(), PAGE);
    let mut rules = Rules::new(with_qi_ir);
    for s in steps.chunks_exact(12) {
        let mut v = [0u8; 8];
        v.copy_from_slice(&s[4..12]);
        let value = u64::from_le_bytes(v);
        let mut off = u64::from(u16::from_le_bytes([s[1], s[2]]));
        let size = SIZES[usize::from(s[3]) % SIZES.len()];
        if s[0] & 0x80 == 0 {
            off %= PAGE + 0x100; // mostly inside the page
        }
        if s[0] & 0x40 == 0 {
            off &= !(u64::from(size.max(4)) - 1); // mostly aligned
        }
        let op = match s[0] % 8 {
            0..=3 => Op::Write {
                off,
                size,
                value: if size == 4 {
                    value & 0xFFFF_FFFF
                } else {
                    value
                },
            },
            4 | 5 => Op::Read { off, size },
            _ => Op::Translate {
                sid: value as u16,
                iova: value >> 16,
                write: s[3] & 1 != 0,
            },
        };
        if let Err(e) = rules.step(&mut r, &mut mem, &op) {
            panic!("{op:?}: {e}");
        }
    }
});
