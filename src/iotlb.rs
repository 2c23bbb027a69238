//! The remapping unit's caches: the IOTLB (tagged by domain id, 4K / 2M / 1G entries, bounded,
//! CLOCK eviction) and the context cache (one slot per source-id).
//!
//! Differences from QEMU, per decisions.md: entries are tagged by DID, not by requester; the
//! capacity is configurable and a full IOTLB evicts one entry (second chance / CLOCK: an
//! approximation of LRU) rather than flushing everything; page-selective invalidation honours
//! the address mask and removes every entry of the domain that overlaps the range (so also a
//! superpage covering it); domain-selective context invalidation is domain-selective.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::entry::{level_size, level_to_offset_bits};
use crate::translate::Context;

/// A multiplicative hasher for the IOTLB's u64 keys (the keys are not attacker-chosen hashes of
/// strings; speed matters more than DoS resistance here).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        // Fold both halves so hashbrown's top-7-bit tags and low-bit buckets both vary.
        let h = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// Largest leaf level the IOTLB holds (1 GiB pages).
pub const MAX_LEAF_LEVEL: u32 = 3;

/// The key of a translation of `iova` at leaf `level` (1..=3) in domain `did`:
/// the frame number at that level (< 2^45 for any IOVA below 2^57), the level and the DID.
#[inline]
pub fn iotlb_key(did: u16, level: u32, iova: u64) -> u64 {
    ((iova >> level_to_offset_bits(level)) & ((1u64 << 46) - 1))
        | ((level as u64) << 46)
        | ((did as u64) << 48)
}

/// One cached translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IotlbEntry {
    /// Domain id (tag).
    pub did: u16,
    /// Leaf level: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB).
    pub level: u8,
    /// Accumulated permissions over the walk: bit 0 read, bit 1 write.
    pub perm: u8,
    /// The IOVA page start (aligned to the level's size).
    pub iova_base: u64,
    /// The host page start.
    pub hpa_base: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: u64,
    entry: IotlbEntry,
    /// Bumped every time the slot is filled or emptied, so a remembered (index, gen) proves
    /// the slot has not changed since.
    gen: u32,
    valid: bool,
    referenced: bool,
}

/// The IOTLB.
#[derive(Clone, Debug)]
pub struct Iotlb {
    capacity: usize,
    map: KeyMap,
    slots: Vec<Slot>,
    free: Vec<u32>,
    hand: usize,
    /// Entries evicted to make room.
    pub evictions: u64,
}

/// Largest IOTLB we accept (entries).
pub const MAX_IOTLB_ENTRIES: usize = 1 << 26;

impl Iotlb {
    /// An IOTLB of `capacity` entries; 0 disables it (every translation walks).
    pub fn new(capacity: usize) -> crate::Result<Self> {
        if capacity > MAX_IOTLB_ENTRIES {
            return Err(crate::Error::invalid(
                "iotlb_entries",
                format!("{capacity} is more than the {MAX_IOTLB_ENTRIES} entries supported"),
            ));
        }
        Ok(Iotlb {
            capacity,
            map: KeyMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            evictions: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Look `iova` up in domain `did`: 4 KiB, then 2 MiB, then 1 GiB. Read-only (no reference
    /// bit); returns the slot index and generation for [`Iotlb::get_checked`].
    #[inline]
    pub fn probe(&self, did: u16, iova: u64) -> Option<(u32, u32)> {
        if self.map.is_empty() {
            return None;
        }
        for level in 1..=MAX_LEAF_LEVEL {
            if let Some(&i) = self.map.get(&iotlb_key(did, level, iova)) {
                let g = self.slots.get(i as usize).map_or(0, |s| s.gen);
                return Some((i, g));
            }
        }
        None
    }

    /// The entry in slot `idx` if it still has generation `gen`; marks it referenced (a hit).
    #[inline]
    pub fn get_checked(&mut self, idx: u32, gen: u32) -> Option<IotlbEntry> {
        let s = self.slots.get_mut(idx as usize)?;
        if s.valid && s.gen == gen {
            s.referenced = true;
            Some(s.entry)
        } else {
            None
        }
    }

    /// Look up and mark referenced.
    #[inline]
    pub fn lookup(&mut self, did: u16, iova: u64) -> Option<IotlbEntry> {
        let (i, g) = self.probe(did, iova)?;
        self.get_checked(i, g)
    }

    /// Insert a translation; evicts one entry when full. Returns true when it evicted.
    pub fn insert(&mut self, e: IotlbEntry) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let key = iotlb_key(e.did, e.level as u32, e.iova_base);
        if let Some(&i) = self.map.get(&key) {
            if let Some(s) = self.slots.get_mut(i as usize) {
                s.entry = e;
                s.gen = s.gen.wrapping_add(1);
                s.referenced = true;
            }
            return false;
        }
        let mut evicted = false;
        let idx = if let Some(i) = self.free.pop() {
            i as usize
        } else if self.slots.len() < self.capacity {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        } else {
            // CLOCK: skip (and clear) referenced slots, evict the first unreferenced one.
            let n = self.slots.len();
            let mut victim = self.hand % n;
            for _ in 0..=n {
                let h = self.hand % n;
                self.hand = (h + 1) % n;
                match self.slots.get_mut(h) {
                    Some(s) if s.referenced => s.referenced = false,
                    _ => {
                        victim = h;
                        break;
                    }
                }
            }
            if let Some(s) = self.slots.get_mut(victim) {
                self.map.remove(&s.key);
                s.valid = false;
            }
            self.evictions += 1;
            evicted = true;
            victim
        };
        if let Some(s) = self.slots.get_mut(idx) {
            s.key = key;
            s.entry = e;
            s.gen = s.gen.wrapping_add(1);
            s.valid = true;
            s.referenced = false;
            self.map.insert(key, idx as u32);
        }
        evicted
    }

    fn remove_slot(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            if s.valid {
                self.map.remove(&s.key);
                s.valid = false;
                s.gen = s.gen.wrapping_add(1);
                self.free.push(i as u32);
            }
        }
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.map.clear();
        for s in &mut self.slots {
            s.valid = false;
            s.gen = s.gen.wrapping_add(1);
        }
        self.free.clear();
        self.free.extend((0..self.slots.len() as u32).rev());
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, did: u16) {
        for i in 0..self.slots.len() {
            if self
                .slots
                .get(i)
                .is_some_and(|s| s.valid && s.entry.did == did)
            {
                self.remove_slot(i);
            }
        }
    }

    /// Page-selective invalidation: every entry of `did` overlapping the `4 KiB << am` range
    /// holding `addr` (the address is aligned down to that size). `am` must be at most 52.
    pub fn invalidate_pages(&mut self, did: u16, addr: u64, am: u32) {
        let span_bits = 12 + am.min(52);
        let start = if span_bits >= 64 {
            0
        } else {
            addr & !((1u64 << span_bits) - 1)
        };
        let span = 1u64 << span_bits.min(63);
        // Probing keys costs one lookup per covered frame and level; scanning costs the size.
        let probes: u64 = (1..=MAX_LEAF_LEVEL)
            .map(|l| (span >> level_to_offset_bits(l)).max(1))
            .fold(0u64, |a, b| a.saturating_add(b));
        if probes <= self.slots.len() as u64 {
            for l in 1..=MAX_LEAF_LEVEL {
                let sz = level_size(l);
                let first = start & !(sz - 1);
                let mut a = first;
                loop {
                    if let Some(&i) = self.map.get(&iotlb_key(did, l, a)) {
                        self.remove_slot(i as usize);
                    }
                    match a.checked_add(sz) {
                        Some(n) if n < start.saturating_add(span) => a = n,
                        _ => break,
                    }
                }
            }
        } else {
            let end = start.saturating_add(span);
            for i in 0..self.slots.len() {
                let hit = self.slots.get(i).is_some_and(|s| {
                    let e = &s.entry;
                    let e_end = e.iova_base.saturating_add(level_size(e.level as u32));
                    s.valid && e.did == did && e.iova_base < end && start < e_end
                });
                if hit {
                    self.remove_slot(i);
                }
            }
        }
    }

    /// Every valid entry (for tests and inspection).
    pub fn entries(&self) -> Vec<IotlbEntry> {
        self.slots
            .iter()
            .filter(|s| s.valid)
            .map(|s| s.entry)
            .collect()
    }
}

/// The context cache: the resolved context of each source-id, or nothing.
#[derive(Clone, Debug)]
pub struct ContextCache {
    slots: Vec<Option<Context>>,
    enabled: bool,
}

/// Function-mask semantics of device-selective invalidation: SID bits masked for FM 0..=3.
pub const FM_MASKS: [u16; 4] = [0, 0b100, 0b110, 0b111];

impl ContextCache {
    pub fn new(enabled: bool) -> Self {
        ContextCache {
            slots: if enabled {
                vec![None; 1 << 16]
            } else {
                Vec::new()
            },
            enabled,
        }
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    #[inline]
    pub fn get(&self, sid: u16) -> Option<Context> {
        self.slots.get(sid as usize).copied().flatten()
    }
    #[inline]
    pub fn insert(&mut self, sid: u16, c: Context) {
        if let Some(s) = self.slots.get_mut(sid as usize) {
            *s = Some(c);
        }
    }
    pub fn invalidate_all(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
    pub fn invalidate_domain(&mut self, did: u16) {
        for s in &mut self.slots {
            if s.is_some_and(|c| c.did == did) {
                *s = None;
            }
        }
    }
    /// Device-selective with function mask `fm` (0..=3): SID bits {}, {2}, {2:1}, {2:0} ignored.
    pub fn invalidate_device(&mut self, sid: u16, fm: u32) {
        let m = FM_MASKS.get(fm as usize).copied().unwrap_or(0b111);
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if (s as u16) & !m == sid & !m {
                *slot = None;
            }
        }
    }
    /// Cached entries.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(did: u16, level: u8, iova: u64, hpa: u64) -> IotlbEntry {
        let sz = level_size(level as u32);
        IotlbEntry {
            did,
            level,
            perm: 3,
            iova_base: iova & !(sz - 1),
            hpa_base: hpa,
        }
    }

    #[test]
    fn lookup_by_size_and_domain() {
        let mut t = Iotlb::new(16).unwrap();
        t.insert(e(1, 1, 0x5000, 0xa000));
        t.insert(e(1, 2, 0x40_0000, 0x20_0000));
        t.insert(e(2, 3, 0x4000_0000, 0x8000_0000));
        assert_eq!(t.lookup(1, 0x5123).map(|x| x.hpa_base), Some(0xa000));
        assert_eq!(t.lookup(2, 0x5123), None);
        assert_eq!(t.lookup(1, 0x5f_ffff).map(|x| x.level), Some(2));
        assert_eq!(t.lookup(2, 0x7fff_ffff).map(|x| x.level), Some(3));
        assert_eq!(t.lookup(1, 0x7fff_ffff), None);
    }

    #[test]
    fn clock_evicts_unreferenced_first() {
        let mut t = Iotlb::new(3).unwrap();
        for p in 0..3u64 {
            t.insert(e(1, 1, p << 12, p << 12));
        }
        // Reference pages 0 and 2; page 1 is the victim.
        assert!(t.lookup(1, 0).is_some() && t.lookup(1, 0x2000).is_some());
        assert!(t.insert(e(1, 1, 0x9000, 0)));
        assert_eq!(t.evictions, 1);
        assert!(t.lookup(1, 0x1000).is_none());
        assert!(
            t.lookup(1, 0).is_some()
                && t.lookup(1, 0x2000).is_some()
                && t.lookup(1, 0x9000).is_some()
        );
        assert_eq!(t.len(), 3);
        let mut off = Iotlb::new(0).unwrap();
        assert!(!off.insert(e(1, 1, 0, 0)));
        assert!(off.is_empty());
    }

    #[test]
    fn invalidation_granularities() {
        let mut t = Iotlb::new(64).unwrap();
        for p in 0..8u64 {
            t.insert(e(1, 1, p << 12, 0));
            t.insert(e(2, 1, p << 12, 0));
        }
        t.insert(e(1, 2, 0x20_0000, 0));
        // Page 3 only: page 2 stays.
        t.invalidate_pages(1, 0x3000, 0);
        assert!(t.lookup(1, 0x3000).is_none() && t.lookup(1, 0x2000).is_some());
        // am = 2: pages 4..8 of domain 1.
        t.invalidate_pages(1, 0x5000, 2);
        assert!((4..8).all(|p| t.lookup(1, p << 12).is_none()));
        assert!(t.lookup(2, 0x5000).is_some());
        // A 4K PSI inside a 2M entry removes the superpage.
        t.invalidate_pages(1, 0x21_3000, 0);
        assert!(t.lookup(1, 0x20_0000).is_none());
        // A large am scans instead of probing: same result.
        t.invalidate_pages(2, 0, 40);
        assert!((0..8).all(|p| t.lookup(2, p << 12).is_none()));
        assert!(t.lookup(1, 0).is_some());
        t.invalidate_domain(1);
        assert!(t.is_empty());
        t.insert(e(1, 1, 0, 0));
        t.invalidate_all();
        assert!(t.is_empty() && t.lookup(1, 0).is_none());
    }

    #[test]
    fn stale_generation_is_refused() {
        let mut t = Iotlb::new(1).unwrap();
        t.insert(e(1, 1, 0, 0x1000));
        let (i, g) = t.probe(1, 0).unwrap();
        t.insert(e(1, 1, 0x1000, 0x2000));
        assert_eq!(t.get_checked(i, g), None);
    }

    #[test]
    fn context_cache_function_mask() {
        let c = Context {
            did: 7,
            levels: 4,
            tt: crate::entry::TranslationType::MultiLevel,
            slptptr: 0,
            fpd: false,
        };
        let mut cc = ContextCache::new(true);
        for s in 0x100..0x110u16 {
            cc.insert(s, c);
        }
        cc.invalidate_device(0x104, 2); // bits 2:1 ignored: 0x100..=0x107 with bit 0 == 0
        assert!(cc.get(0x100).is_none() && cc.get(0x106).is_none());
        assert!(cc.get(0x101).is_some() && cc.get(0x108).is_some());
        cc.invalidate_domain(7);
        assert!(cc.is_empty());
    }
}
