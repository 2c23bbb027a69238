"""The README tour's path: ``Platform.translate(bdf_string, iova)`` one call at a time, beside
``Remapper.translate(sid, iova)`` on the same unit and tables in the same run, and the
tour's ``Platform.translate_batch`` of device strings.

Run (release build first: maturin develop --release):
    python -m pytest benches/bench_tour.py --benchmark-enable --benchmark-only \
        --benchmark-columns=median,iqr,rounds -q
Divide each median by the number of calls in its group name for the time per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import vtdwalk
from vtdwalk import Platform

N = 10_000  # single calls per round
N_BATCH = 1 << 16
BDF = "81:00.0"
IOVA = 0x1000_0000


@dataclass
class Tour:
    p: Platform
    sid: int
    unit: Any
    iovas: list[int]


@pytest.fixture(scope="module")
def tour() -> Tour:
    p = Platform.default()
    dom = p.create_domain()
    p.assign_device(dom, BDF)
    buf = p.mem.alloc_pages(512, node=dom.node)
    dom.map(IOVA, buf, 2 << 20)
    rng = np.random.default_rng(1)
    iovas = [IOVA + int(x) * 8 for x in rng.integers(0, (2 << 20) // 8, size=N)]
    unit = p.iommu_for_device(BDF)
    assert unit is not None
    sid = vtdwalk.Bdf.parse(BDF).sid
    # Both paths give the same answer.
    assert p.translate(BDF, iovas[0]).hpa == unit.remapper.translate(sid, iovas[0]).hpa
    return Tour(p, sid, unit, iovas)


@pytest.mark.benchmark(group=f"tour: {N} single translations")
def test_platform_translate(benchmark: Any, tour: Tour) -> None:
    """What the README's tour does: a device string and an IOVA, one call each."""
    p, iovas = tour.p, tour.iovas

    def run() -> None:
        for a in iovas:
            p.translate(BDF, a)

    benchmark(run)


@pytest.mark.benchmark(group=f"tour: {N} single translations")
def test_remapper_translate(benchmark: Any, tour: Tour) -> None:
    """The unit's hardware directly: a source-id and an IOVA."""
    r, sid, iovas = tour.unit.remapper, tour.sid, tour.iovas

    def run() -> None:
        for a in iovas:
            r.translate(sid, a)

    benchmark(run)


@pytest.mark.benchmark(group=f"tour: batch of {N_BATCH} translations")
def test_platform_translate_batch_strings(benchmark: Any, tour: Tour) -> None:
    """The tour's batch form, device strings included."""
    p = tour.p
    iovas = np.array((tour.iovas * (N_BATCH // N + 1))[:N_BATCH], dtype=np.uint64)
    bdfs = [BDF] * N_BATCH
    benchmark(p.translate_batch, bdfs, iovas)
