"""Remapping units (Xen's ``struct vtd_iommu``), one per registered DRHD.

A unit keeps its DRHD as a field (seed patch 1: no reverse search), its CAP and ECAP registers
(QEMU's, with device-TLB, unless given), the page-table levels its SAGAW allows, a domain-id
allocator sized by CAP.ND (DID 0 reserved under caching mode), its NUMA ``node`` (None until
its RHSA is applied, as NUMA_NO_NODE), its root table, and, once brought up, its invalidation
queue and interrupt remapping table. See xen-driver.md §3, §6.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vtdwalk._core import Cap, Ecap, RootTable, levels_to_aw
from vtdwalk.driver.flush import QUEUE_PAGES, UnitPort
from vtdwalk.driver.irt import IRT_PAGES, IRT_SIZE, RemapTable
from vtdwalk.errors import PlatformError, VtdError
from vtdwalk.topology import Bdf

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem, Remapper
    from vtdwalk.acpi.dmar import Drhd

__all__ = [
    "MAX_IOMMUS",
    "QEMU_CAP",
    "QEMU_ECAP",
    "DidAllocator",
    "Iommu",
    "Scope",
    "Unit",
]

#: QEMU intel-iommu CAP with its defaults (aw-bits 48, dma-drain on): vtd-hardware.md §1.3.
QEMU_CAP = 0x80D2008C222F0606
#: The default ECAP, the hardware model's (``Remapper(mem).ecap``): QEMU intel-iommu's TCG
#: default (QI, IR, PT; no EIM; vtd-hardware.md §1.3) with device-TLB (DT) on, as QEMU's
#: ``device-iotlb=on`` sets it, so TT 1 applies where a device has ATS and an ATSR covers it.
QEMU_ECAP = 0x0000000000F00F4E
#: Xen's MAX_IOMMUS. ``iommu_alloc`` refuses a unit when this many already exist *before* the
#: one being counted, so 33 units are accepted (the off-by-one of §3.2 step 1).
MAX_IOMMUS = 32

_ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF


def _hex(maddr: int | None) -> str:
    return "None" if maddr is None else f"{maddr:#x}"


_PAGE = 4096


@dataclass(frozen=True)
class Scope:
    """A DRHD's (or ATSR's) resolved device scope, as Xen's ``dmar_scope`` holds it.

    ``devices``: the BDF of every endpoint, bridge, IOAPIC and HPET entry (types 1-4), in entry
    order; ``buses``: the bus numbers below the bridges it names (secondary..subordinate).
    """

    segment: int
    devices: tuple[Bdf, ...] = ()
    buses: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sids", frozenset(b.sid for b in self.devices))

    def has_device(self, bus: int, devfn: int) -> bool:
        """True when the scope names the function ``devfn`` on ``bus``."""
        sids: frozenset[int] = self._sids  # type: ignore[attr-defined]
        return (bus << 8 | devfn) in sids

    def has_bus(self, bus: int) -> bool:
        """True when the scope covers ``bus`` (behind a bridge it names)."""
        return bus in self.buses

    def __contains__(self, bdf: object) -> bool:
        return (
            isinstance(bdf, Bdf)
            and bdf.segment == self.segment
            and (self.has_device(bdf.bus, bdf.devfn) or self.has_bus(bdf.bus))
        )


class DidAllocator:
    """Xen's ``domid_bitmap``/``domid_map`` pair (§3.3): DID -> owning domain id.

    ``alloc(domain)`` returns the DID the domain already holds on this unit, else the lowest free
    one. Under caching mode DID 0 is reserved and never handed out or matched.
    """

    def __init__(self, ndoms: int, reserve_zero: bool = False) -> None:
        if ndoms < 1 or ndoms > 1 << 16:
            raise PlatformError(f"domain-id space of {ndoms} is not in 1..65536")
        self.ndoms = ndoms
        self.reserve_zero = reserve_zero
        self._owner: dict[int, int] = {}
        self._by_domain: dict[int, int] = {}
        self._next = 1 if reserve_zero else 0  # every DID >= _next is free
        self._freed: list[int] = []  # heap of free DIDs below _next

    def alloc(self, domain_id: int) -> int:
        """The domain's DID on this unit, allocating the lowest free one if it has none."""
        did = self._by_domain.get(domain_id)
        if did is not None:
            return did
        if self._freed:
            did = heapq.heappop(self._freed)
        elif self._next < self.ndoms:
            did = self._next
            self._next += 1
        else:
            raise PlatformError(f"no free domain ids ({self.ndoms} in use)")
        self._owner[did] = domain_id
        self._by_domain[domain_id] = did
        return did

    def lookup(self, domain_id: int) -> int | None:
        """Xen's ``domain_iommu_domid``: the domain's DID, or None (Xen: -1)."""
        return self._by_domain.get(domain_id)

    def owner(self, did: int) -> int | None:
        """Xen's ``domid_map[did]``: the domain owning ``did``, None when free or reserved."""
        return self._owner.get(did)

    def free(self, did: int) -> None:
        """Release ``did`` (Xen clears the bitmap bit and the map slot)."""
        dom = self._owner.pop(did, None)
        if dom is None:
            raise PlatformError(f"DID {did} is not allocated")
        del self._by_domain[dom]
        heapq.heappush(self._freed, did)

    def in_use(self) -> dict[int, int]:
        """DID -> domain id of every allocated DID."""
        return dict(sorted(self._owner.items()))

    def __len__(self) -> int:
        return len(self._owner)

    def __repr__(self) -> str:
        return f"DidAllocator(ndoms={self.ndoms}, in_use={len(self._owner)})"


class Iommu:
    """One remapping unit: ``iommu_alloc(drhd)`` (§3.2) and what the seed adds to it.

    ``index`` is Xen's sequence number (table order of registration). ``node`` is None
    (NUMA_NO_NODE) until the platform applies the unit's RHSA. ``root_maddr`` is None (no
    table) until the root table is allocated. ``scope`` is the resolved device scope;
    ``ioapics``/``hpets`` the (id, BDF) pairs of its IOAPIC and HPET scope entries in Xen's
    list order (head insertion).
    """

    def __init__(
        self,
        drhd: Drhd,
        index: int,
        mem: PhysMem,
        cap: int = QEMU_CAP,
        ecap: int = QEMU_ECAP,
        scope: Scope | None = None,
        ioapics: list[tuple[int, Bdf]] | None = None,
        hpets: list[tuple[int, Bdf]] | None = None,
        iotlb_entries: int = 1024,
        fault_records: int = 8,
    ) -> None:
        where = f"remapping unit at {drhd.address:#x}"
        for what, v in (("CAP", cap), ("ECAP", ecap)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _ALL_ONES:
                raise PlatformError(f"{where}: {what} {v!r} is not a 64-bit register value")
        if cap == _ALL_ONES or ecap == _ALL_ONES:
            raise PlatformError(f"{where}: CAP/ECAP read all-ones (Xen: -ENODEV)")
        # The hardware first (Xen maps the registers, then reads CAP and ECAP from them); it
        # reports NFR = fault_records - 1. Its root table is latched once allocated.
        try:
            port = UnitPort.connect(
                mem, cap, ecap, iotlb_entries, fault_records, f"unit {index} ({drhd.address:#x})"
            )
        except VtdError as e:
            raise PlatformError(f"{where}: {e}") from e
        capf, ecapf = port.cap, port.ecap
        cap, ecap = capf.value, ecapf.value
        fro, nfr, iro = port.frcd_offset, port.fault_records, port.iotlb_offset
        if fro + nfr * 16 >= _PAGE or iro >= _PAGE:
            raise PlatformError(
                f"{where}: fault records at {fro:#x} (x{nfr}) or IOTLB registers at {iro:#x} "
                "lie outside the register page (Xen: 'IOMMU: unsupported')"
            )
        # SAGAW bits 1..3: 3-, 4-, 5-level (decisions.md); bit 0 (2-level) is treated as
        # reserved, as Xen has done since 2021 and as the hardware model does.
        levels = tuple(int(n) for n in capf.levels_supported)
        if not levels:
            raise PlatformError(
                f"{where}: SAGAW {capf.sagaw:#x} has no 3-, 4- or 5-level width "
                "(Xen: 'IOMMU: unsupported sagaw')"
            )
        self.drhd = drhd
        self.index = index
        self.mem = mem
        self.cap = cap
        self.ecap = ecap
        #: CAP and ECAP decoded by the native spec layer (the one definition of their fields).
        self.cap_fields: Cap = capf
        self.ecap_fields: Ecap = ecapf
        self.supported_levels: tuple[int, ...] = levels
        self.levels: int = levels[-1]
        self.dids = DidAllocator(self.ndoms, reserve_zero=self.caching_mode)
        self.scope = scope if scope is not None else Scope(drhd.segment)
        self.ioapics: list[tuple[int, Bdf]] = list(ioapics or [])
        self.hpets: list[tuple[int, Bdf]] = list(hpets or [])
        #: The unit's root and context tables (driver side), allocated against its node; the
        #: root page itself only once :meth:`alloc_root_table` runs.
        self.root_table: RootTable = RootTable(mem, None)
        self._node: int | None = None
        #: The driver's interface to the unit's registers (bring-up and flushes).
        self.port: UnitPort = port
        self._pages: list[tuple[int, int]] = []  # (maddr, npages) allocated for this unit
        #: The invalidation queue's pages (base, npages) once enabled, and the wait status slot
        #: (Xen's per-CPU poll slot: not a table page, not counted in table_pages).
        self.queue: tuple[int, int] | None = None
        self._status: int | None = None
        #: The interrupt remapping table once enabled (Xen's ``ir_ctrl``).
        self.irt: RemapTable | None = None
        #: Whether the table was enabled in x2APIC mode (IRTA.EIME).
        self.eim = False

    @property
    def remapper(self) -> Remapper:
        """The unit's hardware (walks the tables from the latched root table), for the device
        side: DMA, statistics and fault records. The driver uses :attr:`port`."""
        return self.port.hardware

    # ---- NUMA node and root table
    @property
    def node(self) -> int | None:
        """The unit's NUMA node (None: NUMA_NO_NODE). Setting it also steers the allocations
        of its context tables, as Xen's ``alloc_pgtable_maddr(1, iommu->node)`` does."""
        return self._node

    @node.setter
    def node(self, node: int | None) -> None:
        self.root_table.node = node
        self._node = node

    @property
    def root_maddr(self) -> int | None:
        """Machine address of the root table (Xen's ``root_maddr``); None until allocated."""
        return self.root_table.maddr

    # ---- the DRHD's fields
    @property
    def address(self) -> int:
        """The DRHD's register base address."""
        return self.drhd.address

    @property
    def segment(self) -> int:
        """The DRHD's PCI segment."""
        return self.drhd.segment

    @property
    def include_all(self) -> bool:
        """True for an INCLUDE_PCI_ALL unit (every device of its segment no other unit names)."""
        return self.drhd.include_all

    @property
    def is_igd(self) -> bool:
        """Xen's ``is_igd_drhd``: the scope names the integrated graphics at 0000:00:02.0."""
        return self.segment == 0 and self.scope.has_device(0, 2 << 3)

    # ---- CAP / ECAP
    @property
    def agaw(self) -> int:
        """The adjusted guest address width the driver uses: ``levels - 2``."""
        return int(levels_to_aw(self.levels))

    @property
    def sagaw(self) -> int:
        """CAP.SAGAW: the page-table depths the unit supports (bit 1: 3-level, 2: 4, 3: 5)."""
        return int(self.cap_fields.sagaw)

    @property
    def nd(self) -> int:
        """CAP.ND: how many domain ids the unit has (``ndoms`` is 2 ** (4 + 2 * nd))."""
        return int(self.cap_fields.nd)

    @property
    def ndoms(self) -> int:
        """Domain ids the unit supports: 2^(4 + 2*ND), at most 65536."""
        return int(self.cap_fields.ndoms)

    @property
    def caching_mode(self) -> bool:
        """CAP.CM: not-present entries may be cached (flush on map too)."""
        return self.cap_fields.cm

    @property
    def rwbf(self) -> bool:
        """CAP.RWBF: the write buffer must be flushed."""
        return self.cap_fields.rwbf

    @property
    def mgaw(self) -> int:
        """The widest input address in bits (CAP.MGAW + 1)."""
        return int(self.cap_fields.aw_bits)

    @property
    def psi(self) -> bool:
        """CAP.PSI: page-selective IOTLB invalidation is supported."""
        return self.cap_fields.psi

    @property
    def mamv(self) -> int:
        """CAP.MAMV: the largest address mask of a page-selective invalidation."""
        return int(self.cap_fields.mamv)

    @property
    def superpages(self) -> tuple[str, ...]:
        """Second-level superpage sizes CAP.SLLPS allows ("2M", "1G")."""
        return tuple(self.cap_fields.superpages)

    @property
    def coherent(self) -> bool:
        """ECAP.C: the unit snoops table reads (no cache flush after writing them)."""
        return self.ecap_fields.c

    @property
    def queued_invalidation(self) -> bool:
        """ECAP.QI: queued invalidation is supported."""
        return self.ecap_fields.qi

    @property
    def device_iotlb(self) -> bool:
        """ECAP.DT: device IOTLBs (ATS) are supported."""
        return self.ecap_fields.dt

    @property
    def intr_remap(self) -> bool:
        """ECAP.IR: interrupt remapping is supported."""
        return self.ecap_fields.ir

    @property
    def pass_through(self) -> bool:
        """ECAP.PT: pass-through context entries are supported."""
        return self.ecap_fields.pt

    @property
    def snoop_control(self) -> bool:
        """ECAP.SC: snoop control is supported."""
        return self.ecap_fields.sc

    # ---- memory on the unit's node
    def alloc_pages(self, npages: int = 1) -> int:
        """Xen's ``alloc_pgtable_maddr(npages, iommu->node)``: zeroed pages on the unit's node
        (context tables, the invalidation queue, the interrupt remapping table)."""
        return self._alloc(npages, self.node)

    def _alloc(self, npages: int, node: int | None) -> int:
        """Zeroed pages for this unit on ``node`` (the policy's choice), kept with its pages."""
        maddr: int = self.mem.alloc_pages(npages, node)  # never 0: PhysMem reserves it
        self._pages.append((maddr, npages))
        return maddr

    def free_pages(self, maddr: int, npages: int = 1) -> None:
        """Return pages obtained from :meth:`alloc_pages`."""
        try:
            self._pages.remove((maddr, npages))
        except ValueError:
            raise PlatformError(
                f"{maddr:#x} (+{npages} pages) was not allocated by unit {self.index}"
            ) from None
        self.mem.free_pages(maddr, npages)

    def alloc_root_table(self) -> int:
        """Allocate the root table on the unit's current node (the hardware learns of it at
        :meth:`set_root_table`). The one place it happens."""
        if self.root_maddr:
            raise PlatformError(f"unit {self.index} already has a root table")
        self.root_table.node = self._node
        return int(self.root_table.alloc())

    def enable_qinval(self, node: int | None) -> int:
        """Xen's ``enable_qinval``: the queue's pages (QINVAL_PAGE_ORDER 2: four) allocated on
        ``node``, IQA, IQT 0, QIE, wait for QIES. Returns the queue's address."""
        if self.queue is not None:
            raise PlatformError(f"unit {self.index} already has an invalidation queue")
        base = self._alloc(QUEUE_PAGES, node)
        status = int(self.mem.alloc_pages(1, node))
        try:
            self.port.enable_qinval(base, QUEUE_PAGES, status)
        except VtdError:
            self.mem.free_pages(status, 1)
            self.free_pages(base, QUEUE_PAGES)
            raise
        self.queue = (base, QUEUE_PAGES)
        self._status = status
        return base

    def enable_intremap(self, node: int | None, eim: bool) -> int:
        """Xen's ``enable_intremap``: the interrupt remapping table (IREMAP_PAGE_ORDER 8: 256
        pages, 65536 entries) allocated on ``node``, IRTA (with EIME when ``eim``), SIRTP and
        wait, a global interrupt-entry-cache invalidation, IRE and wait. Returns the table's
        address."""
        if self.irt is not None:
            raise PlatformError(f"unit {self.index} already has an interrupt remapping table")
        base = self._alloc(IRT_PAGES, node)
        try:
            self.port.enable_intremap(base, IRT_SIZE, eim)
        except VtdError:
            self.free_pages(base, IRT_PAGES)
            raise
        self.irt = RemapTable(self.mem, base, self.port)
        self.eim = eim
        return base

    def set_root_table(self) -> None:
        """Xen's ``iommu_set_root_entry``: RTADDR, SRTP, wait for RTPS."""
        if not self.root_maddr:
            raise PlatformError(f"unit {self.index} has no root table")
        self.port.set_root_table(self.root_maddr)

    def flush_all(self) -> None:
        """Xen's ``iommu_flush_all`` for this unit: global context-cache, then global IOTLB
        invalidation (through the queue once it is enabled)."""
        self.port.flush_context_global()
        self.port.flush_iotlb_global()

    def enable_translation(self) -> None:
        """Xen's ``iommu_enable_translation``: TE, wait for TES."""
        self.port.enable_translation()

    def _pages_per_node(self, maddr: int, npages: int) -> dict[int, int]:
        return {int(self.mem.node_of(maddr)): npages}

    @property
    def queue_pages(self) -> dict[int, int]:
        """The invalidation queue's pages per node ({} without a queue)."""
        return {} if self.queue is None else self._pages_per_node(*self.queue)

    @property
    def irt_pages(self) -> dict[int, int]:
        """The interrupt remapping table's pages per node ({} without one)."""
        return {} if self.irt is None else self._pages_per_node(self.irt.maddr, IRT_PAGES)

    @property
    def table_pages(self) -> dict[int, int]:
        """Pages allocated for this unit (root, context tables, the invalidation queue, the
        interrupt remapping table), per node."""
        out: dict[int, int] = {int(k): int(v) for k, v in self.root_table.table_pages().items()}
        for maddr, n in self._pages:
            node = int(self.mem.node_of(maddr))
            out[node] = out.get(node, 0) + n
        return out

    def free(self) -> None:
        """Shut the unit down and free every page allocated for it (root and context tables,
        queue, interrupt remapping table)."""
        self.port.shut_down()
        self.root_table.free()
        self.queue = None
        self.irt = None
        if self._status is not None:
            self.mem.free_pages(self._status, 1)
            self._status = None
        while self._pages:
            maddr, n = self._pages.pop()
            self.mem.free_pages(maddr, n)

    def __repr__(self) -> str:
        kind = "include-all" if self.include_all else f"{len(self.scope.devices)} scope entries"
        return (
            f"Iommu(index={self.index}, address={self.address:#x}, segment={self.segment:#x}, "
            f"{kind}, levels={self.levels}, node={self.node}, root={_hex(self.root_maddr)})"
        )


#: Alias: the remapping unit under its architectural name.
Unit = Iommu
