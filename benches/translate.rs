//! `cargo bench --bench translate`: the hardware walk against an honest floor.
//!
//! The floor is a plain 4-level walk over one flat array of tables, the shape of the
//! simplest C walk (an entry is a table index, a load is one bounds check and one read), and
//! it shares no code with the crate. It is timed right before every case, over the same
//! number of mapped pages and the same random IOVAs, and each case prints its ratio to it: on
//! a machine shared with other work the ratios are what to compare, not the nanoseconds.
//!
//! Cases (1M random IOVAs each; ns per translation, medians of [`REPS`] runs, the floor and
//! the case alternating):
//! * 1M and 16M mapped 4 KiB pages, IOTLB off (every translation walks), 1 and 2 threads;
//! * IOTLB hits over a 64K-page working set, at 1M and 16M pages;
//! * 16M pages, a 1M-page working set (misses mixed in), 1 and 2 threads;
//! * 16M pages, every page, an IOTLB of 1M entries (mostly misses), 1 and 2 threads;
//! * a 4096-page set (tables and IOTLB in cache), IOTLB off and hits;
//! * single `translate()` calls, IOTLB off and hits;
//! * IOTLB off, 1 and 2 threads, with the tables on transparent huge pages (`PhysMem` built
//!   with `huge_pages`), beside a floor whose array is on huge pages too.
//!
//! `VTDWALK_BENCH=<substring>` runs only the matching cases; `VTDWALK_BENCH_PAGES=1M` (or
//! `16M`) only that size. `VTDWALK_BENCH_CLOCK=cpu` times one-thread cases by CPU time.

use std::hint::black_box;
use std::time::Instant;

use vtdwalk::hw::{Remapper, Request, DEFAULT_CAP, DEFAULT_ECAP};
use vtdwalk::mem::NodeSpec;
use vtdwalk::spec::Pte;
use vtdwalk::{Maddr, PhysMem};

const GIB: u64 = 1 << 30;
const N: usize = 1 << 20;
const SID: u16 = 0x0308;
const DATA: u64 = 32 * GIB;
/// Passes over the requests per timed run (the kernel's CPU-time clock may tick at a few
/// milliseconds: a run must be long beside that).
const INNER: usize = 4;
/// Runs of each case (and of the floor, alternating with it).
const REPS: usize = 7;

/// `VTDWALK_BENCH_QUICK=1`: one run of one pass per case (to count instructions under a
/// simulator such as cachegrind, not to time).
fn quick() -> bool {
    std::env::var("VTDWALK_BENCH_QUICK").is_ok_and(|v| v == "1")
}
fn reps() -> usize {
    if quick() {
        1
    } else {
        REPS
    }
}
fn inner() -> usize {
    if quick() {
        1
    } else {
        INNER
    }
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Time spent on a CPU by this thread so far (ns), from /proc/thread-self/schedstat.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn cpu_clock() -> bool {
    std::env::var("VTDWALK_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

fn median_ns_per_op(ops: usize, reps: usize, threads: usize, mut f: impl FnMut()) -> f64 {
    let cpu = cpu_clock() && threads == 1;
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let c = if cpu { thread_cpu_ns() } else { None };
            let t = Instant::now();
            for _ in 0..inner() {
                f();
            }
            let wall = t.elapsed().as_nanos() as f64;
            let ops = (ops * inner()) as f64;
            match (c, thread_cpu_ns()) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / ops,
                _ => wall / ops,
            }
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The floor: tables in one flat array, table `k` at words `512 k ..`; an entry holds the
/// byte offset of the next table (or the host page) | R | W, as a real PTE holds an address.
/// The array is an anonymous mapping of its own, asked for transparent huge pages when the
/// case's tables are (so each case meets a floor on the same host pages).
struct Flat {
    map: memmap2::MmapMut,
}

const FLAT_ADDR: u64 = 0x000f_ffff_ffff_f000;

impl Flat {
    /// Table 0 is the L4; then the L3, the L2s, the L1s; `pages` leaves mapped 1:1 from DATA.
    fn new(pages: u64, huge: bool) -> std::io::Result<Flat> {
        let l1s = pages / 512;
        let l2s = l1s.div_ceil(512);
        let tables = 2 + l2s + l1s;
        let mut map = memmap2::MmapOptions::new()
            .len((tables * 4096) as usize)
            .map_anon()?;
        if huge {
            map.advise(memmap2::Advice::HugePage)?;
        }
        let t: &mut [u64] = bytemuck::cast_slice_mut(&mut map[..]);
        let at = |k: u64| k << 12;
        t[0] = at(1) | 3;
        for g in 0..l2s {
            t[(512 + g) as usize] = at(2 + g) | 3;
        }
        for k in 0..l1s {
            let w = (2 + k / 512) * 512 + k % 512;
            t[w as usize] = at(2 + l2s + k) | 3;
            let base = ((2 + l2s + k) * 512) as usize;
            for i in 0..512u64 {
                t[base + i as usize] = (DATA + ((k * 512 + i) << 12)) | 3;
            }
        }
        Ok(Flat { map })
    }

    #[inline(always)]
    fn walk(&self, iova: u64) -> u64 {
        let t: &[u64] = bytemuck::cast_slice(&self.map[..]);
        let mut a = 0u64;
        let mut shift = 39;
        while shift >= 12 {
            let i = (a >> 3) + ((iova >> shift) & 511);
            a = t.get(i as usize).copied().unwrap_or(0) & FLAT_ADDR;
            shift -= 9;
        }
        a | (iova & 0xfff)
    }
}

/// The same tables in the crate's memory: root -> context (SID) -> 4 levels, `pages` pages.
/// `huge`: the arena asks the host for transparent huge pages (fewer host TLB misses).
fn build(pages: u64, huge: bool) -> vtdwalk::Result<(PhysMem, u64)> {
    let node = NodeSpec::Sparse {
        base: 0,
        size: 2 * GIB,
    };
    let mut m = PhysMem::with_nodes(vec![node], huge)?;
    let root = m.alloc_pages(1, None)?.get();
    let ctx = m.alloc_pages(1, None)?.get();
    let l4 = m.alloc_pages(1, None)?.get();
    m.write_u64(Maddr(root + 3 * 16), ctx | 1)?;
    m.write_u64(Maddr(ctx + 8 * 16), l4 | 1)?;
    m.write_u64(Maddr(ctx + 8 * 16 + 8), 2 | (1 << 8))?;
    let l3 = m.alloc_pages(1, None)?.get();
    m.write_u64(Maddr(l4), Pte::table(l3).0)?;
    let l1s = pages / 512;
    for g in 0..l1s.div_ceil(512) {
        let l2 = m.alloc_pages(1, None)?.get();
        m.write_u64(Maddr(l3 + g * 8), Pte::table(l2).0)?;
        for t in 0..512u64.min(l1s - g * 512) {
            let l1 = m.alloc_pages(1, None)?.get();
            m.write_u64(Maddr(l2 + t * 8), Pte::table(l1).0)?;
            let page = m.page_mut(Maddr(l1))?;
            for (i, e) in page.iter_mut().enumerate() {
                let n = (g * 512 + t) * 512 + i as u64;
                *e = Pte::leaf(DATA + n * 4096, true, true, false, false).0;
            }
        }
    }
    Ok((m, root))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `N` random IOVAs over `set` pages picked at random among `pages` (all of them when equal).
fn iovas(rng: &mut Rng, pages: u64, set: u64) -> Vec<u64> {
    let picks: Vec<u64> = (0..set)
        .map(|i| if set == pages { i } else { rng.next() % pages })
        .collect();
    (0..N)
        .map(|_| {
            let x = rng.next();
            let p = picks.get((x % set) as usize).copied().unwrap_or(0);
            p << 12 | (x >> 52)
        })
        .collect()
}

fn reqs(iovas: &[u64]) -> Vec<Request> {
    iovas
        .iter()
        .map(|&iova| Request {
            sid: SID,
            iova,
            write: false,
            translation_request: false,
        })
        .collect()
}

enum Mode {
    Batch(usize),
    Single,
}

struct Case {
    label: &'static str,
    /// Working-set pages (`0`: every mapped page).
    set: u64,
    iotlb: usize,
    mode: Mode,
    /// Tables on transparent huge pages.
    huge: bool,
}

fn main() {
    let only = std::env::var("VTDWALK_BENCH").unwrap_or_default();
    let size = std::env::var("VTDWALK_BENCH_PAGES").unwrap_or_default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    println!(
        "ns per translation, medians of {} runs; ratio = median of case / flat-array walk \
         over runs that alternate them",
        reps()
    );
    println!("{:<56}{:>9}{:>9}{:>8}", "case", "vtdwalk", "flat", "ratio");
    for (name, pages) in [("1M", 1u64 << 20), ("16M", 1 << 24)] {
        if !size.is_empty() && size != name {
            continue;
        }
        let (Ok(flat4k), Ok(flat2m)) = (Flat::new(pages, false), Flat::new(pages, true)) else {
            return eprintln!("no memory for the floor's tables");
        };
        let (m4k, root) = match build(pages, false) {
            Ok(x) => x,
            Err(e) => return eprintln!("{e}"),
        };
        let mut m2m: Option<PhysMem> = None;
        let all = iovas(&mut rng, pages, pages);
        let floor = |reps: usize, flat: &Flat| {
            median_ns_per_op(N, reps, 1, || {
                let mut acc = 0u64;
                for &a in &all {
                    acc = acc.wrapping_add(flat.walk(a));
                }
                black_box(acc);
            })
        };
        let mut cases = vec![
            Case {
                label: "IOTLB off, 1 thread",
                set: 0,
                iotlb: 0,
                mode: Mode::Batch(1),
                huge: false,
            },
            Case {
                label: "IOTLB off, 2 threads",
                set: 0,
                iotlb: 0,
                mode: Mode::Batch(2),
                huge: false,
            },
            Case {
                label: "IOTLB hits, 64K working set",
                set: 1 << 16,
                iotlb: 1 << 20,
                mode: Mode::Batch(1),
                huge: false,
            },
            Case {
                label: "IOTLB hits, 64K working set, 2 threads",
                set: 1 << 16,
                iotlb: 1 << 20,
                mode: Mode::Batch(2),
                huge: false,
            },
        ];
        if pages > 1 << 20 {
            cases.push(Case {
                label: "1M working set (misses mixed in), 1 thread",
                set: 1 << 20,
                iotlb: 1 << 20,
                mode: Mode::Batch(1),
                huge: false,
            });
            cases.push(Case {
                label: "1M working set (misses mixed in), 2 threads",
                set: 1 << 20,
                iotlb: 1 << 20,
                mode: Mode::Batch(2),
                huge: false,
            });
            for th in [1, 2] {
                cases.push(Case {
                    label: if th == 1 {
                        "every page, IOTLB of 1M (mostly misses), 1 thread"
                    } else {
                        "every page, IOTLB of 1M (mostly misses), 2 threads"
                    },
                    set: 0,
                    iotlb: 1 << 20,
                    mode: Mode::Batch(th),
                    huge: false,
                });
            }
        } else {
            cases.extend([
                Case {
                    label: "4096-page set, IOTLB off",
                    set: 4096,
                    iotlb: 0,
                    mode: Mode::Batch(1),
                    huge: false,
                },
                Case {
                    label: "4096-page set, IOTLB hits",
                    set: 4096,
                    iotlb: 4096,
                    mode: Mode::Batch(1),
                    huge: false,
                },
                Case {
                    label: "single translate(), IOTLB off",
                    set: 0,
                    iotlb: 0,
                    mode: Mode::Single,
                    huge: false,
                },
                Case {
                    label: "single translate(), IOTLB hits 64K set",
                    set: 1 << 16,
                    iotlb: 1 << 20,
                    mode: Mode::Single,
                    huge: false,
                },
            ]);
        }
        for th in [1, 2] {
            cases.push(Case {
                label: if th == 1 {
                    "IOTLB off, 1 thread, huge pages"
                } else {
                    "IOTLB off, 2 threads, huge pages"
                },
                set: 0,
                iotlb: 0,
                mode: Mode::Batch(th),
                huge: true,
            });
        }
        for c in cases {
            if !c.label.contains(only.as_str()) {
                continue;
            }
            if c.huge && m2m.is_none() {
                // Same allocation order: the same tables at the same addresses.
                match build(pages, true) {
                    Ok((m, r)) if r == root => m2m = Some(m),
                    Ok(_) => return eprintln!("huge-page build differs"),
                    Err(e) => return eprintln!("{e}"),
                }
            }
            let (m, flat) = match (&m2m, c.huge) {
                (Some(m), true) => (m, &flat2m),
                _ => (&m4k, &flat4k),
            };
            let rs = if c.set == 0 {
                reqs(&all)
            } else if c.set == 4096 {
                // The first 4096 pages: their tables are few and stay in cache.
                reqs(&all.iter().map(|a| a & 0xff_ffff).collect::<Vec<_>>())
            } else {
                reqs(&iovas(&mut rng, pages, c.set))
            };
            let Ok(mut r) = Remapper::new(DEFAULT_CAP, DEFAULT_ECAP, Some(root), c.iotlb, 8, true)
            else {
                return;
            };
            let mut hpa = vec![0u64; N];
            let mut fault = vec![0u8; N];
            // Warm (fills the IOTLB).
            r.translate_batch(m, &rs, 1, &mut hpa, &mut fault);
            // Floor and case alternate, so both see the same moments of a shared machine;
            // each figure is a median, and the ratio the median of the pairs' ratios.
            let mut pairs: Vec<(f64, f64)> = (0..reps())
                .map(|_| {
                    let base = floor(1, flat);
                    let t = match c.mode {
                        Mode::Batch(th) => median_ns_per_op(N, 1, th, || {
                            r.translate_batch(m, &rs, th, &mut hpa, &mut fault)
                        }),
                        Mode::Single => median_ns_per_op(N, 1, 1, || {
                            let mut acc = 0u64;
                            for q in &rs {
                                acc ^= r.translate(m, q).map_or(0, |t| t.hpa);
                            }
                            black_box(acc);
                        }),
                    };
                    (t, base)
                })
                .collect();
            let t = median(pairs.iter().map(|p| p.0));
            let base = median(pairs.iter().map(|p| p.1));
            pairs.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
            let ratio = pairs.get(pairs.len() / 2).map_or(0.0, |p| p.0 / p.1);
            let ok = fault.iter().all(|&f| f == 0)
                && rs.iter().zip(&hpa).all(|(q, &h)| h == flat.walk(q.iova));
            let label = format!(
                "{name} pages, {}{}",
                c.label,
                if ok { "" } else { " (WRONG)" }
            );
            println!("{label:<56}{t:>9.1}{base:>9.1}{ratio:>7.2}x");
        }
    }
}
