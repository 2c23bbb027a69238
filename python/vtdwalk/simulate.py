"""``vtdwalk simulate``: a whole machine doing DMA, end to end.

The run: build a platform (the embedded 2-socket default, or a DMAR table and topology given by
the user), create domains, assign devices of every socket, map DMA buffers (scattered 4 KiB
pages, 2 MiB and 1 GiB superpages, a read-only ring), drive a DMA workload (random and
sequential IOVA streams from every device, interleaved, plus a few accesses that must fault)
through the units' batch translation, and report: units and devices, translations per second,
IOTLB hit rate, faults by reason, table pages per node, and the same scenario built under the
``seed`` and ``pre-seed`` placement policies side by side.

Everything random comes from one ``numpy.random.Generator`` seeded by ``--seed``, so a run is
reproducible; only the timings vary.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from vtdwalk import dmar as _dmar
from vtdwalk.errors import DmaFault, PlatformError, VtdError
from vtdwalk.platform import Platform
from vtdwalk.topology import Bdf, Device, DeviceKind

__all__ = [
    "DEFAULT_DMAR",
    "DEFAULT_TOPOLOGY",
    "FAULT_NAMES",
    "SimConfig",
    "build_platform",
    "default_dmar_bytes",
    "dump",
    "hit_rate_sweep",
    "make_workload",
    "plan_scenario",
    "plot",
    "render_text",
    "run",
]

DEFAULT_DMAR = "supermicro-x10dai.dat"
DEFAULT_TOPOLOGY = "supermicro-x10dai.toml"

PAGE = 4096
MIB2 = 2 << 20
GIB = 1 << 30

#: Architectural fault reason names (vtd-hardware.md §1.13), for the report.
FAULT_NAMES = {
    0x1: "ROOT_ENTRY_P",
    0x2: "CONTEXT_ENTRY_P",
    0x3: "CONTEXT_ENTRY_INV",
    0x4: "ADDR_BEYOND_MGAW",
    0x5: "WRITE",
    0x6: "READ",
    0x7: "PAGING_ENTRY_INV",
    0x8: "ROOT_TABLE_INV",
    0x9: "CONTEXT_TABLE_INV",
    0xA: "ROOT_ENTRY_RSVD",
    0xB: "CONTEXT_ENTRY_RSVD",
    0xC: "PAGING_ENTRY_RSVD",
    0xD: "CONTEXT_ENTRY_TT",
    0xE: "INTERRUPT_ADDR",
}

# The IOVA layout: each device gets a 32 GiB window of its domain's space, all below 2^39 so
# 3-level units work too; the first 32 GiB stay free for RMRR identity maps.
WINDOW = 32 * GIB
MAX_DEVICES = 14  # (14 + 1) windows of 32 GiB fit under 2^39
SCATTER_OFF = 0  # scattered 4 KiB pages in [0, 16 GiB) of the window
SUPER2M_OFF = 16 * GIB  # sixteen 2 MiB superpages
SUPER1G_OFF = 17 * GIB  # one 1 GiB superpage
RING_OFF = 18 * GIB  # a 1 MiB read-only descriptor ring
UNMAPPED_OFF = 20 * GIB  # never mapped


def window(slot: int) -> int:
    """The base IOVA of device ``slot``'s window."""
    return (slot + 1) * WINDOW


def default_dmar_bytes() -> bytes:
    """The embedded default DMAR table (a real Supermicro X10DAi's)."""
    return resources.files("vtdwalk.data").joinpath(DEFAULT_DMAR).read_bytes()


def default_topology_path() -> Path:
    ref = resources.files("vtdwalk.data").joinpath(DEFAULT_TOPOLOGY)
    return Path(str(ref))


@dataclass
class SimConfig:
    """What ``vtdwalk simulate`` runs; every field has a command-line option."""

    dmar: bytes | None = None  # None: the embedded default
    dmar_name: str = DEFAULT_DMAR
    topology: Path | None = None  # None: the embedded default's, or synthesised from --dmar
    policy: str = "seed"
    iotlb_entries: int = 1024
    seed: int = 1
    accesses: int = 1 << 20
    pages_per_device: int = 4096
    batch: int = 1 << 16
    compare_policies: bool = True
    plot_sizes: tuple[int, ...] = (16, 64, 256, 1024, 4096, 16384)


@dataclass
class Stream:
    """One device's share of the workload."""

    bdf: str
    sid: int
    domain_id: int
    iovas: npt.NDArray[np.uint64]
    writes: npt.NDArray[np.bool_]
    expect: npt.NDArray[np.uint64]  # the host address each access must reach
    base: int  # the device's IOVA window


@dataclass
class Scenario:
    platform: Platform
    domains: list[Any] = field(default_factory=list)
    devices: list[tuple[str, int, int]] = field(default_factory=list)  # bdf, domain id, node
    refused: list[tuple[str, str]] = field(default_factory=list)  # bdf, why
    streams: list[Stream] = field(default_factory=list)
    map_seconds: float = 0.0
    mapped_pages: int = 0


def build_platform(cfg: SimConfig, policy: str | None = None) -> Platform:
    """The platform of ``cfg``: the embedded default, or ``--dmar`` with ``--topology``."""
    table = _dmar.parse(cfg.dmar if cfg.dmar is not None else default_dmar_bytes())
    topology: Path | None = cfg.topology
    if topology is None and cfg.dmar is None:
        topology = default_topology_path()
    chosen = policy or cfg.policy
    if chosen not in ("seed", "pre-seed"):
        raise PlatformError(f"policy must be 'seed' or 'pre-seed', not {chosen!r}")
    p = Platform.from_dmar(
        table,
        topology=topology,
        policy="seed" if chosen == "seed" else "pre-seed",
        iotlb_entries=cfg.iotlb_entries,
    )
    if p.synthesised:
        _add_plain_endpoints(p)
    return p


def _add_plain_endpoints(p: Platform, want: int = 2) -> None:
    """A table whose units name no endpoint (an include-all unit alone, as on most laptops
    and QEMU) synthesises a machine with nothing to assign: give each include-all unit's
    segment ``want`` plain PCIe endpoints on bus 0, in slots nobody uses, as firmware would
    leave them unnamed."""
    if len(_assignable(p)) >= want:
        return
    for unit in p.iommus:
        if not unit.include_all:
            continue
        seg = unit.segment
        added: list[Device] = []
        for slot in range(2, 32):
            bdf = Bdf(seg, 0, slot, 0)
            if bdf in p.topology or p.iommu_for_device(bdf) is not unit:
                continue
            added.append(Device(bdf, DeviceKind.PCIE_ENDPOINT, name="synthesised DMA device"))
            if len(added) == want:
                break
        if added:
            p.topology.add(*added)
            return


def _assignable(p: Platform) -> list[Device]:
    kinds = {DeviceKind.PCIE_ENDPOINT, DeviceKind.PCI}
    return [d for d in p.topology if d.kind in kinds and p.iommu_for_device(d.bdf) is not None]


def _node_key(node: int | None) -> int:
    return -1 if node is None else node


def _unit_node(p: Platform, d: Device) -> int | None:
    u = p.iommu_for_device(d.bdf)
    return None if u is None else u.node


def choose_groups(p: Platform) -> list[tuple[list[Device], bool]]:
    """Which devices share a domain, and whether the group needs ``relaxed`` RMRR rules.

    * per NUMA node of the devices' units (and one for units with none): two devices, ATS
      capable ones first;
    * one domain spanning the sockets: a device of the first node and one of the last (the
      last assigned decides its node, as the seed says);
    * conventional PCI devices and phantom-function devices in one domain (bridge aliases);
    * the devices that share an RMRR together, relaxed (their identity maps are shared).
    """
    rmrr = [d for d in _assignable(p) if p.rmrrs_for_device(d.bdf)]
    rmrr_set = {d.bdf for d in rmrr}
    special = [
        d
        for d in _assignable(p)
        if d.bdf not in rmrr_set and (d.kind is DeviceKind.PCI or d.effective_phantom_stride)
    ]
    special_set = {d.bdf for d in special}
    by_node: dict[int, list[Device]] = {}
    for d in _assignable(p):
        if d.bdf in rmrr_set or d.bdf in special_set:
            continue
        by_node.setdefault(_node_key(_unit_node(p, d)), []).append(d)
    for devs in by_node.values():
        devs.sort(key=lambda d: (not d.ats, d.physfn is not None, d.bdf))
    groups: list[tuple[list[Device], bool]] = [
        (devs[:2], False) for _, devs in sorted(by_node.items())
    ]
    real = [n for n in sorted(by_node) if n >= 0]
    if len(real) >= 2:
        first = by_node[real[0]][2:3]
        last = by_node[real[-1]][2:3]
        if first and last:
            groups.append((first + last, False))
    if special:
        groups.append((special[:2], False))
    if rmrr:
        groups.append((rmrr, True))
    # Keep within the IOVA windows.
    out: list[tuple[list[Device], bool]] = []
    n = 0
    for devs, relaxed in groups:
        take = devs[: max(0, MAX_DEVICES - n)]
        if take:
            out.append((take, relaxed))
            n += len(take)
    return out


def plan_scenario(p: Platform, cfg: SimConfig, rng: np.random.Generator) -> Scenario:
    """Create the domains of :func:`choose_groups`, assign their devices, map their buffers."""
    sc = Scenario(p)
    groups = choose_groups(p)
    per_device = max(cfg.accesses // max(1, sum(len(g) for g, _ in groups)), 64)
    for devs, relaxed in groups:
        dom = p.create_domain()
        assigned: list[Device] = []
        for d in devs:
            try:
                p.assign_device(dom, d.bdf, relaxed=relaxed)
            except PlatformError as e:
                sc.refused.append((str(d.bdf), str(e)))
                continue
            assigned.append(d)
        if not assigned:
            p.destroy_domain(dom)
            continue
        sc.domains.append(dom)
        t0 = time.perf_counter()
        for d in assigned:
            sc.streams.append(_map_device(p, dom, d, cfg, per_device, rng, sc))
            sc.devices.append((str(d.bdf), dom.id, _node_key(dom.node)))
        sc.map_seconds += time.perf_counter() - t0
    return sc


def _map_device(
    p: Platform,
    dom: Any,
    d: Device,
    cfg: SimConfig,
    k: int,
    rng: np.random.Generator,
    sc: Scenario,
) -> Stream:
    """Map this device's buffers into its domain; return the accesses it will make."""
    base = window(len(sc.streams))
    node = dom.node
    n = cfg.pages_per_device
    # Scattered 4 KiB pages: random distinct IOVAs, backed by a contiguous host buffer.
    span = (SUPER2M_OFF - SCATTER_OFF) // PAGE
    pfns = rng.choice(span, size=n, replace=False).astype(np.uint64)
    iovas = np.uint64(base + SCATTER_OFF) + (pfns << np.uint64(12))
    host = p.mem.alloc_pages(n, node=node)
    maddrs = np.uint64(host) + np.arange(n, dtype=np.uint64) * np.uint64(PAGE)
    dom.map_pages(iovas, maddrs)
    # Sixteen 2 MiB superpages and one 1 GiB superpage (host buffers aligned by the allocator).
    base2m = base + SUPER2M_OFF
    host2m = p.mem.alloc_pages(16 * MIB2 // PAGE, node=node)
    dom.map(base2m, host2m, 16 * MIB2)
    base1g = base + SUPER1G_OFF
    host1g = p.mem.alloc_pages(GIB // PAGE, node=node)
    dom.map(base1g, host1g, GIB)
    # A read-only descriptor ring.
    ring_iova = base + RING_OFF
    ring_host = p.mem.alloc_pages(256, node=node)
    dom.map(ring_iova, ring_host, 256 * PAGE, read=True, write=False)
    sc.mapped_pages += n + 16 * 512 + GIB // PAGE + 256

    # The accesses: random over the scattered pages, sequential over the 2 MiB buffers,
    # random over the 1 GiB page, reads of the ring; about 1/4 writes (never to the ring).
    parts = [k // 2, k // 4, k // 8]
    parts.append(k - sum(parts))
    off = rng.integers(0, PAGE // 8, size=k, dtype=np.uint64) * np.uint64(8)
    pick = rng.integers(0, n, size=parts[0])
    a_iova = iovas[pick]
    a_host = maddrs[pick]
    seq = np.arange(parts[1], dtype=np.uint64) * np.uint64(PAGE) % np.uint64(16 * MIB2)
    b_iova = np.uint64(base2m) + seq
    b_host = np.uint64(host2m) + seq
    r1g = rng.integers(0, GIB // PAGE, size=parts[2], dtype=np.uint64) * np.uint64(PAGE)
    c_iova = np.uint64(base1g) + r1g
    c_host = np.uint64(host1g) + r1g
    ring = rng.integers(0, 256, size=parts[3], dtype=np.uint64) * np.uint64(PAGE)
    d_iova = np.uint64(ring_iova) + ring
    d_host = np.uint64(ring_host) + ring
    all_iova = np.concatenate([a_iova, b_iova, c_iova, d_iova]) + off
    all_host = np.concatenate([a_host, b_host, c_host, d_host]) + off
    writes = rng.random(k) < 0.25
    writes[k - parts[3] :] = False
    return Stream(str(d.bdf), d.bdf.sid, dom.id, all_iova, writes, all_host, base)


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


def _unit_stats(p: Platform) -> list[dict[str, Any]]:
    out = []
    for u in p.iommus:
        s = u.remapper.stats()
        look = s["hits"] + s["misses"]
        out.append(
            {
                "address": u.address,
                "node": u.node,
                "include_all": u.include_all,
                "levels": u.levels,
                "domains": len(u.dids.in_use()),
                "iotlb_hits": s["hits"],
                "iotlb_misses": s["misses"],
                "iotlb_evictions": s["evictions"],
                "walks": s["walks"],
                "iotlb_hit_rate": (s["hits"] / look) if look else None,
            }
        )
    return out


def _placement(p: Platform) -> dict[str, Any]:
    rep = p.numa_report()
    return rep if isinstance(rep, dict) else {"report": rep}


def run(cfg: SimConfig, progress: bool = False, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the whole simulation and return the report (JSON-ready)."""
    rng = np.random.default_rng(cfg.seed)
    t_build = time.perf_counter()
    p = build_platform(cfg)
    sc = plan_scenario(p, cfg, rng)
    build_s = time.perf_counter() - t_build
    w = make_workload(sc, rng)
    hpa, fault, seconds = drive(p, w, cfg.batch, progress, out)

    ok = fault == 0
    wrong = int(np.count_nonzero(ok & (hpa != w.expect)))
    unexpected = int(np.count_nonzero(fault != w.expect_fault))
    reasons, counts = np.unique(fault[~ok], return_counts=True)
    faults = {
        f"{int(r):#04x} {FAULT_NAMES.get(int(r), 'UNKNOWN')}": int(c)
        for r, c in zip(reasons, counts, strict=True)
    }
    # One fault the platform raises in a single call: a device of no domain (0x2).
    stray = _stray_device(p, sc)
    units = _unit_stats(p)
    hits = sum(u["iotlb_hits"] for u in units)
    looks = hits + sum(u["iotlb_misses"] for u in units)

    report: dict[str, Any] = {
        "platform": {
            "dmar": cfg.dmar_name,
            "topology": str(cfg.topology)
            if cfg.topology
            else "embedded"
            if cfg.dmar is None
            else "synthesised",
            "policy": cfg.policy,
            "nodes": [{"base": b, "size": s} for b, s in p.mem.nodes],
            "findings": [str(f) for f in p.report],
        },
        "units": units,
        "devices": [{"bdf": b, "domain": d, "node": n} for b, d, n in sc.devices],
        "refused": [{"bdf": b, "reason": r} for b, r in sc.refused],
        "domains": [
            {"id": d.id, "node": d.node, "devices": [str(x) for x in d.devices]} for d in sc.domains
        ],
        "workload": {
            "translations": len(w.iovas),
            "seconds": seconds,
            "translations_per_second": len(w.iovas) / seconds if seconds else None,
            "ns_per_translation": 1e9 * seconds / len(w.iovas) if len(w.iovas) else None,
            "mapped_pages_4k_equivalent": sc.mapped_pages,
            "map_seconds": sc.map_seconds,
            "build_seconds": build_s,
            "iotlb_entries": cfg.iotlb_entries,
            "iotlb_hit_rate": hits / looks if looks else None,
            "wrong_translations": wrong,
            "unexpected_faults": unexpected,
            "stray_device_fault": stray,
        },
        "faults": faults,
        "placement": {cfg.policy: _placement(p)},
    }
    if cfg.compare_policies:
        other = "pre-seed" if cfg.policy == "seed" else "seed"
        p2 = build_platform(cfg, policy=other)
        plan_scenario(p2, cfg, np.random.default_rng(cfg.seed))
        report["placement"][other] = _placement(p2)
    return report


def _stray_device(p: Platform, sc: Scenario) -> str | None:
    assigned = {b for b, _, _ in sc.devices}
    for d in _assignable(p):
        if str(d.bdf) not in assigned:
            try:
                p.translate(d.bdf, 0x1000)
            except DmaFault as f:
                return f"{d.bdf}: {f.reason:#04x} {f.name}"
            except VtdError as e:
                return f"{d.bdf}: {e}"
            return f"{d.bdf}: translated without a domain"
    return None


def render_text(r: dict[str, Any]) -> str:
    """The report for people."""
    lines: list[str] = []
    pf = r["platform"]
    lines.append(
        f"vtdwalk simulate: {pf['dmar']} (topology {pf['topology']}, policy {pf['policy']})"
    )
    lines.append(
        "memory: "
        + ", ".join(
            f"node {i} [{n['base']:#x}, +{n['size'] >> 30} GiB)" for i, n in enumerate(pf["nodes"])
        )
    )
    for f in pf["findings"]:
        lines.append(f"  firmware: {f}")
    lines.append("")
    lines.append("remapping units:")
    for u in r["units"]:
        rate = "-" if u["iotlb_hit_rate"] is None else f"{100 * u['iotlb_hit_rate']:.1f}%"
        node = "none" if u["node"] is None else u["node"]
        kind = " include-all" if u["include_all"] else ""
        lines.append(
            f"  {u['address']:#010x}{kind:<12} node {node!s:<4} {u['levels']}-level  "
            f"domains {u['domains']:<3} IOTLB hits {u['iotlb_hits']:>9,} misses "
            f"{u['iotlb_misses']:>9,} evictions {u['iotlb_evictions']:>9,} hit rate {rate}"
        )
    lines.append("")
    lines.append("devices:")
    for d in r["devices"]:
        lines.append(
            f"  {d['bdf']}  domain {d['domain']}  node {d['node'] if d['node'] >= 0 else 'none'}"
        )
    for d in r["refused"]:
        lines.append(f"  {d['bdf']}  refused: {d['reason']}")
    wl = r["workload"]
    lines.append("")
    lines.append("workload:")
    tps = wl["translations_per_second"]
    lines.append(
        f"  {wl['translations']:,} translations in {wl['seconds']:.3f} s"
        + (f" = {tps / 1e6:.2f} M/s ({wl['ns_per_translation']:.1f} ns each)" if tps else "")
    )
    hr = wl["iotlb_hit_rate"]
    lines.append(
        f"  IOTLB ({wl['iotlb_entries']} entries per unit) hit rate "
        + ("-" if hr is None else f"{100 * hr:.1f}%")
    )
    lines.append(
        f"  wrong translations {wl['wrong_translations']}, unexpected faults "
        f"{wl['unexpected_faults']}"
    )
    if wl["stray_device_fault"]:
        lines.append(f"  a device in no domain: {wl['stray_device_fault']}")
    lines.append("faults by reason:")
    for k, v in r["faults"].items():
        lines.append(f"  {k:<24} {v}")
    lines.append("")
    lines.extend(render_placement(r["placement"]))
    return "\n".join(lines)


def _pages_str(pages: dict[Any, int]) -> str:
    return " ".join(f"n{k}:{v}" for k, v in sorted(pages.items(), key=lambda kv: int(kv[0]))) or "-"


def render_placement(placement: dict[str, dict[str, Any]]) -> list[str]:
    """Table pages per node, one column per policy, misplaced pages in brackets."""
    policies = list(placement)
    rows: list[tuple[str, list[str]]] = []
    first = placement[policies[0]]
    for i, u in enumerate(first.get("units", [])):
        label = f"unit {u['address']:#x} (node {u['node'] if u['node'] is not None else '-'})"
        cells = []
        for pol in policies:
            uu = placement[pol]["units"][i]
            bad = f" [{uu['misplaced']} off-node]" if uu["misplaced"] else ""
            cells.append(_pages_str(uu["pages"]) + bad)
        rows.append((label, cells))
    for i, d in enumerate(first.get("domains", [])):
        devs = ", ".join(x.split(":", 1)[1] for x in d["devices"])
        label = f"domain {d['id']} ({devs})"
        cells = []
        for pol in policies:
            dd = placement[pol]["domains"][i]
            bad = f" [{dd['misplaced']} off-node]" if dd["misplaced"] else ""
            cells.append(_pages_str(dd["pages"]) + bad)
        rows.append((label, cells))
    rows.append(
        ("pages off their devices' node", [str(placement[p]["misplaced"]) for p in policies])
    )
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(pol), *(len(r[1][j]) for r in rows)) for j, pol in enumerate(policies)]
    out = ["table pages per node (n<node>:<pages>):"]
    out.append(
        "  "
        + " " * w0
        + "  "
        + "  ".join(p.ljust(w) for p, w in zip(policies, widths, strict=True))
    )
    for label, cells in rows:
        out.append(
            "  "
            + label.ljust(w0)
            + "  "
            + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        )
    return out


# ---------------------------------------------------------------------------------------------
# The IOTLB-size sweep and the plot


def hit_rate_sweep(
    cfg: SimConfig, sizes: tuple[int, ...] | None = None
) -> list[dict[str, float | int | None]]:
    """The same scenario and workload at each IOTLB size: hit rate and ns per translation."""
    out: list[dict[str, float | int | None]] = []
    for n in sizes or cfg.plot_sizes:
        c = SimConfig(**{**cfg.__dict__, "iotlb_entries": n, "compare_policies": False})
        rng = np.random.default_rng(c.seed)
        p = build_platform(c)
        sc = plan_scenario(p, c, rng)
        w = make_workload(sc, rng)
        _, _, seconds = drive(p, w, c.batch)
        units = _unit_stats(p)
        hits = sum(u["iotlb_hits"] for u in units)
        looks = hits + sum(u["iotlb_misses"] for u in units)
        out.append(
            {
                "iotlb_entries": n,
                "hit_rate": hits / looks if looks else None,
                "ns_per_translation": 1e9 * seconds / len(w.iovas),
            }
        )
        p.free()
    return out


def plot(report: dict[str, Any], path: str | Path) -> None:
    """Draw the IOTLB hit rate against IOTLB size and the table pages per node, per policy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlatformError(
            "--plot needs matplotlib: pip install 'vtdwalk[plot]' (or matplotlib)"
        ) from e
    sweep = report.get("iotlb_sweep") or []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [s["iotlb_entries"] for s in sweep]
    ys = [100 * (s["hit_rate"] or 0.0) for s in sweep]
    ax1.plot(xs, ys, marker="o")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("IOTLB entries per unit")
    ax1.set_ylabel("IOTLB hit rate (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title("IOTLB hit rate against size")
    ax1.grid(True, alpha=0.3)
    placement = report["placement"]
    policies = list(placement)
    nodes = sorted(
        {
            int(k)
            for pol in policies
            for item in placement[pol]["units"] + placement[pol]["domains"]
            for k in item["pages"]
        }
    )
    width = 0.8 / max(1, len(nodes))
    for j, node in enumerate(nodes):
        vals = [
            sum(
                int(item["pages"].get(node, item["pages"].get(str(node), 0)))
                for item in placement[pol]["units"] + placement[pol]["domains"]
            )
            for pol in policies
        ]
        ax2.bar([i + j * width for i in range(len(policies))], vals, width, label=f"node {node}")
    ax2.set_xticks([i + width * (len(nodes) - 1) / 2 for i in range(len(policies))])
    ax2.set_xticklabels([f"{pol}\n({placement[pol]['misplaced']} off-node)" for pol in policies])
    ax2.set_ylabel("table pages")
    ax2.set_title("Table pages per node")
    ax2.legend()
    fig.suptitle(f"vtdwalk simulate: {report['platform']['dmar']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# dump


def leaf_ranges(domain: Any) -> list[dict[str, Any]]:
    """A domain's mappings as ranges of equal page size, permissions and contiguity."""
    pt = domain.page_table
    if pt is None:
        return []
    out: list[dict[str, Any]] = []
    for iova, _maddr, size, _read, _write in pt.mappings():
        at, end = iova, iova + size
        while at < end:
            hit = pt.lookup(at)
            if hit is None:  # cannot happen for a merged mapping; stop rather than loop
                break
            host, psize, r, w = hit
            host -= at & (psize - 1)
            step = psize - (at & (psize - 1))
            last = out[-1] if out else None
            if (
                last is not None
                and last["page_size"] == psize
                and last["read"] == r
                and last["write"] == w
                and last["iova"] + last["size"] == at
                and last["maddr"] + last["size"] == host + (at & (psize - 1))
            ):
                last["size"] += step
            else:
                out.append(
                    {
                        "iova": at,
                        "maddr": host + (at & (psize - 1)),
                        "size": step,
                        "page_size": psize,
                        "read": r,
                        "write": w,
                    }
                )
            at += step
    return out


def domain_contexts(p: Platform, domain: Any) -> list[dict[str, Any]]:
    """The context entries, on every unit, that carry this domain's DID."""
    out = []
    for unit in domain.units:
        did = domain.did(unit)
        for bus, devfn, ce in p.assignments.tables(unit).entries():
            if ce.did == did:
                out.append(
                    {
                        "unit": unit.address,
                        "bdf": str(Bdf.from_devfn(unit.segment, bus, devfn)),
                        "did": ce.did,
                        "aw": ce.aw,
                        "tt": ce.tt,
                        "slptptr": ce.slptptr,
                    }
                )
    return out


def dump(p: Platform, domain: Any) -> dict[str, Any]:
    return {
        "domain": domain.id,
        "node": domain.node,
        "levels": domain.levels,
        "passthrough": domain.passthrough,
        "devices": [str(b) for b in sorted(domain.devices)],
        "contexts": domain_contexts(p, domain),
        "ranges": leaf_ranges(domain),
    }


def render_dump(d: dict[str, Any], limit: int | None = 40) -> str:
    node = "none" if d["node"] is None else d["node"]
    lines = [
        f"domain {d['domain']}: node {node}, {d['levels']}-level"
        + (", pass-through" if d["passthrough"] else ""),
        "devices: " + (", ".join(d["devices"]) or "none"),
        "context entries:",
    ]
    tt = {0: "multi-level", 1: "multi-level+dev-IOTLB", 2: "pass-through"}
    for c in d["contexts"]:
        lines.append(
            f"  unit {c['unit']:#x}  {c['bdf']}  DID {c['did']}  AW {c['aw']}  "
            f"{tt.get(c['tt'], c['tt'])}  table {c['slptptr']:#x}"
        )
    lines.append("mappings (IOVA range -> host, page size, permissions):")
    sizes = {4096: "4K", MIB2: "2M", GIB: "1G"}
    rows: list[str] = []
    scattered: list[dict[str, Any]] = []

    def perm(r: dict[str, Any]) -> str:
        return ("r" if r["read"] else "-") + ("w" if r["write"] else "-")

    def flush() -> None:
        if len(scattered) == 1:
            rows.append(one(scattered[0]))
        elif scattered:
            lo, hi = scattered[0], scattered[-1]
            rows.append(
                f"  [{lo['iova']:#014x}, {hi['iova'] + hi['size']:#014x})    "
                f"{len(scattered)} scattered single 4K pages  {perm(lo)}"
            )
        scattered.clear()

    def one(r: dict[str, Any]) -> str:
        return (
            f"  [{r['iova']:#014x}, {r['iova'] + r['size']:#014x}) -> {r['maddr']:#014x}  "
            f"{sizes.get(r['page_size'], str(r['page_size'])):>2} x "
            f"{r['size'] // r['page_size']:<7} {perm(r)}"
        )

    for r in d["ranges"]:
        single = r["page_size"] == PAGE and r["size"] == PAGE
        if single and limit is not None and (not scattered or perm(scattered[0]) == perm(r)):
            scattered.append(r)
            continue
        flush()
        if single and limit is not None:
            scattered.append(r)
        else:
            rows.append(one(r))
    flush()
    lines.extend(rows if limit is None else rows[:limit])
    if limit is not None and len(rows) > limit:
        lines.append(f"  ... {len(rows) - limit} more lines (--all lists every range)")
    return "\n".join(lines)
