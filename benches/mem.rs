//! `cargo bench --bench mem`: the Rust-side cost of PhysMem, what the walkers pay per access.
//! Plain std::time with a median over repeats; prints ns per operation.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::{Maddr, PhysMem};

const GIB: u64 = 1 << 30;

fn median_ns_per_op(ops: u64, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut m = match PhysMem::new(&[(0, 512 * GIB), (512 * GIB, 512 * GIB)]) {
        Ok(m) => m,
        Err(e) => return eprintln!("{e}"),
    };
    // 16 MiB of written memory, then random aligned reads over it.
    let pages = 4096u64;
    let Ok(base) = m.alloc_pages(pages, Some(1)) else {
        return;
    };
    for i in 0..pages * 512 {
        let _ = m.write_u64(Maddr(base.get() + i * 8), i);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let addrs: Vec<u64> = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.get() + (x % (pages * 512)) * 8
        })
        .collect();
    let read = median_ns_per_op(addrs.len() as u64, || {
        let mut s = 0u64;
        for &a in &addrs {
            s = s.wrapping_add(m.load_u64(a).unwrap_or(0));
        }
        black_box(s);
    });
    println!("load_u64, random over 16 MiB:  {read:.2} ns/access (cache-miss bound)");
    let hot: Vec<u64> = addrs
        .iter()
        .map(|a| base.get() + (a - base.get()) % (16 * 4096))
        .collect();
    let read_hot = median_ns_per_op(hot.len() as u64, || {
        let mut s = 0u64;
        for &a in &hot {
            s = s.wrapping_add(m.load_u64(a).unwrap_or(0));
        }
        black_box(s);
    });
    println!("load_u64, random over 64 KiB:  {read_hot:.2} ns/access (lookup overhead)");
    let write = median_ns_per_op(addrs.len() as u64, || {
        for &a in &addrs {
            let _ = m.write_u64(Maddr(a), a);
        }
    });
    println!("write_u64, random over 16 MiB: {write:.2} ns/access");
    let n = 10_000u64;
    let allocfree = median_ns_per_op(2 * n, || {
        let v: Vec<Maddr> = (0..n)
            .filter_map(|i| m.alloc_pages(1, Some((i & 1) as u32)).ok())
            .collect();
        for a in v {
            let _ = m.free_pages(a, 1);
        }
    });
    println!("alloc_pages(1) + free_pages(1):  {allocfree:.1} ns/op");
}
