"""PageTable operation sequences (map/unmap of 4 KiB, 2 MiB and 1 GiB ranges, batches) against a
run-list model written from the spec, with Hypothesis' stateful testing (sequences shrink).

The model is the set of mapped 4 KiB pages kept as sorted runs (iova, size, maddr, read,
write); the page table must show exactly those runs through ``mappings()`` and through the
pure-Python walker of tests/reference/sl_walk.py. On a small arena a map may run out of memory:
then nothing changes (atomicity).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import strategies as sts
from lookup import leaf
from reference import sl_walk
from vtdwalk import OutOfMemory, PageTable, PhysMem

K4, M2, G1 = 1 << 12, 1 << 21, 1 << 30
WINDOW = 4 * G1  # IOVAs are drawn below 4 GiB so that operations overlap

Run = tuple[int, int, int, bool, bool]  # iova, size, maddr, read, write


def cut(runs: list[Run], lo: int, hi: int) -> tuple[list[Run], bool]:
    """The runs with [lo, hi) removed, and whether anything was there."""
    out: list[Run] = []
    hit = False
    for iova, size, maddr, r, w in runs:
        end = iova + size
        if end <= lo or iova >= hi:
            out.append((iova, size, maddr, r, w))
            continue
        hit = True
        if iova < lo:
            out.append((iova, lo - iova, maddr, r, w))
        if end > hi:
            out.append((hi, end - hi, maddr + (hi - iova), r, w))
    return sorted(out), hit


def canonical(runs: list[Run]) -> list[tuple[int, int, int, bool, bool]]:
    """(iova, maddr, size, read, write), merged as ``PageTable.mappings()`` reports them."""
    return sl_walk.merge([(i, m, s, r, w) for i, s, m, r, w in sorted(runs)])


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    kind = draw(st.sampled_from(["4k"] * 6 + ["2m"] * 4 + ["1g"]))
    if kind == "4k":
        size, align = draw(st.integers(1, 24)) * K4, K4
    elif kind == "2m":
        size, align = draw(st.integers(1, 3)) * M2, draw(st.sampled_from([M2, K4]))
    else:
        size, align = G1, G1
    iova = draw(st.integers(0, (WINDOW - size) // align)) * align
    return iova, size


maddrs = st.one_of(
    st.integers(0, (1 << 40) // G1 - 1).map(lambda x: x * G1),
    st.integers(0, (1 << 40) // M2 - 1).map(lambda x: x * M2),
    st.integers(0, (1 << 40) // K4 - 1).map(lambda x: x * K4),
)
perms = st.sampled_from([(True, True), (True, False), (False, True)])


class PageTableMachine(RuleBasedStateMachine):
    mem: PhysMem
    pt: PageTable

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []
        self.ooms = 0

    @initialize(
        levels=st.sampled_from([3, 4, 5]),
        superpages=st.sampled_from(["none", "2M", "1G"]),
        pages=st.sampled_from([24, 200, 4096]),
    )
    def setup(self, levels: int, superpages: str, pages: int) -> None:
        self.mem = PhysMem([(G1, pages * K4)])
        self.pt = PageTable(self.mem, levels=levels, superpages=superpages)

    def snapshot(self) -> tuple[object, ...]:
        return (self.pt.mappings(), self.pt.table_pages(), self.mem.stats())

    @rule(r=ranges(), maddr=maddrs, perm=perms)
    def map(self, r: tuple[int, int], maddr: int, perm: tuple[bool, bool]) -> None:
        iova, size = r
        if size >= M2 and maddr % M2:
            maddr -= maddr % M2
        before = self.snapshot()
        new, hit = cut(self.runs, iova, iova + size)
        try:
            was = self.pt.map(iova, maddr, size, read=perm[0], write=perm[1])
        except OutOfMemory:
            self.ooms += 1
            assert self.snapshot() == before  # a failed map changes nothing
            return
        assert was == hit
        self.runs = sorted([*new, (iova, size, maddr, perm[0], perm[1])])

    @rule(r=ranges())
    def unmap(self, r: tuple[int, int]) -> None:
        iova, size = r
        before = self.snapshot()
        new, hit = cut(self.runs, iova, iova + size)
        try:
            was = self.pt.unmap(iova, size)
        except OutOfMemory:
            # Unmapping part of a superpage needs a table to shatter it into.
            self.ooms += 1
            assert self.snapshot() == before
            return
        assert was == hit
        self.runs = new

    @rule(
        pages=st.lists(st.integers(0, WINDOW // K4 - 1), min_size=1, max_size=16, unique=True),
        maddr=maddrs,
        perm=perms,
    )
    def map_pages(self, pages: list[int], maddr: int, perm: tuple[bool, bool]) -> None:
        iovas = [p * K4 for p in pages]
        targets = [(maddr + i * K4) % (1 << 40) for i in range(len(iovas))]
        before = self.snapshot()
        runs, hit = self.runs, False
        for iova, m in zip(iovas, targets, strict=True):
            runs, h = cut(runs, iova, iova + K4)
            hit |= h
            runs = sorted([*runs, (iova, K4, m, perm[0], perm[1])])
        try:
            was = self.pt.map_pages(
                np.array(iovas, np.uint64), np.array(targets, np.uint64), perm[0], perm[1]
            )
        except OutOfMemory:
            self.ooms += 1
            assert self.snapshot() == before
            return
        assert was == hit
        self.runs = runs

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def unmap_pages(self, data: st.DataObject) -> None:
        run = data.draw(st.sampled_from(self.runs))
        n = run[1] // K4
        picks = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8, unique=True))
        iovas = [run[0] + k * K4 for k in picks]
        before = self.snapshot()
        runs = self.runs
        for iova in iovas:
            runs, _ = cut(runs, iova, iova + K4)
        try:
            was = self.pt.unmap_pages(np.array(iovas, np.uint64))
        except OutOfMemory:
            self.ooms += 1
            assert self.snapshot() == before
            return
        assert was
        self.runs = runs

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def lookup(self, data: st.DataObject) -> None:
        iova, size, maddr, r, w = data.draw(st.sampled_from(self.runs))
        off = data.draw(st.integers(0, size - 1))
        got = leaf(self.pt.lookup(iova + off))
        assert got is not None
        assert (got[0], got[2], got[3]) == (maddr + off, r, w)
        assert got == sl_walk.walk(self.mem, self.pt.root, self.pt.levels, iova + off)
        hpa, mapped = self.pt.lookup_batch(np.array([iova + off], np.uint64))
        assert (hpa.tolist(), mapped.tolist()) == ([maddr + off], [True])

    @rule(iova=st.integers(0, WINDOW - 1))
    def lookup_anywhere(self, iova: int) -> None:
        want = next(
            (m + iova - i for i, s, m, _, _ in self.runs if i <= iova < i + s),
            None,
        )
        got = leaf(self.pt.lookup(iova))
        assert (got[0] if got else None) == want
        hpa, mapped = self.pt.lookup_batch(np.array([iova], np.uint64))
        expect = ([0], [False]) if want is None else ([want], [True])
        assert (hpa.tolist(), mapped.tolist()) == expect

    @invariant()
    def mappings_match_model(self) -> None:
        if not hasattr(self, "pt"):
            return
        want = canonical(self.runs)
        assert self.pt.mappings() == want
        # The pure-Python walker reads every entry: only while there are few table pages.
        if sum(self.pt.table_pages().values()) <= 24:
            assert sl_walk.merge(sl_walk.leaves(self.mem, self.pt.root, self.pt.levels)) == want

    def teardown(self) -> None:
        if not hasattr(self, "pt"):
            return
        self.pt.unmap(0, 1 << self.pt.width)
        assert self.pt.mappings() == []
        self.pt.free()
        assert all(s["allocated_pages"] == 0 for s in self.mem.stats())


TestPageTableSequences = PageTableMachine.TestCase
TestPageTableSequences.settings = sts.machine_settings()
