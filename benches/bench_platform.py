"""Speed of building a platform and of Xen's look-ups on the embedded two-socket machine.

Run: python -m pytest benches/bench_platform.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vtdwalk import Bdf, Platform, dmar

DATA = Path(__file__).resolve().parent.parent / "python" / "vtdwalk" / "data"


@pytest.fixture(scope="module")
def plat() -> Platform:
    return Platform.default()


@pytest.mark.benchmark(group="platform")
def test_bench_build_default(benchmark: Any) -> None:
    table = dmar.parse((DATA / "supermicro-x10dai.dat").read_bytes())
    topo = DATA / "supermicro-x10dai.toml"
    p = benchmark(Platform, table, topology=topo)
    assert len(p.iommus) == 3


@pytest.mark.benchmark(group="platform")
def test_bench_build_synthesised(benchmark: Any) -> None:
    table = dmar.parse((DATA / "supermicro-x10dai.dat").read_bytes())
    p = benchmark(Platform, table)
    assert p.synthesised


@pytest.mark.benchmark(group="platform")
def test_bench_drhd_for_device(benchmark: Any, plat: Platform) -> None:
    bdfs = [d.bdf for d in plat.topology]

    def run() -> int:
        return sum(1 for b in bdfs if plat.drhd_for_device(b) is not None)

    assert benchmark(run) == len(bdfs)


@pytest.mark.benchmark(group="platform")
def test_bench_ioapic_to_iommu(benchmark: Any, plat: Platform) -> None:
    assert benchmark(plat.ioapic_to_iommu, 2) is plat.iommus[2]


@pytest.mark.benchmark(group="platform")
def test_bench_atsr_for_device(benchmark: Any, plat: Platform) -> None:
    assert benchmark(plat.atsr_for_device, Bdf(0, 0x82, 0, 0)) is not None
