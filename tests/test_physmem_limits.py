"""Huge and hostile arenas: costs grow with use, not size, and exhaustion is `OutOfMemory`.

Host memory failing (a length no host can hold, an address-space limit, the arena's backing
limit) raises `OutOfMemory` before anything changes; it never aborts the interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lookup import leaf
from reference import present_table
from vtdwalk import OutOfMemory, PageTable, PhysMem

PAGE = 4096


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Claims:
    """A sequence that claims a length it cannot deliver."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        while True:
            yield (0, PAGE)


@pytest.mark.parametrize("n", [2**36, 2**62])
def test_huge_len_is_out_of_memory_not_abort(n: int) -> None:
    with pytest.raises(OutOfMemory, match="nodes"):
        PhysMem(Claims(n))  # type: ignore[arg-type]


def test_whole_address_space_node_is_cheap_until_used() -> None:
    before = rss()
    m = PhysMem([(0, 2**52)])
    assert rss() - before < 16 << 20
    s = m.stats()[0]
    assert (s["total_pages"], s["free_pages"], s["backed_pages"]) == (2**40, 2**40 - 1, 0)
    top = 2**52 - 8
    m.write_u64(top, 5)
    assert m.read_u64(top) == 5
    assert m.read_u64(2**51) == 0
    assert m.stats()[0]["backed_pages"] == 1


def test_terabyte_node_costs_under_a_megabyte_until_used() -> None:
    before = rss()
    m = PhysMem([(0, 1 << 40)])
    assert rss() - before < 1 << 20
    a = m.alloc_pages(1)
    m.write_u64(a, 1)
    assert m.stats()[0]["backed_pages"] == 1


def test_million_nodes_cost_little() -> None:
    nodes = [(i * 2 * PAGE, PAGE) for i in range(2**20)]
    before = rss()
    m = PhysMem(nodes)
    # About 190 bytes a node (a dictionary of free blocks only once a node is used).
    assert rss() - before < 400 << 20
    assert m.num_nodes == 2**20
    assert m.node_of(2 * PAGE * 777_777 + 5) == 777_777
    a = m.alloc_pages(1, node=123_456)
    assert a == 123_456 * 2 * PAGE
    m.write_u64(a, 3)
    assert m.read_u64(a) == 3


def test_freed_pages_are_given_back_to_the_host() -> None:
    m = PhysMem([(0, 1 << 30)])
    pages = [m.alloc_pages(256) for _ in range(16)]  # 16 MiB
    before = rss()
    for a in pages:
        m.write_u64s(a, np.full(256 * 512, 7, dtype=np.uint64))
    assert rss() - before >= 15 << 20
    assert m.stats()[0]["backed_pages"] == 16 * 256
    for a in pages:
        m.free_pages(a, 256)
    assert rss() - before < 4 << 20
    assert m.stats()[0]["backed_pages"] == 0
    assert all(m.read_u64(a) == 0 for a in pages)


def test_huge_pages_option_reads_and_writes_the_same() -> None:
    m = PhysMem([(0, 64 << 20)], huge_pages=True)
    assert m.huge_pages
    pt = PageTable(m, levels=4, superpages="none")
    pt.map(0, 1 << 24, 1 << 22)
    assert leaf(pt.lookup(0x1234)) == ((1 << 24) + 0x1234, PAGE, True, True)
    assert m.read_u64(present_table(pt.root)) != 0


def test_backing_limit_makes_a_huge_map_out_of_memory_and_changes_nothing() -> None:
    m = PhysMem([(0, 2**52)], backing_limit=64 << 20)
    assert m.backing_limit == 64 << 20
    pt = PageTable(m, levels=4, superpages="none")
    pt.map(0, 1 << 32, PAGE)
    before = (m.stats(), pt.table_pages(), pt.mappings())
    with pytest.raises(OutOfMemory):
        pt.map(1 << 40, 1 << 32, 1 << 42)
    assert (m.stats(), pt.table_pages(), pt.mappings()) == before


def test_scattered_map_pages_past_the_backing_limit_is_out_of_memory() -> None:
    m = PhysMem([(0, 2**52)], backing_limit=16 << 20)
    pt = PageTable(m, levels=4, superpages="none")
    rng = np.random.default_rng(1)
    iovas = rng.choice(1 << 35, size=30_000, replace=False).astype(np.uint64) << np.uint64(12)
    maddrs = np.arange(30_000, dtype=np.uint64) * np.uint64(PAGE) + np.uint64(1 << 40)
    before = m.stats()
    with pytest.raises(OutOfMemory):
        pt.map_pages(iovas, maddrs)
    assert m.stats() == before
    assert pt.mappings() == []


def test_address_space_limit_is_out_of_memory_not_abort() -> None:
    code = textwrap.dedent(
        """
        import resource
        from vtdwalk import OutOfMemory, PageTable, PhysMem
        m = PhysMem([(0, 2**52)])
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        try:
            pt = PageTable(m, levels=4, superpages="none")
            pt.map(0, 1 << 32, 1 << 42)
        except OutOfMemory as e:
            print("OutOfMemory", e)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OutOfMemory")
