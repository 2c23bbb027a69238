"""Speed of device assignment, domain mappings with their flushes, and DMA through the platform
on the embedded two-socket machine.

Run: python -m pytest benches/bench_assign.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vtdwalk import Platform

N = 1 << 14


@pytest.fixture(scope="module")
def plat() -> Platform:
    p = Platform.default()
    d0, d1 = p.create_domain(), p.create_domain()
    p.assign_device(d0, "01:00.0")
    p.assign_device(d1, "82:00.0")
    iovas = np.arange(N, dtype=np.uint64) * np.uint64(4096)
    d0.map_pages(iovas, iovas + np.uint64(0x4000_0000))
    d1.map_pages(iovas, iovas + np.uint64(0x10_0000_0000))
    return p


@pytest.mark.benchmark(group="assign")
def test_bench_assign_deassign(benchmark: Any) -> None:
    p = Platform.default()
    d = p.create_domain()

    def cycle() -> None:
        p.assign_device(d, "04:01.0")  # conventional PCI behind a PCIe-to-PCI bridge
        p.deassign_device("04:01.0")

    benchmark(cycle)
    assert p.owner_of("04:01.0") is None


@pytest.mark.benchmark(group="assign")
def test_bench_domain_map_unmap_page(benchmark: Any) -> None:
    p = Platform.default()
    d = p.create_domain()
    p.assign_device(d, "82:00.0")

    def cycle() -> None:
        d.map(0x1000, 0x10_0000_0000, 0x1000)
        d.unmap(0x1000, 0x1000)

    benchmark(cycle)
    assert d.flush_counts["page"] > 0


@pytest.mark.benchmark(group="assign")
def test_bench_domain_map_pages_batch(benchmark: Any) -> None:
    p = Platform.default()
    d = p.create_domain()
    p.assign_device(d, "82:00.0")
    iovas = np.arange(4096, dtype=np.uint64) * np.uint64(4096)
    targets = iovas + np.uint64(0x10_0000_0000)

    def cycle() -> None:
        d.map_pages(iovas, targets)
        d.unmap_pages(iovas)

    benchmark(cycle)


@pytest.mark.benchmark(group="assign")
def test_bench_platform_translate_one(benchmark: Any, plat: Platform) -> None:
    t = benchmark(plat.translate, "82:00.0", 0x1234)
    assert t.hpa == 0x10_0000_1234


@pytest.mark.benchmark(group="assign")
def test_bench_platform_translate_batch_two_units(benchmark: Any, plat: Platform) -> None:
    rng = np.random.default_rng(1)
    keys = np.where(rng.integers(0, 2, N) == 0, 0x0100, 0x8200).astype(np.uint32)
    iovas = rng.integers(0, N, N).astype(np.uint64) * np.uint64(4096)
    hpa, fault = benchmark(plat.translate_batch, keys, iovas)
    assert not fault.any()
    base = np.where(keys == 0x0100, 0x4000_0000, 0x10_0000_0000).astype(np.uint64)
    assert np.array_equal(hpa, iovas + base)
