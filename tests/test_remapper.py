"""Remapper: hand-built tables for every fault reason, superpages at 3/4/5 levels, the IOTLB and
context-cache invalidation matrix, fault recording, and batches equal to single calls."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from reference import hw_walk
from reference.tables import CAP39, CAP48, CAP57, PS, SNP, TM, R, Tables, W, level_index
from vtdwalk import DmaFault, FaultRecord, InvalidArgument, PhysMem, Remapper, Translation

SID = 0x0308  # 03:01.0
DID = 42
MIB = 1 << 20
CAPS = {3: CAP39, 4: CAP48, 5: CAP57}


def new_mem() -> PhysMem:
    return PhysMem([(0, 64 * MIB)])


def reason(r: Remapper, sid: int, iova: int, write: bool = False, **kw: bool) -> int:
    try:
        r.translate(sid, iova, write, **kw)
    except DmaFault as e:
        assert e.sid == sid and e.iova == iova and e.write == write
        return int(e.reason)
    return 0


def reference(mem: PhysMem, r: Remapper, sid: int, iova: int, write: bool) -> hw_walk.Result:
    def read64(a: int) -> int | None:
        try:
            return mem.read_u64(a)
        except Exception:
            return None

    unit = hw_walk.Unit(r.cap, r.ecap)
    return hw_walk.translate(unit, read64, r.root_table, sid, iova, write)


class Setup:
    """One context (SID -> DID 42, `levels` deep) mapping IOVA -> HPA with a 4 KiB page."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.mem = new_mem()
        self.t = Tables(self.mem)
        self.top = self.t.page()
        self.ce = self.t.context(SID, self.top, levels, DID)
        self.iova = 0x0000_0040_8060_4000 & ((1 << (30 + 9 * (levels - 2))) - 1)
        self.hpa = 0x456_7000
        self.path = self.t.map(self.top, levels, self.iova, self.hpa)
        self.cap = CAPS[levels]

    def unit(
        self,
        cap: int | None = None,
        ecap: int = 0xF00F4E,
        iotlb_entries: int = 1024,
        fault_records: int = 8,
        context_cache: bool = True,
    ) -> Remapper:
        return Remapper(
            self.mem,
            self.t.root,
            cap=self.cap if cap is None else cap,
            ecap=ecap,
            iotlb_entries=iotlb_entries,
            fault_records=fault_records,
            context_cache=context_cache,
        )

    def w(self, addr: int, value: int) -> None:
        self.mem.write_u64(addr, value)

    def set_bits(self, addr: int, set_: int = 0, clear: int = 0) -> None:
        self.w(addr, (self.mem.read_u64(addr) & ~clear) | set_)


def check(s: Setup, expected: int, iova: int | None = None, write: bool = False) -> None:
    a = s.iova if iova is None else iova
    r = s.unit()
    assert reason(r, SID, a, write) == expected
    assert reference(s.mem, r, SID, a, write).fault == expected


OUTSIDE = 1 << 36  # a 4 KiB aligned address below every width (39 bits too), outside memory

Scenario = Callable[[Setup], "tuple[int, int | None, bool]"]


def _rtaddr_out(s: Setup) -> tuple[int, int | None, bool]:
    s.t.root = OUTSIDE
    return 0x8, None, False


def _root_np(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.t.root + 16 * (SID >> 8), clear=1)
    return 0x1, None, False


def _root_rsvd(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.t.root + 16 * (SID >> 8) + 8, set_=1 << 5)
    return 0xA, None, False


def _ctx_table_out(s: Setup) -> tuple[int, int | None, bool]:
    s.w(s.t.root + 16 * (SID >> 8), OUTSIDE | 1)
    return 0x9, None, False


def _ctx_np(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.ce, clear=1)
    return 0x2, None, False


def _ctx_rsvd(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.ce + 8, set_=1 << 40)
    return 0xB, None, False


def _ctx_bad_aw(s: Setup) -> tuple[int, int | None, bool]:
    s.w(s.ce + 8, 4 | (DID << 8))
    return 0x3, None, False


def _ctx_bad_tt(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.ce, set_=3 << 2)
    return 0x3, None, False


def _beyond(s: Setup) -> tuple[int, int | None, bool]:
    return 0x4, 1 << (30 + 9 * (s.levels - 2)), False


def _no_write(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.path[0], clear=W)  # the top level, not the leaf
    return 0x5, None, True


def _no_read(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.path[-1], clear=R)
    return 0x6, None, False


def _top_out(s: Setup) -> tuple[int, int | None, bool]:
    s.w(s.ce, OUTSIDE | 1)
    return 0x3, None, False


def _mid_out(s: Setup) -> tuple[int, int | None, bool]:
    s.w(s.path[1], OUTSIDE | R | W)
    return 0x7, None, False


def _pte_rsvd_leaf(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.path[-1], set_=SNP)
    return 0xC, None, False


def _pte_rsvd_tm(s: Setup) -> tuple[int, int | None, bool]:
    s.set_bits(s.path[1], set_=TM)
    return 0xC, None, False


def _pte_rsvd_top_ps(s: Setup) -> tuple[int, int | None, bool]:
    # PS at L4/L5 is reserved; at L3 it makes a 1 GiB leaf whose address (a table's, not
    # 1 GiB aligned) has reserved low bits.
    s.set_bits(s.path[0], set_=PS)
    return 0xC, None, False


def _interrupt(s: Setup) -> tuple[int, int | None, bool]:
    s.w(s.path[-1], 0xFEE0_0000 | R | W)
    return 0xE, None, False


SCENARIOS: dict[str, Scenario] = {
    "root_table_outside": _rtaddr_out,
    "root_not_present": _root_np,
    "root_reserved": _root_rsvd,
    "context_table_outside": _ctx_table_out,
    "context_not_present": _ctx_np,
    "context_reserved": _ctx_rsvd,
    "context_bad_aw": _ctx_bad_aw,
    "context_bad_tt": _ctx_bad_tt,
    "beyond_width": _beyond,
    "no_write_non_leaf": _no_write,
    "no_read_leaf": _no_read,
    "top_table_outside": _top_out,
    "mid_table_outside": _mid_out,
    "leaf_snp_reserved": _pte_rsvd_leaf,
    "tm_reserved": _pte_rsvd_tm,
    "ps_at_top": _pte_rsvd_top_ps,
    "interrupt_range": _interrupt,
}


@pytest.mark.parametrize("levels", [3, 4, 5])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fault_reason(levels: int, name: str) -> None:
    s = Setup(levels)
    check(s, 0)
    expected, iova, write = SCENARIOS[name](s)
    check(s, expected, iova, write)


@pytest.mark.parametrize("levels", [3, 4, 5])
def test_translation_fields(levels: int) -> None:
    s = Setup(levels)
    r = s.unit()
    t = r.translate(SID, s.iova | 0xABC, write=True)
    assert isinstance(t, Translation)
    assert (t.hpa, t.page_size, t.level, t.domain_id, t.read, t.write) == (
        s.hpa | 0xABC,
        4096,
        1,
        DID,
        True,
        True,
    )
    assert r.levels_supported == [lv for lv in (3, 4, 5) if CAPS[levels] >> 8 & (1 << (lv - 2))]


@pytest.mark.parametrize("levels", [3, 4, 5])
@pytest.mark.parametrize("leaf", [2, 3])
def test_superpages(levels: int, leaf: int) -> None:
    s = Setup(levels)
    size = 1 << (12 + 9 * (leaf - 1))
    iova = 0x7_4000_0000 + 5 * size if leaf == 2 else 0x7_4000_0000 + size
    hpa = 0x40_0000_0000 + 3 * size  # below 2^39
    path = s.t.map(s.top, levels, iova, hpa, leaf_level=leaf)
    r = s.unit()
    t = r.translate(SID, iova + 0x12345, write=True)
    assert (t.hpa, t.page_size, t.level) == (hpa + 0x12345, size, leaf)
    assert reference(s.mem, r, SID, iova + 0x12345, True).hpa == hpa + 0x12345
    # The address bits below the page size are reserved in a superpage leaf.
    s.set_bits(path[-1], set_=0x1000)
    check(s, 0xC, iova)
    s.set_bits(path[-1], clear=0x1000)
    # Without CAP.SLLPS for that size, PS is reserved.
    no_sp = s.cap & ~(1 << (34 if leaf == 2 else 35))
    r2 = s.unit(cap=no_sp)
    assert reason(r2, SID, iova) == 0xC
    assert reference(s.mem, r2, SID, iova, False).fault == 0xC


def test_pass_through_and_translation_requests() -> None:
    s = Setup(4)
    s.set_bits(s.ce, set_=2 << 2)  # TT = 2
    t = s.unit().translate(SID, 0xDEAD_B000, write=True)
    assert (t.hpa, t.level, t.page_size, t.read, t.write) == (0xDEAD_B000, 0, 4096, True, True)
    # Without ECAP.PT the context is invalid.
    assert reason(s.unit(ecap=0xF00F0E), SID, 0) == 0x3
    # A translation request needs TT = 1 (device IOTLB), else 0xD.
    assert reason(s.unit(), SID, s.iova, translation_request=True) == 0xD
    s.set_bits(s.ce, clear=3 << 2, set_=1 << 2)
    assert s.unit().translate(SID, s.iova, translation_request=True).hpa == s.hpa
    assert reason(s.unit(ecap=0xF00F4A), SID, s.iova) == 0x3  # TT 1 without ECAP.DT
    s.set_bits(s.ce, clear=3 << 2)
    assert reason(s.unit(), SID, s.iova, translation_request=True) == 0xD


def test_no_root_table_and_srtp() -> None:
    s = Setup(4)
    r = Remapper(s.mem)
    assert r.root_table is None
    assert reason(r, SID, s.iova) == 0x8
    r.root_table = s.t.root
    assert r.translate(SID, s.iova).hpa == s.hpa
    # SRTP flushes: a rewritten PTE is seen at once after re-latching the same root.
    s.w(s.path[-1], 0x999_9000 | R | W)
    assert r.translate(SID, s.iova).hpa == s.hpa
    r.root_table = s.t.root
    assert r.translate(SID, s.iova).hpa == 0x999_9000
    with pytest.raises(InvalidArgument):
        r.root_table = s.t.root | 0x400


@pytest.mark.parametrize("how", ["global", "domain", "page"])
def test_iotlb_stale_until_invalidated(how: str) -> None:
    s = Setup(4)
    nxt = s.iova + 0x1000
    npath = s.t.map(s.top, 4, nxt, 0x777_7000)
    r = s.unit()
    assert r.translate(SID, s.iova).hpa == s.hpa
    assert r.translate(SID, nxt).hpa == 0x777_7000
    s.w(s.path[-1], 0xB00_0000 | R | W)
    s.w(npath[-1], 0xB00_1000 | R | W)
    assert r.translate(SID, s.iova).hpa == s.hpa  # stale, as in hardware
    # Another domain's invalidation leaves it stale.
    r.invalidate_iotlb("domain", did=DID + 1)
    r.invalidate_iotlb("page", did=DID + 1, addr=s.iova)
    assert r.translate(SID, s.iova).hpa == s.hpa
    if how == "global":
        r.invalidate_iotlb("global")
    elif how == "domain":
        r.invalidate_iotlb("domain", did=DID)
    else:
        r.invalidate_iotlb("page", did=DID, addr=s.iova)
    assert r.translate(SID, s.iova).hpa == 0xB00_0000
    # Page-selective invalidation leaves the neighbour cached.
    assert r.translate(SID, nxt).hpa == (0x777_7000 if how == "page" else 0xB00_1000)
    if how == "page":
        r.invalidate_iotlb("page", did=DID, addr=s.iova, am=1)  # both pages
        assert r.translate(SID, nxt).hpa == 0xB00_1000


def test_psi_removes_covering_superpage() -> None:
    s = Setup(4)
    iova = 0x4000_0000
    path = s.t.map(s.top, 4, iova, 0x20_0000, leaf_level=2)
    r = s.unit()
    assert r.translate(SID, iova + 0x5000).page_size == 2 * MIB
    s.w(path[-1], 0x40_0000 | R | W | PS)
    assert r.translate(SID, iova).hpa == 0x20_0000
    r.invalidate_iotlb("page", did=DID, addr=iova + 0x5000)
    assert r.translate(SID, iova).hpa == 0x40_0000


def test_write_through_cached_read_only_entry_faults() -> None:
    s = Setup(4)
    s.set_bits(s.path[-1], clear=W)
    r = s.unit()
    t = r.translate(SID, s.iova)
    assert (t.read, t.write) == (True, False)
    assert reason(r, SID, s.iova, write=True) == 0x5
    st = r.stats()
    assert (st["hits"], st["walks"]) == (1, 1)
    (f,) = r.faults()
    assert isinstance(f, FaultRecord)
    assert (f.reason, f.name, f.sid, f.write, f.fault_address) == (5, "WRITE", SID, True, s.iova)


def test_context_cache_stale_until_invalidated() -> None:
    s = Setup(4)
    r = s.unit()
    assert r.translate(SID, s.iova).domain_id == DID
    s.w(s.ce + 8, 2 | (7 << 8))  # new DID
    assert r.translate(SID, s.iova).domain_id == DID
    r.invalidate_context("domain", did=7)
    assert r.translate(SID, s.iova).domain_id == DID
    r.invalidate_context("device", sid=SID ^ 0b101, fm=2)  # bit 0 differs: not covered
    assert r.translate(SID, s.iova).domain_id == DID
    r.invalidate_context("device", sid=SID ^ 0b100, fm=1)
    assert r.translate(SID, s.iova).domain_id == 7
    s.w(s.ce + 8, 2 | (9 << 8))
    r.invalidate_context("domain", did=7)
    assert r.translate(SID, s.iova).domain_id == 9
    s.w(s.ce + 8, 2 | (DID << 8))
    r.invalidate_context("global")
    assert r.translate(SID, s.iova).domain_id == DID
    st = r.stats()
    assert st["context_misses"] == 4 and st["context_hits"] == 3
    off = s.unit(context_cache=False)
    off.translate(SID, s.iova)
    off.translate(SID, s.iova)
    assert off.stats()["context_misses"] == 2


def test_fault_recording_overflow_compression_fpd() -> None:
    s = Setup(4)
    for sid in (0x10, 0x11, 0x12):
        s.t.context(sid, s.top, 4, DID, fpd=sid == 0x12)
    r = s.unit(fault_records=2)
    assert (r.cap >> 40) & 0xFF == 1  # NFR = records - 1
    bad = 1 << 50
    assert reason(r, 0x12, bad) == 0x4  # FPD: counted, not recorded
    assert reason(r, 0x10, bad) == 0x4
    assert reason(r, 0x10, bad + 0x1000, True) == 0x4  # same SID pending: compressed
    assert reason(r, 0x11, bad) == 0x4
    assert reason(r, SID, bad) == 0x4  # ring full: PFO, dropped
    assert reason(r, 0x7700, 0) == 0x1  # bus 0x77 has no context table
    st = r.stats()
    assert st["faults"] == 6
    assert st["faults_suppressed_fpd"] == 1
    assert st["faults_compressed"] == 1
    assert st["faults_recorded"] == 2
    assert st["faults_overflow"] == 2
    assert [(f.sid, f.reason) for f in r.faults()] == [(0x10, 4), (0x11, 4)]
    assert r.faults() == []
    assert r.fault_counts() == {0x4: 5, 0x1: 1}
    # Drained and PFO cleared: recording resumes.
    assert reason(r, SID, bad) == 0x4
    assert [f.sid for f in r.faults()] == [SID]


def test_bad_arguments() -> None:
    s = Setup(4)
    r = s.unit()
    with pytest.raises(InvalidArgument):
        r.translate(0x10000, 0)
    with pytest.raises(InvalidArgument):
        r.invalidate_iotlb("nope")
    with pytest.raises(InvalidArgument):
        r.invalidate_iotlb("page", did=1)
    with pytest.raises(InvalidArgument):
        r.invalidate_iotlb("page", did=1, addr=0, am=19)
    with pytest.raises(InvalidArgument):
        r.invalidate_context("device", sid=1, fm=4)
    with pytest.raises(InvalidArgument):
        r.invalidate_context("domain")
    with pytest.raises(InvalidArgument):
        s.unit(fault_records=0)
    with pytest.raises(InvalidArgument):
        Remapper(s.mem, root_table=0x1001)
    with pytest.raises(InvalidArgument):
        r.translate_batch(np.zeros(2, np.uint16), np.zeros(3, np.uint64))
    with pytest.raises(InvalidArgument):
        r.translate_batch(np.zeros(2, np.uint16), np.zeros(2, np.uint64), threads=0)


def _batch_world(seed: int) -> tuple[Setup, list[int], list[int]]:
    rnd = random.Random(seed)
    s = Setup(4)
    sids = [SID, 0x0309, 0x0400, 0x0500]
    s.t.context(0x0309, s.top, 4, DID)  # same domain
    top2 = s.t.page()
    s.t.context(0x0400, top2, 3, 7, fpd=True)
    pages = [rnd.randrange(0, 1 << 30) & ~0xFFF for _ in range(300)]
    for i, p in enumerate(pages):
        s.t.map(s.top, 4, p, 0x100_0000 + i * 0x1000, perm=rnd.choice([R, W, R | W]))
        s.t.map(top2, 3, p, 0x200_0000 + i * 0x1000)
    return s, sids, pages


@pytest.mark.parametrize("iotlb", [0, 16, 4096])
def test_batch_equals_single_calls(iotlb: int) -> None:
    rnd = random.Random(iotlb)
    s, sids, pages = _batch_world(iotlb)
    n = 20_000
    req_sid = np.array([rnd.choice(sids) for _ in range(n)], dtype=np.uint16)
    req_iova = np.array(
        [
            rnd.choice(pages) + rnd.randrange(4096) if rnd.random() < 0.9 else rnd.getrandbits(50)
            for _ in range(n)
        ],
        dtype=np.uint64,
    )
    req_w = np.array([rnd.random() < 0.3 for _ in range(n)], dtype=np.bool_)
    single = s.unit(iotlb_entries=iotlb)
    exp_h = np.zeros(n, np.uint64)
    exp_f = np.zeros(n, np.uint8)
    for i in range(n):
        try:
            exp_h[i] = single.translate(int(req_sid[i]), int(req_iova[i]), bool(req_w[i])).hpa
        except DmaFault as e:
            exp_f[i] = e.reason
    for threads in (1, 2, 4):
        batch = s.unit(iotlb_entries=iotlb)
        h, f = batch.translate_batch(req_sid, req_iova, req_w, threads=threads)
        assert h.dtype == np.uint64 and f.dtype == np.uint8
        assert np.array_equal(h, exp_h) and np.array_equal(f, exp_f)
        assert batch.stats() == single.stats()
        assert batch.fault_counts() == single.fault_counts()
    assert single.stats()["faults"] > 0 and single.stats()["walks"] > 0
    if iotlb:
        assert single.stats()["hits"] > 0
    if iotlb == 16:
        assert single.stats()["evictions"] > 0


def test_threaded_batches_honour_stale_caches_like_single_calls() -> None:
    """Tables change between batches without (or with only partial) invalidation: a stale
    context-cache entry or IOTLB entry must decide the result in a batch on several threads
    exactly as in the same calls one by one (the threads walk what memory says; the in-order
    pass takes a walk only when it is the one the cached state asks for)."""
    rnd = random.Random(7)
    s, sids, pages = _batch_world(7)
    n = 3 * 4096 + 77

    def requests() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sid = np.array([rnd.choice(sids) for _ in range(n)], dtype=np.uint16)
        iova = np.array(
            [rnd.choice(pages) + rnd.randrange(4096) for _ in range(n)], dtype=np.uint64
        )
        w = np.array([rnd.random() < 0.3 for _ in range(n)], dtype=np.bool_)
        return sid, iova, w

    top3 = s.t.page()  # a second table for SID's domain, with other host pages
    for i, p in enumerate(pages):
        s.t.map(top3, 4, p, 0x300_0000 + i * 0x1000)
    changes: list[Callable[[], object]] = [
        lambda: None,
        # The context entry now points at the other table: stale in the context cache.
        lambda: s.t.context(SID, top3, 4, DID),
        # Leaves change under cached translations: stale in the IOTLB.
        lambda: [s.t.map(top3, 4, p, 0x400_0000 + i * 0x1000) for i, p in enumerate(pages[:150])],
        lambda: s.t.context(0x0309, top3, 4, DID),
    ]
    units = {th: s.unit(iotlb_entries=256) for th in (1, 2, 3)}
    single = s.unit(iotlb_entries=256)
    for k, change in enumerate(changes):
        change()
        if k == 3:
            # Only SID's context is invalidated: 0x0309's and the IOTLB stay stale.
            for u in [single, *units.values()]:
                u.invalidate_context("device", sid=SID, fm=0)
        sid, iova, w = requests()
        exp_h = np.zeros(n, np.uint64)
        exp_f = np.zeros(n, np.uint8)
        for i in range(n):
            try:
                exp_h[i] = single.translate(int(sid[i]), int(iova[i]), bool(w[i])).hpa
            except DmaFault as e:
                exp_f[i] = e.reason
        for th, u in units.items():
            h, f = u.translate_batch(sid, iova, w, threads=th)
            assert np.array_equal(h, exp_h) and np.array_equal(f, exp_f), (k, th)
            assert u.stats() == single.stats(), (k, th)
            assert u.fault_counts() == single.fault_counts(), (k, th)
    # The stale state did decide: some results still come from the first table's pages.
    assert (exp_h >= 0x100_0000).any() and (exp_h < 0x200_0000).any()
    assert ((exp_h >= 0x300_0000) & (exp_h < 0x500_0000)).any()


def test_batch_default_writes_and_empty() -> None:
    s = Setup(4)
    r = s.unit()
    h, f = r.translate_batch(np.array([SID], np.uint16), np.array([s.iova], np.uint64))
    assert (int(h[0]), int(f[0])) == (s.hpa, 0)
    h, f = r.translate_batch(np.zeros(0, np.uint16), np.zeros(0, np.uint64))
    assert len(h) == 0 and len(f) == 0


def test_eviction_is_lru_like() -> None:
    s = Setup(4)
    pages = [s.iova + (i << 12) for i in range(8)]
    for i, p in enumerate(pages):
        s.t.map(s.top, 4, p, 0x300_0000 + (i << 12))
    r = s.unit(iotlb_entries=4)
    assert r.iotlb_entries == 4
    for p in pages[:4]:
        r.translate(SID, p)
    r.translate(SID, pages[0])  # keep page 0 hot
    r.translate(SID, pages[4])  # evicts one of pages 1..3
    st = r.stats()
    assert st["evictions"] == 1 and st["iotlb_size"] == 4
    before = r.stats()["hits"]
    r.translate(SID, pages[0])
    assert r.stats()["hits"] == before + 1


def test_reference_matches_level_index() -> None:
    # A sanity check of the test helpers themselves against the spec's worked example.
    assert [level_index(0x8080604000, lv) for lv in (4, 3, 2, 1)] == [1, 2, 3, 4]
