"""The simulated machine and what runs on it: config, platform, domains, devices, mappings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vtdwalk.acpi import dmar as _dmar
from vtdwalk.errors import PlatformError
from vtdwalk.platform import Platform
from vtdwalk.topology import Bdf, Device, DeviceKind

DEFAULT_DMAR = "supermicro-x10dai.dat"
DEFAULT_TOPOLOGY = "supermicro-x10dai.toml"

PAGE = 4096
MIB2 = 2 << 20
GIB = 1 << 30


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
    """One device's buffers, which its share of the workload draws from (see
    :mod:`vtdwalk.sim.workload`): scattered 4 KiB pages (``pages_iova`` mapped to
    ``pages_host``), sixteen 2 MiB pages at ``base + SUPER2M_OFF`` (host ``host2m``), one
    1 GiB page at ``base + SUPER1G_OFF`` (host ``host1g``), a read-only 1 MiB ring at
    ``base + RING_OFF`` (host ``ring_host``)."""

    bdf: str
    sid: int
    domain_id: int
    base: int  # the device's IOVA window
    pages_iova: npt.NDArray[np.uint64]
    pages_host: npt.NDArray[np.uint64]
    host2m: int
    host1g: int
    ring_host: int


@dataclass
class Scenario:
    """The domains, devices and buffers of a run (what :func:`plan_scenario` built)."""

    platform: Platform
    domains: list[Any] = field(default_factory=list)
    devices: list[tuple[str, int, int]] = field(default_factory=list)  # bdf, domain id, node
    refused: list[tuple[str, str]] = field(default_factory=list)  # bdf, why
    streams: list[Stream] = field(default_factory=list)
    map_seconds: float = 0.0
    mapped_pages: int = 0
    #: Devices whose MSI was programmed through interrupt remapping: (bdf, vector).
    msis: list[tuple[str, int]] = field(default_factory=list)


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


def plan_scenario(
    p: Platform,
    cfg: SimConfig,
    rng: np.random.Generator,
    advance: Callable[[int], None] | None = None,
) -> Scenario:
    """Create the domains of :func:`choose_groups`, assign their devices, map their buffers;
    ``advance(1)`` is called after each device's buffers are mapped."""
    sc = Scenario(p)
    groups = choose_groups(p)
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
            sc.streams.append(_map_device(p, dom, d, cfg, rng, sc))
            sc.devices.append((str(d.bdf), dom.id, _node_key(_unit_node(p, d))))
            _setup_msi(p, d, sc)
            if advance is not None:
                advance(1)
        sc.map_seconds += time.perf_counter() - t0
    return sc


#: The first MSI vector handed to a device (each next device gets the next one).
FIRST_VECTOR = 0x30


def _setup_msi(p: Platform, d: Device, sc: Scenario) -> None:
    """Program the device's MSI through its unit's interrupt remapping (when the platform
    remaps interrupts): one vector, to APIC id 0."""
    if not p.interrupt_remapping:
        return
    vector = FIRST_VECTOR + len(sc.msis)
    p.setup_msi(d.bdf, vector, 0)
    sc.msis.append((str(d.bdf), vector))


def device_count(p: Platform) -> int:
    """How many devices :func:`plan_scenario` will try to assign (for progress totals)."""
    return sum(len(g) for g, _ in choose_groups(p))


def _map_device(
    p: Platform,
    dom: Any,
    d: Device,
    cfg: SimConfig,
    rng: np.random.Generator,
    sc: Scenario,
) -> Stream:
    """Map this device's buffers into its domain."""
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
    host2m = p.mem.alloc_pages(16 * MIB2 // PAGE, node=node)
    dom.map(base + SUPER2M_OFF, host2m, 16 * MIB2)
    host1g = p.mem.alloc_pages(GIB // PAGE, node=node)
    dom.map(base + SUPER1G_OFF, host1g, GIB)
    # A read-only descriptor ring.
    ring_host = p.mem.alloc_pages(256, node=node)
    dom.map(base + RING_OFF, ring_host, 256 * PAGE, read=True, write=False)
    sc.mapped_pages += n + 16 * 512 + GIB // PAGE + 256
    return Stream(str(d.bdf), d.bdf.sid, dom.id, base, iovas, maddrs, host2m, host1g, ring_host)
