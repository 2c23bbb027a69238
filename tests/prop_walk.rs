//! Property tests of the core through its public API only:
//! `vtdwalk::{PhysMem, Maddr, Iova, Error}`, `vtdwalk::driver::pagetable::{PageTable, Perms,
//! Superpages}`, `vtdwalk::hw::{Remapper, Request}`.
//!
//! * the hardware walk over memory whose entries proptest draws, against a reference walker
//!   written here from the architecture text (root entry, context entry, second-level walk,
//!   reserved bits, fault reasons);
//! * map / unmap sequences on a small arena: each call either succeeds and matches a
//!   page-granular model, or fails with `OutOfMemory` and changes nothing;
//! * a remapper with an IOTLB and context cache against one with neither, before and after
//!   unmaps followed by the architectural invalidation.
//!
//! 256 cases per property (proptest's default); `PROPTEST_CASES=N` runs more (`make fuzz`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use vtdwalk::driver::pagetable::{PageTable, Perms, Superpages};
use vtdwalk::hw::{Remapper, Request};
use vtdwalk::{Error, Iova, Maddr, PhysMem};

const BASE: u64 = 0x10_0000;
const NPAGES: u64 = 8;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
const CAP48: u64 = 0x80D2_008C_222F_0606;
const CAP39: u64 = 0x80D2_008C_2226_0206;
const CAP57: u64 = CAP48 | (0x8 << 8) | (56 << 16);
const CAPS: [u64; 5] = [CAP39, CAP48, CAP57, CAP48 & !(1 << 35), CAP57 & !(3 << 34)];
const ECAPS: [u64; 4] = [0xF0_0F4E, 0xF0_0F4A, 0xF0_0FCE, 0xF0_0F0A];

fn bits(hi: u32, lo: u32) -> u64 {
    let top = if hi >= 63 {
        u64::MAX
    } else {
        (1u64 << (hi + 1)) - 1
    };
    top & !((1u64 << lo) - 1)
}

/// Reference translation: Ok((hpa, level, read, write, did)) or Err(fault reason).
fn reference(
    mem: &PhysMem,
    cap: u64,
    ecap: u64,
    rt: Option<u64>,
    sid: u16,
    iova: u64,
    write: bool,
) -> Result<(u64, u8, bool, bool, u16), u8> {
    let rd = |a: u64| mem.read_u64(Maddr(a)).ok();
    let mgaw = (((cap >> 16) & 0x3F) + 1) as u32;
    let haw = mgaw.min(52);
    let above = bits(63, haw);
    let Some(rt) = rt else { return Err(0x8) };
    let (bus, devfn) = (u64::from(sid >> 8), u64::from(sid & 0xFF));
    let (Some(rlo), Some(rhi)) = (rd(rt + 16 * bus), rd(rt + 16 * bus + 8)) else {
        return Err(0x8);
    };
    if rlo & 1 == 0 {
        return Err(0x1);
    }
    if rlo & (0xFFE | above) != 0 || rhi != 0 {
        return Err(0xA);
    }
    let ctp = rlo & bits(63, 12);
    let (Some(clo), Some(chi)) = (rd(ctp + 16 * devfn), rd(ctp + 16 * devfn + 8)) else {
        return Err(0x9);
    };
    if clo & 1 == 0 {
        return Err(0x2);
    }
    if clo & (0xFF0 | above) != 0 || chi & 0xFFFF_FFFF_FF00_0080 != 0 {
        return Err(0xB);
    }
    let aw = (chi & 7) as u32;
    if !(1..=3).contains(&aw) || (cap >> 8) & (1 << aw) == 0 {
        return Err(0x3);
    }
    let tt = (clo >> 2) & 3;
    let (dt, pt) = (ecap & (1 << 2) != 0, ecap & (1 << 6) != 0);
    if tt == 3 || (tt == 1 && !dt) || (tt == 2 && !pt) {
        return Err(0x3);
    }
    let nd = (cap & 7) as u32;
    let did = ((chi >> 8) & 0xFFFF & ((1u64 << (4 + 2 * nd).min(16)) - 1)) as u16;
    if tt == 2 {
        return Ok((iova, 0, true, true, did));
    }
    let levels = aw + 2;
    let width = (30 + 9 * aw).min(mgaw);
    if width < 64 && iova >> width != 0 {
        return Err(0x4);
    }
    let sc = ecap & (1 << 7) != 0;
    let sp2m = cap & (1 << 34) != 0;
    let sp1g = cap & (1 << 35) != 0;
    let common = (1u64 << 62) | if haw <= 51 { bits(51, haw) } else { 0 };
    let snp = if sc { 0 } else { 1 << 11 };
    let mut table = clo & bits(63, 12);
    let (mut can_r, mut can_w) = (true, true);
    for level in (1..=levels).rev() {
        let index = (iova >> (12 + 9 * (level - 1))) & 0x1FF;
        let Some(pte) = rd(table + 8 * index) else {
            return Err(if level == levels { 0x3 } else { 0x7 });
        };
        let (r, w) = (pte & 1 != 0, pte & 2 != 0);
        if write && !w {
            return Err(0x5);
        }
        if !write && !r {
            return Err(0x6);
        }
        let ps = pte & (1 << 7) != 0;
        let reserved = if level == 1 {
            pte & (common | snp) != 0
        } else if ps {
            let ok = (level == 2 && sp2m) || (level == 3 && sp1g);
            let low = if level == 2 {
                bits(20, 12)
            } else {
                bits(29, 12)
            };
            !ok || pte & (common | low | snp) != 0
        } else {
            pte & (common | (1 << 11)) != 0
        };
        if reserved {
            return Err(0xC);
        }
        can_r &= r;
        can_w &= w;
        if level == 1 || ps {
            let size = 1u64 << (12 + 9 * (level - 1));
            let hpa = (pte & bits(51, 12) & !(size - 1)) | (iova & (size - 1));
            if (0xFEE0_0000..=0xFEEF_FFFF).contains(&hpa) {
                return Err(0xE);
            }
            return Ok((hpa, level as u8, can_r, can_w, did));
        }
        table = pte & bits(51, 12);
    }
    unreachable!("level 1 ends the walk")
}

/// One drawn entry: (kind, page, low bits, raw value).
type Draw = (u8, u8, u16, u64);

fn entry(d: Draw, low_mask: u64, rw: u64) -> u64 {
    let (kind, page, low, raw) = d;
    let ptr = BASE + u64::from(page % NPAGES as u8) * 4096;
    // Mostly clean low bits, sometimes drawn ones (reserved bits, TT, FPD, PS, SNP...).
    let low = if raw & 14 == 0 {
        u64::from(low) & low_mask
    } else {
        0
    };
    match kind % 16 {
        0..=11 => ptr | 1 | (if raw & 1 != 0 { rw } else { 0 }) | low,
        12 => ptr | low,
        13 => (raw & bits(51, 12)) | (raw & 0xFFF),
        14 => raw,
        _ => 0,
    }
}

fn run(rm: &mut Remapper, mem: &PhysMem, sid: u16, iova: u64, write: bool) -> Result<u64, u8> {
    let req = Request {
        sid,
        iova,
        write,
        translation_request: false,
    };
    rm.translate(mem, &req)
        .map(|t| t.hpa)
        .map_err(|f| f.reason as u8)
}

proptest! {
    #[test]
    fn walk_matches_reference(
        cap in prop::sample::select(&CAPS[..]),
        ecap in prop::sample::select(&ECAPS[..]),
        paths in prop::collection::vec(
            (any::<u16>(), prop::sample::select(&[0u32, 12, 21, 30, 39, 39, 48, 57, 64][..]), any::<u64>(), any::<bool>(), 0u8..8, any::<u16>(),
             prop::collection::vec(any::<Draw>(), 7), any::<u8>(), any::<bool>()),
            1..4),
        extra in prop::collection::vec((0u64..NPAGES, 0u64..512, any::<Draw>()), 0..6),
        no_root in 0u8..20,
        iotlb in prop::sample::select(&[0usize, 1, 64][..]),
    ) {
        let mut mem = PhysMem::new(&[(BASE, NPAGES * 4096)]).unwrap();
        let root = BASE;
        let mut queries = Vec::new();
        for (sid, wbits, iova, write, aw, did, mut draws, sp, clean) in paths {
            let sp = if clean { sp | 0x0F } else { sp };
            if clean {
                // Well-formed present entries along this path; corruption comes from the
                // other paths and the extra writes.
                for d in &mut draws {
                    *d = (0, d.1, 0, 1);
                }
            }
            let iova = if wbits == 0 { 0 } else { iova >> (64 - wbits) };
            let (bus, devfn) = (u64::from(sid >> 8), u64::from(sid & 0xFF));
            let rlo = entry(draws[0], 0xFFE, 0);
            mem.write_u64(Maddr(root + 16 * bus), rlo).unwrap();
            let ctp = rlo & ADDR;
            if (BASE..BASE + NPAGES * 4096).contains(&ctp) {
                let clo = entry(draws[1], 0xFFE, 0);
                // Mostly the widest AW the unit supports, sometimes any.
                let widest = (1..=3u64).rev().find(|a| (cap >> 8) & (1 << a) != 0).unwrap_or(1);
                let aw = match aw { 0 => 0, 1..=5 => widest, 6 => 1, _ => 3 };
                let chi = aw | (u64::from(did) << 8);
                mem.write_u64(Maddr(ctp + 16 * devfn), clo).unwrap();
                mem.write_u64(Maddr(ctp + 16 * devfn + 8), chi).unwrap();
                let mut table = clo & ADDR;
                for (k, level) in (1..=(aw as u32 + 2)).rev().enumerate() {
                    if !(BASE..BASE + NPAGES * 4096).contains(&table) {
                        break;
                    }
                    let mut pte = entry(draws[2 + k], 0xFFF | (1 << 62) | (1 << 11), 2);
                    if (sp >> (k % 4 * 2)) & 3 == 0 {
                        pte |= 1 << 7;
                        if clean && (level == 2 || level == 3) {
                            // An aligned superpage frame.
                            pte &= !bits(if level == 2 { 20 } else { 29 }, 12);
                        }
                    }
                    let idx = (iova >> (12 + 9 * (level - 1))) & 0x1FF;
                    mem.write_u64(Maddr(table + 8 * idx), pte).unwrap();
                    table = pte & ADDR;
                }
            }
            queries.push((sid, iova, write));
            queries.push((sid, iova ^ 0x1F_F000, !write));
        }
        for (page, idx, d) in extra {
            mem.write_u64(Maddr(BASE + page * 4096 + 8 * idx), entry(d, 0xFFF, 2)).unwrap();
        }
        let rt = if no_root == 0 { None } else { Some(root) };
        // Two contexts sharing a DID over different tables may rightly be served each other's
        // IOTLB entries: then only uncached walks are comparable.
        let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut aliased = false;
        for &(sid, _, _) in &queries {
            let rd = |a: u64| mem.read_u64(Maddr(a)).ok();
            let Some(rlo) = rd(root + 16 * u64::from(sid >> 8)).filter(|v| v & 1 != 0) else {
                continue;
            };
            let ce = (rlo & ADDR) + 16 * u64::from(sid & 0xFF);
            if let (Some(clo), Some(chi)) = (rd(ce), rd(ce + 8)) {
                if clo & 1 != 0 {
                    let nd = (cap & 7) as u32;
                    let did = (chi >> 8) & 0xFFFF & ((1u64 << (4 + 2 * nd).min(16)) - 1);
                    let table = (clo & !0xFF1, chi & 7);
                    aliased |= *seen.entry(did).or_insert(table) != table;
                }
            }
        }
        let iotlb = if aliased { 0 } else { iotlb };
        let mut rm = Remapper::new(cap, ecap, rt, iotlb, 8, true).unwrap();
        let mut first = Vec::new();
        for pass in 0..2 {
            for (i, &(sid, iova, write)) in queries.iter().enumerate() {
                let want = reference(&mem, cap, ecap, rt, sid, iova, write);
                let req = Request { sid, iova, write, translation_request: false };
                let got = rm.translate(&mem, &req);
                match (&got, &want) {
                    (Ok(t), Ok((hpa, level, r, w, did))) => {
                        prop_assert_eq!((t.hpa, t.level, t.read, t.write, t.domain_id),
                                        (*hpa, *level, *r, *w, *did));
                    }
                    (Err(f), Err(reason)) => prop_assert_eq!(f.reason as u8, *reason),
                    _ => prop_assert!(false, "sid {:#x} iova {:#x} write {}: {:?} vs {:?}",
                                      sid, iova, write, got, want),
                }
                let flat = got.map(|t| t.hpa).map_err(|f| f.reason as u8);
                if pass == 0 {
                    first.push(flat);
                } else {
                    prop_assert_eq!(flat, first[i]);
                }
            }
        }
    }

    #[test]
    fn map_unmap_is_atomic_under_out_of_memory(
        pages in 3u64..48,
        levels in 3u32..=5,
        sp in prop::sample::select(&[Superpages::None, Superpages::Sp2M][..]),
        ops in prop::collection::vec((0u8..4, 0u64..2048, 1u64..600, 0u64..(1 << 28), 0u8..3), 1..40),
    ) {
        let mut mem = PhysMem::new(&[(1 << 30, pages * 4096)]).unwrap();
        let mut pt = PageTable::new(levels, None, sp).unwrap();
        let mut model: BTreeMap<u64, (u64, bool, bool)> = BTreeMap::new();
        let mut ooms = 0u32;
        for (kind, start, n, target, perm) in ops {
            // 2 MiB-aligned runs of 512 pages get superpages when allowed.
            let (iova, n) = if kind == 3 { ((start & !511) * 4096, 512) } else { (start * 4096, n) };
            let maddr = if kind == 3 { (target & !511) * 4096 } else { target * 4096 };
            let size = n * 4096;
            let (read, write) = [(true, true), (true, false), (false, true)][usize::from(perm)];
            let before = (pt.mappings(&mem).unwrap(), pt.table_pages(), mem.stats());
            let hit = (0..n).any(|i| model.contains_key(&(iova + i * 4096)));
            let res = if kind == 1 {
                pt.unmap(&mut mem, Iova(iova), size)
            } else {
                pt.map(&mut mem, Iova(iova), Maddr(maddr), size, Perms { read, write, snoop: false })
            };
            match res {
                Ok(was) => {
                    prop_assert_eq!(was, hit);
                    for i in 0..n {
                        let p = iova + i * 4096;
                        if kind == 1 {
                            model.remove(&p);
                        } else {
                            model.insert(p, (maddr + i * 4096, read, write));
                        }
                    }
                }
                Err(Error::OutOfMemory { .. }) => {
                    ooms += 1;
                    let after = (pt.mappings(&mem).unwrap(), pt.table_pages(), mem.stats());
                    prop_assert_eq!(after, before);
                }
                Err(e) => prop_assert!(false, "unexpected error {:?}", e),
            }
            // mappings() against the model, merged into runs.
            let mut runs: Vec<(u64, u64, u64, bool, bool)> = Vec::new();
            for (&p, &(m, r, w)) in &model {
                if let Some(last) = runs.last_mut() {
                    if last.0 + last.2 == p && last.1 + last.2 == m && (last.3, last.4) == (r, w) {
                        last.2 += 4096;
                        continue;
                    }
                }
                runs.push((p, m, 4096, r, w));
            }
            let got: Vec<_> = pt.mappings(&mem).unwrap().iter()
                .map(|m| (m.iova, m.maddr, m.size, m.read, m.write)).collect();
            prop_assert_eq!(got, runs);
        }
        let _ = ooms;
        pt.free(&mut mem).unwrap();
        prop_assert!(mem.stats().iter().all(|s| s.allocated_pages == 0));
    }

    #[test]
    fn iotlb_agrees_with_uncached_walks(
        maps in prop::collection::vec((0u64..1024, 1u64..8, 0u64..(1 << 24)), 1..12),
        probes in prop::collection::vec((0u64..(1024 * 4096 + 8192), any::<bool>()), 1..64),
        unmaps in prop::collection::vec((0u64..1024, 1u64..8), 0..6),
        entries in prop::sample::select(&[1usize, 4, 64, 1024][..]),
    ) {
        let mut mem = PhysMem::new(&[(1 << 30, 256 * 4096)]).unwrap();
        let mut pt = PageTable::new(4, None, Superpages::Sp1G).unwrap();
        for &(page, n, target) in &maps {
            pt.map(&mut mem, Iova(page * 4096), Maddr(target * 4096), n * 4096, Perms::RW)
                .unwrap();
        }
        let root = mem.alloc_pages(1, None).unwrap().get();
        let ctx = mem.alloc_pages(1, None).unwrap().get();
        let sid: u16 = 0x0310; // 03:02.0
        mem.write_u64(Maddr(root + 16 * 3), ctx | 1).unwrap();
        mem.write_u64(Maddr(ctx + 16 * 0x10), pt.root() | 1).unwrap();
        let did: u64 = 7;
        mem.write_u64(Maddr(ctx + 16 * 0x10 + 8), 2 | (did << 8)).unwrap();
        let mut cached = Remapper::new(CAP48, 0xF0_0F4E, Some(root), entries, 8, true).unwrap();
        let mut plain = Remapper::new(CAP48, 0xF0_0F4E, Some(root), 0, 8, false).unwrap();
        for round in 0..2 {
            for &(iova, write) in &probes {
                let a = run(&mut cached, &mem, sid, iova, write);
                let b = run(&mut plain, &mem, sid, iova, write);
                prop_assert_eq!(a, b, "round {} iova {:#x}", round, iova);
            }
            for &(page, n) in &unmaps {
                pt.unmap(&mut mem, Iova(page * 4096), n * 4096).unwrap();
                // The driver's page-selective invalidation: the smallest aligned block
                // covering the range.
                let mut am = 0;
                while (page >> am) != ((page + n - 1) >> am) {
                    am += 1;
                }
                cached.invalidate_iotlb_pages(did as u16, (page >> am << am) * 4096, am).unwrap();
            }
        }
    }
}
