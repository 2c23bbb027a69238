//! The remapping unit's IOTLB (tagged by domain id, 4K / 2M / 1G entries, bounded, CLOCK
//! eviction). The context cache is [`super::context_cache`].
//!
//! Differences from QEMU, per decisions.md: entries are tagged by DID, not by requester; the
//! capacity is configurable, the IOTLB is 4-way set-associative as hardware TLBs are, and a
//! full set evicts one of its entries (second chance / CLOCK: an approximation of LRU) rather
//! than the whole IOTLB being flushed; page-selective invalidation honours
//! the address mask and removes every entry of the domain that overlaps the range (so also a
//! superpage covering it); domain-selective context invalidation is domain-selective.

use super::walk::WalkOut;
use crate::mem::huge::HugeTable;
use crate::spec::{level_size, level_to_offset_bits};

/// Largest leaf level the IOTLB holds (1 GiB pages).
pub const MAX_LEAF_LEVEL: u32 = 3;

/// The key of a translation of `iova` at leaf `level` (1..=3) in domain `did`:
/// the frame number at that level (< 2^45 for any IOVA below 2^57), the level and the DID.
#[inline]
pub fn iotlb_key(did: u16, level: u32, iova: u64) -> u64 {
    ((iova >> level_to_offset_bits(level)) & GFN_MASK)
        | ((level as u64) << 46)
        | ((did as u64) << 48)
}

const GFN_MASK: u64 = (1 << 46) - 1;

/// What a key's level and DID (`key >> 46`) mix into its frame number to pick its set.
#[inline(always)]
fn mix_of(level_did: u64) -> u64 {
    level_did.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20
}

/// What the 4 KiB look-ups of one domain derive from its DID alone (the key's upper bits
/// and the set's mix), for a batch that looks up many addresses of one domain: see
/// [`Iotlb::key_set_4k`]. The stepwise look-up and insert built on it trust the set, key and
/// way they are given (a key with another key's set would be filed in the wrong set), so
/// they stay inside the crate, where the batch derives all three from the same request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DomainTag {
    key_hi: u64,
    mix: u64,
}

impl DomainTag {
    /// The tag of domain `did`.
    #[inline(always)]
    pub(crate) fn of(did: u16) -> Self {
        let key_hi = iotlb_key(did, 1, 0);
        DomainTag {
            key_hi,
            mix: mix_of(key_hi >> 46),
        }
    }
}
/// Which set a key's mixed frame number falls in: what a look-up needs of the IOTLB's shape,
/// small and copied, so the threads of a batch split by set ([`Iotlb::shards`]) derive sets
/// while each holds only its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SetIndex {
    sets: usize,
    /// `sets - 1` when `sets` is a power of two (a set is then found by a mask), else 0.
    set_mask: u64,
}

impl SetIndex {
    fn new(sets: usize) -> Self {
        SetIndex {
            sets,
            set_mask: if sets.is_power_of_two() {
                sets as u64 - 1
            } else {
                0
            },
        }
    }

    /// The set of a key whose frame number is already mixed with its level and DID.
    #[inline(always)]
    fn of_mixed(&self, h: u64) -> usize {
        // A mask when the number of sets is a power of two (the usual case), else a division.
        if self.set_mask != 0 {
            (h & self.set_mask) as usize
        } else {
            (h % self.sets.max(1) as u64) as usize
        }
    }

    /// See [`Iotlb::key_set_4k`].
    #[inline(always)]
    pub(crate) fn key_set_4k(&self, tag: DomainTag, iova: u64) -> (u64, u32) {
        let gfn = (iova >> 12) & GFN_MASK;
        (gfn | tag.key_hi, self.of_mixed(gfn ^ tag.mix) as u32)
    }
}

/// No valid key has all of bits 0-45 set (that would be an IOVA at or above 2^57).
const EMPTY: u64 = u64::MAX;

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

impl IotlbEntry {
    /// The entry for the leaf that walk `w` (no fault) reached for `iova` in domain `did`.
    #[inline(always)]
    pub fn of_walk(did: u16, iova: u64, w: &WalkOut) -> Self {
        let size = level_size(w.level as u32);
        IotlbEntry {
            did,
            level: w.level,
            perm: w.perm,
            iova_base: iova & !(size - 1),
            hpa_base: w.hpa_base,
        }
    }

    #[inline]
    fn from_slot(key: u64, val: u64) -> Self {
        let level = ((key >> 46) & 3) as u32;
        IotlbEntry {
            did: (key >> 48) as u16,
            level: level as u8,
            perm: (val & 3) as u8,
            iova_base: (key & GFN_MASK) << level_to_offset_bits(level.max(1)),
            hpa_base: val & !0xfff,
        }
    }
}

/// The referenced bit in a slot's value.
const REF: u64 = 1 << 2;

/// Ways per set.
pub const WAYS: usize = 4;

/// One set in one cache line: key, value, key, value... A value is the host page address |
/// referenced (bit 2, CLOCK's bit) | perm (bits 1:0). One line per set keeps a hit to one
/// cache miss, and the referenced bit there costs a hit no other line (and no write once set).
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct SetLine {
    kv: [u64; 2 * WAYS],
}

impl SetLine {
    #[inline(always)]
    fn prefetch(&self) {
        crate::mem::raw::prefetch(&self.kv[0]);
    }
    #[inline]
    fn key(&self, way: usize) -> u64 {
        self.kv.get(2 * way).copied().unwrap_or(EMPTY)
    }
    #[inline]
    fn val(&self, way: usize) -> u64 {
        self.kv.get(2 * way + 1).copied().unwrap_or(0)
    }
    /// The way holding `key` among the first `ways`.
    #[inline]
    fn way_of(&self, ways: usize, key: u64) -> Option<usize> {
        (0..ways).find(|&w| self.key(w) == key)
    }
    /// The way holding `key` (a valid key: never EMPTY, which unused ways hold). The ways are
    /// compared without a branch each (which way hits is random, so a chain of branches would
    /// mispredict); a key is in at most one way.
    #[inline(always)]
    fn find_key(&self, key: u64) -> Option<usize> {
        let k = &self.kv;
        let m = (k[0] == key) as u32
            | ((k[2] == key) as u32) << 1
            | ((k[4] == key) as u32) << 2
            | ((k[6] == key) as u32) << 3;
        (m != 0).then(|| m.trailing_zeros() as usize)
    }
    #[inline]
    fn set(&mut self, way: usize, key: u64, val: u64) {
        if let Some(k) = self.kv.get_mut(2 * way) {
            *k = key;
        }
        if let Some(v) = self.kv.get_mut(2 * way + 1) {
            *v = val;
        }
    }
}

const EMPTY_SET: SetLine = SetLine {
    kv: [EMPTY, 0, EMPTY, 0, EMPTY, 0, EMPTY, 0],
};

/// The IOTLB: `sets` x `ways` entries, set-associative (the set indexed by the low bits of the
/// frame number, mixed with the level and DID, as hardware TLBs do, so neighbouring pages
/// spread over neighbouring sets), with CLOCK (second chance) replacement inside a set: an
/// approximation of LRU.
#[derive(Debug)]
pub struct Iotlb {
    capacity: usize,
    ways: usize,
    sets: usize,
    index: SetIndex,
    /// The sets, on huge pages where the host gives them (probes land at random).
    lines: HugeTable<SetLine>,
    /// Per set: the clock hand.
    hands: Vec<u8>,
    len: usize,
    /// Entries held per leaf level (index 1..=3): a look-up skips the sizes it holds none of.
    per_level: [usize; 4],
    /// Entries evicted to make room.
    pub evictions: u64,
}

/// What putting a key in its set did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Put {
    /// The set held the key: its value replaced.
    Replaced,
    /// An unused way took it.
    Filled,
    /// It took the way of this key (evicted).
    Evicted(u64),
}

/// Put `key` (a valid key) with value `val` in `line`, a set of `ways` ways whose clock hand
/// is `hand`: in the way that holds it, else in an unused way, else in the way CLOCK picks
/// (referenced ways skipped, their bit cleared; the hand then moves past the victim).
#[inline]
fn put_in_line(line: &mut SetLine, hand: &mut u8, ways: usize, key: u64, val: u64) -> Put {
    // A valid key is never EMPTY, which the ways beyond `ways` hold: found only in use.
    let (way, put) = if let Some(w) = line.find_key(key) {
        (w, Put::Replaced)
    } else if let Some(w) = line.way_of(ways, EMPTY) {
        (w, Put::Filled)
    } else {
        let mut h = *hand as usize % ways;
        for _ in 0..=ways {
            match line.kv.get_mut(2 * h + 1) {
                Some(v) if *v & REF != 0 => *v &= !REF,
                _ => break,
            }
            h = (h + 1) % ways;
        }
        *hand = ((h + 1) % ways) as u8;
        (h, Put::Evicted(line.key(h)))
    };
    line.set(way, key, val);
    put
}

/// A set as it was before a [`IotlbShard`] changed it, to put back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SavedSet {
    /// The set's index in the shard.
    at: u32,
    hand: u8,
    line: SetLine,
}

/// A run of an IOTLB's sets, owned by one thread of a batch split by set
/// ([`Iotlb::shards`]): the 4 KiB look-up and insert of [`Iotlb`] on its own sets, the
/// counts (length, evictions) left to the caller ([`Iotlb::account`]), and a set it changes
/// saved first so that it can be put back. Like the stepwise methods of [`Iotlb`], it trusts
/// the set, key and way it is given (derived with [`SetIndex::key_set_4k`]); a set it does
/// not own is found in no way.
#[derive(Debug)]
pub(crate) struct IotlbShard<'a> {
    first: usize,
    ways: usize,
    lines: &'a mut [SetLine],
    hands: &'a mut [u8],
}

/// The leaf level (1..=3) of a key, as an index.
#[inline(always)]
pub(crate) fn key_level(key: u64) -> usize {
    ((key >> 46) & 3) as usize
}

impl IotlbShard<'_> {
    /// The index in the shard of set `set`, when the shard owns it.
    #[inline(always)]
    fn at(&self, set: u32) -> Option<usize> {
        let i = (set as usize).wrapping_sub(self.first);
        (i < self.lines.len()).then_some(i)
    }

    /// Whether set `set` is this shard's.
    #[inline(always)]
    pub(crate) fn owns(&self, set: u32) -> bool {
        self.at(set).is_some()
    }

    /// Start bringing set `set` into the processor's caches (a hint).
    #[inline(always)]
    pub(crate) fn prefetch_set(&self, set: u32) {
        if let Some(l) = self.at(set).and_then(|i| self.lines.get(i)) {
            l.prefetch();
        }
    }

    /// [`Iotlb::way_4k`] on an owned set.
    #[inline(always)]
    pub(crate) fn way_4k(&self, set: u32, key: u64) -> Option<u8> {
        let line = self.lines.get(self.at(set)?)?;
        line.find_key(key).map(|w| w as u8)
    }

    /// [`Iotlb::hit_4k`] on an owned set: the host page, the permissions and whether the
    /// way is marked referenced already.
    #[inline(always)]
    pub(crate) fn hit_4k(&self, set: u32, way: u8, key: u64) -> Option<(u64, u8, bool)> {
        let line = self.lines.get(self.at(set)?)?;
        let w = way as usize;
        (line.key(w) == key).then(|| {
            let val = line.val(w);
            (val & !0xfff, (val & 3) as u8, val & REF != 0)
        })
    }

    /// Mark way `way` of set `set` referenced (or, `on` false, not): a hit's mark, and its
    /// undoing.
    #[inline(always)]
    pub(crate) fn mark(&mut self, set: u32, way: u8, on: bool) {
        let Some(i) = self.at(set) else { return };
        if let Some(v) = self
            .lines
            .get_mut(i)
            .and_then(|l| l.kv.get_mut(2 * way as usize + 1))
        {
            if on {
                *v |= REF;
            } else {
                *v &= !REF;
            }
        }
    }

    /// [`Iotlb::insert_4k`] on an owned set: what it did, and the set as it was before.
    /// `None`: not an owned set, nothing changed.
    #[inline]
    pub(crate) fn insert_4k(
        &mut self,
        set: u32,
        key: u64,
        hpa_base: u64,
        perm: u8,
    ) -> Option<(Put, SavedSet)> {
        let i = self.at(set)?;
        let line = self.lines.get_mut(i)?;
        let hand = self.hands.get_mut(i)?;
        let saved = SavedSet {
            at: i as u32,
            hand: *hand,
            line: *line,
        };
        let val = (hpa_base & !0xfff) | (perm as u64 & 3);
        Some((put_in_line(line, hand, self.ways, key, val), saved))
    }

    /// Put back a set saved by [`IotlbShard::insert_4k`] of this shard.
    pub(crate) fn restore(&mut self, saved: &SavedSet) {
        let i = saved.at as usize;
        if let (Some(l), Some(h)) = (self.lines.get_mut(i), self.hands.get_mut(i)) {
            *l = saved.line;
            *h = saved.hand;
        }
    }
}

/// Largest IOTLB we accept (entries).
pub const MAX_IOTLB_ENTRIES: usize = 1 << 26;

impl Iotlb {
    /// An IOTLB of `capacity` entries (rounded down to a whole number of 4-way sets when larger
    /// than 4); 0 disables it (every translation walks).
    pub fn new(capacity: usize) -> crate::Result<Self> {
        if capacity > MAX_IOTLB_ENTRIES {
            return Err(crate::Error::invalid(
                "iotlb_entries",
                format!("{capacity} is more than the {MAX_IOTLB_ENTRIES} entries supported"),
            ));
        }
        let ways = capacity.min(WAYS);
        let sets = capacity.checked_div(ways).unwrap_or(0);
        Ok(Iotlb {
            capacity: sets * ways,
            ways,
            sets,
            index: SetIndex::new(sets),
            lines: HugeTable::new(sets, EMPTY_SET)?,
            hands: vec![0; sets],
            len: 0,
            per_level: [0; 4],
            evictions: 0,
        })
    }

    /// Entries it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn set_of(&self, key: u64) -> usize {
        self.set_of_mixed((key & GFN_MASK) ^ mix_of(key >> 46))
    }

    /// The set of a key whose frame number is already mixed with its level and DID.
    #[inline(always)]
    fn set_of_mixed(&self, h: u64) -> usize {
        self.index.of_mixed(h)
    }

    #[inline]
    fn find_in(&self, set: usize, key: u64) -> Option<usize> {
        let line = self.lines.get(set)?;
        line.find_key(key).map(|w| set * WAYS + w)
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        self.find_in(self.set_of(key), key)
    }

    #[inline]
    fn entry_at(&self, slot: usize) -> Option<IotlbEntry> {
        let line = self.lines.get(slot / WAYS)?;
        let key = line.key(slot % WAYS);
        (key != EMPTY).then(|| IotlbEntry::from_slot(key, line.val(slot % WAYS)))
    }

    /// Look `iova` up in domain `did` (4 KiB, then 2 MiB, then 1 GiB) without side effects:
    /// the slot and entry found.
    #[inline(always)]
    pub fn probe(&self, did: u16, iova: u64) -> Option<(u32, IotlbEntry)> {
        self.probe_in(self.set_4k(did, iova), did, iova)
    }

    /// Start bringing the set a 4 KiB look-up of `iova` in `did` probes first into the
    /// processor's caches (a hint).
    #[inline(always)]
    pub fn prefetch(&self, did: u16, iova: u64) {
        self.prefetch_set(self.set_4k(did, iova));
    }

    /// The set a 4 KiB look-up of `iova` in `did` probes (the first a [`Iotlb::probe`] reads).
    #[inline(always)]
    pub(crate) fn set_4k(&self, did: u16, iova: u64) -> u32 {
        self.key_set_4k(DomainTag::of(did), iova).1
    }

    /// The key of the 4 KiB translation of `iova` in the domain of `tag`, and the set a
    /// look-up of it probes (the first a [`Iotlb::probe`] reads): for
    /// [`Iotlb::prefetch_set`], [`Iotlb::way_4k`] and [`Iotlb::hit_4k`], so a batch derives
    /// them once per request.
    #[inline(always)]
    pub(crate) fn key_set_4k(&self, tag: DomainTag, iova: u64) -> (u64, u32) {
        self.index.key_set_4k(tag, iova)
    }

    /// Start bringing set `set` into the processor's caches (a hint).
    #[inline(always)]
    pub(crate) fn prefetch_set(&self, set: u32) {
        if let Some(l) = self.lines.get(set as usize) {
            l.prefetch();
        }
    }

    /// [`Iotlb::probe`] given the set of its 4 KiB look-up (`set_4k(did, iova)`).
    #[inline(always)]
    pub(crate) fn probe_in(&self, set: u32, did: u16, iova: u64) -> Option<(u32, IotlbEntry)> {
        if self.len == 0 {
            return None;
        }
        if self.per_level[1] != 0 {
            let key = iotlb_key(did, 1, iova);
            if let Some(line) = self.lines.get(set as usize) {
                if let Some(w) = line.find_key(key) {
                    return Some((
                        set * WAYS as u32 + w as u32,
                        IotlbEntry::from_slot(key, line.val(w)),
                    ));
                }
            }
        }
        if self.per_level[2] == 0 && self.per_level[3] == 0 {
            return None;
        }
        self.probe_large(did, iova)
    }

    /// The 2 MiB and 1 GiB look-ups of [`Iotlb::probe`].
    #[inline(never)]
    fn probe_large(&self, did: u16, iova: u64) -> Option<(u32, IotlbEntry)> {
        for level in 2..=MAX_LEAF_LEVEL {
            if self.per_level.get(level as usize).is_none_or(|&n| n == 0) {
                continue;
            }
            let key = iotlb_key(did, level, iova);
            if let Some(w) = self.find(key) {
                let line = self.lines.get(w / WAYS)?;
                return Some((w as u32, IotlbEntry::from_slot(key, line.val(w % WAYS))));
            }
        }
        None
    }

    /// The way of set `set` that holds 4 KiB key `key` (both from [`Iotlb::key_set_4k`]),
    /// if one does: the first thing [`Iotlb::probe`] looks for.
    #[inline(always)]
    pub(crate) fn way_4k(&self, set: u32, key: u64) -> Option<u8> {
        if self.per_level[1] == 0 {
            return None;
        }
        let line = self.lines.get(set as usize)?;
        line.find_key(key).map(|w| w as u8)
    }

    /// Whether it holds any 2 MiB or 1 GiB entry (else a probe looks only for 4 KiB ones).
    #[inline(always)]
    pub(crate) fn holds_large(&self) -> bool {
        self.per_level[2] != 0 || self.per_level[3] != 0
    }

    /// The sets cut into `n` runs of neighbouring sets (as even as they go), one per thread
    /// of a batch split by set, with the shape that finds a key's set. Empty when there is no
    /// IOTLB. The counts stay here ([`Iotlb::account`]).
    pub(crate) fn shards(&mut self, n: usize) -> (SetIndex, Vec<IotlbShard<'_>>) {
        let n = n.max(1);
        let ways = self.ways.max(1);
        let mut shards = Vec::with_capacity(n);
        if self.capacity > 0 {
            let mut lines: &mut [SetLine] = self.lines.as_mut_slice();
            let mut hands: &mut [u8] = self.hands.as_mut_slice();
            let mut first = 0;
            for k in 0..n {
                let take = (self.sets * (k + 1) / n - first).min(lines.len());
                let (l, lrest) = lines.split_at_mut(take);
                let (h, hrest) = hands.split_at_mut(take.min(hands.len()));
                shards.push(IotlbShard {
                    first,
                    ways,
                    lines: l,
                    hands: h,
                });
                (lines, hands) = (lrest, hrest);
                first += take;
            }
        }
        (self.index, shards)
    }

    /// Sets it has.
    pub(crate) fn sets(&self) -> usize {
        self.sets
    }

    /// When way `way` of set `set` holds 4 KiB key `key` (see [`Iotlb::way_4k`]), what
    /// [`Iotlb::probe`] returns then, as a key is in one slot at most: the slot, the host
    /// page and the permissions. `None`: the way holds something else now.
    #[inline(always)]
    pub(crate) fn hit_4k(&self, set: u32, way: u8, key: u64) -> Option<(u32, u64, u8)> {
        let line = self.lines.get(set as usize)?;
        let w = way as usize;
        (line.key(w) == key).then(|| {
            let val = line.val(w);
            (
                set * WAYS as u32 + way as u32,
                val & !0xfff,
                (val & 3) as u8,
            )
        })
    }

    /// A hit on `slot`: mark it referenced (a write only when it was not already).
    #[inline(always)]
    pub fn touch(&mut self, slot: u32) {
        let slot = slot as usize;
        if let Some(v) = self
            .lines
            .get_mut(slot / WAYS)
            .and_then(|l| l.kv.get_mut(2 * (slot % WAYS) + 1))
        {
            if *v & REF == 0 {
                *v |= REF;
            }
        }
    }

    /// Look up and mark referenced.
    #[inline(always)]
    pub fn lookup(&mut self, did: u16, iova: u64) -> Option<IotlbEntry> {
        let (slot, e) = self.probe(did, iova)?;
        self.touch(slot);
        Some(e)
    }

    /// Insert a translation; evicts one entry of its set when the set is full. Returns true
    /// when it evicted.
    pub fn insert(&mut self, e: IotlbEntry) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let key = iotlb_key(e.did, e.level as u32, e.iova_base);
        let val = (e.hpa_base & !0xfff) | (e.perm as u64 & 3);
        self.insert_in(self.set_of(key), key, val)
    }

    /// [`Iotlb::insert`] of a 4 KiB translation whose key and set a batch derived already
    /// ([`Iotlb::key_set_4k`]): host page `hpa_base`, permissions `perm`.
    #[inline]
    pub(crate) fn insert_4k(&mut self, set: u32, key: u64, hpa_base: u64, perm: u8) -> bool {
        if self.capacity == 0 {
            return false;
        }
        self.insert_in(set as usize, key, (hpa_base & !0xfff) | (perm as u64 & 3))
    }

    /// Put `key` (a valid key, in its set `set`) with value `val` ([`put_in_line`]), and
    /// count it. Whether it evicted.
    #[inline]
    fn insert_in(&mut self, set: usize, key: u64, val: u64) -> bool {
        let ways = self.ways.max(1);
        let (Some(line), Some(hand)) = (self.lines.get_mut(set), self.hands.get_mut(set)) else {
            return false;
        };
        let put = put_in_line(line, hand, ways, key, val);
        self.account(put, key)
    }

    /// Count what putting `key` did ([`put_in_line`]). Whether it evicted.
    #[inline]
    pub(crate) fn account(&mut self, put: Put, key: u64) -> bool {
        match put {
            Put::Replaced => false,
            Put::Filled => {
                self.len += 1;
                self.count_level(key, true);
                false
            }
            Put::Evicted(old) => {
                self.evictions += 1;
                self.count_level(old, false);
                self.count_level(key, true);
                true
            }
        }
    }

    /// Count what [`IotlbShard::insert_4k`] did to the shards of [`Iotlb::shards`]: `filled`
    /// 4 KiB entries put in unused ways, and per leaf level, the entries 4 KiB ones evicted.
    pub(crate) fn account_4k(&mut self, filled: usize, evicted: [u64; 4]) {
        let out: u64 = evicted.iter().sum();
        self.len += filled;
        self.evictions += out;
        for (n, e) in self.per_level.iter_mut().zip(evicted) {
            *n = n.saturating_sub(e as usize);
        }
        if let Some(n) = self.per_level.get_mut(1) {
            *n += filled + out as usize;
        }
    }

    /// Count an entry of `key`'s level in (`add`) or out.
    #[inline]
    fn count_level(&mut self, key: u64, add: bool) {
        if let Some(n) = self.per_level.get_mut(((key >> 46) & 3) as usize) {
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn remove_slot(&mut self, set: usize, way: usize) {
        let Some(k) = self.lines.get_mut(set).and_then(|l| l.kv.get_mut(2 * way)) else {
            return;
        };
        let old = *k;
        if old != EMPTY {
            *k = EMPTY;
            self.len -= 1;
            self.count_level(old, false);
        }
    }

    /// Remove every entry for which `pred(entry)` holds.
    fn remove_where(&mut self, pred: impl Fn(&IotlbEntry) -> bool) {
        for set in 0..self.sets {
            for way in 0..self.ways {
                if self.entry_at(set * WAYS + way).is_some_and(|e| pred(&e)) {
                    self.remove_slot(set, way);
                }
            }
        }
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.lines.iter_mut().for_each(|l| *l = EMPTY_SET);
        self.len = 0;
        self.per_level = [0; 4];
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, did: u16) {
        self.remove_where(|e| e.did == did);
    }

    /// Page-selective invalidation: every entry of `did` overlapping the `4 KiB << am` range
    /// holding `addr` (the address is aligned down to that size). A mask of 52 or more covers
    /// the whole 64-bit space: the domain's every entry.
    pub fn invalidate_pages(&mut self, did: u16, addr: u64, am: u32) {
        let span_bits = 12u32.saturating_add(am);
        if span_bits >= 64 {
            self.invalidate_domain(did);
            return;
        }
        let start = addr & !((1u64 << span_bits) - 1);
        let span = 1u64 << span_bits;
        let end = start.saturating_add(span);
        // Probing keys costs one look-up per covered frame and level; scanning costs the size.
        let probes: u64 = (1..=MAX_LEAF_LEVEL)
            .map(|l| (span >> level_to_offset_bits(l)).max(1))
            .fold(0u64, |a, b| a.saturating_add(b));
        if probes <= self.capacity as u64 {
            for l in 1..=MAX_LEAF_LEVEL {
                let sz = level_size(l);
                let mut a = start & !(sz - 1);
                while a < end {
                    if let Some(slot) = self.find(iotlb_key(did, l, a)) {
                        self.remove_slot(slot / WAYS, slot % WAYS);
                    }
                    match a.checked_add(sz) {
                        Some(n) => a = n,
                        None => break,
                    }
                }
            }
        } else {
            self.remove_where(|e| {
                let e_end = e.iova_base.saturating_add(level_size(e.level as u32));
                e.did == did && e.iova_base < end && start < e_end
            });
        }
    }

    /// Every way's key and value (referenced bit included) and every set's clock hand: the
    /// whole replacement state, for tests that compare two IOTLBs.
    #[cfg(test)]
    pub(crate) fn raw_state(&self) -> (Vec<u64>, Vec<u8>) {
        let kv = self.lines.iter().flat_map(|l| l.kv).collect();
        (kv, self.hands.clone())
    }

    /// Every valid entry (for tests and inspection).
    pub fn entries(&self) -> Vec<IotlbEntry> {
        (0..self.sets * WAYS)
            .filter_map(|s| self.entry_at(s))
            .collect()
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
        // Masks of 52 and more span everything: the whole domain goes, the other stays.
        for am in [51u32, 52, 63, u32::MAX] {
            t.insert(e(1, 1, 0x7000, 0));
            t.insert(e(1, 3, 0x7fc0_0000_0000, 0));
            t.insert(e(2, 1, 0x7000, 0));
            t.invalidate_pages(1, 0x1234_5000, am);
            assert!(t.lookup(1, 0x7000).is_none() && t.lookup(1, 0x7fc0_0000_0000).is_none());
            assert!(t.lookup(2, 0x7000).is_some(), "am {am}");
            t.invalidate_all();
        }
        t.insert(e(1, 1, 0, 0));
        t.invalidate_all();
        assert!(t.is_empty() && t.lookup(1, 0).is_none());
    }

    #[test]
    fn probe_has_no_side_effect() {
        let mut t = Iotlb::new(64).unwrap();
        assert!(t.probe(1, 0).is_none());
        t.insert(e(1, 1, 0, 0x1000));
        let (slot, x) = t.probe(1, 0).unwrap();
        assert_eq!(x.hpa_base, 0x1000);
        t.touch(slot);
        assert_eq!(t.entries(), vec![e(1, 1, 0, 0x1000)]);
    }

    /// The batch's look-up in steps (a domain's tag, the 4 KiB key and set, the way, the hit
    /// at a way) finds what a scan of every entry finds: for set counts a power of two and
    /// not, domains and addresses at random, entries of every size mixed in.
    #[test]
    fn stepwise_4k_lookup_agrees_with_a_scan() {
        let mut rnd = crate::test_rng(0x9e37_79b9_7f4a_7c15u64);
        for cap in [1usize, 4, 12, 64, 1000] {
            let mut t = Iotlb::new(cap).unwrap();
            // Fed the same entries, the 4 KiB ones through `insert_4k`.
            let mut twin = Iotlb::new(cap).unwrap();
            for _ in 0..400 {
                let did = (rnd() % 3) as u16;
                // Few pages, so queries often find one; now and then a large page.
                let iova = ((rnd() % 64) << 12) | ((rnd() % 4) << 30);
                let level = if rnd() % 8 == 0 { 2 } else { 1 };
                let hpa = (rnd() % 1024) << 21;
                let mut n = e(did, level, iova, hpa);
                n.perm = (rnd() % 4) as u8;
                let evicted = t.insert(n);
                let twin_evicted = if level == 1 {
                    let (key, set) = twin.key_set_4k(DomainTag::of(did), n.iova_base);
                    twin.insert_4k(set, key, n.hpa_base, n.perm)
                } else {
                    twin.insert(n)
                };
                assert_eq!(evicted, twin_evicted);
                let (qd, qa) = (
                    (rnd() % 3) as u16,
                    ((rnd() % 64) << 12) | ((rnd() % 4) << 30),
                );
                let qa = qa | (rnd() % 4096);
                let (key, set) = t.key_set_4k(DomainTag::of(qd), qa);
                assert_eq!(key, iotlb_key(qd, 1, qa));
                assert_eq!(set as usize, t.set_of(key), "cap {cap}");
                assert_eq!(set, t.set_4k(qd, qa));
                let scan = t
                    .entries()
                    .into_iter()
                    .find(|x| x.did == qd && x.level == 1 && x.iova_base == qa & !0xfff);
                let way = t.way_4k(set, key);
                assert_eq!(way.is_some(), scan.is_some(), "cap {cap} did {qd} {qa:#x}");
                if let (Some(w), Some(s)) = (way, scan) {
                    let (slot, base, perm) = t.hit_4k(set, w, key).unwrap();
                    assert_eq!((base, perm), (s.hpa_base, s.perm));
                    assert_eq!(t.probe(qd, qa).map(|p| p.0), Some(slot));
                    // Another way of the set holds another key (or none).
                    for o in (0..WAYS as u8).filter(|&o| o != w) {
                        assert!(t.hit_4k(set, o, key).is_none());
                    }
                }
                // Hits mark entries referenced alike, so CLOCK picks alike.
                if let Some((slot, _)) = t.probe(qd, qa) {
                    t.touch(slot);
                    twin.touch(slot);
                }
            }
            assert_eq!(t.entries(), twin.entries(), "cap {cap}");
            assert_eq!((t.len(), t.evictions), (twin.len(), twin.evictions));
        }
    }

    /// Inserts and hits against a model of second-chance (CLOCK) replacement written from its
    /// definition: per set, an update keeps its way (and clears its referenced bit, as a new
    /// entry), a new key takes the first unused way, else the hand skips referenced ways,
    /// clearing their bit, evicts the first other and moves past it; a hit sets the bit.
    #[test]
    fn replacement_follows_second_chance() {
        let mut rnd = crate::test_rng(0x1234_5678_9abc_def1u64);
        for cap in [1usize, 2, 3, 4, 5, 12, 64] {
            let mut t = Iotlb::new(cap).unwrap();
            let ways = t.ways;
            // Per set: (key, value, referenced) per way, and the hand.
            type Way = Option<(u64, u64, bool)>;
            let mut model: Vec<(Vec<Way>, usize)> = vec![(vec![None; ways], 0); t.sets];
            let mut evictions = 0u64;
            for _ in 0..3000 {
                let did = (rnd() % 2) as u16;
                let iova = (rnd() % (4 * cap as u64 + 3)) << 12;
                if rnd() % 3 == 0 {
                    // A hit marks the way referenced.
                    if let Some((slot, _)) = t.probe(did, iova) {
                        t.touch(slot);
                        let (set, way) = (slot as usize / WAYS, slot as usize % WAYS);
                        if let Some(Some(w)) = model[set].0.get_mut(way) {
                            w.2 = true;
                        }
                    }
                    continue;
                }
                let n = e(did, 1, iova, (rnd() % 512) << 12);
                let key = iotlb_key(did, 1, iova);
                let val = n.hpa_base | 3;
                let set = t.set_of(key);
                let (ws, hand) = &mut model[set];
                if let Some(w) = ws.iter().position(|w| w.is_some_and(|w| w.0 == key)) {
                    ws[w] = Some((key, val, false));
                } else if let Some(w) = ws.iter().position(|w| w.is_none()) {
                    ws[w] = Some((key, val, false));
                } else {
                    let mut h = *hand % ways;
                    for _ in 0..=ways {
                        match &mut ws[h] {
                            Some(w) if w.2 => w.2 = false,
                            _ => break,
                        }
                        h = (h + 1) % ways;
                    }
                    ws[h] = Some((key, val, false));
                    *hand = (h + 1) % ways;
                    evictions += 1;
                }
                t.insert(n);
                let mut want: Vec<(u64, u64)> = model
                    .iter()
                    .flat_map(|(ws, _)| ws.iter().flatten().map(|w| (w.0, w.1)))
                    .collect();
                let mut got: Vec<(u64, u64)> = t
                    .entries()
                    .iter()
                    .map(|x| (iotlb_key(x.did, 1, x.iova_base), x.hpa_base | 3))
                    .collect();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "cap {cap}");
                assert_eq!(t.evictions, evictions, "cap {cap}");
            }
        }
    }

    /// Only the page sizes held are probed; the size counters follow inserts, evictions and
    /// invalidations.
    #[test]
    fn size_counters_follow_changes() {
        let mut t = Iotlb::new(8).unwrap();
        assert_eq!(t.lookup(1, 0x5000), None);
        t.insert(e(1, 1, 0x5000, 0xa000));
        assert_eq!(t.lookup(1, 0x5123), Some(e(1, 1, 0x5000, 0xa000)));
        assert_eq!(t.per_level, [0, 1, 0, 0]);
        // Only sizes held are probed, and a 2 MiB entry still answers for its 4 KiB pages.
        t.invalidate_all();
        t.insert(e(3, 2, 0x40_0000, 0x20_0000));
        assert_eq!(t.per_level, [0, 0, 1, 0]);
        assert_eq!(t.lookup(3, 0x41_2345).map(|x| x.level), Some(2));
        t.invalidate_pages(3, 0x41_2000, 0);
        assert_eq!(t.per_level, [0; 4]);
        for p in 0..64u64 {
            t.insert(e(1, 1 + (p % 3) as u8, p << 30, 0));
        }
        let counted: usize = t.per_level.iter().sum();
        assert_eq!((counted, t.len()), (t.entries().len(), t.entries().len()));
        for l in 1..=3u8 {
            let n = t.entries().iter().filter(|x| x.level == l).count();
            assert_eq!(t.per_level[l as usize], n);
        }
    }
}
