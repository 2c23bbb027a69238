"""PageTable: levels, superpages, shattering, freeing, atomicity, bad input, corruption, batches.

Truth comes from the spec through the pure-Python walker in tests/reference/sl_walk.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from lookup import leaf
from reference import present_table, sl_walk
from vtdwalk import InvalidArgument, MemoryAccessError, OutOfMemory, PageTable, PhysMem

K4 = 1 << 12
M2 = 1 << 21
G1 = 1 << 30
U64_MAX = (1 << 64) - 1


def arena(pages: int = 4096) -> PhysMem:
    return PhysMem([(G1, pages * K4), (1 << 40, pages * K4)])


def state(pt: PageTable, mem: PhysMem) -> tuple[object, ...]:
    """Everything observable about a table and its arena."""
    return (
        pt.root,
        pt.mappings(),
        pt.table_pages(),
        [s["free_pages"] for s in mem.stats()],
        sl_walk.leaves(mem, pt.root, pt.levels),
    )


def ref(pt: PageTable, mem: PhysMem, iova: int) -> tuple[int, int, bool, bool] | None:
    return sl_walk.walk(mem, pt.root, pt.levels, iova)


def test_properties_and_defaults() -> None:
    mem = arena()
    pt = PageTable(mem)
    assert (pt.root, pt.levels, pt.width, pt.node, pt.superpages) == (None, 4, 48, None, "1G")
    assert pt.table_pages() == {}
    pt.node = 1
    assert pt.node == 1
    pt.node = None
    assert PageTable(mem, 3, 0, "2M").superpages == "2M"
    assert PageTable(mem, superpages="none").superpages == "none"
    assert "PageTable(levels=4" in repr(pt)


@pytest.mark.parametrize(("levels", "width"), [(3, 39), (4, 48), (5, 57)])
def test_every_level_count(levels: int, width: int) -> None:
    mem = arena()
    pt = PageTable(mem, levels=levels, superpages="none")
    assert pt.width == width
    top = (1 << width) - K4
    assert pt.map(top, 0x7000, K4, read=True, write=False) is False
    assert pt.table_pages() == {0: levels}
    assert leaf(pt.lookup(top + 0x10)) == (0x7010, K4, True, False)
    assert ref(pt, mem, top + 0x10) == (0x7010, K4, True, False)
    # The L1 table holds the leaf at index 511, as the spec's formulas say.
    l1 = pt.leaf_table(top, False)
    assert mem.read_u64(l1 + 511 * 8) == 0x7000 | 1
    assert pt.leaf_table(top, False, levels) == pt.root
    assert pt.leaf_table(0, False) == 0
    with pytest.raises(InvalidArgument):
        pt.map(1 << width, 0, K4)
    with pytest.raises(InvalidArgument):
        pt.lookup(1 << width)
    assert pt.unmap(top, K4) is True
    assert pt.table_pages() == {0: 1}


def test_leaf_table_allocates_rw_intermediates() -> None:
    mem = arena()
    pt = PageTable(mem, levels=4)
    l1 = pt.leaf_table(0x1234_5678_9000, True)
    assert l1 != 0 and pt.table_pages() == {0: 4}
    assert pt.leaf_table(0x1234_5678_9000, False) == l1
    l2 = pt.leaf_table(0x1234_5678_9000, False, 2)
    assert mem.read_u64(l2 + 8 * ((0x1234_5678_9000 >> 21) & 511)) == l1 | 3
    # Nothing is mapped yet.
    assert pt.lookup(0x1234_5678_9000) is None
    with pytest.raises(InvalidArgument):
        pt.leaf_table(0, True, 0)
    with pytest.raises(InvalidArgument):
        pt.leaf_table(0, True, 5)


@pytest.mark.parametrize(
    ("superpages", "middle", "tables"), [("1G", G1, 6), ("2M", M2, 7), ("none", K4, 520)]
)
def test_superpage_placement(superpages: str, middle: int, tables: int) -> None:
    mem = arena(1024)
    pt = PageTable(mem, superpages=superpages)
    iova, maddr, size = G1 - K4, 7 * G1 - K4, G1 + M2 + 2 * K4
    assert pt.map(iova, maddr, size) is False
    assert sum(pt.table_pages().values()) == tables
    for probe, want_size in [
        (G1 - K4, K4),
        (G1 + 5 * K4, middle),
        (2 * G1, min(middle, M2)),
        (2 * G1 + M2, K4),
    ]:
        got = leaf(pt.lookup(probe + 8))
        assert got == ref(pt, mem, probe + 8)
        assert got == (maddr + probe - iova + 8, want_size, True, True)
    assert pt.mappings() == [(iova, maddr, size, True, True)]
    assert sl_walk.merge(sl_walk.leaves(mem, pt.root, 4)) == pt.mappings()
    # A maddr that is not 2M aligned gets no superpage.
    pt2 = PageTable(mem)
    pt2.map(0, K4, M2)
    assert leaf(pt2.lookup(0)) == (K4, K4, True, True)


def test_shattering_on_unmap_and_remap() -> None:
    mem = arena()
    pt = PageTable(mem, superpages="1G")
    pt.map(G1, 3 * G1, G1, write=False)
    assert sum(pt.table_pages().values()) == 2
    assert pt.unmap(G1 + M2 + K4, K4) is True  # 1G -> 512 x 2M -> 512 x 4K
    assert sum(pt.table_pages().values()) == 4
    assert pt.lookup(G1 + M2 + K4) is None
    assert leaf(pt.lookup(G1 + M2)) == (3 * G1 + M2, K4, True, False)
    assert leaf(pt.lookup(G1 + 9 * M2 + 3)) == (3 * G1 + 9 * M2 + 3, M2, True, False)
    # Overwrite part of a 2M leaf with something else.
    assert pt.map(G1 + 4 * M2 + K4, 0x5000, K4, read=False, write=True, snoop=True) is True
    assert leaf(pt.lookup(G1 + 4 * M2 + K4)) == (0x5000, K4, False, True)
    assert leaf(pt.lookup(G1 + 4 * M2)) == (3 * G1 + 4 * M2, K4, True, False)
    assert sl_walk.merge(sl_walk.leaves(mem, pt.root, 4)) == pt.mappings()
    # A whole-1G map replaces the shattered tables and frees them.
    assert pt.map(G1, 3 * G1, G1) is True
    assert sum(pt.table_pages().values()) == 2
    assert pt.mappings() == [(G1, 3 * G1, G1, True, True)]


@pytest.mark.parametrize("levels", [3, 4, 5])
def test_unmap_everything_leaves_only_the_root(levels: int) -> None:
    mem = arena(8192)
    free0 = [s["free_pages"] for s in mem.stats()]
    pt = PageTable(mem, levels=levels, superpages="2M")
    pt.map(K4, K4, 3 * M2)
    pt.map(5 * G1 + 7 * K4, 0, K4)
    pt.map_pages(np.array([9 * G1, 40 * M2], np.uint64), np.array([0, K4], np.uint64))
    assert pt.unmap(0, 16 * G1) is True
    assert pt.table_pages() == {0: 1}
    assert pt.unmap(0, 16 * G1) is False
    pt.map(K4, K4, 3 * M2)
    assert pt.unmap_pages(np.arange(1, 3 * 512 + 1, dtype=np.uint64) * K4) is True
    assert pt.table_pages() == {0: 1}
    pt.free()
    assert pt.root is None and pt.table_pages() == {}
    assert [s["free_pages"] for s in mem.stats()] == free0


def test_table_pages_follow_the_node() -> None:
    mem = arena()
    pt = PageTable(mem, node=1, superpages="none")
    pt.map(0, 0, K4)
    assert mem.node_of(present_table(pt.root)) == 1
    pt.node = 0
    pt.map(G1, 0, K4)
    assert pt.table_pages() == {0: 2, 1: 4}
    with pytest.raises(InvalidArgument):
        pt.node = 2
    with pytest.raises(InvalidArgument):
        PageTable(mem, node=5)


def test_page_zero_is_never_a_table() -> None:
    # 0 means "no table" (Xen's convention), so a table never sits at machine address 0.
    mem = PhysMem([(0, 64 * K4)])
    pt = PageTable(mem)
    pt.map(0, 0, K4)
    assert pt.root is not None and leaf(pt.lookup(0)) == (0, K4, True, True)
    assert 0 not in {pt.leaf_table(0, False, lv) for lv in range(1, pt.levels + 1)}
    pt.free()
    s = mem.stats()[0]
    assert (s["reserved_pages"], s["allocated_pages"], s["free_pages"]) == (1, 0, 63)


def test_out_of_memory_is_atomic() -> None:
    mem = PhysMem([(G1, 3 * K4)])
    pt = PageTable(mem, superpages="none")
    before = state(pt, mem)
    with pytest.raises(OutOfMemory):
        pt.map(0, 0, K4)
    with pytest.raises(OutOfMemory):
        pt.leaf_table(0, True)
    with pytest.raises(OutOfMemory):
        pt.map_pages(np.array([0], np.uint64), np.array([0], np.uint64))
    assert state(pt, mem) == before
    assert pt.leaf_table(0, True, 2) != 0  # root, L3, L2 fit
    # A range that needs a second L1 table: nothing of it may land.
    mem2 = PhysMem([(G1, 6 * K4)])
    pt2 = PageTable(mem2, superpages="none")
    pt2.map(0, 0, K4)
    before = state(pt2, mem2)
    with pytest.raises(OutOfMemory):
        pt2.map(M2 - K4, 0, 3 * M2)  # needs 3 more L1 tables, 2 pages left
    with pytest.raises(OutOfMemory):
        pt2.map_pages(np.array([M2, 3 * M2, 5 * M2], np.uint64), np.zeros(3, np.uint64))
    assert state(pt2, mem2) == before


def test_shattering_out_of_memory_is_atomic() -> None:
    mem = PhysMem([(G1, 5 * K4)])
    pt = PageTable(mem, superpages="1G")
    pt.map(0, 0, G1)
    pt.map(G1, 0, M2)  # root, L3, L2: 2 pages left
    before = state(pt, mem)
    with pytest.raises(OutOfMemory):
        pt.unmap(G1 - K4, 2 * K4)  # needs 1G->L2->L1 and 2M->L1: 3 pages
    with pytest.raises(OutOfMemory):
        pt.unmap_pages(np.array([G1 - K4, G1], np.uint64))
    assert state(pt, mem) == before
    assert pt.unmap(G1 - K4, K4) is True


BAD_MAPS: list[tuple[int, int, int, dict[str, bool]]] = [
    (0x800, 0, K4, {}),
    (0, 0x800, K4, {}),
    (0, 0, 0x800, {}),
    (0, 0, 0, {}),
    (1 << 39, 0, K4, {}),
    ((1 << 39) - K4, 0, 2 * K4, {}),
    ((1 << 64) - K4, 0, 2 * K4, {}),
    (0, 1 << 52, K4, {}),
    (0, (1 << 52) - K4, 2 * K4, {}),
    (0, 0, K4, {"read": False, "write": False}),
]


@pytest.mark.parametrize(("iova", "maddr", "size", "flags"), BAD_MAPS)
def test_bad_map_changes_nothing(iova: int, maddr: int, size: int, flags: dict[str, bool]) -> None:
    mem = arena()
    pt = PageTable(mem, levels=3)
    pt.map(0, 0, M2)
    before = state(pt, mem)
    with pytest.raises(InvalidArgument):
        pt.map(iova, maddr, size, **flags)
    assert state(pt, mem) == before


@pytest.mark.parametrize(
    ("iova", "size"), [(0, 0), (1, K4), (0, K4 + 1), (1 << 39, K4), ((1 << 39) - K4, 2 * K4)]
)
def test_bad_unmap_changes_nothing(iova: int, size: int) -> None:
    mem = arena()
    pt = PageTable(mem, levels=3)
    pt.map(0, 0, M2)
    before = state(pt, mem)
    with pytest.raises(InvalidArgument):
        pt.unmap(iova, size)
    assert state(pt, mem) == before


def test_bad_batches_and_arguments() -> None:
    mem = arena()
    pt = PageTable(mem, levels=3)
    pt.map(0, 0, M2)
    before = state(pt, mem)
    u = np.uint64
    for iovas, maddrs in [
        ([0, 0x800], [0, 0]),
        ([0, 1 << 39], [0, 0]),
        ([0, K4], [0, 1 << 52]),
        ([0, K4], [0, 5]),
        ([0, K4], [0]),
    ]:
        with pytest.raises(InvalidArgument):
            pt.map_pages(np.array(iovas, u), np.array(maddrs, u))
    with pytest.raises(InvalidArgument):
        pt.unmap_pages(np.array([0, 5], u))
    with pytest.raises(InvalidArgument):
        pt.lookup_batch(np.array([1 << 39], u))
    with pytest.raises(InvalidArgument):
        pt.map(-K4, 0, K4)
    assert state(pt, mem) == before
    for bad in [
        {"levels": 2},
        {"levels": 6},
        {"superpages": "4M"},
        {"node": 9},
        {"node": -1},
    ]:
        with pytest.raises(InvalidArgument):
            PageTable(mem, **bad)  # type: ignore[arg-type]


def test_corrupted_tables_raise_clear_errors() -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    pt.map(0, 0, K4)
    good = mem.read_u64(present_table(pt.root))
    stranger = mem.alloc_pages(1)
    for bad in [(1 << 45) | 3, stranger | 3, good | 0x80]:
        mem.write_u64(present_table(pt.root), bad)
        pages = pt.table_pages()
        with pytest.raises(MemoryAccessError, match="corrupted"):
            pt.map(K4, 0, K4)
        with pytest.raises(MemoryAccessError, match="corrupted"):
            pt.unmap(0, G1)
        with pytest.raises(MemoryAccessError, match="corrupted"):
            pt.map_pages(np.array([K4], np.uint64), np.array([0], np.uint64))
        with pytest.raises(MemoryAccessError, match="corrupted"):
            pt.unmap_pages(np.array([0], np.uint64))
        assert pt.table_pages() == pages
        assert mem.read_u64(present_table(pt.root)) == bad
        assert mem.read_u64(stranger) == 0
    mem.write_u64(present_table(pt.root), (1 << 45) | 3)
    with pytest.raises(MemoryAccessError):
        pt.lookup(0)
    with pytest.raises(MemoryAccessError):
        pt.mappings()
    with pytest.raises(MemoryAccessError):
        pt.lookup_batch(np.array([0], np.uint64))
    mem.write_u64(present_table(pt.root), good)
    assert leaf(pt.lookup(0)) == (0, K4, True, True)


def test_batches_match_single_calls_and_reference() -> None:
    mem = arena(1 << 14)
    pt = PageTable(mem, superpages="none")
    rng = np.random.default_rng(7)
    iovas = rng.choice(1 << 22, size=20_000, replace=False).astype(np.uint64) * np.uint64(K4)
    maddrs = rng.integers(0, 1 << 28, size=iovas.size, dtype=np.uint64) * np.uint64(K4)
    assert pt.map_pages(iovas, maddrs, write=False) is False
    out, mapped = pt.lookup_batch(iovas + np.uint64(0x123))
    assert out.dtype == np.uint64 and mapped.dtype == np.bool_
    assert np.array_equal(out, maddrs + np.uint64(0x123)) and bool(mapped.all())
    for i in range(0, iovas.size, 997):
        assert ref(pt, mem, int(iovas[i])) == (int(maddrs[i]), K4, True, False)
    out, mapped = pt.lookup_batch(np.array([K4 * (1 << 22) + K4], np.uint64))
    assert (out.tolist(), mapped.tolist()) == ([0], [False])
    # Duplicates: the last one wins, and "present before" only counts earlier calls.
    dup = np.array([5 * M2, 5 * M2], np.uint64)
    assert pt.map_pages(dup, np.array([K4, 2 * K4], np.uint64)) is False
    assert leaf(pt.lookup(5 * M2)) == (2 * K4, K4, True, True)
    assert pt.unmap_pages(iovas[:10_000]) is True
    out, mapped = pt.lookup_batch(iovas[:10_000])
    assert not mapped.any() and not out.any()
    out, mapped = pt.lookup_batch(iovas[10_000:])
    assert np.array_equal(out, maddrs[10_000:]) and bool(mapped.all())
    assert pt.unmap_pages(np.concatenate([iovas[10_000:], dup])) is True
    assert pt.table_pages() == {0: 1}
    assert pt.map_pages(np.array([], np.uint64), np.array([], np.uint64)) is False
    out, mapped = pt.lookup_batch(np.array([], np.uint64))
    assert out.size == 0 and mapped.size == 0


def test_strided_inputs_and_threads() -> None:
    import threading

    mem = arena(1 << 14)
    iovas = np.arange(0, 4096, dtype=np.uint64) * np.uint64(K4)
    maddrs = iovas + np.uint64(G1)
    pt = PageTable(mem, superpages="none")
    # Non-contiguous views are copied, contiguous ones borrowed: same result.
    assert pt.map_pages(iovas[::2], maddrs[::2]) is False
    out, mapped = pt.lookup_batch(iovas[::2])
    assert np.array_equal(out, maddrs[::2]) and bool(mapped.all())
    out, mapped = pt.lookup_batch(iovas[1::2])
    assert not mapped.any() and not out.any()
    # Two tables on one arena, driven from threads (batch calls run without the GIL).
    tables = [PageTable(mem, superpages="none", node=i) for i in range(2)]
    errors: list[BaseException] = []

    def work(t: PageTable, shift: int) -> None:
        try:
            for r in range(20):
                base = np.uint64((r * 4096 + shift) * K4)
                t.map_pages(iovas + base, maddrs)
                out, mapped = t.lookup_batch(iovas + base)
                assert np.array_equal(out, maddrs) and bool(mapped.all())
                t.unmap_pages(iovas + base)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t, i)) for i, t in enumerate(tables)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [t.table_pages() for t in tables] == [{0: 1}, {1: 1}]


def test_lookup_many_is_a_deprecated_alias_with_the_old_marker() -> None:
    mem = arena()
    pt = PageTable(mem, superpages="none")
    pt.map(0, 0x40_0000, K4)
    probes = np.array([0x10, K4], np.uint64)
    with pytest.warns(DeprecationWarning, match="lookup_batch"):
        old = pt.lookup_many(probes)
    assert old.tolist() == [0x40_0010, U64_MAX]
    hpa, mapped = pt.lookup_batch(probes)
    assert (hpa.tolist(), mapped.tolist()) == ([0x40_0010, 0], [True, False])
