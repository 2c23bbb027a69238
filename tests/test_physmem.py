"""PhysMem: placement, fallback, zeroing, sparseness, bad input, and a randomised model check."""

from __future__ import annotations

import array
import ctypes
import itertools
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import vtdwalk
from vtdwalk import BadFree, InvalidArgument, MemoryAccessError, OutOfMemory, PhysMem, VtdError

PAGE = 4096
GIB = 1 << 30


def small() -> PhysMem:
    return PhysMem([(0, 64 * PAGE), (GIB, 32 * PAGE)])


def test_nodes_and_node_of() -> None:
    m = small()
    assert m.nodes == [(0, 64 * PAGE), (GIB, 32 * PAGE)]
    assert m.num_nodes == 2
    assert m.node_of(0) == 0
    assert m.node_of(64 * PAGE - 1) == 0
    assert m.node_of(GIB + 5) == 1
    with pytest.raises(MemoryAccessError, match="outside every NUMA node"):
        m.node_of(64 * PAGE)


@pytest.mark.parametrize(
    "nodes",
    [
        [],
        [(0x800, PAGE)],
        [(0, 0x1800)],
        [(0, 0)],
        [(0, 4 * PAGE), (2 * PAGE, PAGE)],
        [((1 << 52) - PAGE, 2 * PAGE)],
        [(-PAGE, PAGE)],
        None,
        5,
        "0,4096",
        [(0, "x")],
        [(0,)],
    ],
)
def test_bad_node_ranges(nodes: Any) -> None:
    with pytest.raises(InvalidArgument):
        PhysMem(nodes)


def test_alloc_places_on_requested_node() -> None:
    m = small()
    for node in (1, 0, 1):
        a = m.alloc_pages(2, node=node)
        assert m.node_of(a) == node
        assert m.node_of(a + 2 * PAGE - 1) == node
        assert a % PAGE == 0
    s = m.stats()
    assert [n["allocated_pages"] for n in s] == [2, 4]
    assert [n["fallbacks"] for n in s] == [0, 0]


def test_fallback_to_another_node_is_counted() -> None:
    m = small()
    m.alloc_pages(32, node=1)
    a = m.alloc_pages(1, node=1)
    assert m.node_of(a) == 0
    s = m.stats()
    assert s[1]["fallbacks"] == 1
    assert s[0]["fallbacks"] == 0
    assert s[1]["free_pages"] == 0


def test_contiguous_and_disjoint() -> None:
    m = small()
    blocks = [(m.alloc_pages(n, node=0), n) for n in (3, 5, 1, 7)]
    spans = sorted((a, a + n * PAGE) for a, n in blocks)
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 <= s2
    assert all(m.is_allocated(a + i * PAGE) for a, n in blocks for i in range(n))


def test_allocated_pages_are_zeroed() -> None:
    m = small()
    a = m.alloc_pages(2, node=0)
    m.write(a, b"\xff" * (2 * PAGE))
    m.free_pages(a, 2)
    b = m.alloc_pages(2, node=0)
    assert b == a
    assert m.read(b, 2 * PAGE) == bytes(2 * PAGE)


def test_never_written_reads_zero_and_bytes_round_trip() -> None:
    m = small()
    assert m.read(5 * PAGE + 3, 100) == bytes(100)
    data = bytes(random.Random(1).randrange(256) for _ in range(3 * PAGE + 17))
    m.write(PAGE - 9, data)
    assert m.read(PAGE - 9, len(data)) == data
    m.write(GIB, bytearray(b"abc"))
    m.write(GIB + 8, memoryview(b"xyz"))
    assert m.read(GIB, 11) == b"abc\0\0\0\0\0xyz"


def test_u64_and_bulk_words() -> None:
    m = small()
    m.write_u64(GIB + 8, 0x1122334455667788)
    assert m.read(GIB + 8, 8) == (0x1122334455667788).to_bytes(8, "little")
    assert m.read_u64(GIB + 8) == 0x1122334455667788
    words = np.arange(1000, dtype=np.uint64) * np.uint64(0x10001)
    m.write_u64s(PAGE, words)
    assert np.array_equal(m.read_u64s(PAGE, 1000), words)
    assert m.read_u64(PAGE + 8 * 999) == 999 * 0x10001
    # A numpy array is a bytes-like object too: loading a memory image in one call.
    m.write(0, words.view(np.uint8))
    assert m.read_u64(8) == 0x10001


def test_bad_accesses_raise_and_change_nothing() -> None:
    m = small()
    a = m.alloc_pages(1, node=1)
    m.write_u64(a, 42)
    before = m.stats()
    cases: list[tuple[type[Exception], Callable[[], object]]] = [
        (MemoryAccessError, lambda: m.read_u64(a + 4)),
        (MemoryAccessError, lambda: m.write_u64(2 * GIB, 1)),
        (MemoryAccessError, lambda: m.write(GIB + 32 * PAGE - 4, b"12345678")),
        (MemoryAccessError, lambda: m.read(64 * PAGE - 1, 2)),
        (BadFree, lambda: m.free_pages(a + 1)),
        (BadFree, lambda: m.free_pages(a, 2)),
        (BadFree, lambda: m.free_pages(a + PAGE)),
        (BadFree, lambda: m.free_pages(5 * GIB)),
        (BadFree, lambda: m.free_pages(a, 0)),
        (OutOfMemory, lambda: m.alloc_pages(200)),
        (InvalidArgument, lambda: m.alloc_pages(0)),
        (InvalidArgument, lambda: m.alloc_pages(1, node=2)),
        (InvalidArgument, lambda: m.alloc_pages(-1)),
        (InvalidArgument, lambda: m.write_u64(a, 1 << 64)),
        (InvalidArgument, lambda: m.write(a, "text")),  # type: ignore[arg-type]
    ]
    for exc, call in cases:
        with pytest.raises(exc):
            call()
    assert m.stats() == before
    assert m.read_u64(a) == 42
    m.free_pages(a)
    with pytest.raises(BadFree, match="double free"):
        m.free_pages(a)


def test_errors_form_one_hierarchy() -> None:
    for cls in (BadFree, InvalidArgument, MemoryAccessError, OutOfMemory, vtdwalk.DmaFault):
        assert issubclass(cls, VtdError)
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(OutOfMemory, MemoryError)


def test_randomised_alloc_free_against_model() -> None:
    rng = random.Random(2024)
    m = PhysMem([(0, 512 * PAGE), (GIB, 256 * PAGE), (2 * GIB, 64 * PAGE)])
    sizes = {i: n[1] // PAGE for i, n in enumerate(m.nodes)}
    owned: dict[int, int] = {}  # maddr -> npages
    for _ in range(4000):
        if owned and rng.random() < 0.4:
            a = rng.choice(list(owned))
            m.free_pages(a, owned.pop(a))
        else:
            n = rng.choice([1, 1, 1, 2, 3, 4, 8, 13, 32])
            node = rng.choice([None, 0, 1, 2])
            try:
                a = m.alloc_pages(n, node=node)
            except OutOfMemory:
                continue
            pages = {a + i * PAGE for i in range(n)}
            taken = {b + i * PAGE for b, k in owned.items() for i in range(k)}
            assert not pages & taken
            assert len({m.node_of(p) for p in pages}) == 1
            owned[a] = n
        per_node = {i: 0 for i in sizes}
        for b, k in owned.items():
            per_node[m.node_of(b)] += k
        stats = m.stats()
        for s in stats:
            assert s["allocated_pages"] == per_node[s["node"]]
            assert s["reserved_pages"] == (1 if s["base"] == 0 else 0)
            assert s["reserved_pages"] + s["allocated_pages"] + s["free_pages"] == sizes[s["node"]]
        assert 0 not in owned
    for a, n in owned.items():
        m.free_pages(a, n)
    assert all(s["allocated_pages"] == 0 for s in m.stats())
    # Everything coalesced again: each node's whole range can be had in one piece, except on
    # node 0, whose largest aligned block left beside the reserved frame 0 is its upper half.
    with pytest.raises(OutOfMemory):
        m.alloc_pages(sizes[0], node=0)
    assert m.alloc_pages(sizes[0] // 2, node=0) == sizes[0] // 2 * PAGE
    for i in (1, 2):
        assert m.node_of(m.alloc_pages(sizes[i], node=i)) == i


def test_frame_zero_is_reserved_at_construction() -> None:
    # Address 0 means "no table" (as in Xen): a node starting at 0 never hands frame 0 out.
    m = PhysMem([(0, 8 * PAGE), (GIB, 4 * PAGE)])
    s = m.stats()
    assert [
        (n["total_pages"], n["reserved_pages"], n["allocated_pages"], n["free_pages"]) for n in s
    ] == [
        (8, 1, 0, 7),
        (4, 0, 0, 4),
    ]
    assert not m.is_allocated(0)
    got = [m.alloc_pages(1, node=0) for _ in range(7)]
    assert sorted(got) == [i * PAGE for i in range(1, 8)]
    assert m.node_of(m.alloc_pages(1, node=0)) == 1  # node 0 is full: fallback, never frame 0
    before = m.stats()
    assert (before[0]["reserved_pages"], before[0]["allocated_pages"], before[0]["free_pages"]) == (
        1,
        7,
        0,
    )
    for npages in (1, 2):
        with pytest.raises(BadFree, match="reserved"):
            m.free_pages(0, npages)
    assert m.stats() == before and not m.is_allocated(0)
    # Frame 0 is still memory.
    m.write_u64(0, 0x1234)
    assert m.read_u64(0) == 0x1234
    for a in got:
        m.free_pages(a)
    assert m.stats()[0]["free_pages"] == 7
    # A one-page node at 0 has nothing to give.
    with pytest.raises(OutOfMemory):
        PhysMem([(0, PAGE)]).alloc_pages()


SPARSE_SCRIPT = """
import resource, sys
import vtdwalk
def peak_kib():
    # VmHWM belongs to this process image; ru_maxrss keeps the parent's peak across exec.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = vtdwalk.PhysMem([(0, 512 << 30), (512 << 30, 512 << 30)])
before = peak_kib()
for i in range(10_000):
    a = m.alloc_pages(1, node=i % 2)
    m.write_u64(a, i)  # back every page: the worst case
after = peak_kib()
s = m.stats()
assert sum(n["backed_pages"] for n in s) == 10_000, s
print(after - before, after)
"""


def test_terabyte_machine_costs_only_pages_in_use() -> None:
    # A separate process so the measurement is this arena's alone (ru_maxrss is in KiB).
    out = subprocess.run(
        [sys.executable, "-c", SPARSE_SCRIPT], capture_output=True, text=True, check=True
    )
    growth_kib, peak_kib = map(int, out.stdout.split())
    assert growth_kib < 64 * 1024, f"arena grew by {growth_kib} KiB"
    assert peak_kib < 64 * 1024 + 64 * 1024, f"process peak {peak_kib} KiB"


def test_node_checks_agree_everywhere() -> None:
    m = small()
    msg = "^node: node 2 does not exist \\(there are 2\\)$"
    pt = vtdwalk.PageTable(m)
    rt = vtdwalk.RootTable(m)
    calls: list[Callable[[], object]] = [
        lambda: m.alloc_pages(1, node=2),
        lambda: vtdwalk.PageTable(m, node=2),
        lambda: vtdwalk.RootTable(m, node=2),
        lambda: setattr(pt, "node", 2),
        lambda: setattr(rt, "node", 2),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match=msg):
            call()
    assert pt.node is None and rt.node is None


def test_write_takes_every_bytes_like_object_in_c_order() -> None:
    """bytes, bytearray, memoryview (sliced too), numpy uint8 arrays of any layout, ctypes char
    arrays: the bytes land as ``bytes(memoryview(data))`` orders them (C order)."""
    m = small()
    raw = bytes(range(256)) * 4
    grid = np.frombuffer(raw, dtype=np.uint8).reshape(32, 32)
    cases: list[tuple[object, bytes]] = [
        (raw, raw),
        (bytearray(raw), raw),
        (memoryview(raw), raw),
        (memoryview(raw)[::3], raw[::3]),  # strided view
        (memoryview(bytearray(raw)).cast("B", (32, 32)), raw),
        (grid, raw),
        (grid[::2, 1::3], bytes(grid[::2, 1::3].ravel())),  # non-contiguous
        (np.asfortranarray(grid), raw),  # Fortran layout, C order of elements
        (grid.T, bytes(grid.T.ravel())),
        ((ctypes.c_char * 5).from_buffer_copy(b"vt-d!"), b"vt-d!"),
        (b"", b""),
    ]
    for i, (data, want) in enumerate(cases):
        at = GIB + i * 2 * len(raw)
        m.write(at, data)  # type: ignore[arg-type]
        assert m.read(at, len(want) + 1) == want + b"\0", i


def test_write_refuses_what_is_not_unsigned_bytes_and_changes_nothing() -> None:
    m = small()
    m.write(GIB, b"\x11" * 16)
    refused: list[object] = [
        "text",
        [1, 2, 3],
        16,
        None,
        np.arange(4, dtype=np.uint16),
        np.arange(4, dtype=np.int8),
        np.ones(4, dtype=np.float32),
        memoryview(b"abcdefgh").cast("Q"),
        array.array("b", [1, 2]),
    ]
    for data in refused:
        with pytest.raises(InvalidArgument, match="data must be a bytes-like object"):
            m.write(GIB, data)  # type: ignore[arg-type]
    assert m.read(GIB, 16) == b"\x11" * 16
    # A write that runs off the end of a node is refused whole, whatever the object's kind.
    end = GIB + 32 * PAGE
    for data in (b"12345678", bytearray(b"12345678"), np.full(8, 7, dtype=np.uint8)):
        with pytest.raises(MemoryAccessError):
            m.write(end - 4, data)  # type: ignore[arg-type]
        assert m.read(end - 4, 4) == bytes(4)
