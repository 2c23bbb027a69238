//! Page-table operations from a byte-coded list on a small arena, against a page-granular
//! model: each map/unmap either matches the model or fails with OutOfMemory and changes
//! nothing; no other error, no panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use vtdwalk::driver::pagetable::{PageTable, Perms, Superpages};
use vtdwalk::{Error, Iova, Maddr, PhysMem};

const WINDOW_PAGES: u64 = 1 << 12;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let levels = 3 + u32::from(data[0] % 3);
    let sp = [Superpages::None, Superpages::Sp2M, Superpages::Sp1G][usize::from(data[1] % 3)];
    let pages = [3u64, 8, 24, 512][usize::from((data[1] >> 2) % 4)];
    let mut mem = PhysMem::new(&[(1 << 30, pages * 4096)]).expect("arena");
    let mut pt = PageTable::new(levels, None, sp).expect("page table");
    let mut model: BTreeMap<u64, (u64, bool, bool)> = BTreeMap::new();
    for op in data[2..].chunks_exact(8) {
        let unmap = op[0] & 1 != 0;
        let mut page = u64::from(u16::from_le_bytes([op[1], op[2]])) % WINDOW_PAGES;
        let mut n = 1 + u64::from(op[3] % 32);
        let mut maddr = u64::from(op[4]) | u64::from(op[5]) << 8 | u64::from(op[6]) << 16;
        if op[0] & 0x80 != 0 {
            page &= !511;
            n = 512;
            maddr &= !511;
        }
        n = n.min(WINDOW_PAGES - page);
        let (iova, maddr) = (page * 4096, maddr * 4096);
        let (read, write) = [(true, true), (true, false), (false, true)][usize::from(op[7] % 3)];
        let before = (
            pt.mappings(&mem).expect("mappings"),
            pt.table_pages(),
            mem.stats(),
        );
        let hit = (0..n).any(|i| model.contains_key(&(iova + i * 4096)));
        let res = if unmap {
            pt.unmap(&mut mem, Iova(iova), n * 4096)
        } else {
            let perms = Perms {
                read,
                write,
                snoop: false,
            };
            pt.map(&mut mem, Iova(iova), Maddr(maddr), n * 4096, perms)
        };
        match res {
            Ok(was) => {
                assert_eq!(was, hit);
                for i in 0..n {
                    if unmap {
                        model.remove(&(iova + i * 4096));
                    } else {
                        model.insert(iova + i * 4096, (maddr + i * 4096, read, write));
                    }
                }
            }
            Err(Error::OutOfMemory { .. }) => {
                let after = (
                    pt.mappings(&mem).expect("mappings"),
                    pt.table_pages(),
                    mem.stats(),
                );
                assert_eq!(after, before, "a failed call changed the table");
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        let got: Vec<(u64, u64, bool, bool)> = pt
            .mappings(&mem)
            .expect("mappings")
            .iter()
            .flat_map(|m| {
                (0..m.size / 4096)
                    .map(move |i| (m.iova + i * 4096, m.maddr + i * 4096, m.read, m.write))
            })
            .collect();
        let want: Vec<(u64, u64, bool, bool)> =
            model.iter().map(|(&i, &(m, r, w))| (i, m, r, w)).collect();
        assert_eq!(got, want);
    }
    pt.free(&mut mem).expect("free");
    assert!(mem.stats().iter().all(|s| s.allocated_pages == 0));
});
