"""Hostile batch and scalar arguments to the native objects and their Python wrappers: input
changed by another thread during a batch call, bool arrays holding other bytes, masked arrays,
True/False as integers, and wrongly typed DMAR scopes."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lookup import leaf
from reference import present_table
from vtdwalk import (
    InvalidArgument,
    PageTable,
    PhysMem,
    Platform,
    Remapper,
    RootTable,
    dmar,
)

U64 = np.uint64


def unit() -> tuple[PhysMem, PageTable, Remapper]:
    mem = PhysMem([(0, 1 << 30)])
    pt = PageTable(mem, levels=4)
    pt.leaf_table(0, True)
    rt = RootTable(mem)
    rt.set_context(0, 8, present_table(pt.root), aw=2, did=1)
    return mem, pt, Remapper(mem, rt.maddr)


# ---- item: batch input read in place with the GIL released


def test_map_pages_maps_only_addresses_it_checked() -> None:
    # Another thread flips one entry between a valid page and an address beyond the table's
    # 48-bit width while map_pages runs on the same array; every call either refuses the array
    # it checked or maps what it checked: never an address it did not accept.
    _, pt, _ = unit()
    n = 1 << 14
    iovas = np.arange(n, dtype=U64) * U64(0x1000)
    maddrs = np.arange(n, dtype=U64) * U64(0x1000) + U64(0x1000_0000)
    bad = U64(1 << 50)
    stop = threading.Event()

    def flipper() -> None:
        while not stop.is_set():
            iovas[n // 2] = bad
            iovas[n // 2] = U64((n // 2) * 0x1000)

    t = threading.Thread(target=flipper)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t.start()
    try:
        for _ in range(60):
            with contextlib.suppress(InvalidArgument):
                pt.map_pages(iovas, maddrs)
            pt.unmap_pages(np.arange(n, dtype=U64) * U64(0x1000))
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    pt.map_pages(iovas, maddrs)
    for iova, _, size, _, _ in pt.mappings():
        assert iova + size <= 1 << 48


def test_batch_calls_do_not_keep_the_callers_array() -> None:
    # The call works on a copy: changing the array afterwards changes nothing mapped.
    _, pt, _ = unit()
    iv = np.array([0x5000, 0x6000], dtype=U64)
    pt.map_pages(iv, np.array([0x10_0000, 0x11_0000], dtype=U64))
    iv[:] = 0x7000
    assert leaf(pt.lookup(0x5000)) == (0x10_0000, 0x1000, True, True)
    assert pt.lookup(0x7000) is None


# ---- item: a uint8 array viewed as bool holding 2


def test_bool_view_of_byte_2_refused_as_writes() -> None:
    _, pt, hw = unit()
    pt.map(0x20_0000, 0x10_0000, 0x1000)
    writes = np.array([0, 2, 1], dtype=np.uint8).view(np.bool_)
    sids = np.full(3, 8, dtype=np.uint16)
    iovas = np.full(3, 0x20_0000, dtype=U64)
    with pytest.raises(InvalidArgument, match=r"^writes: .*byte value 2"):
        hw.translate_batch(sids, iovas, writes)
    p = Platform.default()
    with pytest.raises(InvalidArgument, match=r"^writes: "):
        p.translate_batch(["82:00.0"] * 3, iovas, writes)
    # Real booleans are fine.
    hpa, fault = hw.translate_batch(sids, iovas, np.array([False, True, True]))
    assert hpa.tolist() == [0x10_0000] * 3 and fault.tolist() == [0, 0, 0]


# ---- item: masked arrays


def test_masked_arrays_refused() -> None:
    _, pt, hw = unit()
    m = np.ma.masked_array(np.array([0x1000, 0x2000], dtype=U64), mask=[False, True])
    plain = np.array([0x1000, 0x2000], dtype=U64)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("iovas", lambda: pt.map_pages(m, plain)),
        ("maddrs", lambda: pt.map_pages(plain, m)),
        ("iovas", lambda: pt.unmap_pages(m)),
        ("iovas", lambda: pt.lookup_many(m)),
        ("sids", lambda: hw.translate_batch(np.ma.masked_array([8, 8], mask=[False, True]), plain)),
        ("iovas", lambda: hw.translate_batch([8, 8], m)),
        ("writes", lambda: hw.translate_batch([8, 8], plain, np.ma.masked_array([1, 0]))),
    ]
    for name, call in calls:
        with pytest.raises(InvalidArgument, match=rf"^{name}: a masked array"):
            call()
    assert pt.mappings() == []
    p = Platform.default()
    d = p.create_domain()
    with pytest.raises(InvalidArgument, match=r"^iovas: a masked array"):
        d.map_pages(m, plain)
    with pytest.raises(InvalidArgument, match=r"^iovas: a masked array"):
        p.translate_batch(["82:00.0"] * 2, m)
    assert d.page_table is not None and d.page_table.mappings() == []


# ---- item: native integer arguments refuse True/False


def test_native_integers_refuse_bools() -> None:
    mem, pt, hw = unit()
    calls: list[Callable[[], Any]] = [
        lambda: pt.map(True, 0, 0x1000),
        lambda: pt.map(0, False, 0x1000),
        lambda: pt.map(0, 0, True),
        lambda: pt.unmap(0, True),
        lambda: pt.lookup(False),
        lambda: mem.alloc_pages(True),
        lambda: mem.read_u64(False),
        lambda: hw.translate(8, True),
        lambda: PageTable(mem, levels=True),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="expected an integer"):
            call()
    assert pt.mappings() == []
    # numpy integers are integers.
    assert pt.map(np.uint64(0x3000), np.int64(0x4000), np.uint16(0x1000)) is False
    assert leaf(pt.lookup(np.uint64(0x3000))) == (0x4000, 0x1000, True, True)


# ---- item: DMAR builders given wrongly typed scopes


@pytest.mark.parametrize(
    "make",
    [
        lambda sc: dmar.Drhd(0, 0, 0xA000, sc),
        lambda sc: dmar.Rmrr(0, 0x1000, 0x1FFF, sc),
        lambda sc: dmar.Atsr(0, 0, sc),
    ],
)
@pytest.mark.parametrize("scopes", [5, "x", [5], ["x"], [None], {"a": 1}])
def test_dmar_builders_name_wrongly_typed_scopes(make: Any, scopes: Any) -> None:
    t = dmar.DmarTable(host_address_width=47, flags=0, structures=[make(scopes)])
    with pytest.raises(TypeError, match=r"^scopes: "):
        t.to_bytes()


def test_scope_path_of_the_wrong_type_is_named() -> None:
    sc = dmar.DeviceScope(dmar.SCOPE_ENDPOINT, start_bus=0, path=5)  # type: ignore[arg-type]
    t = dmar.DmarTable(host_address_width=47, flags=0, structures=[dmar.Drhd(0, 0, 0xA000, [sc])])
    with pytest.raises(TypeError, match=r"^path: "):
        t.to_bytes()


# ---- item: scalar argument errors name the argument


def test_page_table_scalar_errors_name_the_argument() -> None:
    mem, pt, _ = unit()
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("iova", lambda: pt.map(True, 0, 0x1000)),
        ("maddr", lambda: pt.map(0, -1, 0x1000)),
        ("size", lambda: pt.map(0, 0, 1 << 64)),
        ("read", lambda: pt.map(0, 0, 0x1000, read=2)),  # type: ignore[arg-type]
        ("write", lambda: pt.map(0, 0, 0x1000, write="yes")),  # type: ignore[arg-type]
        ("snoop", lambda: pt.map(0, 0, 0x1000, snoop=None)),  # type: ignore[arg-type]
        ("iova", lambda: pt.unmap("0", 0x1000)),  # type: ignore[arg-type]
        ("size", lambda: pt.unmap(0, 0.5)),  # type: ignore[arg-type]
        ("iova", lambda: pt.lookup(-1)),
        ("alloc", lambda: pt.leaf_table(0, 5)),  # type: ignore[arg-type]
        ("level", lambda: pt.leaf_table(0, True, level=-1)),
        ("levels", lambda: PageTable(mem, levels=True)),
        ("read", lambda: pt.map_pages([0], [0], read=3)),  # type: ignore[arg-type]
    ]
    for name, call in calls:
        with pytest.raises(InvalidArgument, match=rf"^{name}: expected "):
            call()
    assert pt.mappings() == []
