//! `cargo bench --bench mem`: the cost of PhysMem against a plain `Vec<u64>` in the same run.
//!
//! * random 8-byte loads and dependent table loads (each load's value gives the next index:
//!   the shape of a walk) over the same words, PhysMem's `load_u64` and `frame()` vs a `Vec`,
//!   with and without transparent huge pages, ratios printed;
//! * writes, alloc/free;
//! * host memory per page-table page (RSS, the driver's scratch included) for 1M mapped pages;
//! * creation time and RSS of untouched 1 TiB and 2^52-byte nodes, and of 2^20 nodes.
//!
//! Plain std::time with a median over repeats; the machine is shared, so read the ratios.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::driver::pagetable::{PageTable, Perms, Superpages};
use vtdwalk::mem::{NodeSpec, PhysMem};
use vtdwalk::Maddr;

const GIB: u64 = 1 << 30;

fn median_ns_per_op(ops: u64, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |p| p * 4096)
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Random and dependent loads over `words` words, PhysMem vs Vec.
fn loads(words: u64, huge: bool) {
    let spec = vec![NodeSpec::Sparse {
        base: 0,
        size: 2 * words * 8,
    }];
    let Ok(mut m) = PhysMem::with_nodes(spec, huge) else {
        return eprintln!("cannot build the arena");
    };
    let Ok(base) = m.alloc_pages(words / 512, None) else {
        return eprintln!("cannot allocate");
    };
    let base = base.get();
    // Each word holds the index of another word: a random cycle to chase.
    let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
    let mut next: Vec<u64> = (0..words).collect();
    for i in (1..words as usize).rev() {
        next.swap(i, (rnd() % (i as u64 + 1)) as usize);
    }
    let _ = m.write_u64s(Maddr(base), &next);
    let flat = next.clone();
    let addrs: Vec<u64> = (0..1_000_000).map(|_| rnd() % words).collect();
    let n = addrs.len() as u64;
    let vec_rand = median_ns_per_op(n, || {
        let mut s = 0u64;
        for &i in &addrs {
            s = s.wrapping_add(flat.get(i as usize).copied().unwrap_or(0));
        }
        black_box(s);
    });
    let mem_rand = median_ns_per_op(n, || {
        let mut s = 0u64;
        for &i in &addrs {
            s = s.wrapping_add(m.load_u64(base + i * 8).unwrap_or(0));
        }
        black_box(s);
    });
    let vec_chase = median_ns_per_op(n, || {
        let mut i = 0u64;
        for _ in 0..n {
            i = flat.get(i as usize).copied().unwrap_or(0);
        }
        black_box(i);
    });
    let mem_chase = median_ns_per_op(n, || {
        let mut i = 0u64;
        for _ in 0..n {
            i = m.load_u64(base + i * 8).unwrap_or(0);
        }
        black_box(i);
    });
    let frame_chase = median_ns_per_op(n, || {
        let mut i = 0u64;
        for _ in 0..n {
            let a = base + i * 8;
            i = match m.frame(a >> 12) {
                Some(Some(f)) => f[((a & 0xfff) >> 3) as usize],
                _ => 0,
            };
        }
        black_box(i);
    });
    let mib = (words * 8) >> 20;
    let hp = if huge { "THP" } else { "4K " };
    println!(
        "{mib:>5} MiB {hp} random load: Vec {vec_rand:6.2} ns  load_u64 {mem_rand:6.2} ns  ({:.2}x)",
        mem_rand / vec_rand
    );
    println!(
        "{mib:>5} MiB {hp} table chase: Vec {vec_chase:6.2} ns  load_u64 {mem_chase:6.2} ns  ({:.2}x)  frame() {frame_chase:6.2} ns  ({:.2}x)",
        mem_chase / vec_chase,
        frame_chase / vec_chase
    );
}

fn table_rss() {
    let before = rss();
    let Ok(mut m) = PhysMem::new(&[(0, 64 * GIB)]) else {
        return;
    };
    let Ok(mut pt) = PageTable::new(4, None, Superpages::None) else {
        return;
    };
    let n = 1u64 << 20;
    let mut rnd = xorshift(7);
    // 1M pages scattered over 64 GiB of IOVA: one leaf table per ~32 pages mapped.
    let iovas: Vec<u64> = (0..n).map(|_| (rnd() % (1 << 24)) << 12).collect();
    let maddrs: Vec<u64> = (0..n).map(|i| (32 * GIB) + (i << 12)).collect();
    let t = Instant::now();
    if pt.map_pages(&mut m, &iovas, &maddrs, Perms::RW).is_err() {
        return eprintln!("map_pages failed");
    }
    let dt = t.elapsed();
    let tables: u64 = pt.table_pages().values().sum();
    let grown = rss().saturating_sub(before);
    let input = (iovas.len() + maddrs.len()) as u64 * 8;
    println!(
        "map_pages 1M scattered pages: {tables} table pages, RSS +{} MiB, {:.0} bytes/table page \
         (input arrays of {} MiB excluded), {:.0} ms",
        grown >> 20,
        grown.saturating_sub(input) as f64 / tables as f64,
        input >> 20,
        dt.as_secs_f64() * 1e3
    );
    black_box((&m, &pt));
}

fn creation(label: &str, ranges: &[(u64, u64)]) {
    let before = rss();
    let t = Instant::now();
    let m = PhysMem::new(ranges);
    let dt = t.elapsed();
    let grown = rss().saturating_sub(before);
    println!(
        "create {label}: {:.3} ms, RSS +{} KiB{}",
        dt.as_secs_f64() * 1e3,
        grown >> 10,
        if m.is_ok() { "" } else { " (refused)" }
    );
    black_box(m.is_ok());
}

fn main() {
    creation("1 TiB node", &[(0, 1 << 40)]);
    creation("2^52-byte node", &[(0, 1 << 52)]);
    let many: Vec<(u64, u64)> = (0..1u64 << 20).map(|i| (i * 8192, 4096)).collect();
    creation("2^20 nodes of 4 KiB", &many);
    drop(many);
    for huge in [false, true] {
        loads(1 << 21, huge); // 16 MiB
        loads(1 << 27, huge); // 1 GiB
    }
    let Ok(mut m) = PhysMem::new(&[(0, 512 * GIB), (512 * GIB, 512 * GIB)]) else {
        return;
    };
    let pages = 4096u64;
    let Ok(base) = m.alloc_pages(pages, Some(1)) else {
        return;
    };
    let mut rnd = xorshift(3);
    let addrs: Vec<u64> = (0..1_000_000)
        .map(|_| base.get() + (rnd() % (pages * 512)) * 8)
        .collect();
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
    table_rss();
}
