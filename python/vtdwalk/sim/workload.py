"""The DMA workload, streamed: the device streams interleaved chunk by chunk and driven through
the units, so memory stays flat however many accesses are asked for.

Each access picks a device uniformly, then what it touches: a random scattered 4 KiB page
(1/2), the next page of a sequential sweep over the 2 MiB buffers (1/4), a random page of the
1 GiB page (1/8), or a read of the ring (1/8); a random 8-byte offset in the page; about 1/4
writes, never to the ring. ``faults`` accesses at random positions must fault: a read of an
unmapped IOVA (0x6) and a write to the read-only ring (0x5), alternately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vtdwalk.errors import InterruptFault, PlatformError
from vtdwalk.platform import Platform
from vtdwalk.sim.scenario import (
    GIB,
    MIB2,
    PAGE,
    RING_OFF,
    SUPER1G_OFF,
    SUPER2M_OFF,
    UNMAPPED_OFF,
    Scenario,
)

__all__ = [
    "Chunk",
    "DriveResult",
    "InterruptResult",
    "chunks",
    "drive",
    "interrupts",
    "make_workload",
]

_KIND_P = (0.5, 0.25, 0.125, 0.125)


@dataclass
class Chunk:
    """A slice of the workload: requests and what each must give."""

    sids: npt.NDArray[np.uint16]
    iovas: npt.NDArray[np.uint64]
    writes: npt.NDArray[np.bool_]
    expect: npt.NDArray[np.uint64]  # 0 where a fault is expected
    expect_fault: npt.NDArray[np.uint8]


@dataclass
class DriveResult:
    """What driving a workload found: counts only, so its size does not grow with the run."""

    translations: int = 0
    seconds: float = 0.0
    wrong: int = 0
    unexpected: int = 0
    fault_counts: dict[int, int] = field(default_factory=dict)


def _check(sc: Scenario) -> None:
    if sc.streams:
        return
    p = sc.platform
    if not p.iommus:
        why = "; ".join(f"{f.code}: {f.message}" for f in p.report if f.severity == "fatal")
        raise PlatformError(f"the table yields no usable remapping unit ({why or 'none found'})")
    raise PlatformError("no device could be assigned: nothing to simulate")


def chunks(
    sc: Scenario, rng: np.random.Generator, total: int, size: int = 1 << 16, faults: int = 16
) -> Iterator[Chunk]:
    """``total`` requests in chunks of at most ``size``, drawn from the scenario's streams."""
    _check(sc)
    st = sc.streams
    nd = len(st)
    sids = np.array([s.sid for s in st], dtype=np.uint16)
    base = np.array([s.base for s in st], dtype=np.uint64)
    pages_iova = np.stack([s.pages_iova for s in st])
    pages_host = np.stack([s.pages_host for s in st])
    npages = pages_iova.shape[1]
    host2m = np.array([s.host2m for s in st], dtype=np.uint64)
    host1g = np.array([s.host1g for s in st], dtype=np.uint64)
    ring = np.array([s.ring_host for s in st], dtype=np.uint64)
    seq = [0] * nd
    nf = min(faults, total)
    where: set[int] = set()
    while len(where) < nf:
        where.add(int(rng.integers(0, total)))
    fault_at = sorted(where)
    fi = 0
    page = np.uint64(PAGE)
    for start in range(0, total, size):
        n = min(size, total - start)
        dev = rng.integers(0, nd, size=n)
        kind = rng.choice(4, size=n, p=_KIND_P)
        off = rng.integers(0, PAGE // 8, size=n, dtype=np.uint64) * np.uint64(8)
        # Kind 0: a random scattered page.
        pick = rng.integers(0, npages, size=n)
        iova = pages_iova[dev, pick]
        host = pages_host[dev, pick]
        # Kind 1: each device's next page of its sweep over the 2 MiB buffers.
        k1 = np.flatnonzero(kind == 1)
        if k1.size:
            pos = np.empty(k1.size, dtype=np.uint64)
            for d in range(nd):
                sel = dev[k1] == d
                m = int(np.count_nonzero(sel))
                pos[sel] = np.arange(seq[d], seq[d] + m, dtype=np.uint64)
                seq[d] += m
            rel = pos * page % np.uint64(16 * MIB2)
            iova[k1] = base[dev[k1]] + np.uint64(SUPER2M_OFF) + rel
            host[k1] = host2m[dev[k1]] + rel
        # Kind 2: a random 4 KiB page of the 1 GiB page.
        k2 = np.flatnonzero(kind == 2)
        rel = rng.integers(0, GIB // PAGE, size=k2.size, dtype=np.uint64) * page
        iova[k2] = base[dev[k2]] + np.uint64(SUPER1G_OFF) + rel
        host[k2] = host1g[dev[k2]] + rel
        # Kind 3: a read of the ring.
        k3 = np.flatnonzero(kind == 3)
        rel = rng.integers(0, 256, size=k3.size, dtype=np.uint64) * page
        iova[k3] = base[dev[k3]] + np.uint64(RING_OFF) + rel
        host[k3] = ring[dev[k3]] + rel
        writes = (rng.random(n) < 0.25) & (kind != 3)
        c = Chunk(
            sids[dev],
            iova + off,
            writes,
            host + off,
            np.zeros(n, dtype=np.uint8),
        )
        while fi < nf and fault_at[fi] < start + n:
            j = fault_at[fi] - start
            d = fi % nd
            c.sids[j] = sids[d]
            c.expect[j] = 0
            if fi % 2 == 0:
                c.iovas[j] = int(base[d]) + UNMAPPED_OFF + fi * PAGE
                c.writes[j] = False
                c.expect_fault[j] = 0x6
            else:
                c.iovas[j] = int(base[d]) + RING_OFF + fi * PAGE
                c.writes[j] = True
                c.expect_fault[j] = 0x5
            fi += 1
        yield c


def make_workload(sc: Scenario, rng: np.random.Generator, total: int, faults: int = 16) -> Chunk:
    """The whole workload of ``total`` requests as one chunk (for small runs and tests)."""
    return next(chunks(sc, rng, total, size=max(total, 1), faults=faults))


def drive(
    p: Platform,
    work: Iterator[Chunk],
    advance: Callable[[int], None] | None = None,
) -> DriveResult:
    """Translate each chunk through its devices' units and check every answer; ``advance(n)``
    after each chunk of ``n`` requests."""
    r = DriveResult()
    counts = np.zeros(256, dtype=np.int64)
    for c in work:
        t0 = time.perf_counter()
        hpa, fault = p.translate_batch(c.sids, c.iovas, c.writes)
        r.seconds += time.perf_counter() - t0
        ok = fault == 0
        r.wrong += int(np.count_nonzero(ok & (hpa != c.expect)))
        r.unexpected += int(np.count_nonzero(fault != c.expect_fault))
        counts += np.bincount(fault, minlength=256)
        r.translations += len(c.iovas)
        if advance is not None:
            advance(len(c.iovas))
    r.fault_counts = {int(k): int(counts[k]) for k in np.flatnonzero(counts[1:]) + 1}
    return r


@dataclass
class InterruptResult:
    """What the interrupt part of the run found: interrupts delivered (and with the vector
    their device was given), blocked by reason, and the blocked attempt's description."""

    sent: int = 0
    delivered: int = 0
    wrong_vector: int = 0
    blocked: dict[int, int] = field(default_factory=dict)
    blocked_names: dict[int, str] = field(default_factory=dict)
    spoof: dict[str, object] | None = None


def interrupts(p: Platform, sc: Scenario, per_device: int = 4) -> InterruptResult:
    """Each device with an MSI raises it ``per_device`` times through its unit; then one device
    sends another device's message (its handle) through their common unit, which the entry's
    source check must block (0x26)."""
    res = InterruptResult()
    for bdf, vector in sc.msis:
        for _ in range(per_device):
            res.sent += 1
            try:
                got = p.msi(bdf)
            except InterruptFault as f:
                res.blocked[f.reason] = res.blocked.get(f.reason, 0) + 1
                res.blocked_names[f.reason] = f.name
                continue
            res.delivered += 1
            if got.vector != vector:
                res.wrong_vector += 1
    pair = _same_unit_pair(p, sc)
    if pair is not None:
        sender, owner = pair
        h = p.msi_handle(owner)
        assert h is not None
        res.sent += 1
        spoof: dict[str, object] = {"sender": sender, "owner": owner, "index": h.index}
        try:
            p.msi(sender, message=(h.address, h.data))
        except InterruptFault as f:
            res.blocked[f.reason] = res.blocked.get(f.reason, 0) + 1
            res.blocked_names[f.reason] = f.name
            spoof.update(reason=f.reason, name=f.name)
        else:
            res.delivered += 1
            spoof.update(reason=None, name=None)
        res.spoof = spoof
    return res


def _same_unit_pair(p: Platform, sc: Scenario) -> tuple[str, str] | None:
    """Two devices with MSIs behind the same unit whose entries check different sources."""
    by_unit: dict[int, list[str]] = {}
    for bdf, _ in sc.msis:
        h = p.msi_handle(bdf)
        if h is not None:
            by_unit.setdefault(h.unit, []).append(bdf)
    for devs in by_unit.values():
        for a in devs:
            for b in devs:
                ha, hb = p.msi_handle(a), p.msi_handle(b)
                if a != b and ha is not None and hb is not None and ha.sid != hb.sid:
                    return a, b
    return None
