//! The hardware walk over memory filled from the input: no panic, and a remapper with an IOTLB
//! and context cache, one without, and a batch all give the same results. One source-id per
//! input: contexts sharing a DID over different tables may rightly hit each other's IOTLB
//! entries.
//!
//! Input: a 16-byte header (CAP/ECAP choice, source-id, IOVA, shift, flags) then up to six
//! pages of memory from address 0, where the root table sits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtdwalk::hw::{Remapper, Request};
use vtdwalk::{Maddr, PhysMem};

const PAGES: u64 = 6;
const CAP48: u64 = 0x80D2_008C_222F_0606;
const CAP39: u64 = 0x80D2_008C_2226_0206;
const CAP57: u64 = CAP48 | (0x8 << 8) | (56 << 16);
const CAPS: [u64; 5] = [CAP39, CAP48, CAP57, CAP48 & !(1 << 35), CAP57 & !(3 << 34)];
const ECAPS: [u64; 4] = [0xF0_0F4E, 0xF0_0F4A, 0xF0_0FCE, 0xF0_0F0A];

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, image) = data.split_at(16);
    let image = &image[..image.len().min((PAGES * 4096) as usize)];
    let cap = CAPS[usize::from(head[0]) % CAPS.len()];
    let ecap = ECAPS[usize::from(head[1]) % ECAPS.len()];
    let sid = u16::from_le_bytes([head[2], head[3]]);
    let mut iova_b = [0u8; 8];
    iova_b.copy_from_slice(&head[4..12]);
    let iova = u64::from_le_bytes(iova_b) >> (head[12] % 64);
    let write = head[13] & 1 != 0;
    let rt = if head[13] & 0x80 != 0 { None } else { Some(0) };
    let Ok(mut mem) = PhysMem::new(&[(0, PAGES * 4096)]) else {
        return;
    };
    if mem.write(Maddr(0), image).is_err() {
        return;
    }
    let reqs: Vec<Request> = [
        (sid, iova, write),
        (sid, iova ^ 0x1000, !write),
        (sid, iova ^ 0x20_0000, write),
        (sid, iova, write),
    ]
    .iter()
    .map(|&(sid, iova, write)| Request {
        sid,
        iova,
        write,
        translation_request: head[14] & 1 != 0,
    })
    .collect();
    let Ok(mut plain) = Remapper::new(cap, ecap, rt, 0, 8, false) else {
        return;
    };
    let Ok(mut cached) = Remapper::new(cap, ecap, rt, 64, 8, true) else {
        return;
    };
    let mut want_hpa = Vec::new();
    let mut want_fault = Vec::new();
    for req in &reqs {
        let a = plain
            .translate(&mem, req)
            .map(|t| t.hpa)
            .map_err(|f| f.reason as u8);
        let b = cached
            .translate(&mem, req)
            .map(|t| t.hpa)
            .map_err(|f| f.reason as u8);
        assert_eq!(a, b, "{req:?}");
        want_hpa.push(a.unwrap_or(0));
        want_fault.push(a.err().unwrap_or(0));
    }
    let Ok(mut batch) = Remapper::new(cap, ecap, rt, 64, 8, true) else {
        return;
    };
    let mut hpa = vec![0u64; reqs.len()];
    let mut fault = vec![0u8; reqs.len()];
    batch.translate_batch(&mem, &reqs, 1, &mut hpa, &mut fault);
    assert_eq!(hpa, want_hpa);
    assert_eq!(fault, want_fault);
});
