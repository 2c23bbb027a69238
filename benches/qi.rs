//! `cargo bench --bench qi`: invalidation queue processing, descriptors per second.
//!
//! One round places nothing new: the ring holds 4096 128-bit descriptors (page-selective
//! IOTLB invalidations, a device-TLB one and a wait every eight) and the tail is moved once
//! round it through `mmio_write` (two IQT writes), so the unit fetches, decodes and executes
//! all of them. The floor shares no code with the crate: a plain loop that reads the same
//! words from a `Vec<u64>` and extracts the type field. Median of 7 runs of 50 rounds each.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::hw::{Remapper, DEFAULT_CAP, DEFAULT_ECAP};
use vtdwalk::spec::qi::{Descriptor, Granularity};
use vtdwalk::{Maddr, PhysMem};

const N: u64 = 4096;
const QUEUE: u64 = 0x10_0000;
const ROUNDS: u32 = 50;

fn descriptor(i: u64) -> (u64, u64) {
    let d = match i % 8 {
        7 => Descriptor::Wait {
            interrupt: false,
            status_write: false,
            fence: true,
            drain: false,
            status_data: 0,
            status_addr: 0,
        },
        6 => Descriptor::DeviceTlb {
            sid: 0x0100,
            addr: (i & 0xff) << 12,
            size: false,
            qdep: 0,
            pfsid: 0,
        },
        _ => Descriptor::Iotlb {
            granularity: Granularity::Selective,
            did: 1,
            addr: (i & 0xfff) << 12,
            am: 0,
            ih: false,
            dr: false,
            dw: false,
        },
    };
    d.encode().expect("a valid descriptor")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut mem = PhysMem::new(&[(0, 1 << 26)]).expect("memory");
    let mut words = Vec::with_capacity(2 * N as usize);
    for i in 0..N {
        let (lo, hi) = descriptor(i);
        mem.write_u64(Maddr(QUEUE + 16 * i), lo).expect("write");
        mem.write_u64(Maddr(QUEUE + 16 * i + 8), hi).expect("write");
        words.extend([lo, hi]);
    }
    let mut r = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, None, 1024, 8, true).expect("unit");
    r.mmio_write(&mut mem, 0x90, 8, QUEUE | 4).expect("IQA");
    r.mmio_write(&mut mem, 0x18, 4, 1 << 26).expect("QIE");

    let floor = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..ROUNDS {
                    let mut acc = 0u64;
                    for w in black_box(&words).chunks_exact(2) {
                        acc = acc.wrapping_add((w[0] & 0xf) | ((w[0] >> 9) & 7) << 4);
                    }
                    black_box(acc);
                }
                t.elapsed().as_secs_f64() / (ROUNDS as f64 * N as f64)
            })
            .collect(),
    );
    let qi = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..ROUNDS {
                    r.mmio_write(&mut mem, 0x88, 8, (N - 1) << 4).expect("IQT");
                    r.mmio_write(&mut mem, 0x88, 8, 0).expect("IQT");
                    black_box(r.take_device_tlb_invalidations());
                }
                t.elapsed().as_secs_f64() / (ROUNDS as f64 * N as f64)
            })
            .collect(),
    );
    assert_eq!(
        r.mmio_read(0x34, 4).expect("FSTS") & 0x10,
        0,
        "no queue error"
    );
    println!(
        "qi: {:.1} ns/descriptor ({:.2} M/s); floor (type field of the same words): {:.2} ns ({:.0}x)",
        qi * 1e9,
        1e-6 / qi,
        floor * 1e9,
        qi / floor
    );
}
