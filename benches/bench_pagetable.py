"""PageTable: map/unmap/lookup of 1M 4 KiB pages, beside a small pure-Python page table.

Run (release build):
    maturin develop --release
    python -m pytest benches/bench_pagetable.py --benchmark-enable --benchmark-only \
        --benchmark-columns=min,median,rounds
ns per page = time / 2**20 for the vtdwalk cases, / 2**14 for the pure-Python ones.
"Scattered": 2**20 distinct pages drawn from a 16 GiB window (one in four), in random order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vtdwalk import PageTable, PhysMem

K4 = 1 << 12
GIB = 1 << 30
N = 1 << 20
N_PY = 1 << 14
ROUNDS = 5


def arena() -> PhysMem:
    return PhysMem([(GIB, 64 * GIB), (128 * GIB, 64 * GIB)])


def scattered(n: int = N) -> npt.NDArray[np.uint64]:
    rng = np.random.default_rng(11)
    pages = rng.choice(16 * GIB // K4, size=n, replace=False).astype(np.uint64)
    out: npt.NDArray[np.uint64] = pages * np.uint64(K4)
    return out


class PyPageTable:
    """The simplest Python page table: nested dicts per level, 4 KiB leaves, 4 levels."""

    def __init__(self) -> None:
        self.root: dict[int, Any] = {}

    def map(self, iova: int, maddr: int, size: int) -> None:
        for off in range(0, size, K4):
            v = iova + off
            t = self.root
            for shift in (39, 30, 21):
                t = t.setdefault((v >> shift) & 511, {})
            t[(v >> 12) & 511] = (maddr + off) | 3

    def lookup(self, iova: int) -> int | None:
        t: Any = self.root
        for shift in (39, 30, 21, 12):
            t = t.get((iova >> shift) & 511)
            if t is None:
                return None
        return int(t) & ~0xFFF | (iova & 0xFFF)


@pytest.mark.benchmark(group="map 1M-page range (4K leaves)")
def test_map_range(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    benchmark.pedantic(
        pt.map, args=(0, 2 * GIB, N * K4), setup=pt.free, rounds=ROUNDS, iterations=1
    )
    t = pt.lookup(K4 * (N - 1))
    assert t is not None
    assert (t.hpa, t.page_size, t.read, t.write, t.level) == (
        2 * GIB + K4 * (N - 1),
        K4,
        True,
        True,
        1,
    )


@pytest.mark.benchmark(group="map 1M-page range (4K leaves)")
def test_map_range_over_existing_tables(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    pt.map(0, 0, N * K4)
    benchmark.pedantic(pt.map, args=(0, 2 * GIB, N * K4), rounds=ROUNDS, iterations=1)
    t = pt.lookup(K4)
    assert t is not None
    assert (t.hpa, t.page_size, t.read, t.write, t.level) == (2 * GIB + K4, K4, True, True, 1)


@pytest.mark.benchmark(group="map 1M-page range (4K leaves)")
def test_python_map_range_16k(benchmark: Any) -> None:
    def run() -> PyPageTable:
        t = PyPageTable()
        t.map(0, 2 * GIB, N_PY * K4)
        return t

    t = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert t.lookup(K4) == 2 * GIB + K4


@pytest.mark.benchmark(group="unmap 1M-page range")
def test_unmap_range(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    benchmark.pedantic(
        pt.unmap,
        args=(0, N * K4),
        setup=lambda: pt.map(0, 2 * GIB, N * K4),
        rounds=ROUNDS,
        iterations=1,
    )
    assert pt.table_pages() == {0: 1}


@pytest.mark.benchmark(group="map_pages 1M scattered")
def test_map_pages_scattered(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    iovas = scattered()
    maddrs = iovas + np.uint64(256 * GIB)
    benchmark.pedantic(pt.map_pages, args=(iovas, maddrs), setup=pt.free, rounds=ROUNDS)
    assert np.array_equal(pt.lookup_batch(iovas[:1000])[0], maddrs[:1000])


@pytest.mark.benchmark(group="map_pages 1M scattered")
def test_map_pages_scattered_over_existing_tables(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    iovas = scattered()
    maddrs = iovas + np.uint64(256 * GIB)
    pt.map_pages(iovas, iovas)
    benchmark.pedantic(pt.map_pages, args=(iovas, maddrs), rounds=ROUNDS)
    assert np.array_equal(pt.lookup_batch(iovas[:1000])[0], maddrs[:1000])


@pytest.mark.benchmark(group="map_pages 1M scattered")
def test_python_map_pages_scattered_16k(benchmark: Any) -> None:
    iovas = scattered(N_PY).tolist()

    def run() -> PyPageTable:
        t = PyPageTable()
        for v in iovas:
            t.map(v, v + 256 * GIB, K4)
        return t

    t = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert t.lookup(iovas[0]) == iovas[0] + 256 * GIB


@pytest.mark.benchmark(group="unmap_pages 1M scattered")
def test_unmap_pages_scattered(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    iovas = scattered()
    benchmark.pedantic(
        pt.unmap_pages, args=(iovas,), setup=lambda: pt.map_pages(iovas, iovas), rounds=ROUNDS
    )
    assert pt.table_pages() == {0: 1}


@pytest.mark.benchmark(group="lookup_batch 1M scattered")
def test_lookup_batch_scattered(benchmark: Any) -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    iovas = scattered()
    pt.map_pages(iovas, iovas)
    out, mapped = benchmark.pedantic(pt.lookup_batch, args=(iovas,), rounds=ROUNDS)
    assert np.array_equal(out, iovas) and bool(mapped.all())


@pytest.mark.benchmark(group="lookup_batch 1M scattered")
def test_python_lookup_scattered_16k(benchmark: Any) -> None:
    iovas = scattered(N_PY).tolist()
    t = PyPageTable()
    for v in iovas:
        t.map(v, v, K4)

    def run() -> list[int | None]:
        return [t.lookup(v) for v in iovas]

    out = benchmark.pedantic(run, rounds=ROUNDS)
    assert out[:10] == iovas[:10]
