"""PhysMem: alloc/free and u64 access from Python, beside pure-Python baselines of the same work.

Run: make bench
(or: python -m pytest benches/bench_physmem.py --benchmark-enable --benchmark-only)
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from vtdwalk import PhysMem

PAGE = 4096
GIB = 1 << 30
N = 10_000


def fresh() -> PhysMem:
    return PhysMem([(0, 512 * GIB), (512 * GIB, 512 * GIB)])


class DictFreeList:
    """The simplest Python allocator: a per-node list of free page addresses (1-page only)."""

    def __init__(self, nodes: list[tuple[int, int]], pages_per_node: int) -> None:
        self.free = [list(range(b, b + pages_per_node * PAGE, PAGE))[::-1] for b, _ in nodes]

    def alloc(self, node: int) -> int:
        return self.free[node].pop()

    def release(self, node: int, a: int) -> None:
        self.free[node].append(a)


@pytest.mark.benchmark(group="alloc-free 10k pages")
def test_physmem_alloc_free(benchmark: Any) -> None:
    m = fresh()

    def run() -> None:
        addrs = [m.alloc_pages(1, node=i & 1) for i in range(N)]
        for a in addrs:
            m.free_pages(a)

    benchmark(run)
    assert all(s["allocated_pages"] == 0 for s in m.stats())


@pytest.mark.benchmark(group="alloc-free 10k pages")
def test_python_freelist_alloc_free(benchmark: Any) -> None:
    fl = DictFreeList(fresh().nodes, N)

    def run() -> None:
        addrs = [(i & 1, fl.alloc(i & 1)) for i in range(N)]
        for node, a in addrs:
            fl.release(node, a)

    benchmark(run)


def _addrs() -> list[int]:
    rng = random.Random(7)
    return [rng.randrange(0, 64 * PAGE, 8) for _ in range(N)]


@pytest.mark.benchmark(group="u64 read/write 10k")
def test_physmem_u64_read_write(benchmark: Any) -> None:
    m = fresh()
    addrs = _addrs()

    def run() -> None:
        for a in addrs:
            m.write_u64(a, a)
        for a in addrs:
            m.read_u64(a)

    benchmark(run)
    assert m.read_u64(addrs[0]) == addrs[0] or addrs.count(addrs[0]) > 1


@pytest.mark.benchmark(group="u64 read/write 10k")
def test_python_dict_u64_read_write(benchmark: Any) -> None:
    d: dict[int, int] = {}
    addrs = _addrs()

    def run() -> None:
        for a in addrs:
            d[a] = a
        for a in addrs:
            d.get(a, 0)

    benchmark(run)


@pytest.mark.benchmark(group="bulk words 1M")
def test_physmem_bulk_u64s(benchmark: Any) -> None:
    m = fresh()
    words = np.arange(1 << 20, dtype=np.uint64)

    def run() -> None:
        m.write_u64s(GIB, words)
        m.read_u64s(GIB, 1 << 20)

    benchmark(run)
    assert m.read_u64(GIB + 8 * 12345) == 12345
