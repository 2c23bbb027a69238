"""Several threads on one Platform and on shared native objects, checked against a serial run.

The guarantee (README, "Threads"): platform, domain and assignment calls take effect one at a
time, in some order; the native objects (PhysMem, PageTable, RootTable, Remapper) lock their
own state, so each call on them is one step. So threads working on disjoint devices end where a
serial run of the same work ends, and a thread translating while others change the tables sees,
at every request, the outcome of some serial order.

The interpreter switches threads every microsecond here, to make interleavings likely.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from lookup import leaf
from reference import present_table
from vtdwalk import (
    DeviceKind,
    DmaFault,
    PageTable,
    PhysMem,
    Platform,
    Remapper,
    RootTable,
)

ROUNDS = 6


@contextmanager
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(work: list[Callable[[], None]]) -> None:
    """Run each callable in its own thread, started together; re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def body(f: Callable[[], None]) -> None:
        start.wait()
        try:
            f()
        except BaseException as e:  # handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(f,)) for f in work]
    with fast_switching():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def plain_devices(p: Platform) -> list[str]:
    """Endpoints of the X10DAi with a unit, no RMRR, no phantom functions, not a VF."""
    return [
        str(d.bdf)
        for d in p.topology
        if d.kind is DeviceKind.PCIE_ENDPOINT
        and p.iommu_for_device(d) is not None
        and not p.rmrrs_for_device(d.bdf)
        and not d.phantom_devfns()
        and d.physfn is None
    ]


def worker(p: Platform, i: int, devs: tuple[str, str]) -> Callable[[], None]:
    """Thread i's work on its own two domains and two devices."""
    a, b = devs

    def work() -> None:
        d, e = p.domains[2 * i], p.domains[2 * i + 1]
        base = 0x4000_0000 + (i << 24)
        for r in range(ROUNDS):
            p.assign_device(d, a)
            d.map(base + (r << 12), 0x2_0000_0000 + (i << 20) + (r << 12), 0x1000)
            d.map_pages(
                np.arange(4, dtype=np.uint64) * 0x1000 + base + 0x10_0000 + (r << 14),
                np.arange(4, dtype=np.uint64) * 0x1000 + 0x3_0000_0000 + (i << 20),
            )
            p.assign_device(e, b)
            p.reassign_device(b, d)
            p.deassign_device(a)
            if r % 2:
                d.unmap(base + (r << 12), 0x1000)
            p.reassign_device(b, e)
            e.map(base, 0x5_0000_0000 + (i << 20), 0x20_0000)  # a 2 MiB leaf
            e.unmap(base, 0x20_0000)
            p.deassign_device(b)
        p.assign_device(d, a)
        p.assign_device(e, b)

    return work


def summary(p: Platform) -> dict[str, Any]:
    """What must not depend on the order: ownership, mappings, context entries without their
    table pointer and DID, the set of DIDs per unit, each domain's units, free pages."""
    units = {}
    for u in p.iommus:
        entries = sorted(
            (b, f, lo & 0xFFF, hi & ~0xFFFF00) for b, f, lo, hi in u.root_table.entries()
        )
        units[u.index] = (sorted(u.dids.in_use()), entries)
    return {
        "owner": {str(b): d.id for b, d in sorted(p.assignments.owner.items())},
        "domains": {
            d.id: (
                sorted(d.dids),
                d.rmrr_refs,
                None if d.page_table is None else d.page_table.mappings(),
            )
            for d in p.domains
        },
        "units": units,
        "free": [s["free_pages"] for s in p.mem.stats()],
    }


def consistent(p: Platform) -> None:
    """Every context entry's DID belongs, on its unit, to the domain owning that device."""
    for u in p.iommus:
        for bus, devfn, _, hi in u.root_table.entries():
            did = hi >> 8 & 0xFFFF
            owner = p.owner_of((u.segment, bus, devfn >> 3, devfn & 7))
            assert owner is not None and u.dids.owner(did) == owner.id


@pytest.mark.parametrize("nthreads", [2, 4])
def test_threads_on_disjoint_devices_end_as_a_serial_run(nthreads: int) -> None:
    def build() -> tuple[Platform, list[Callable[[], None]]]:
        p = Platform.default()
        devs = plain_devices(p)
        for _ in range(2 * nthreads):
            p.create_domain()
        return p, [worker(p, i, (devs[2 * i], devs[2 * i + 1])) for i in range(nthreads)]

    serial, jobs = build()
    for job in jobs:
        job()
    threaded, jobs = build()
    run_threads(jobs)
    assert summary(threaded) == summary(serial)
    consistent(threaded)
    # Each device reaches its own pages through the hardware.
    for i, dev in enumerate(plain_devices(threaded)[: 2 * nthreads : 2]):
        base = 0x4000_0000 + (i << 24)
        t = threaded.translate(dev, base + 0x10_0000)
        assert t.hpa == 0x3_0000_0000 + (i << 20)


def test_domains_created_by_threads_get_distinct_ids() -> None:
    p = Platform.default()
    made: list[int] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(25):
            d = p.create_domain()
            with lock:
                made.append(d.id)

    run_threads([make] * 4)
    assert sorted(made) == list(range(1, 101))
    assert [d.id for d in p.domains] == sorted(made)


def test_one_domain_mapped_from_several_threads() -> None:
    # Disjoint pages of one domain, mapped and flushed from four threads at once.
    def build() -> tuple[Platform, list[Callable[[], None]]]:
        p = Platform.default()
        d = p.create_domain()
        p.assign_device(d, "82:00.0")

        def job(i: int) -> Callable[[], None]:
            def work() -> None:
                for k in range(40):
                    iova = (i << 30) + (k << 12)
                    d.map(iova, 0x2_0000_0000 + (i << 24) + (k << 12), 0x1000)
                    if k % 3 == 0:
                        d.unmap(iova, 0x1000)

            return work

        return p, [job(i) for i in range(4)]

    serial, jobs = build()
    for job in jobs:
        job()
    threaded, jobs = build()
    run_threads(jobs)
    assert summary(threaded) == summary(serial)
    (d,) = threaded.domains
    assert sum(d.flush_counts.values()) == sum(serial.domains[0].flush_counts.values())


# ---- shared native objects


def native_unit() -> tuple[PhysMem, PageTable, Remapper]:
    mem = PhysMem([(0, 1 << 30)])
    pt = PageTable(mem, levels=4)
    pt.leaf_table(0, True)
    rt = RootTable(mem)
    rt.set_context(0, 8, present_table(pt.root), aw=2, did=1)
    return mem, pt, Remapper(mem, rt.maddr)


IOVA = 0x20_0000
M1, M2 = 0x10_0000, 0x11_0000


def test_translations_while_another_thread_remaps() -> None:
    # A writer flips IOVA between two pages and unmapped, invalidating the IOTLB after each
    # change; readers see, at every request, one of the states a serial order goes through.
    _, pt, hw = native_unit()
    pt.map(IOVA, M1, 0x1000)
    seen: set[object] = set()
    seen_lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        for k in range(300):
            pt.unmap(IOVA, 0x1000)
            hw.invalidate_iotlb("page", did=1, addr=IOVA, am=0)
            pt.map(IOVA, M2 if k % 2 else M1, 0x1000)
            hw.invalidate_iotlb("domain", did=1)
        stop.set()

    def reader() -> None:
        local: set[object] = set()
        while not stop.is_set():
            try:
                local.add(hw.translate(8, IOVA + 0x10).hpa)
            except DmaFault as f:
                local.add(f.name)
            hpa, fault = hw.translate_batch(np.full(16, 8), np.full(16, IOVA, dtype=np.uint64))
            for h, r in zip(hpa.tolist(), fault.tolist(), strict=True):
                local.add(h + 0x10 if r == 0 else r)
        with seen_lock:
            seen.update(local)

    run_threads([writer, reader, reader])
    # Valid outcomes only: either page (offset kept) or the not-present fault.
    assert seen <= {M1 + 0x10, M2 + 0x10, "READ", 0x6}, seen
    # After the writer is done, every thread agrees with the final table.
    assert hw.translate(8, IOVA).hpa == M2 and leaf(pt.lookup(IOVA)) == (M2, 0x1000, True, True)


def test_map_pages_from_threads_on_one_table_equals_serial() -> None:
    def run(threaded: bool) -> tuple[list[tuple[int, int, int, bool, bool]], int]:
        mem, pt, _ = native_unit()
        rng = np.random.default_rng(7)
        chunks = [np.unique(rng.integers(0, 1 << 18, 500, dtype=np.uint64)) for _ in range(4)]
        chunks = [c * 0x1000 + (i << 32) for i, c in enumerate(chunks)]

        def job(c: np.ndarray[Any, np.dtype[np.uint64]]) -> Callable[[], None]:
            return lambda: (pt.map_pages(c, c + 0x4000_0000), pt.unmap_pages(c[::3]), None)[-1]

        jobs = [job(c) for c in chunks]
        if threaded:
            run_threads(jobs)
        else:
            for j in jobs:
                j()
        return pt.mappings(), sum(s["free_pages"] for s in mem.stats())

    assert run(True) == run(False)
