"""Speed of the invalidation queue: N descriptors placed in memory, then one IQT write
(``Remapper.mmio_write``) that makes the unit fetch, decode and execute all of them. Beside it,
in the same run, a baseline that shares none of the code under test: numpy reading the same
descriptors' type field out of the same bytes. Figures are descriptors per second
(N / median).

Run: python -m pytest benches/bench_qi.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vtdwalk import Descriptor, PhysMem, Regs, Remapper

N = 4096  # descriptors per round: a queue of QS 4 (16 pages) holds 4096 of 128 bits
QUEUE = 0x10_0000


def descriptors() -> list[Descriptor]:
    """A driver's mix: page-selective IOTLB invalidations, a device-TLB one and a wait."""
    out: list[Descriptor] = []
    for i in range(N):
        if i % 8 == 7:
            out.append(Descriptor.wait(fence=True))
        elif i % 8 == 6:
            out.append(Descriptor.device_tlb(0x0100, (i & 0xFF) << 12))
        else:
            out.append(Descriptor.iotlb("page", did=1, addr=(i & 0xFFF) << 12))
    return out


@pytest.fixture(scope="module")
def ring() -> tuple[PhysMem, bytes]:
    mem = PhysMem([(0, 1 << 26)])
    data = b"".join(d.to_bytes() for d in descriptors())
    mem.write(QUEUE, data)
    return mem, data


@pytest.mark.benchmark(group="qi")
def test_bench_queue_processing(benchmark: Any, ring: tuple[PhysMem, bytes]) -> None:
    mem, _ = ring
    r = Remapper(mem)
    r.mmio_write(Regs.IQA, 8, Regs.iqa(QUEUE, 4))
    r.mmio_write(Regs.GCMD, 4, Regs.QIE)
    state = {"tail": 0}

    def one_lap() -> None:
        # The tail goes round once: N - 1 descriptors from the head, then the last one.
        t = state["tail"]
        r.mmio_write(Regs.IQT, 8, Regs.iqt((t + N - 1) % N))
        r.mmio_write(Regs.IQT, 8, Regs.iqt(t))
        r.device_tlb_invalidations()

    benchmark(one_lap)
    assert r.mmio_read(Regs.FSTS, 4) & Regs.IQE == 0
    assert Regs.iq_index(r.mmio_read(Regs.IQH, 8)) == 0


@pytest.mark.benchmark(group="qi")
def test_bench_baseline_numpy_type_field(benchmark: Any, ring: tuple[PhysMem, bytes]) -> None:
    mem, data = ring

    def types() -> Any:
        w = np.frombuffer(mem.read(QUEUE, len(data)), dtype=np.uint64)[0::2]
        return (w & np.uint64(0xF)) | ((w >> np.uint64(9)) & np.uint64(7)) << np.uint64(4)

    t = benchmark(types)
    assert sorted(set(int(x) for x in t)) == [2, 3, 5]
