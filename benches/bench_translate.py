"""The hardware walk over 1M mapped 4 KiB pages (4 levels): translate_batch of 1M random IOVAs
with the IOTLB off (every translation walks) and on (all hits), single translate() calls, the
pure-Python reference walker and a numpy-vectorised walk of the same tables.

Run (release build first: maturin develop --release):
    python -m pytest benches/bench_translate.py --benchmark-enable --benchmark-only \
        --benchmark-columns=median,iqr,rounds -q
Divide each median by the number of translations in its group name for ns per translation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from reference import hw_walk
from vtdwalk import MemoryAccessError, PhysMem, Remapper

GIB = 1 << 30
PAGES = 1 << 20
N = 1 << 20  # translations per batch
N_SINGLE = 20_000
N_PY = 5_000
SID = 0x0308
DATA = 32 * GIB  # host pages mapped 1:1 in order from here
R, W = 1, 2
ADDR = 0x000F_FFFF_FFFF_F000


@dataclass
class World:
    mem: PhysMem
    root: int
    l4: int
    tables: dict[int, npt.NDArray[np.uint64]]  # table address -> its 512 entries
    iovas: npt.NDArray[np.uint64]
    sids: npt.NDArray[np.uint16]


@pytest.fixture(scope="module")
def world() -> World:
    mem = PhysMem([(0, 64 * GIB)])
    tables: dict[int, npt.NDArray[np.uint64]] = {}

    def table(entries: npt.NDArray[np.uint64]) -> int:
        a = mem.alloc_pages(1)
        mem.write_u64s(a, entries)
        tables[a] = entries
        return a

    l3_entries = np.zeros(512, np.uint64)
    for g in range(PAGES // (512 * 512)):
        l2_entries = np.zeros(512, np.uint64)
        for t in range(512):
            first = (g * 512 + t) * 512
            leaves = DATA + (np.arange(first, first + 512, dtype=np.uint64) << np.uint64(12))
            l2_entries[t] = table(leaves | np.uint64(R | W)) | (R | W)
        l3_entries[g] = table(l2_entries) | (R | W)
    l3 = table(l3_entries)
    l4_entries = np.zeros(512, np.uint64)
    l4_entries[0] = l3 | R | W
    l4 = table(l4_entries)
    root, ctx = mem.alloc_pages(1), mem.alloc_pages(1)
    mem.write_u64(root + 16 * (SID >> 8), ctx | 1)
    mem.write_u64(ctx + 16 * (SID & 0xFF), l4 | 1)
    mem.write_u64(ctx + 16 * (SID & 0xFF) + 8, 2 | (1 << 8))
    rng = np.random.default_rng(5)
    pages = rng.integers(0, PAGES, N, dtype=np.uint64)
    iovas = (pages << np.uint64(12)) | rng.integers(0, 4096, N, dtype=np.uint64)
    return World(mem, root, l4, tables, iovas, np.full(N, SID, np.uint16))


def expected_hpa(w: World, iovas: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    out: npt.NDArray[np.uint64] = np.uint64(DATA) + iovas
    return out


class NumpyWalk:
    """The same 4-level walk vectorised with numpy: one gather per level over a dense copy of
    the tables, with the permission and reserved-bit checks of a read."""

    def __init__(self, w: World) -> None:
        addrs = sorted(w.tables)
        self.addrs = np.array(addrs, np.uint64)
        self.dense = np.stack([w.tables[a] for a in addrs])
        self.top = w.l4
        self.rsvd = np.uint64(0x400F000000000800)  # aw48 non-leaf / L1 mask (spec §1.7)

    def __call__(self, iovas: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        fault = np.zeros(len(iovas), np.uint8)
        table = np.full(len(iovas), self.top, np.uint64)
        for level in (4, 3, 2, 1):
            shift = np.uint64(12 + 9 * (level - 1))
            idx = ((iovas >> shift) & np.uint64(511)).astype(np.intp)
            row = np.searchsorted(self.addrs, table)
            row = np.minimum(row, len(self.addrs) - 1)
            known = self.addrs[row] == table
            pte = np.where(known, self.dense[row, idx], np.uint64(0))
            fault[(fault == 0) & ~known] = 0x7 if level < 4 else 0x3
            fault[(fault == 0) & ((pte & np.uint64(R)) == 0)] = 0x6
            mask = self.rsvd | (np.uint64(0x80) if level == 4 else np.uint64(0))
            fault[(fault == 0) & ((pte & mask) != 0)] = 0xC
            table = pte & np.uint64(ADDR)
        hpa = np.where(fault == 0, table | (iovas & np.uint64(0xFFF)), np.uint64(0))
        return hpa, fault


@pytest.mark.benchmark(group=f"translate_batch {N} random IOVAs, IOTLB off (walks)")
def test_batch_iotlb_off(benchmark: Any, world: World) -> None:
    r = Remapper(world.mem, world.root, iotlb_entries=0)
    hpa, fault = benchmark.pedantic(
        lambda: r.translate_batch(world.sids, world.iovas, threads=1), rounds=3, iterations=1
    )
    assert not fault.any() and np.array_equal(hpa, expected_hpa(world, world.iovas))
    assert r.stats()["hits"] == 0


@pytest.mark.benchmark(group=f"translate_batch {N} random IOVAs, IOTLB off (walks)")
def test_batch_iotlb_off_threads(benchmark: Any, world: World) -> None:
    r = Remapper(world.mem, world.root, iotlb_entries=0)
    hpa, fault = benchmark.pedantic(
        lambda: r.translate_batch(world.sids, world.iovas), rounds=3, iterations=1
    )
    assert not fault.any() and np.array_equal(hpa, expected_hpa(world, world.iovas))


@pytest.mark.benchmark(group=f"translate_batch {N} random IOVAs, IOTLB off (walks)")
def test_numpy_vectorised_walk(benchmark: Any, world: World) -> None:
    walk = NumpyWalk(world)
    hpa, fault = benchmark.pedantic(lambda: walk(world.iovas), rounds=3, iterations=1)
    assert not fault.any() and np.array_equal(hpa, expected_hpa(world, world.iovas))


@pytest.mark.benchmark(group=f"translate_batch {N} random IOVAs, IOTLB hits")
def test_batch_iotlb_hits(benchmark: Any, world: World) -> None:
    r = Remapper(world.mem, world.root, iotlb_entries=PAGES)
    r.translate_batch(world.sids, world.iovas, threads=1)  # warm: every page cached
    before = r.stats()
    hpa, fault = benchmark.pedantic(
        lambda: r.translate_batch(world.sids, world.iovas, threads=1), rounds=3, iterations=1
    )
    assert not fault.any() and np.array_equal(hpa, expected_hpa(world, world.iovas))
    assert r.stats()["walks"] == before["walks"]  # all hits


@pytest.mark.benchmark(group=f"single translate() x {N_SINGLE}")
def test_single_calls(benchmark: Any, world: World) -> None:
    r = Remapper(world.mem, world.root, iotlb_entries=0)
    iovas = [int(x) for x in world.iovas[:N_SINGLE]]

    def run() -> int:
        acc = 0
        for a in iovas:
            acc ^= r.translate(SID, a).hpa
        return acc

    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.benchmark(group=f"single translate() x {N_SINGLE}")
def test_single_calls_pure_python_reference(benchmark: Any, world: World) -> None:
    r = Remapper(world.mem, world.root)
    unit = hw_walk.Unit(r.cap, r.ecap)
    iovas = [int(x) for x in world.iovas[:N_PY]]
    mem = world.mem

    def read64(a: int) -> int | None:
        try:
            return mem.read_u64(a)
        except MemoryAccessError:
            return None

    def run() -> int:
        acc = 0
        for a in iovas:
            acc ^= hw_walk.translate(unit, read64, world.root, SID, a, False).hpa
        return acc

    # N_PY calls (fewer than N_SINGLE: scale by N_SINGLE / N_PY to compare).
    got = benchmark.pedantic(run, rounds=3, iterations=1)
    exp = 0
    for a in iovas:
        exp ^= DATA + a
    assert got == exp
