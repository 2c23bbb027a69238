//! `cargo bench --bench pagetable`: the Rust-side cost of PageTable map/unmap/lookup per 4 KiB
//! page. Plain std::time, best of 9 repeats; prints ns per page.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::driver::pagetable::{PageTable, Perms, Superpages};
use vtdwalk::{Iova, Maddr, PhysMem};

const GIB: u64 = 1 << 30;
const K4: u64 = 4096;
const N: u64 = 1 << 20;

type Pt<'a> = (&'a mut PageTable, &'a mut PhysMem);

/// Best (minimum) ns per page of `f` over repeats, the least noisy figure on a shared machine;
/// `setup` runs untimed before each repeat.
fn median(
    pt: &mut PageTable,
    m: &mut PhysMem,
    mut setup: impl FnMut(Pt<'_>),
    mut f: impl FnMut(Pt<'_>),
) -> f64 {
    let mut v: Vec<f64> = (0..9)
        .map(|_| {
            setup((&mut *pt, &mut *m));
            let t = Instant::now();
            f((&mut *pt, &mut *m));
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[0]
}

/// 1M distinct 4 KiB pages scattered over a 16 GiB window, in random order.
fn scattered() -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let window = 16 * GIB / K4;
    let mut v: Vec<u64> = (0..window)
        .filter(|_| rnd() % 4 == 0)
        .take(N as usize)
        .collect();
    for i in (1..v.len()).rev() {
        v.swap(i, (rnd() % (i as u64 + 1)) as usize);
    }
    v.iter().map(|p| p * K4).collect()
}

fn main() -> Result<(), vtdwalk::Error> {
    let mut m = PhysMem::new(&[(0, 64 * GIB), (64 * GIB, 64 * GIB)])?;
    let mut pt = PageTable::new(4, Some(0), Superpages::None)?;
    let size = N * K4;

    let none = |_: Pt<'_>| {};
    let free = |(pt, m): Pt<'_>| {
        pt.free(m).ok();
    };
    let ns = median(&mut pt, &mut m, free, |(pt, m)| {
        black_box(pt.map(m, Iova(0), Maddr(GIB), size, Perms::RW)).ok();
    });
    println!("map 1M-page range, empty table:               {ns:6.2} ns/page");
    let ns = median(
        &mut pt,
        &mut m,
        |(pt, m)| {
            pt.map(m, Iova(0), Maddr(GIB), size, Perms::RW).ok();
        },
        free,
    );
    println!("free a 1M-page table:                         {ns:6.2} ns/page");
    pt.map(&mut m, Iova(0), Maddr(GIB), size, Perms::RW)?;
    let ns = median(&mut pt, &mut m, none, |(pt, m)| {
        black_box(pt.map(m, Iova(0), Maddr(2 * GIB), size, Perms::RW)).ok();
    });
    println!("map 1M-page range over existing tables:       {ns:6.2} ns/page");
    let ns = median(&mut pt, &mut m, none, |(pt, m)| {
        black_box(pt.unmap(m, Iova(0), size)).ok();
        pt.map(m, Iova(0), Maddr(GIB), size, Perms::RW).ok();
    });
    println!("unmap + remap 1M-page range:                  {ns:6.2} ns/page");
    pt.free(&mut m)?;

    let iovas = scattered();
    let maddrs: Vec<u64> = iovas.iter().map(|v| v ^ (1 << 40)).collect();
    let ns = median(
        &mut pt,
        &mut m,
        |(pt, m)| {
            pt.free(m).ok();
        },
        |(pt, m)| {
            black_box(pt.map_pages(m, &iovas, &maddrs, Perms::RW)).ok();
        },
    );
    println!("map_pages 1M scattered, empty table:          {ns:6.2} ns/page");
    let ns = median(&mut pt, &mut m, none, |(pt, m)| {
        black_box(pt.map_pages(m, &iovas, &maddrs, Perms::RW)).ok();
    });
    println!("map_pages 1M scattered, existing tables:      {ns:6.2} ns/page");
    let mut out = vec![0u64; iovas.len()];
    let ns = median(&mut pt, &mut m, none, |(pt, m)| {
        black_box(pt.lookup_many(m, &iovas, &mut out)).ok();
    });
    println!("lookup_many 1M scattered:                     {ns:6.2} ns/page");
    let ns = median(
        &mut pt,
        &mut m,
        |(pt, m)| {
            pt.map_pages(m, &iovas, &maddrs, Perms::RW).ok();
        },
        |(pt, m)| {
            black_box(pt.unmap_pages(m, &iovas)).ok();
        },
    );
    println!("unmap_pages 1M scattered (frees tables):      {ns:6.2} ns/page");
    Ok(())
}
