"""The driver's flushes and interrupts: a domain-selective IOTLB flush through the invalidation
queue (the descriptor, its wait descriptor, the status poll) beside the same flush through the
IOTLB register on a platform without a queue, in the same run; ``Platform.msi`` (the device's
programmed message through its unit) beside ``Remapper.msi`` on the same unit and entry; and
``Platform.setup_msi`` (an entry written and its cache entry invalidated through the queue).

Run (release build first: maturin develop --release):
    python -m pytest benches/bench_driver.py --benchmark-enable --benchmark-only \
        --benchmark-columns=median,iqr,rounds -q
Divide each median by the number of calls in its group name for the time per call.
"""

from __future__ import annotations

from typing import Any

import pytest

from vtdwalk import Ecap, Platform
from vtdwalk.driver.iommu import QEMU_ECAP
from vtdwalk.platform import DEFAULT_CAP

N = 1000  # calls per round
BDF = "81:00.0"
AUDIO_UNIT = 0xF3FFD000


def _platform(queued: bool) -> tuple[Platform, Any]:
    if queued:
        p = Platform.default()
    else:
        no_qi = int(Ecap(QEMU_ECAP).replace(qi=False).value)
        p = Platform.default(unit_caps={AUDIO_UNIT: (DEFAULT_CAP, no_qi)})
    assert p.queued_invalidation is queued
    dom = p.create_domain()
    p.assign_device(dom, BDF)
    unit = p.iommu_for_device(BDF)
    assert unit is not None
    return p, unit


@pytest.mark.benchmark(group=f"flush x{N}")
@pytest.mark.parametrize("queued", [True, False], ids=["queue", "registers"])
def test_domain_flush(benchmark: Any, queued: bool) -> None:
    _, unit = _platform(queued)
    did = 1

    def run() -> None:
        for _ in range(N):
            unit.port.flush_iotlb_domain(did)

    benchmark(run)


@pytest.mark.benchmark(group=f"msi x{N}")
def test_platform_msi(benchmark: Any) -> None:
    p, _ = _platform(True)
    p.setup_msi(BDF, 0x40, 1)

    def run() -> None:
        for _ in range(N):
            p.msi(BDF)

    benchmark(run)


@pytest.mark.benchmark(group=f"msi x{N}")
def test_remapper_msi_baseline(benchmark: Any) -> None:
    p, unit = _platform(True)
    h = p.setup_msi(BDF, 0x40, 1)
    hw = unit.remapper
    sid, address, data = 0x8100, h.address, h.data

    def run() -> None:
        for _ in range(N):
            hw.msi(sid, address, data)

    benchmark(run)


@pytest.mark.benchmark(group=f"setup_msi x{N}")
def test_setup_msi(benchmark: Any) -> None:
    p, _ = _platform(True)

    def run() -> None:
        for v in range(N):
            p.setup_msi(BDF, 0x20 + v % 0xC0, 1)

    benchmark(run)
