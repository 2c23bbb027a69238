"""The Python paths an emulator uses, each timed beside the call it wraps in the same run:

* ``Remapper.translate`` of an IOTLB hit (ns per call), beside a call of a Python function
  with the same arguments that does nothing;
* ``Platform.translate`` with a string BDF (ns per call, and its ratio to the former);
* ``Platform.translate_batch`` over ``Remapper.translate_batch`` for the same requests
  (1M IOTLB hits of one device), and the latter with ``out=`` arrays.

Run (release build first: maturin develop --release):  python benches/bench_paths.py
Medians of 9 rounds in which the cases alternate; on a machine shared with other work
compare the ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from vtdwalk import Platform, dma

DEV = "82:00.0"
N_SINGLE = 20_000
N_BATCH = 1 << 20
PAGES = 1 << 14
ROUNDS = 9


def median_ns(n: int, f: Callable[[], object], reps: int = 7) -> float:
    runs = []
    for _ in range(reps):
        t = time.perf_counter_ns()
        f()
        runs.append((time.perf_counter_ns() - t) / n)
    runs.sort()
    return runs[len(runs) // 2]


def main() -> None:
    p = Platform.default()
    d = p.create_domain()
    p.assign_device(d, DEV)
    d.map(0, 0x10_0000_0000, PAGES * 4096)
    hw, sid = dma.hardware_of(p.iommu_for_device, DEV)
    hw.translate(sid, 0x10)  # in the IOTLB from now on

    def unit_single() -> None:
        for _ in range(N_SINGLE):
            hw.translate(sid, 0x10)

    def platform_single() -> None:
        for _ in range(N_SINGLE):
            p.translate(DEV, 0x10)

    rng = np.random.default_rng(3)
    iovas = (rng.integers(0, PAGES, N_BATCH, dtype=np.uint64) << np.uint64(12)) | np.uint64(8)
    sids = np.full(N_BATCH, sid, np.uint16)
    devs = [DEV] * N_BATCH
    hw.translate_batch(sids, iovas)  # warm: every page in the IOTLB
    out = (np.empty(N_BATCH, np.uint64), np.empty(N_BATCH, np.uint8))

    # The cases alternate within each round, so each ratio compares runs taken moments apart
    # (the machine's speed drifts); figures are medians over the rounds, ratios the medians
    # of the rounds' ratios.
    def noop(sid: int, iova: int) -> None:
        pass

    def python_single() -> None:
        for _ in range(N_SINGLE):
            noop(sid, 0x10)

    cases: dict[str, tuple[int, Callable[[], object]]] = {
        "py": (N_SINGLE, python_single),
        "u1": (N_SINGLE, unit_single),
        "p1": (N_SINGLE, platform_single),
        "ub": (N_BATCH, lambda: hw.translate_batch(sids, iovas, threads=1)),
        "uo": (N_BATCH, lambda: hw.translate_batch(sids, iovas, threads=1, out=out)),
        "pb": (N_BATCH, lambda: p.translate_batch(devs, iovas, threads=1)),
        "ps": (N_BATCH, lambda: p.translate_batch(sids, iovas, threads=1)),
    }
    rounds = [{k: median_ns(n, f, reps=1) for k, (n, f) in cases.items()} for _ in range(ROUNDS)]

    def fig(k: str) -> float:
        return float(np.median([r[k] for r in rounds]))

    def ratio(a: str, b: str) -> float:
        return float(np.median([r[a] / r[b] for r in rounds]))

    u1, p1, ub, uo, pb, ps = (fig(k) for k in ("u1", "p1", "ub", "uo", "pb", "ps"))
    print(f"a Python function call (the floor)      {fig('py'):8.1f} ns")
    print(f"Remapper.translate, IOTLB hit           {u1:8.1f} ns  {ratio('u1', 'py'):5.2f}x it")
    r = ratio("p1", "u1")
    print(f"Platform.translate, string BDF          {p1:8.1f} ns  {r:5.2f}x the unit's")
    print(f"Remapper.translate_batch, 1M hits       {ub:8.1f} ns/request")
    print(
        f"  with out= arrays                      {uo:8.1f} ns/request  {ratio('uo', 'ub'):5.2f}x"
    )
    print(
        f"Platform.translate_batch, BDF strings   {pb:8.1f} ns/request  {ratio('pb', 'ub'):5.2f}x"
    )
    print(
        f"Platform.translate_batch, uint16 sids   {ps:8.1f} ns/request  {ratio('ps', 'ub'):5.2f}x"
    )


if __name__ == "__main__":
    main()
