"""Batch arguments: numpy arrays of any integer dtype, strided views and plain lists are
accepted; anything else (2-D, None, floats, negatives, values too wide) raises InvalidArgument
naming the argument. Bad scalar flags and granularities raise InvalidArgument too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lookup import leaf
from reference import present_table
from vtdwalk import InvalidArgument, PageTable, PhysMem, Remapper, RootTable, VtdError

K4 = 4096
MIB = 1 << 20
SID = 0x0308  # 03:01.0
DID = 7
# IOVA -> HPA of the one domain below; everything else faults 0x06 (non-present second level).
MAP = {0x1000: 0x20_5000, 0x2000: 0x20_9000}


def unit() -> tuple[PhysMem, Remapper]:
    mem = PhysMem([(0, 64 * MIB)])
    pt = PageTable(mem, levels=4)
    for iova, hpa in MAP.items():
        pt.map(iova, hpa, K4, read=True, write=False)
    rt = RootTable(mem)
    rt.set_context(SID >> 8, SID & 0xFF, present_table(pt.root), 2, DID)
    return mem, Remapper(mem, rt.maddr)


IOVAS = [0x1000, 0x2008, 0x3000, 0x1FF8]
# Reads of the mapped pages: their HPA; a read of an unmapped page faults 0x06, a write to a
# read-only page 0x05 (vtd-hardware.md, fault reasons); hpa is 0 where a request faulted.
EXPECT_HPA = [0x20_5000, 0x20_9008, 0, 0]
EXPECT_FAULT = [0, 0, 0x06, 0x05]
WRITES = [False, False, False, True]


@pytest.mark.parametrize(
    ("sids", "iovas", "writes"),
    [
        (np.full(4, SID, np.uint16), np.array(IOVAS, np.uint64), np.array(WRITES)),
        ([SID] * 4, IOVAS, WRITES),  # plain lists
        (np.full(4, SID), np.array(IOVAS), np.array(WRITES, np.int64)),  # int64, 0/1 flags
        (np.full(4, SID, np.uint32), np.array(IOVAS, np.int32), [0, 0, 0, 1]),
        (np.full(8, SID, np.uint64)[::2], np.array(IOVAS * 2, np.uint64).reshape(2, 4)[0], WRITES),
        (np.full(4, SID, ">u8"), np.array(IOVAS, ">i8"), np.array(WRITES)),  # byte-swapped
        (tuple([SID] * 4), tuple(IOVAS), tuple(WRITES)),
    ],
)
def test_translate_batch_accepts_array_likes(sids: Any, iovas: Any, writes: Any) -> None:
    _, r = unit()
    hpa, fault = r.translate_batch(sids, iovas, writes)
    assert hpa.dtype == np.uint64 and fault.dtype == np.uint8
    assert hpa.tolist() == EXPECT_HPA
    assert fault.tolist() == EXPECT_FAULT


def test_translate_batch_empty_list() -> None:
    _, r = unit()
    hpa, fault = r.translate_batch([], [])
    assert hpa.shape == (0,) and fault.shape == (0,)


BAD_U64: list[tuple[Any, str]] = [
    (None, "None"),
    (np.zeros((2, 2), np.uint64), "2-D"),
    (np.array(5, np.uint64), "0-D"),
    (np.array([1.0, 2.0]), "float64"),
    (np.array([True, False]), "bool"),
    ([1, -1], "-1"),
    (np.array([0, -5], np.int64), "-5"),
    ([2**64], "object"),
    ([1, 2**64 - 1, 0.5], "0.5"),  # numpy makes float64 of it; item by item, 0.5 is no int
    (["a", "b"], "<U1"),
    ([[1], [2, 3]], "[[1], [2, 3]]"),  # ragged: numpy refuses it
    ("0x1000", "0x1000"),
    (object(), "object object"),
]


@pytest.mark.parametrize(("bad", "shown"), BAD_U64)
def test_translate_batch_rejects_bad_iovas(bad: Any, shown: str) -> None:
    _, r = unit()
    with pytest.raises(InvalidArgument, match=r"^iovas: expected a 1-D array of unsigned") as e:
        r.translate_batch(np.full(2, SID, np.uint16), bad)
    assert shown in str(e.value)


@pytest.mark.parametrize("bad", [None, [SID, 0x1_0000], [-1, 0], np.zeros((1, 2), np.uint16)])
def test_translate_batch_rejects_bad_sids(bad: Any) -> None:
    _, r = unit()
    with pytest.raises(InvalidArgument, match=r"^sids: "):
        r.translate_batch(bad, [0, 0])


@pytest.mark.parametrize("bad", [[0, 2], [0.5, 0.0], ["x", "y"], np.zeros((2, 1), bool)])
def test_translate_batch_rejects_bad_writes(bad: Any) -> None:
    _, r = unit()
    with pytest.raises(InvalidArgument, match=r"^writes: expected a 1-D array of booleans"):
        r.translate_batch([SID, SID], [0, 0], bad)


def test_translate_batch_bad_input_changes_nothing() -> None:
    _, r = unit()
    before = r.stats()
    with pytest.raises(InvalidArgument):
        r.translate_batch([SID, SID], [0x1000, -1])
    assert r.stats() == before


def test_translate_batch_read_only_input() -> None:
    _, r = unit()
    iovas = np.array(IOVAS, np.uint64)
    iovas.flags.writeable = False
    hpa, _ = r.translate_batch(np.full(4, SID, np.uint16), iovas, WRITES)
    assert hpa.tolist() == EXPECT_HPA


def test_translate_batch_into_preallocated_outputs() -> None:
    _, r = unit()
    hpa = np.full(4, 0xDEAD, np.uint64)
    fault = np.full(4, 0xFF, np.uint8)
    h, f = r.translate_batch(np.full(4, SID, np.uint16), IOVAS, WRITES, out=(hpa, fault))
    assert h is hpa and f is fault
    assert hpa.tolist() == EXPECT_HPA and fault.tolist() == EXPECT_FAULT
    # Into a slice of a larger array (a contiguous view): only the view is written.
    big = np.full(6, 7, np.uint64)
    fault[:] = 0xFF
    r.translate_batch([SID] * 4, IOVAS, WRITES, out=(big[1:5], fault))
    assert big.tolist() == [7, *EXPECT_HPA, 7] and fault.tolist() == EXPECT_FAULT


@pytest.mark.parametrize(
    ("out", "shown"),
    [
        ((np.zeros(3, np.uint64), np.zeros(4, np.uint8)), "got 3 and 4"),
        ((np.zeros(4, np.int64), np.zeros(4, np.uint8)), "hpa is not"),
        ((np.zeros(4, np.uint64), np.zeros(4, np.uint16)), "fault is not"),
        ((np.zeros(8, np.uint64)[::2], np.zeros(4, np.uint8)), "not contiguous"),
        ((np.zeros((2, 4), np.uint64), np.zeros(4, np.uint8)), "hpa is not"),
        (np.zeros(4, np.uint64), "not a pair"),
        ([1, 2], "not a pair"),
    ],
)
def test_translate_batch_bad_out_refused_and_changes_nothing(out: Any, shown: str) -> None:
    _, r = unit()
    before = r.stats()
    with pytest.raises(InvalidArgument, match="out: ") as e:
        r.translate_batch([SID] * 4, IOVAS, WRITES, out=out)
    assert shown in str(e.value)
    assert r.stats() == before


def test_translate_batch_read_only_out_refused() -> None:
    _, r = unit()
    hpa, fault = np.zeros(4, np.uint64), np.zeros(4, np.uint8)
    hpa.flags.writeable = False
    before = r.stats()
    with pytest.raises(InvalidArgument, match="out: "):
        r.translate_batch([SID] * 4, IOVAS, WRITES, out=(hpa, fault))
    assert r.stats() == before
    # An input array given as an output too: the batch works on a checked copy of its inputs,
    # so the results overwrite the IOVAs only afterwards and equal those of a separate output.
    iovas = np.array(IOVAS, np.uint64)
    _, r2 = unit()
    want_hpa, want_fault = r2.translate_batch([SID] * 4, np.array(IOVAS, np.uint64), WRITES)
    fault = np.zeros(4, np.uint8)
    r.translate_batch([SID] * 4, iovas, WRITES, out=(iovas, fault))
    assert iovas.tolist() == want_hpa.tolist()
    assert fault.tolist() == want_fault.tolist()


def pages(n: int) -> list[int]:
    return [0x10_0000 + i * K4 for i in range(n)]


@pytest.mark.parametrize(
    "conv",
    [
        lambda v: np.array(v, np.uint64),
        lambda v: list(v),
        lambda v: np.array(v),  # int64
        lambda v: np.repeat(np.array(v, np.uint64), 2)[::2],  # strided
    ],
)
def test_pagetable_batches_accept_array_likes(conv: Callable[[list[int]], Any]) -> None:
    mem = PhysMem([(0, 64 * MIB)])
    pt = PageTable(mem, superpages="none")
    iovas = [i * K4 for i in range(8)]
    maddrs = pages(8)
    assert pt.map_pages(conv(iovas), conv(maddrs)) is False
    # Independent truth: the scalar lookup of each page.
    assert [leaf(pt.lookup(v)) for v in iovas] == [(m, K4, True, True) for m in maddrs]
    got, mapped = pt.lookup_batch(conv([0, 3 * K4 + 8, 9 * K4]))
    assert got.tolist() == [maddrs[0], maddrs[3] + 8, 0]
    assert mapped.tolist() == [True, True, False]
    assert pt.unmap_pages(conv(iovas[:4])) is True
    assert [leaf(pt.lookup(v)) for v in iovas[:5]] == [None] * 4 + [(maddrs[4], K4, True, True)]


@pytest.mark.parametrize(("bad", "shown"), BAD_U64)
def test_pagetable_batches_reject_bad_input(bad: Any, shown: str) -> None:
    mem = PhysMem([(0, 64 * MIB)])
    pt = PageTable(mem)
    ok = np.zeros(2, np.uint64)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("iovas", lambda: pt.map_pages(bad, ok)),
        ("maddrs", lambda: pt.map_pages(ok, bad)),
        ("iovas", lambda: pt.unmap_pages(bad)),
        ("iovas", lambda: pt.lookup_batch(bad)),
    ]
    for name, call in calls:
        with pytest.raises(InvalidArgument, match=rf"^{name}: expected") as e:
            call()
        assert shown in str(e.value)
    assert pt.root is None and mem.stats()[0]["allocated_pages"] == 0


def test_write_u64s_accepts_array_likes() -> None:
    mem = PhysMem([(0, MIB)])
    words = [1, 2**64 - 1, 0x1234, 0]
    inputs: list[npt.ArrayLike] = [
        np.array(words, np.uint64),
        words,
        np.array([1, 2, 0x1234, 0]),  # int64
        np.repeat(np.array(words, np.uint64), 2)[::2],
    ]
    for i, values in enumerate(inputs):
        at = 0x1000 + i * 0x100
        mem.write_u64s(at, values)
        want = [int(v) for v in np.asarray(values, np.uint64)]
        assert [mem.read_u64(at + 8 * k) for k in range(4)] == want
    mem.write_u64s(0x2000, [])


@pytest.mark.parametrize(("bad", "shown"), BAD_U64)
def test_write_u64s_rejects_bad_input(bad: Any, shown: str) -> None:
    mem = PhysMem([(0, MIB)])
    with pytest.raises(InvalidArgument, match=r"^values: expected") as e:
        mem.write_u64s(0x1000, bad)
    assert shown in str(e.value)
    assert mem.read_u64(0x1000) == 0 and mem.stats()[0]["backed_pages"] == 0


def test_bad_flags_and_granularities_raise_invalid_argument() -> None:
    mem, r = unit()
    pt = PageTable(mem)
    rt = RootTable(mem)
    calls: list[Callable[[], object]] = [
        lambda: r.invalidate_iotlb(None),  # type: ignore[arg-type]
        lambda: r.invalidate_iotlb(1),  # type: ignore[arg-type]
        lambda: r.invalidate_context(None),  # type: ignore[arg-type]
        lambda: pt.map(0, 0, K4, read=None),  # type: ignore[arg-type]
        lambda: pt.map(0, 0, K4, write="yes"),  # type: ignore[arg-type]
        lambda: pt.map(0, 0, K4, snoop=1),  # type: ignore[arg-type]
        lambda: pt.map_pages([0], [0], read=None),  # type: ignore[arg-type]
        lambda: pt.leaf_table(0, None),  # type: ignore[arg-type]
        lambda: rt.context_table(0, None),  # type: ignore[arg-type]
        lambda: rt.set_context(0, 0, 0, 2, 1, fpd=None),  # type: ignore[arg-type]
        lambda: r.translate(SID, 0x1000, None),  # type: ignore[arg-type]
        lambda: Remapper(mem, None, context_cache=None),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="expected") as e:
            call()
        assert isinstance(e.value, VtdError) and isinstance(e.value, ValueError)
    assert pt.root is None and rt.maddr is None
    # numpy bools are bools.
    yes: Any = np.bool_(True)
    no: Any = np.bool_(False)
    assert pt.map(0, 0x10_0000, K4, read=yes, write=no) is False
    assert leaf(pt.lookup(0)) == (0x10_0000, K4, True, False)


def test_write_u64s_size_limit() -> None:
    mem = PhysMem([(0, MIB)])
    # Stride-0 views: 2**27 + 1 words without the memory; refused before any conversion.
    for big in (
        np.broadcast_to(np.uint64(1), (2**27 + 1,)),
        np.broadcast_to(np.int64(1), (2**27 + 1,)),
    ):
        with pytest.raises(InvalidArgument, match=r"^values: 134217729 entries, more than"):
            mem.write_u64s(0x1000, big)
    assert mem.stats()[0]["backed_pages"] == 0
