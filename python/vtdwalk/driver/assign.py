"""Device assignment: Xen's ``domain_context_mapping`` and its inverse (xen-driver.md §5).

:class:`Assignments` keeps, for one :class:`~vtdwalk.driver.machine.Machine`, its domains,
which domain owns which device, and the context entries each device's assignment installed. The
``Platform`` methods ``create_domain``, ``assign_device``, ``deassign_device``,
``reassign_device``, ``device_in_domain`` and ``numa_report`` delegate here.

Assignment follows ``intel_iommu_assign_device`` / ``reassign_device_ownership`` /
``domain_context_mapping`` with the seed applied and decisions.md's choices:

* the unit comes from ``drhd_for_device``; a device sharing an RMRR with other devices is
  refused unless ``relaxed``; a device owned by another domain is refused (use reassign);
* the domain's node becomes the unit's node when the unit has one, before anything is mapped
  (the last device wins, and the node stays even if the mapping then fails);
* context entries by device kind: a PCIe endpoint its own entry and one per phantom function;
  a conventional PCI device its own, the top-most upstream PCIe-to-PCI or legacy bridge's, and
  ``secbus:00.0`` when that bridge is PCIe-to-PCI; bridges none; a host bridge and a
  PCI-to-PCIe bridge are refused. An entry already present for the same domain is left as it
  is; one present for another domain refuses the whole assignment;
* context tables on the unit's node; the domain's DID on the unit from its allocator; AW the
  largest level count the unit supports that does not exceed the domain's, the context entry
  pointing at the table found by following entry 0 down the skipped levels; TT 2 for a
  pass-through domain, TT 1 (device-TLB) when the device has ATS, the unit ECAP.DT and an ATSR
  covers it, TT 0 otherwise;
* after an entry is written, the non-present flush (context cache device-selective and IOTLB
  domain-selective with DID 0 under caching mode, else only a write-buffer flush if CAP.RWBF);
* the device's RMRRs identity-mapped, reference counted per range.

Deassignment clears the device's entries (keeping alias entries another device of the same
domain still needs), flushes the context cache (device-selective) and the IOTLB
(domain-selective) with the domain's DID, drops the RMRR references, and frees the DID when no
device of the domain is left behind the unit.

Every request is planned before anything changes: the plan makes every check that can refuse
it and counts, for the worst case, the table pages it may allocate (context tables, the domain's
first page-table chain, RMRR identity maps, superpages split by an RMRR unmap); when the
platform's memory has fewer free pages, the request raises ``OutOfMemory`` with nothing changed.
So a failed assign, deassign or reassign leaves the device, the domains, the DIDs, the RMRR
references and mappings (holes the user unmapped included) as they were. What may stay: the
domain's node, which the seed sets before mapping. Should memory still run out part way
(pages taken from the same ``PhysMem`` by other code meanwhile), what was done is undone.

Threads: one re-entrant lock per platform (:attr:`Assignments.lock`, shared by its domains)
is held across each request's plan and apply, so requests from several threads take effect
one at a time, in some order.

Modelling choices beyond Xen 2019: TT 1 needs the device's own ATS capability as well as
ECAP.DT and an ATSR (Xen decides per unit); bridge alias entries are shared by the devices of
one domain behind the bridge and cleared only when the last of them leaves (Xen clears them
with the first); DMA (:mod:`vtdwalk.dma`) carries the device's own source-id (an
alias source-id can be given as an integer).

Policy ``pre-seed``: the domain has no node; each page-table allocation goes to the node of the
unit (by its RHSA) of the first device (lowest address) the domain already owns, or to no node
when it owns none yet - as the device being assigned is moved to the domain only after its
context mapping, the first device's tables land wherever memory is free.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vtdwalk._args import did_arg, plain_int
from vtdwalk._core import ContextEntry, levels_to_aw, levels_to_width
from vtdwalk.driver.domain import PAGE_SIZE, Domain, UnitLink, locked, port_of
from vtdwalk.driver.iommu import Iommu
from vtdwalk.driver.machine import Machine, RmrrUnit
from vtdwalk.errors import InvalidArgument, OutOfMemory, PlatformError, VtdError
from vtdwalk.topology import Bdf, BdfLike, Device, DeviceKind

if TYPE_CHECKING:
    from vtdwalk._core import RootTable

__all__ = [
    "TT_DEV_IOTLB",
    "TT_MULTI_LEVEL",
    "TT_PASS_THROUGH",
    "Assignments",
    "ContextEntry",
    "ContextTables",
]

TT_MULTI_LEVEL = 0
TT_DEV_IOTLB = 1
TT_PASS_THROUGH = 2


class ContextTables:
    """A unit's root and context tables, through the unit's ``root_table`` (a RootTable whose
    node is the unit's, so context tables land there, as ``bus_to_context_maddr`` does)."""

    def __init__(self, unit: Iommu) -> None:
        self.unit = unit

    @property
    def rt(self) -> RootTable:
        if not self.unit.root_maddr:
            raise PlatformError(
                f"unit {self.unit.index} ({self.unit.address:#x}) has no root table"
            )
        return self.unit.root_table

    def context_table(self, bus: int, alloc: bool = False) -> int:
        """Address of the bus's context table, allocated when missing and ``alloc``; else 0."""
        return int(self.rt.context_table(bus, alloc))

    def context(self, bus: int, devfn: int) -> ContextEntry | None:
        """The present entry for (bus, devfn), or None."""
        e = self.rt.context(bus, devfn)
        return None if e is None else ContextEntry(e[0], e[1])

    def set_context(self, bus: int, devfn: int, slptptr: int, aw: int, did: int, tt: int) -> None:
        """Write a present entry (FPD clear: faults are reported)."""
        self.rt.set_context(bus, devfn, slptptr, aw, did, tt=tt, fpd=False)

    def clear_context(self, bus: int, devfn: int) -> bool:
        """Zero both halves (Xen's ``context_clear_entry``); whether the entry was present."""
        return bool(self.rt.clear_context(bus, devfn))

    def entries(self) -> list[tuple[int, int, ContextEntry]]:
        """Every present context entry as (bus, devfn, entry)."""
        return [(int(b), int(f), ContextEntry(lo, hi)) for b, f, lo, hi in self.rt.entries()]


@dataclass
class _Installed:
    """What one device's assignment put in place."""

    domain: Domain
    unit: Iommu
    entries: list[tuple[int, int]]  # (bus, devfn) this device needs
    written: list[tuple[int, int]] = field(default_factory=list)  # of which it wrote itself
    ats: bool = False
    rmrrs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Plan:
    dev: Device
    unit: Iommu
    entries: list[tuple[int, int]]
    ats: bool
    rmrrs: list[RmrrUnit]


class Assignments:
    """Domains, device ownership and context entries of one platform."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        #: Held across every request (plan and apply); shared by the domains made here.
        self.lock = threading.RLock()
        self.domains: dict[int, Domain] = {}
        self.owner: dict[Bdf, Domain] = {}
        self.installed: dict[Bdf, _Installed] = {}
        self.ats_devices: dict[int, set[Bdf]] = {}
        self.context_flushes: dict[int, int] = {}
        self._tables: dict[int, ContextTables] = {}
        self._next_id = 1

    # ---- helpers
    def tables(self, unit: Iommu) -> ContextTables:
        t = self._tables.get(id(unit))
        if t is None:
            t = self._tables[id(unit)] = ContextTables(unit)
        return t

    def _unit(self, iommu: object) -> Iommu:
        if isinstance(iommu, Iommu):
            if all(u is not iommu for u in self.machine.iommus):
                raise PlatformError(f"{iommu!r} is not a unit of this platform")
            return iommu
        if isinstance(iommu, int) and not isinstance(iommu, bool):
            for u in self.machine.iommus:
                if u.index == iommu:
                    return u
            raise PlatformError(f"no remapping unit with index {iommu}")
        raise PlatformError(f"expected a remapping unit or its index, not {iommu!r}")

    def _domain(self, domain: object) -> Domain:
        if isinstance(domain, Domain):
            if self.domains.get(domain.id) is not domain:
                raise PlatformError(f"domain {domain.id} does not belong to this platform")
            return domain
        if isinstance(domain, int) and not isinstance(domain, bool) and domain in self.domains:
            return self.domains[domain]
        raise PlatformError(f"no such domain: {domain!r}")

    def _rhsa_node(self, unit: Iommu) -> int | None:
        return self.machine.unit_node(unit)

    def _superpages(self) -> str:
        sizes = [set(u.superpages) for u in self.machine.iommus]
        common = set.intersection(*sizes) if sizes else set()
        if "1G" in common and "2M" in common:
            return "1G"
        return "2M" if "2M" in common else "none"

    # ---- memory
    def _free_pages(self) -> int:
        return sum(int(s["free_pages"]) for s in self.machine.mem.stats())

    def _ensure_free(self, needed: int, what: str) -> None:
        """Refuse a request whose worst case does not fit in the free pages (nothing done)."""
        if needed and needed > self._free_pages():
            raise OutOfMemory(
                f"{what} may need up to {needed} table pages; {self._free_pages()} are free"
            )

    def _apply_bound(self, d: Domain, plan: _Plan) -> int:
        """Worst-case table pages :meth:`_apply` allocates for ``plan``."""
        unit = plan.unit
        n = 0
        if plan.entries:
            tables = self.tables(unit)
            buses = {b for b, f in plan.entries if tables.context(b, f) is None}
            n += sum(1 for b in buses if not tables.context_table(b))
            if unit.index not in d.links and d.page_table is not None:
                n += d.levels
        if not d.passthrough:
            for r in plan.rmrrs:
                if d.rmrr_refs.get((r.base, r.end), 0) == 0:
                    lo, hi = self._rmrr_range(r.base, r.end)
                    n += d.identity_map_bound(lo, hi - lo)
        return n

    def _remove_bound(self, inst: _Installed) -> int:
        """Worst-case table pages :meth:`_remove` allocates (RMRR unmaps splitting superpages)."""
        d = inst.domain
        if d.passthrough:
            return 0
        n = 0
        for base, end in inst.rmrrs:
            if d.rmrr_refs.get((base, end), 0) == 1:
                lo, hi = self._rmrr_range(base, end)
                n += d.unmap_bound(lo, hi - lo)
        return n

    # ---- domains
    @locked
    def create_domain(self, levels: int | None = None, passthrough: bool = False) -> Domain:
        lv = 4 if levels is None else plain_int(levels)
        if isinstance(lv, bool) or not isinstance(lv, int) or lv not in (3, 4, 5):
            raise InvalidArgument(f"domain levels {levels!r}: a domain has 3, 4 or 5 levels")
        if not isinstance(passthrough, bool):
            raise InvalidArgument(f"passthrough must be True or False, not {passthrough!r}")
        d = Domain(
            self.machine.mem,
            self._next_id,
            lv,
            passthrough,
            superpages=self._superpages(),
            lock=self.lock,
        )
        self._next_id += 1
        d.dev_iotlb_hook = self._dev_iotlb
        d.reanchor_hook = self._reanchor
        if self.machine.policy == "pre-seed":
            d.alloc_node_hook = lambda: self._pre_seed_node(d)
        self.domains[d.id] = d
        return d

    @locked
    def destroy_domain(self, domain: object) -> None:
        d = self._domain(domain)
        d.free()
        del self.domains[d.id]

    @locked
    def free(self) -> None:
        """Drop every assignment and free every domain's page table (platform teardown; the
        units' tables are the platform's to free)."""
        for d in self.domains.values():
            d.devices.clear()
            d.links.clear()
            d.free()
        self.domains.clear()
        self.owner.clear()
        self.installed.clear()
        self.ats_devices.clear()

    def _pre_seed_node(self, d: Domain) -> int | None:
        """``pci_get_pdev_by_domain(d)`` -> DRHD -> RHSA -> node, before the seed."""
        for b in sorted(d.devices):
            unit = self.machine.iommu_for_device(b)
            return None if unit is None else self._rhsa_node(unit)
        return None

    # ---- planning (no changes)
    def _device(self, bdf: BdfLike) -> Device:
        b = Bdf.coerce(bdf)
        dev = self.machine.topology.get(b)
        if dev is None:
            raise PlatformError(f"{b}: no such PCI function on this platform")
        return dev

    def _context_entries(self, dev: Device) -> list[tuple[int, int]]:
        """Xen's ``domain_context_mapping`` switch: the (bus, devfn) entries a device needs."""
        b = dev.bdf
        k = dev.kind
        if k is DeviceKind.HOST_BRIDGE:
            raise PlatformError(f"{b}: a host bridge cannot be assigned (Xen: -EPERM)")
        if k is DeviceKind.PCI_TO_PCIE_BRIDGE:
            raise PlatformError(f"{b}: a PCI-to-PCIe bridge cannot be assigned (Xen: unknown type)")
        if k.is_bridge:
            return []
        out = [(b.bus, b.devfn)]
        if k is DeviceKind.PCIE_ENDPOINT:
            out += [(b.bus, f) for f in dev.phantom_devfns()]
        elif k is DeviceKind.PCI:
            up = self.machine.topology.find_upstream_bridge(b)
            if up is not None:
                top, secbus = up
                out.append((top.bus, top.devfn))
                bridge = self.machine.topology.get(top)
                if (
                    bridge is not None
                    and bridge.kind is DeviceKind.PCIE_TO_PCI_BRIDGE
                    and (secbus != b.bus or b.devfn != 0)
                ):
                    out.append((secbus, 0))
        return list(dict.fromkeys(out))

    def _ats_applies(self, dev: Device, unit: Iommu) -> bool:
        return (
            dev.ats
            and dev.kind is DeviceKind.PCIE_ENDPOINT
            and unit.device_iotlb
            and self.machine.atsr_for_device(dev) is not None
        )

    def _plan(
        self, d: Domain, bdf: BdfLike, relaxed: bool, source: Domain | None, set_node: bool = True
    ) -> _Plan:
        dev = self._device(bdf)
        owner = self.owner.get(dev.bdf)
        if owner is not None and owner is not source:
            if owner is d:
                raise PlatformError(f"{dev.bdf} is already assigned to domain {d.id}")
            raise PlatformError(
                f"{dev.bdf} is owned by domain {owner.id}: deassign or reassign it first"
            )
        unit = self.machine.iommu_for_device(dev)
        if unit is None:
            raise PlatformError(f"{dev.bdf} is in no remapping unit's scope (Xen: -ENODEV)")
        rmrrs = self.machine.rmrrs_for_device(dev.bdf)
        for r in rmrrs:
            if len(r.devices) > 1 and not relaxed:
                raise PlatformError(
                    f"{dev.bdf} shares RMRR [{r.base:#x}, {r.end:#x}] with "
                    + ", ".join(str(x) for x in r.devices if x != dev.bdf)
                    + " (Xen: -EPERM; pass relaxed=True to allow)"
                )
        # The seed: the domain's node follows the device's unit, set before the mapping (and
        # kept even if the mapping then fails).
        if set_node and self.machine.policy == "seed" and unit.node is not None:
            d.node = unit.node
        entries = self._context_entries(dev)
        if d.passthrough:
            if entries and not unit.pass_through:
                raise PlatformError(
                    f"unit {unit.index} ({unit.address:#x}) has no pass-through (ECAP.PT) for "
                    f"pass-through domain {d.id}"
                )
        elif entries:
            self._levels_on(d, unit)
        # Entries present already: fine when ours (kept as they are), else refused.
        keep = self._kept_by_others(source, dev.bdf, unit) if source is not None else set()
        tables = self.tables(unit)
        for bus, devfn in entries:
            where = f"{Bdf.from_devfn(unit.segment, bus, devfn)}"
            if (bus, devfn) in keep:
                assert source is not None
                raise PlatformError(
                    f"{dev.bdf}: context entry {where} is still needed by another device of "
                    f"domain {source.id}"
                )
            ctx = tables.context(bus, devfn)
            if ctx is None or not ctx.present:
                continue
            if source is not None and self._entry_owner(unit, ctx) is source:
                continue  # cleared when the device leaves its source
            own = self._entry_owner(unit, ctx)
            if own is None:
                raise PlatformError(f"{dev.bdf}: context entry {where} is mapped, owner unknown")
            if own is not d:
                raise PlatformError(
                    f"{dev.bdf}: context entry {where} is already mapped to domain {own.id}"
                )
        if not d.passthrough:
            for r in rmrrs:
                if r.end >= 1 << levels_to_width(d.levels):
                    raise PlatformError(
                        f"RMRR [{r.base:#x}, {r.end:#x}] of {dev.bdf} lies beyond the "
                        f"{d.levels}-level domain's address width"
                    )
                if (r.base, r.end) not in d.rmrr_refs:
                    self._check_identity_free(d, dev.bdf, r)
        if (
            entries
            and unit.dids.lookup(d.id) is None
            and len(unit.dids) >= unit.dids.ndoms - (1 if unit.caching_mode else 0)
        ):
            raise PlatformError(f"unit {unit.index}: no free domain ids")
        return _Plan(dev, unit, entries, self._ats_applies(dev, unit), rmrrs)

    def _check_identity_free(self, d: Domain, bdf: Bdf, r: RmrrUnit) -> None:
        """Xen's ``set_identity_p2m_entry`` refuses (-EBUSY) when the range already holds a
        mapping that is not the identity."""
        if d.page_table is None:
            return
        lo, hi = self._rmrr_range(r.base, r.end)
        for iova, maddr, size, _, _ in d.page_table.mappings():
            if iova < hi and lo < iova + size and iova != maddr:
                raise PlatformError(
                    f"{bdf}: RMRR [{r.base:#x}, {r.end:#x}] overlaps domain {d.id}'s mapping "
                    f"{iova:#x} -> {maddr:#x} (+{size:#x}) (Xen: -EBUSY)"
                )

    def _levels_on(self, d: Domain, unit: Iommu) -> int:
        fit = [lv for lv in unit.supported_levels if lv <= d.levels]
        if not fit:
            raise PlatformError(
                f"unit {unit.index} ({unit.address:#x}) walks {unit.supported_levels} levels: "
                f"none fits a {d.levels}-level domain"
            )
        return max(fit)

    def _entry_owner(self, unit: Iommu, ctx: ContextEntry) -> Domain | None:
        dom = unit.dids.owner(ctx.did)
        return None if dom is None else self.domains.get(dom)

    def _kept_by_others(self, d: Domain, bdf: Bdf, unit: Iommu) -> set[tuple[int, int]]:
        """Entries of ``d``'s other devices behind ``unit``."""
        out: set[tuple[int, int]] = set()
        for b, inst in self.installed.items():
            if b != bdf and inst.domain is d and inst.unit is unit:
                out.update(inst.entries)
        return out

    # ---- assignment
    @locked
    def assign_device(self, domain: object, bdf: BdfLike, relaxed: bool = False) -> None:
        d = self._domain(domain)
        plan = self._plan(d, bdf, relaxed, None)
        self._ensure_free(self._apply_bound(d, plan), f"assigning {plan.dev.bdf}")
        self._apply(d, plan)

    def _apply(self, d: Domain, plan: _Plan) -> None:
        unit, dev = plan.unit, plan.dev
        inst = _Installed(d, unit, list(plan.entries), ats=plan.ats)
        tables = self.tables(unit)
        had_did = unit.dids.lookup(d.id) is not None
        had_link = unit.index in d.links
        # The device's own entry and its phantom functions (not bridge aliases) may use ATS.
        own = {(dev.bdf.bus, dev.bdf.devfn)} | {(dev.bdf.bus, f) for f in dev.phantom_devfns()}
        try:
            if plan.entries:
                link = self._link(d, unit)
                for bus, devfn in plan.entries:
                    ctx = tables.context(bus, devfn)
                    if ctx is not None and ctx.present:
                        continue  # already this domain's (checked by the plan)
                    if d.passthrough:
                        tt = TT_PASS_THROUGH
                    elif plan.ats and (bus, devfn) in own:
                        tt = TT_DEV_IOTLB
                    else:
                        tt = TT_MULTI_LEVEL
                    tables.set_context(
                        bus, devfn, link.slptptr, levels_to_aw(link.levels), link.did, tt
                    )
                    inst.written.append((bus, devfn))
                    self._flush_context_nonpresent(unit, bus << 8 | devfn)
            for r in plan.rmrrs:
                self._rmrr_map(d, r)
                inst.rmrrs.append((r.base, r.end))
        except VtdError:
            for base, end in reversed(inst.rmrrs):
                self._rmrr_unmap(d, base, end)
            for bus, devfn in reversed(inst.written):
                tables.clear_context(bus, devfn)
                self._flush_context(unit, d, bus << 8 | devfn, self._link_did(d, unit))
            if not had_link:
                d.links.pop(unit.index, None)
            if not had_did:
                did = unit.dids.lookup(d.id)
                if did is not None:
                    unit.dids.free(did)
            raise
        self.installed[dev.bdf] = inst
        self.owner[dev.bdf] = d
        d.devices.add(dev.bdf)
        if plan.ats:
            self.ats_devices.setdefault(unit.index, set()).add(dev.bdf)

    def _link_did(self, d: Domain, unit: Iommu) -> int:
        link = d.links.get(unit.index)
        return 0 if link is None else link.did

    def _link(self, d: Domain, unit: Iommu) -> UnitLink:
        link = d.links.get(unit.index)
        if link is not None:
            return link
        did = unit.dids.alloc(d.id)
        if d.passthrough:
            link = UnitLink(unit, did, unit.levels, 0)
        else:
            levels = self._levels_on(d, unit)
            link = UnitLink(unit, did, levels, d.anchor(levels))
        d.links[unit.index] = link
        return link

    def _flush_context_nonpresent(self, unit: Iommu, sid: int) -> None:
        """After writing a not-present-before entry (Xen's ``non_present = 1`` flushes)."""
        if unit.caching_mode:
            port = port_of(unit)
            port.flush_context_device(0, sid)
            port.flush_iotlb_domain(0)
            self.context_flushes[unit.index] = self.context_flushes.get(unit.index, 0) + 1

    def _flush_context(self, unit: Iommu, d: Domain, sid: int, did: int) -> None:
        """After clearing or changing a present entry: device-selective context-cache and
        domain-selective IOTLB invalidation with the domain's DID."""
        port = port_of(unit)
        port.flush_context_device(did, sid)
        port.flush_iotlb_domain(did)
        self.context_flushes[unit.index] = self.context_flushes.get(unit.index, 0) + 1

    # ---- RMRRs
    def _rmrr_range(self, base: int, end: int) -> tuple[int, int]:
        """Xen's pfn range ``[base >> 12, PAGE_ALIGN(end) >> 12)`` as bytes."""
        lo = base >> 12 << 12
        hi = (end + PAGE_SIZE - 1) >> 12 << 12
        return lo, hi

    def _rmrr_map(self, d: Domain, r: RmrrUnit) -> None:
        key = (r.base, r.end)
        if d.passthrough:
            d.rmrr_refs[key] = d.rmrr_refs.get(key, 0) + 1
            return
        n = d.rmrr_refs.get(key, 0)
        if n == 0:
            lo, hi = self._rmrr_range(r.base, r.end)
            if hi > lo:
                d.map(lo, lo, hi - lo, read=True, write=True)
        d.rmrr_refs[key] = n + 1

    def _rmrr_remap(self, d: Domain, base: int, end: int) -> None:
        """Undo one :meth:`_rmrr_unmap` (the reference back; the identity map back when the
        unmap removed it)."""
        key = (base, end)
        n = d.rmrr_refs.get(key, 0)
        if n == 0 and not d.passthrough:
            lo, hi = self._rmrr_range(base, end)
            if hi > lo:
                d.map(lo, lo, hi - lo, read=True, write=True)
        d.rmrr_refs[key] = n + 1

    def _rmrr_unmap(self, d: Domain, base: int, end: int) -> None:
        key = (base, end)
        n = d.rmrr_refs.get(key, 0)
        if n <= 1:
            if n == 1 and not d.passthrough:
                lo, hi = self._rmrr_range(base, end)
                if hi > lo:
                    d.unmap(lo, hi - lo)  # first: the reference stays if this fails
            d.rmrr_refs.pop(key, None)
        else:
            d.rmrr_refs[key] = n - 1

    # ---- deassignment
    @locked
    def deassign_device(self, bdf: BdfLike) -> Domain:
        b = Bdf.coerce(bdf)
        inst = self.installed.get(b)
        if inst is None:
            raise PlatformError(f"{b} is not assigned to any domain")
        self._ensure_free(self._remove_bound(inst), f"deassigning {b}")
        self._remove(b, inst)
        return inst.domain

    def _remove(self, b: Bdf, inst: _Installed) -> None:
        d, unit = inst.domain, inst.unit
        # The RMRR unmaps first: the only step that can fail (out of memory splitting a
        # superpage); what was unmapped is mapped back if a later one fails.
        done: list[tuple[int, int]] = []
        try:
            for base, end in reversed(inst.rmrrs):
                self._rmrr_unmap(d, base, end)
                done.append((base, end))
        except VtdError:
            for base, end in reversed(done):
                self._rmrr_remap(d, base, end)
            raise
        keep = self._kept_by_others(d, b, unit)
        tables = self.tables(unit)
        did = self._link_did(d, unit)
        for bus, devfn in inst.entries:
            if (bus, devfn) in keep:
                continue
            if tables.clear_context(bus, devfn):
                self._flush_context(unit, d, bus << 8 | devfn, did)
        del self.installed[b]
        del self.owner[b]
        d.devices.discard(b)
        if inst.ats:
            self.ats_devices.get(unit.index, set()).discard(b)
        still = any(i.domain is d and i.unit is unit and i.entries for i in self.installed.values())
        if not still and unit.index in d.links:
            del d.links[unit.index]
            if unit.dids.lookup(d.id) is not None:
                unit.dids.free(did)

    # ---- reassignment
    @locked
    def reassign_device(self, bdf: BdfLike, domain: object, relaxed: bool = False) -> None:
        target = self._domain(domain)
        b = Bdf.coerce(bdf)
        inst = self.installed.get(b)
        if inst is None:
            self.assign_device(target, b, relaxed)
            return
        source = inst.domain
        if source is target:
            return
        plan = self._plan(target, b, relaxed, source)
        self._ensure_free(self._remove_bound(inst) + self._apply_bound(target, plan), f"moving {b}")
        self._remove(b, inst)
        try:
            self._apply(target, plan)
        except VtdError as e:
            try:
                self._apply(source, self._plan(source, b, True, None))
            except VtdError as e2:
                err = PlatformError(
                    f"{b}: moving it to domain {target.id} failed ({e}), and so did putting it "
                    f"back in domain {source.id} ({e2}): the device is now unassigned"
                )
                raise err from e
            raise

    # ---- level skipping
    def _reanchor(self, d: Domain, link: UnitLink, ptr: int) -> None:
        unit = link.unit
        tables = self.tables(unit)
        for inst in self.installed.values():
            if inst.domain is not d or inst.unit is not unit:
                continue
            for bus, devfn in inst.entries:
                ctx = tables.context(bus, devfn)
                if ctx is None or not ctx.present or ctx.did != link.did:
                    continue
                tables.set_context(bus, devfn, ptr, ctx.aw, ctx.did, ctx.tt)
                self._flush_context(unit, d, bus << 8 | devfn, link.did)

    # ---- ATS
    def _dev_iotlb(self, unit: Iommu, did: int) -> list[int]:
        """The source-ids a flush sends device-TLB invalidations to: each ATS device of the
        unit that ``device_in_domain`` finds in the DID's domain (Xen's
        ``dev_invalidate_iotlb``), in BDF order."""
        devices = self.ats_devices.get(unit.index)
        if not devices or not unit.root_maddr:
            return []
        return [b.sid for b in sorted(devices) if self._in_domain(unit, b, did)]

    @locked
    def device_in_domain(self, iommu: object, bdf: BdfLike, did: int) -> bool:
        """Seed patch 3 (xen-driver.md §5.6): the root entry for the device's bus is present,
        and the context entry at the device's devfn (present bit not checked) has this DID and
        TT 1."""
        unit = self._unit(plain_int(iommu))
        b = Bdf.coerce(bdf)
        did = did_arg(did, unit.ndoms)
        return bool(unit.root_maddr) and self._in_domain(unit, b, did)

    def _in_domain(self, unit: Iommu, b: Bdf, did: int) -> bool:
        """``device_in_domain`` on checked arguments and a unit with a root table."""
        # (0, 0) when the bus's root entry is not present; the context's present bit is not
        # looked at, as in the seed.
        lo, hi = unit.root_table.raw_context(b.bus, b.devfn)
        entry = ContextEntry(lo, hi)
        return entry.did == did and entry.tt == TT_DEV_IOTLB

    # ---- NUMA
    @locked
    def numa_report(self) -> dict[str, Any]:
        """Table pages per node, per unit and per domain, and how many are off the node of the
        devices they serve (a unit serves its own socket: its RHSA's node; a domain serves the
        nodes of its devices' units). ``misplaced`` counts only where the right node is known.
        A unit's ``pages`` are all of its tables (root, context, invalidation queue, interrupt
        remapping table); ``queue`` and ``ir_table`` show the last two apart."""
        units = []
        total = 0
        for u in self.machine.iommus:
            pages = dict(sorted(u.table_pages.items()))
            want = self._rhsa_node(u)
            bad = 0 if want is None else sum(n for node, n in pages.items() if node != want)
            total += bad
            units.append(
                {
                    "index": u.index,
                    "address": u.address,
                    "node": u.node,
                    "expected_node": want,
                    "pages": pages,
                    "queue": dict(sorted(u.queue_pages.items())),
                    "ir_table": dict(sorted(u.irt_pages.items())),
                    "misplaced": bad,
                }
            )
        domains = []
        for d in self.domains.values():
            pages = dict(sorted(d.table_pages().items()))
            nodes: set[int] = set()
            for b in d.devices:
                unit = self.machine.iommu_for_device(b)
                node = None if unit is None else self._rhsa_node(unit)
                if node is not None:
                    nodes.add(node)
            bad = sum(n for node, n in pages.items() if node not in nodes) if nodes else 0
            total += bad
            domains.append(
                {
                    "id": d.id,
                    "node": d.node,
                    "devices": [str(b) for b in sorted(d.devices)],
                    "expected_nodes": sorted(nodes),
                    "pages": pages,
                    "misplaced": bad,
                }
            )
        return {
            "policy": self.machine.policy,
            "units": units,
            "domains": domains,
            "misplaced": total,
        }
