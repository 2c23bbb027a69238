"""Speed of a device's DMA through a remapping unit (``Remapper.dma_write`` / ``dma_read``, 64
bytes, IOTLB hit), of a register read (``mmio_read`` of GSTS), and, in the same run, of the path
a device model had before: ``Platform.translate`` then ``PhysMem.write`` / ``read``.

Run: python -m pytest benches/bench_dma.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from typing import Any

import pytest

from vtdwalk import Platform, Remapper

DEV = "01:00.0"
IOVA = 0x10_0000
HPA = 0x2_0000_0000  # on node 0
DATA = bytes(range(64))
GSTS = 0x1C


@pytest.fixture(scope="module")
def plat() -> Platform:
    p = Platform.default()
    d = p.create_domain()
    p.assign_device(d, DEV)
    d.map(IOVA, HPA, 0x1000)
    return p


@pytest.fixture(scope="module")
def unit(plat: Platform) -> tuple[Remapper, int]:
    """The device's unit, and its source-id; one DMA first so the IOTLB holds the page."""
    iommu = plat.iommu_for_device(DEV)
    assert iommu is not None
    r = iommu.remapper
    sid = 0x0100
    r.dma_write(sid, IOVA, DATA)
    return r, sid


@pytest.mark.benchmark(group="dma-64B")
def test_bench_dma_write_64(benchmark: Any, plat: Platform, unit: tuple[Remapper, int]) -> None:
    r, sid = unit
    benchmark(r.dma_write, sid, IOVA, DATA)
    assert plat.mem.read(HPA, 64) == DATA


@pytest.mark.benchmark(group="dma-64B")
def test_bench_dma_read_64(benchmark: Any, unit: tuple[Remapper, int]) -> None:
    r, sid = unit
    assert benchmark(r.dma_read, sid, IOVA, 64) == DATA


@pytest.mark.benchmark(group="dma-64B")
def test_bench_translate_then_mem_write_64(benchmark: Any, plat: Platform) -> None:
    mem = plat.mem

    def write() -> None:
        t = plat.translate(DEV, IOVA, write=True)
        mem.write(t.hpa, DATA)

    benchmark(write)
    assert mem.read(HPA, 64) == DATA


@pytest.mark.benchmark(group="dma-64B")
def test_bench_translate_then_mem_read_64(benchmark: Any, plat: Platform) -> None:
    mem = plat.mem

    def read() -> bytes:
        return mem.read(plat.translate(DEV, IOVA).hpa, 64)

    assert benchmark(read) == DATA


@pytest.mark.benchmark(group="mmio")
def test_bench_mmio_read_gsts(benchmark: Any, unit: tuple[Remapper, int]) -> None:
    r, _ = unit
    # Translation enabled, root table pointer set (TES | RTPS).
    assert benchmark(r.mmio_read, GSTS, 4) & 0xC000_0000 == 0xC000_0000
