"""Speed of interrupt remapping: ``Remapper.msi`` from Python, one request a call, and
``Remapper.msi_batch`` over numpy arrays, each beside a baseline of the same run that shares no
code with the unit: a pure-Python dict from handle to the IRTE's two words and the Python field
extraction of the same IRTE into the compatibility-format message.

Run: python -m pytest benches/bench_ir.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vtdwalk import Irte, PhysMem, Remapper

GCMD, GSTS, IRTA = 0x18, 0x1C, 0xB8
IRE, SIRTP = 1 << 25, 1 << 24
IRT = 0x10_0000
ENTRIES = 256
N = 1 << 14
SID = 0x0308


@pytest.fixture(scope="module")
def unit() -> tuple[Remapper, list[tuple[int, int]]]:
    mem = PhysMem([(0, 16 << 20)])
    r = Remapper(mem)
    for i in range(ENTRIES):
        e = Irte(vector=0x20 + i % 200, destination=i % 8, svt=Irte.SVT_SID, sid=SID)
        mem.write(IRT + 16 * i, e.to_bytes())
    r.mmio_write(IRTA, 8, IRT | 7)  # 2^8 entries
    r.mmio_write(GCMD, 4, SIRTP)
    r.mmio_write(GCMD, 4, IRE)
    assert r.mmio_read(GSTS, 4) & IRE
    msgs = [Irte.remappable_msi(i % ENTRIES) for i in range(N)]
    return r, msgs


def _baseline_table() -> dict[int, tuple[int, int]]:
    # The same entries as two integers each, as a Python program would hold them.
    t: dict[int, tuple[int, int]] = {}
    for i in range(ENTRIES):
        lo = 1 | (0x20 + i % 200) << 16 | ((i % 8) << 8) << 32
        hi = SID | 1 << 18
        t[i] = (lo, hi)
    return t


def _baseline(
    table: dict[int, tuple[int, int]], sid: int, address: int, data: int
) -> tuple[int, int]:
    handle = (address >> 5 & 0x7FFF) | (address >> 2 & 1) << 15
    lo, hi = table[handle]
    if not lo & 1 or (hi >> 18 & 3 == 1 and hi & 0xFFFF != sid):
        raise LookupError(handle)
    dest = lo >> 40 & 0xFF
    addr = 0xFEE0_0000 | dest << 12 | (lo >> 3 & 1) << 3 | (lo >> 2 & 1) << 2
    return addr, (lo >> 16 & 0xFF) | (lo >> 5 & 7) << 8 | (lo >> 4 & 1) << 15


@pytest.mark.benchmark(group="ir-single")
def test_bench_msi(benchmark: Any, unit: tuple[Remapper, list[tuple[int, int]]]) -> None:
    r, msgs = unit

    def run() -> None:
        for a, d in msgs:
            r.msi(SID, a, d)
        r.interrupts()

    benchmark(run)
    got = r.msi(SID, *msgs[5])
    r.interrupts()
    assert (got.address, got.data) == _baseline(_baseline_table(), SID, *msgs[5])


@pytest.mark.benchmark(group="ir-single")
def test_bench_msi_python_dict_baseline(
    benchmark: Any, unit: tuple[Remapper, list[tuple[int, int]]]
) -> None:
    _, msgs = unit
    table = _baseline_table()

    def run() -> None:
        for a, d in msgs:
            _baseline(table, SID, a, d)

    benchmark(run)


@pytest.mark.benchmark(group="ir-batch")
def test_bench_msi_batch(benchmark: Any, unit: tuple[Remapper, list[tuple[int, int]]]) -> None:
    r, msgs = unit
    sids = np.full(N, SID, dtype=np.uint16)
    addrs = np.array([a for a, _ in msgs], dtype=np.uint64)
    datas = np.zeros(N, dtype=np.uint32)
    a, d, f = benchmark(r.msi_batch, sids, addrs, datas)
    assert not f.any()
    assert (int(a[5]), int(d[5])) == _baseline(_baseline_table(), SID, *msgs[5])


@pytest.mark.benchmark(group="ir-batch")
def test_bench_msi_numpy_baseline(
    benchmark: Any, unit: tuple[Remapper, list[tuple[int, int]]]
) -> None:
    # The same look-up and field extraction vectorised with numpy over the same table.
    _, msgs = unit
    t = _baseline_table()
    lo = np.array([t[i][0] for i in range(ENTRIES)], dtype=np.uint64)
    addrs = np.array([a for a, _ in msgs], dtype=np.uint64)

    def run() -> tuple[np.ndarray, np.ndarray]:
        h = (addrs >> np.uint64(5)) & np.uint64(0x7FFF) | (
            (addrs >> np.uint64(2)) & np.uint64(1)
        ) << np.uint64(15)
        e = lo[h.astype(np.intp)]
        dest = (e >> np.uint64(40)) & np.uint64(0xFF)
        a = np.uint64(0xFEE0_0000) | dest << np.uint64(12)
        d = (e >> np.uint64(16)) & np.uint64(0xFF)
        return a, d.astype(np.uint32)

    a, _ = benchmark(run)
    assert int(a[5]) == _baseline(t, SID, *msgs[5])[0]
