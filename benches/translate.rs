//! `cargo bench --bench translate`: the hardware walk over 1M mapped 4 KiB pages (4 levels).
//! Compares a plain loop of single walks with the interleaved walk (several in flight) and the
//! whole batch path with the IOTLB off (every translation walks) and on (all hits).
//! Plain std::time with a median over repeats; prints ns per translation.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::hw::walk::{walk, walk_interleaved, WalkJob, WalkOut};
use vtdwalk::hw::{Remapper, Request, UnitConfig, DEFAULT_CAP, DEFAULT_ECAP};
use vtdwalk::spec::{address_level_offset, Pte};
use vtdwalk::{Maddr, PhysMem};

const GIB: u64 = 1 << 30;
const PAGES: u64 = 1 << 20;
const SID: u16 = 0x0308;

/// Time spent on a CPU by this thread so far (ns), from /proc/thread-self/schedstat.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// VTDWALK_BENCH_CLOCK=cpu: time one-thread cases by the thread's time on a CPU rather than
/// wall time, for a machine shared with other work (multi-thread cases then mean nothing).
fn cpu_clock() -> bool {
    std::env::var("VTDWALK_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// Runs per measurement with VTDWALK_BENCH_CLOCK=cpu.
const CPU_RUNS: u64 = 4;

fn median_ns_per_op(ops: u64, reps: usize, mut f: impl FnMut()) -> f64 {
    let cpu = cpu_clock();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let c = if cpu { thread_cpu_ns() } else { None };
            let t = Instant::now();
            f();
            let wall = t.elapsed().as_nanos() as f64;
            match c {
                // The CPU time advances by scheduler ticks: run long enough for ~1% steps.
                Some(a) => {
                    for _ in 1..CPU_RUNS {
                        f();
                    }
                    let b = thread_cpu_ns().unwrap_or(a);
                    b.saturating_sub(a) as f64 / (CPU_RUNS * ops) as f64
                }
                None => wall / ops as f64,
            }
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn build() -> vtdwalk::Result<(PhysMem, u64, u64)> {
    let mut m = PhysMem::new(&[(0, 64 * GIB)])?;
    let root = m.alloc_pages(1, None)?.get();
    let ctx = m.alloc_pages(1, None)?.get();
    let l4 = m.alloc_pages(1, None)?.get();
    m.write_u64(Maddr(root + 3 * 16), ctx | 1)?;
    m.write_u64(Maddr(ctx + 8 * 16), l4 | 1)?;
    m.write_u64(Maddr(ctx + 8 * 16 + 8), 2 | (1 << 8))?;
    // IOVAs [0, 4 GiB): one L3 table, 4 L2 tables, 2048 L1 tables; data pages at 32 GiB.
    let l3 = m.alloc_pages(1, None)?.get();
    m.write_u64(Maddr(l4), Pte::table(l3).0)?;
    for g in 0..PAGES / (512 * 512) {
        let l2 = m.alloc_pages(1, None)?.get();
        m.write_u64(Maddr(l3 + g * 8), Pte::table(l2).0)?;
        for t in 0..512u64 {
            let l1 = m.alloc_pages(1, None)?.get();
            m.write_u64(Maddr(l2 + t * 8), Pte::table(l1).0)?;
            let page = m.page_mut(Maddr(l1))?;
            for (i, e) in page.iter_mut().enumerate() {
                let n = (g * 512 + t) * 512 + i as u64;
                *e = Pte::leaf(32 * GIB + n * 4096, true, true, false, false).0;
            }
        }
    }
    Ok((m, root, l4))
}

/// The simplest compiled 4-level walk: four dependent reads, no checks at all.
fn bare_walk(m: &PhysMem, root: u64, iova: u64) -> u64 {
    let mut t = root;
    for level in (1..=4).rev() {
        let e = m
            .load_u64(t + address_level_offset(iova, level) * 8)
            .unwrap_or(0);
        t = e & Pte::ADDR_MASK;
    }
    t | (iova & 0xfff)
}

fn main() {
    let (m, root, l4) = match build() {
        Ok(x) => x,
        Err(e) => return eprintln!("{e}"),
    };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let iovas: Vec<u64> = (0..PAGES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % PAGES) << 12 | (x >> 52)
        })
        .collect();
    let Ok(cfg) = UnitConfig::new(DEFAULT_CAP, DEFAULT_ECAP, 8) else {
        return;
    };
    let jobs: Vec<WalkJob> = iovas
        .iter()
        .map(|&iova| WalkJob {
            root: l4,
            iova,
            levels: 4,
            write: false,
        })
        .collect();
    let n = jobs.len() as u64;
    // VTDWALK_BENCH=<substring> runs only the matching batch cases (for profiling).
    let only = std::env::var("VTDWALK_BENCH").unwrap_or_default();
    let walk_reps = if only.is_empty() { 5 } else { 0 };
    let bare = median_ns_per_op(n, walk_reps, || {
        let mut acc = 0u64;
        for j in &jobs {
            acc = acc.wrapping_add(bare_walk(&m, l4, j.iova));
        }
        black_box(acc);
    });
    let plain = median_ns_per_op(n, walk_reps, || {
        let mut acc = 0u64;
        for j in &jobs {
            acc = acc.wrapping_add(walk(&m, &cfg, j).hpa_base);
        }
        black_box(acc);
    });
    let mut out = vec![WalkOut::default(); jobs.len()];
    let inter = median_ns_per_op(n, walk_reps, || {
        walk_interleaved(&m, &cfg, &jobs, &mut out);
        black_box(&out);
    });
    let reqs: Vec<Request> = iovas
        .iter()
        .map(|&iova| Request {
            sid: SID,
            iova,
            write: false,
            translation_request: false,
        })
        .collect();
    let mut hpa = vec![0u64; reqs.len()];
    let mut fault = vec![0u8; reqs.len()];
    let mut results = Vec::new();
    for (label, entries, threads) in [
        ("batch, IOTLB off, 1 thread", 0usize, 1usize),
        ("batch, IOTLB off, 2 threads", 0, 2),
        ("batch, IOTLB hits, 1 thread", 1 << 20, 1),
        ("batch, IOTLB hits, 2 threads", 1 << 20, 2),
    ] {
        if !label.contains(only.as_str()) {
            continue;
        }
        let Ok(mut r) = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(root), entries, 8, true)
        else {
            return;
        };
        r.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault); // warm (fills the IOTLB)
        let t = median_ns_per_op(n, 5, || {
            r.translate_batch(&m, &reqs, threads, &mut hpa, &mut fault)
        });
        results.push((label, t));
    }
    // The same over a 4096-page working set: the IOTLB and the tables stay in cache, so this
    // shows the work per translation rather than the memory system.
    let small: Vec<Request> = reqs
        .iter()
        .map(|r| Request {
            iova: r.iova & 0xff_ffff,
            ..*r
        })
        .collect();
    for (label, entries) in [
        ("4096-page set, IOTLB off", 0usize),
        ("4096-page set, IOTLB hits", 4096),
    ] {
        if !label.contains(only.as_str()) {
            continue;
        }
        let Ok(mut r) = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(root), entries, 8, true)
        else {
            return;
        };
        r.translate_batch(&m, &small, 1, &mut hpa, &mut fault);
        let t = median_ns_per_op(n, 5, || {
            r.translate_batch(&m, &small, 1, &mut hpa, &mut fault)
        });
        results.push((label, t));
    }
    // Single translate() calls, one after another (the Rust side of the Python single call).
    for (label, entries) in [
        ("single translate(), IOTLB off", 0usize),
        ("single translate(), IOTLB hits", 1 << 20),
    ] {
        if !label.contains(only.as_str()) {
            continue;
        }
        let Ok(mut r) = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(root), entries, 8, true)
        else {
            return;
        };
        r.translate_batch(&m, &reqs, 1, &mut hpa, &mut fault);
        let t = median_ns_per_op(n, 5, || {
            let mut acc = 0u64;
            for q in &reqs {
                acc ^= r.translate(&m, q).map_or(0, |t| t.hpa);
            }
            black_box(acc);
        });
        results.push((label, t));
    }
    let ok = fault.iter().all(|&f| f == 0) && out.iter().all(|o| o.fault == 0);
    println!("1M random translations over 1M mapped 4 KiB pages, 4 levels (all valid: {ok})");
    println!("  bare 4-level loop (no checks)       {bare:7.1} ns/translation");
    println!("  plain loop of checked walks         {plain:7.1} ns/translation");
    println!(
        "  interleaved walks ({} in flight)    {inter:7.1} ns/translation",
        vtdwalk::hw::walk::WALK_WAYS
    );
    for (label, t) in results {
        println!("  {label:<36}{t:7.1} ns/translation");
    }
}
