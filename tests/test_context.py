"""RootTable: root and context entries at the addresses and bit positions of the spec
(xen-driver.md §5.1, vtd-hardware.md §1.5), allocation on the unit's node, bad input."""

from __future__ import annotations

import pytest

from reference import present_table
from vtdwalk import InvalidArgument, MemoryAccessError, OutOfMemory, PageTable, PhysMem, RootTable

K4 = 1 << 12
G1 = 1 << 30


def arena() -> PhysMem:
    return PhysMem([(G1, 64 * K4), (1 << 40, 64 * K4)])


def decode_context(lo: int, hi: int) -> dict[str, int]:
    """Legacy context entry fields straight from the spec's table."""
    return {
        "p": lo & 1,
        "fpd": (lo >> 1) & 1,
        "tt": (lo >> 2) & 3,
        "slptptr": lo & ~0xFFF & (1 << 64) - 1,
        "aw": hi & 7,
        "did": (hi >> 8) & 0xFFFF,
    }


def test_lazy_root_and_node() -> None:
    mem = arena()
    rt = RootTable(mem, node=1)
    assert rt.maddr is None and rt.node == 1 and rt.table_pages() == {}
    assert rt.context_table(5) == 0
    assert rt.context(5, 0) is None
    root = rt.alloc()
    assert root == rt.alloc() == rt.maddr != 0 and rt.maddr is not None
    assert mem.node_of(root) == 1
    rt.node = 0
    ctx = rt.context_table(5, alloc=True)
    assert mem.node_of(ctx) == 0
    assert rt.table_pages() == {0: 1, 1: 1}
    # Root entry for bus 5: CTP | P in the low word, 0 in the high word.
    assert mem.read_u64(root + 5 * 16) == ctx | 1
    assert mem.read_u64(root + 5 * 16 + 8) == 0
    assert rt.context_table(5) == ctx
    with pytest.raises(InvalidArgument):
        rt.node = 2
    assert "RootTable(" in repr(rt)


def test_set_context_bits_match_the_spec() -> None:
    mem = arena()
    pt = PageTable(mem, levels=3)
    pt.map(0, 0, K4)
    rt = RootTable(mem)
    rt.set_context(0x3A, 0x11, present_table(pt.root), aw=1, did=0xBEEF)
    rt.set_context(0x3A, 0xFF, 0, aw=2, did=7, tt=2, fpd=True)
    rt.set_context(0x00, 0x00, 0x5000, aw=3, did=0, tt=1)
    ctx = rt.context_table(0x3A)
    lo = mem.read_u64(ctx + 0x11 * 16)
    hi = mem.read_u64(ctx + 0x11 * 16 + 8)
    assert rt.context(0x3A, 0x11) == (lo, hi)
    assert decode_context(lo, hi) == {
        "p": 1, "fpd": 0, "tt": 0, "slptptr": pt.root, "aw": 1, "did": 0xBEEF,
    }  # fmt: skip
    lo2, hi2 = mem.read_u64(ctx + 0xFF * 16), mem.read_u64(ctx + 0xFF * 16 + 8)
    assert decode_context(lo2, hi2) == {"p": 1, "fpd": 1, "tt": 2, "slptptr": 0, "aw": 2, "did": 7}
    assert [e[:2] for e in rt.entries()] == [(0, 0), (0x3A, 0x11), (0x3A, 0xFF)]
    assert rt.table_pages() == {0: 3}
    assert rt.clear_context(0x3A, 0x11) is True
    assert mem.read_u64(ctx + 0x11 * 16) == mem.read_u64(ctx + 0x11 * 16 + 8) == 0
    assert rt.clear_context(0x3A, 0x11) is False
    assert rt.clear_context(0x99, 0) is False
    assert rt.context(0x3A, 0x11) is None
    rt.free()
    assert rt.maddr is None and rt.table_pages() == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bus": 256},
        {"bus": -1},
        {"devfn": 256},
        {"slptptr": 0x800},
        {"slptptr": 1 << 52},
        {"aw": 0},
        {"aw": 4},
        {"did": 1 << 16},
        {"tt": 3},
    ],
)
def test_bad_context_changes_nothing(kwargs: dict[str, int]) -> None:
    mem = arena()
    rt = RootTable(mem)
    args = {"bus": 1, "devfn": 2, "slptptr": 0x1000, "aw": 2, "did": 3} | kwargs
    with pytest.raises(InvalidArgument):
        rt.set_context(**args)  # type: ignore[arg-type]
    assert rt.maddr is None
    assert all(s["allocated_pages"] == 0 for s in mem.stats())


def test_out_of_memory_and_corruption() -> None:
    mem = PhysMem([(G1, K4)])
    rt = RootTable(mem)
    with pytest.raises(OutOfMemory):
        rt.set_context(0, 0, 0, 2, 1)
    assert rt.maddr is None and mem.stats()[0]["allocated_pages"] == 0
    mem = arena()
    rt = RootTable(mem)
    rt.set_context(1, 0, 0, 2, 1)
    stranger = mem.alloc_pages(1)
    mem.write_u64(present_table(rt.maddr) + 16, stranger | 1)
    with pytest.raises(MemoryAccessError, match="corrupted"):
        rt.context(1, 0)
    with pytest.raises(MemoryAccessError, match="corrupted"):
        rt.set_context(1, 0, 0, 2, 1)
    assert mem.read_u64(stranger) == 0


def test_page_zero_is_never_a_table() -> None:
    # 3 pages at 0: frame 0 is reserved, the root and one context table take the other two.
    mem = PhysMem([(0, 3 * K4)])
    rt = RootTable(mem)
    rt.set_context(4, 0, 0, 2, 1)
    assert rt.maddr is not None and rt.context_table(4) not in (0, rt.maddr)
    with pytest.raises(OutOfMemory):
        rt.context_table(5, alloc=True)
    rt.free()
    s = mem.stats()[0]
    assert (s["reserved_pages"], s["allocated_pages"], s["free_pages"]) == (1, 0, 2)


def test_raw_entries_match_memory_present_or_not() -> None:
    mem = arena()
    rt = RootTable(mem)
    assert rt.raw_root(3) == (0, 0) and rt.raw_context(3, 0x0A) == (0, 0)  # no root table yet
    rt.set_context(3, 0x0A, 0x7000, 2, 0x42, tt=1)
    rt.set_context(3, 0x0B, 0x8000, 3, 0x43, fpd=True)
    rt.clear_context(3, 0x0B)
    root = present_table(rt.maddr)
    for bus in (3, 4, 255):
        # Independent truth: the 16-byte entry at root + 16 * bus, read back from memory.
        assert rt.raw_root(bus) == (
            mem.read_u64(root + 16 * bus),
            mem.read_u64(root + 16 * bus + 8),
        )
    ctp = rt.raw_root(3)[0] & ~0xFFF
    assert rt.raw_root(3) == (ctp | 1, 0) and ctp == rt.context_table(3)
    for devfn in (0x0A, 0x0B, 0x0C):
        at = ctp + 16 * devfn
        assert rt.raw_context(3, devfn) == (mem.read_u64(at), mem.read_u64(at + 8))
    f = decode_context(*rt.raw_context(3, 0x0A))
    assert (f["p"], f["tt"], f["slptptr"], f["aw"], f["did"]) == (1, 1, 0x7000, 2, 0x42)
    # A not-present entry whose fields are still there (what the seed's device_in_domain reads).
    mem.write_u64(ctp + 16 * 0x0C + 8, 0x42 << 8 | 2)
    mem.write_u64(ctp + 16 * 0x0C, 0x7000 | 1 << 2)
    assert rt.context(3, 0x0C) is None
    f = decode_context(*rt.raw_context(3, 0x0C))
    assert (f["p"], f["tt"], f["did"]) == (0, 1, 0x42)
    assert rt.raw_context(4, 0x0A) == (0, 0)  # bus 4 has no context table
    for bad in ((256, 0), (0, 256), (-1, 0)):
        with pytest.raises(InvalidArgument):
            rt.raw_context(*bad)
    with pytest.raises(InvalidArgument):
        rt.raw_root(256)
    # A present root entry pointing outside memory: reading through it fails.
    mem.write_u64(root + 16 * 9, (1 << 45) | 1)
    with pytest.raises(MemoryAccessError):
        rt.raw_context(9, 0)
