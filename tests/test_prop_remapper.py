"""The hardware walk over memory whose root, context and paging entries Hypothesis draws: the
Rust Remapper and the reference walker of tests/reference/hw_walk.py (written from
vtd-hardware.md) give the same hpa or the same fault reason, uncached, cached and in batches.

Entries are drawn along the path a request takes (so walks get deep), from a mixture of
well-formed pointers to the arena's pages with drawn low bits, wild pointers and raw 64-bit
values; extra raw words land anywhere in the arena.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference import hw_walk
from reference.tables import CAP39, CAP48, CAP57
from vtdwalk import DmaFault, MemoryAccessError, PhysMem, Remapper

BASE = 0x10_0000  # the arena: NPAGES pages from 1 MiB
NPAGES = 8
CAPS = [CAP39, CAP48, CAP57, CAP48 & ~(1 << 35), CAP57 & ~(3 << 34), CAP48 & ~(0x4 << 8)]
ECAPS = [0xF00F4E, 0xF00F4A, 0xF00FCE, 0xF00F0A]
ADDR = 0x000F_FFFF_FFFF_F000


def page(i: int) -> int:
    return BASE + i * 4096


@st.composite
def entry_lo(draw: st.DrawFn, low_bits: int) -> int:
    """A 64-bit entry word: usually a pointer to an arena page with some of ``low_bits``."""
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        ptr = page(draw(st.integers(0, NPAGES - 1)))
        low = draw(st.integers(0, low_bits)) & low_bits
        return ptr | low | (1 if kind <= 4 else 0)
    if kind == 7:  # a pointer outside the arena or above the host address width
        return (draw(st.integers(0, (1 << 52) - 1)) & ADDR) | draw(st.integers(0, 0xFFF))
    if kind == 8:
        return draw(st.integers(0, (1 << 64) - 1))
    return 0


@st.composite
def scenes(draw: st.DrawFn) -> tuple[PhysMem, int, int, int | None, list[tuple[int, int, bool]]]:
    cap, ecap = draw(st.sampled_from(CAPS)), draw(st.sampled_from(ECAPS))
    mem = PhysMem([(BASE, NPAGES * 4096)])
    root = page(0)
    queries: list[tuple[int, int, bool]] = []
    for _ in range(draw(st.integers(1, 3))):
        sid = draw(st.integers(0, 0xFFFF))
        iova = draw(st.integers(0, (1 << draw(st.sampled_from([21, 30, 39, 48, 57, 64]))) - 1))
        write = draw(st.booleans())
        bus, devfn = sid >> 8, sid & 0xFF
        r_lo = draw(entry_lo(0xFFE))
        mem.write_u64(root + 16 * bus, r_lo)
        if draw(st.integers(0, 9)) == 0:
            mem.write_u64(root + 16 * bus + 8, draw(st.integers(1, (1 << 64) - 1)))
        ctp = r_lo & ADDR
        if BASE <= ctp < page(NPAGES):
            c_lo = draw(entry_lo(0xFFE))
            odd_aw = draw(st.integers(0, 9)) == 0
            aw = draw(st.integers(0, 7)) if odd_aw else draw(st.integers(1, 3))
            c_hi = aw | (draw(st.integers(0, 0xFFFF)) << 8)
            if draw(st.integers(0, 9)) == 0:
                c_hi |= draw(st.integers(0, (1 << 64) - 1)) & ~0xFFFF07
            mem.write_u64(ctp + 16 * devfn, c_lo)
            mem.write_u64(ctp + 16 * devfn + 8, c_hi)
            table = c_lo & ADDR
            for level in range(aw + 2, 0, -1):
                if not BASE <= table < page(NPAGES):
                    break
                pte = draw(entry_lo(0xFFF | (1 << 62) | (1 << 11)))
                if draw(st.integers(0, 3)) == 0:
                    pte |= 1 << 7  # a superpage leaf
                mem.write_u64(table + 8 * ((iova >> (12 + 9 * (level - 1))) & 0x1FF), pte)
                table = pte & ADDR
        queries.append((sid, iova, write))
        queries.append((sid, iova ^ draw(st.integers(0, 0xFFFFF)), not write))
    for _ in range(draw(st.integers(0, 6))):
        mem.write_u64(
            page(draw(st.integers(0, NPAGES - 1))) + 8 * draw(st.integers(0, 511)),
            draw(entry_lo(0xFFF)),
        )
    rt = root if draw(st.integers(0, 19)) else None
    return mem, cap, ecap, rt, queries


def did_aliased(mem: PhysMem, unit: hw_walk.Unit, rt: int | None, sids: set[int]) -> bool:
    """Whether two present context entries of ``sids`` carry one DID with different tables."""
    if rt is None:
        return False
    read = read64(mem)
    seen: dict[int, tuple[int, int]] = {}
    for sid in sids:
        r_lo = read(rt + 16 * (sid >> 8))
        if r_lo is None or not r_lo & 1:
            continue
        ce = (r_lo & ADDR) + 16 * (sid & 0xFF)
        c_lo, c_hi = read(ce), read(ce + 8)
        if c_lo is None or c_hi is None or not c_lo & 1:
            continue
        did = (c_hi >> 8) & 0xFFFF & unit.did_mask()
        table = (c_lo & ~0xFF1, c_hi & 7)
        if seen.setdefault(did, table) != table:
            return True
    return False


def read64(mem: PhysMem) -> hw_walk.Read64:
    def read(a: int) -> int | None:
        try:
            return mem.read_u64(a)
        except MemoryAccessError:
            return None

    return read


@given(scenes(), st.sampled_from([0, 1, 64]))
def test_walk_matches_reference(
    scene: tuple[PhysMem, int, int, int | None, list[tuple[int, int, bool]]], iotlb: int
) -> None:
    mem, cap, ecap, rt, queries = scene
    unit = hw_walk.Unit(cap, ecap)
    if did_aliased(mem, unit, rt, {q[0] for q in queries}):
        # Two contexts share a DID over different tables: the IOTLB may rightly serve one
        # the other's translations, so only uncached walks are comparable.
        iotlb = 0
    r = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=iotlb)
    want: list[tuple[int, int]] = []
    for _ in range(2):  # the second pass may hit the IOTLB and context cache
        got: list[tuple[int, int]] = []
        for sid, iova, write in queries:
            ref = hw_walk.translate(unit, read64(mem), rt, sid, iova, write)
            try:
                t = r.translate(sid, iova, write)
            except DmaFault as e:
                res = (0, int(e.reason))
            else:
                res = (t.hpa, 0)
                assert (t.level, t.read, t.write, t.domain_id) == (
                    ref.level,
                    ref.read,
                    ref.write,
                    ref.did,
                )
            assert res == (ref.hpa, ref.fault), (hex(sid), hex(iova), write)
            got.append(res)
        want = want or got
        assert got == want
    batch = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=iotlb)
    h, f = batch.translate_batch(
        np.array([q[0] for q in queries], np.uint16),
        np.array([q[1] for q in queries], np.uint64),
        np.array([q[2] for q in queries], np.bool_),
    )
    assert [(int(x), int(y)) for x, y in zip(h, f, strict=True)] == want
