"""Random tables, well-formed and corrupted, translate identically in the Rust remapper and in
the independent pure-Python reference walker (tests/reference/hw_walk.py), one by one and in
batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from reference import hw_walk
from reference.tables import CAP39, CAP48, CAP57, R, Tables, W
from vtdwalk import DmaFault, MemoryAccessError, PhysMem, Remapper

MIB = 1 << 20
HIGH = 1 << 36  # a second node, far from the first
CAPS = [
    CAP39,
    CAP48,
    CAP57,
    CAP48 & ~(1 << 35),  # no 1 GiB pages
    CAP57 & ~(3 << 34),  # no superpages
    CAP48 & ~(0x4 << 8),  # only 3-level
]
ECAPS = [0xF00F4E, 0xF00F4A, 0xF00FCE, 0xF00F0A]


class TrackedTables(Tables):
    """Tables whose pages are remembered, so corruption can reach any of them."""

    def __init__(self, mem: PhysMem, rnd: random.Random) -> None:
        self.pages: list[int] = []
        self.rnd = rnd
        super().__init__(mem)
        self.pages.append(self.root)

    def page(self) -> int:
        p = self.mem.alloc_pages(1, node=self.rnd.randrange(2))
        self.pages.append(p)
        return p


def build(seed: int) -> tuple[PhysMem, Remapper, Remapper, list[tuple[int, int, bool]]]:
    rnd = random.Random(seed)
    mem = PhysMem([(0, 4 * MIB), (HIGH, 4 * MIB)])
    cap, ecap = rnd.choice(CAPS), rnd.choice(ECAPS)
    t = TrackedTables(mem, rnd)
    haw = min(((cap >> 16) & 0x3F) + 1, 52)
    queries: list[tuple[int, int, bool]] = []
    sids = []
    for _ in range(rnd.randint(1, 4)):
        sid = rnd.getrandbits(16)
        supported = [lv for lv in (3, 4, 5) if cap >> 8 & (1 << (lv - 2))]
        levels = rnd.choice(supported) if rnd.random() < 0.9 else rnd.choice([3, 4, 5])
        top = t.page()
        tt = rnd.choice([0] * 12 + [1, 1, 2, 3])
        t.context(sid, top, levels, rnd.getrandbits(16), tt=tt, fpd=rnd.random() < 0.2)
        sids.append(sid)
        width = 30 + 9 * (levels - 2)
        base = rnd.getrandbits(width) & ~0x3FFF_FFFF
        for _ in range(rnd.randint(1, 12)):
            leaf = rnd.choice([1, 1, 1, 2, 3])
            size = 1 << (12 + 9 * (leaf - 1))
            iova = (base + rnd.randrange(1 << 32)) % (1 << width) & ~(size - 1)
            hpa = rnd.getrandbits(min(haw, 40)) & ~(size - 1)
            if rnd.random() < 0.05:
                hpa |= 1 << rnd.randrange(haw, 52) if haw < 52 else 0
            perm = rnd.choice([R | W, R | W, R, W, 0])
            t.map(top, levels, iova, hpa, leaf_level=leaf, perm=perm)
            for _ in range(3):
                queries.append((sid, iova + rnd.randrange(size), rnd.random() < 0.4))
            queries.append((sid, iova + size, False))
    # Corruption: flipped bits and wild pointers anywhere in the tables.
    if rnd.random() < 0.6:
        for _ in range(rnd.randint(1, 6)):
            page = rnd.choice(t.pages)
            if page in (t.root, *t.ctx.values()) or rnd.random() < 0.5:
                # Hit the entries in use, not the zeros around them.
                used = [a for a in range(page, page + 4096, 8) if mem.read_u64(a)]
                addr = rnd.choice(used) if used else page
            else:
                addr = page + 8 * rnd.randrange(512)
            v = mem.read_u64(addr)
            kind = rnd.randrange(4)
            if kind == 0:
                v ^= 1 << rnd.randrange(64)
            elif kind == 1:
                v = rnd.choice(t.pages) | rnd.getrandbits(3) | (rnd.getrandbits(1) << 7)
            elif kind == 2:
                v = rnd.getrandbits(64)
            else:
                v = (v & 0xFFF) | (1 << 32)  # a pointer outside memory
            mem.write_u64(addr, v)
    for _ in range(8):
        queries.append((rnd.choice(sids), rnd.getrandbits(rnd.choice([20, 39, 48, 57, 64])), False))
        queries.append((rnd.getrandbits(16), rnd.getrandbits(39), rnd.random() < 0.5))
    rnd.shuffle(queries)
    rt = t.root if rnd.random() < 0.97 else None
    small = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=rnd.choice([0, 1, 4, 64]))
    other = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=small.iotlb_entries)
    return mem, small, other, queries


def run_one(seed: int) -> int:
    mem, r, b, queries = build(seed)

    def read64(a: int) -> int | None:
        try:
            return mem.read_u64(a)
        except MemoryAccessError:
            return None

    unit = hw_walk.Unit(r.cap, r.ecap)
    ok = 0
    got: list[tuple[int, int]] = []
    for sid, iova, write in queries:
        ref = hw_walk.translate(unit, read64, r.root_table, sid, iova, write)
        try:
            t = r.translate(sid, iova, write)
            res = (t.hpa, 0)
            assert (t.level, t.read, t.write, t.domain_id) == (
                ref.level,
                ref.read,
                ref.write,
                ref.did,
            )
            ok += 1
        except DmaFault as e:
            res = (0, int(e.reason))
        assert res == (ref.hpa, ref.fault), (seed, hex(sid), hex(iova), write)
        got.append(res)
    h, f = b.translate_batch(
        np.array([q[0] for q in queries], np.uint16),
        np.array([q[1] for q in queries], np.uint64),
        np.array([q[2] for q in queries], np.bool_),
    )
    assert [(int(x), int(y)) for x, y in zip(h, f, strict=True)] == got
    assert b.stats() == r.stats()
    return ok


def test_random_tables_match_reference() -> None:
    ok = sum(run_one(seed) for seed in range(1500))
    assert ok > 1000  # plenty of successful translations, not only faults


@pytest.mark.slow
def test_random_tables_match_reference_long() -> None:
    for seed in range(1500, 8000):
        run_one(seed)
