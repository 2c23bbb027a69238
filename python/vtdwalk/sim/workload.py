"""The DMA workload: the device streams interleaved, and driving it through the units."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import numpy.typing as npt

from vtdwalk.errors import PlatformError
from vtdwalk.platform import Platform
from vtdwalk.sim.scenario import PAGE, RING_OFF, UNMAPPED_OFF, Scenario


@dataclass
class Workload:
    sids: npt.NDArray[np.uint16]
    iovas: npt.NDArray[np.uint64]
    writes: npt.NDArray[np.bool_]
    expect: npt.NDArray[np.uint64]  # 0 where a fault is expected
    expect_fault: npt.NDArray[np.uint8]
    bdfs: list[str]
    stream_of: npt.NDArray[np.int32]


def make_workload(sc: Scenario, rng: np.random.Generator, faults: int = 16) -> Workload:
    """Interleave the device streams in random order and add accesses that must fault."""
    streams = sc.streams
    if not streams:
        p = sc.platform
        if not p.iommus:
            why = "; ".join(str(f) for f in p.report if f.severity == "fatal") or "none found"
            raise PlatformError(f"the table yields no usable remapping unit ({why})")
        raise PlatformError("no device could be assigned: nothing to simulate")
    sids = np.concatenate([np.full(len(s.iovas), s.sid, dtype=np.uint16) for s in streams])
    iovas = np.concatenate([s.iovas for s in streams])
    writes = np.concatenate([s.writes for s in streams])
    expect = np.concatenate([s.expect for s in streams])
    which = np.concatenate(
        [np.full(len(s.iovas), i, dtype=np.int32) for i, s in enumerate(streams)]
    )
    efault = np.zeros(len(iovas), dtype=np.uint8)
    # Faulting accesses: an unmapped IOVA (read: 0x6), a write to the read-only ring (0x5).
    extra_sid, extra_iova, extra_write, extra_fault = [], [], [], []
    for i in range(faults):
        s = streams[i % len(streams)]
        if i % 2 == 0:
            extra_sid.append(s.sid)
            extra_iova.append(s.base + UNMAPPED_OFF + i * PAGE)
            extra_write.append(False)
            extra_fault.append(0x6)
        else:
            extra_sid.append(s.sid)
            extra_iova.append(s.base + RING_OFF + i * PAGE)
            extra_write.append(True)
            extra_fault.append(0x5)
    sids = np.concatenate([sids, np.array(extra_sid, dtype=np.uint16)])
    iovas = np.concatenate([iovas, np.array(extra_iova, dtype=np.uint64)])
    writes = np.concatenate([writes, np.array(extra_write, dtype=np.bool_)])
    expect = np.concatenate([expect, np.zeros(faults, dtype=np.uint64)])
    efault = np.concatenate([efault, np.array(extra_fault, dtype=np.uint8)])
    which = np.concatenate([which, np.array([i % len(streams) for i in range(faults)])])
    order = rng.permutation(len(iovas))
    return Workload(
        sids[order],
        iovas[order],
        writes[order],
        expect[order],
        efault[order],
        [s.bdf for s in streams],
        which[order].astype(np.int32),
    )


@contextmanager
def _progress(total: int, enabled: bool, out: TextIO) -> Iterator[Callable[[int], None]]:
    done = 0
    width = 30

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if enabled:
            frac = done / total if total else 1.0
            bar = "#" * int(frac * width)
            out.write(f"\r  translating [{bar:<{width}}] {done:>10,}/{total:,}")
            out.flush()

    try:
        yield tick
    finally:
        if enabled:
            out.write("\n")
            out.flush()


def drive(
    p: Platform,
    w: Workload,
    batch: int,
    progress: bool = False,
    out: TextIO = sys.stderr,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8], float]:
    """Translate the workload in batches through each device's unit; (hpa, fault, seconds)."""
    n = len(w.iovas)
    hpa = np.zeros(n, dtype=np.uint64)
    fault = np.zeros(n, dtype=np.uint8)
    seconds = 0.0
    with _progress(n, progress, out) as tick:
        for start in range(0, n, batch):
            sl = slice(start, min(start + batch, n))
            t0 = time.perf_counter()
            h, f = p.translate_batch(w.sids[sl], w.iovas[sl], w.writes[sl])
            seconds += time.perf_counter() - t0
            hpa[sl] = h
            fault[sl] = f
            tick(sl.stop - sl.start)
    return hpa, fault, seconds
