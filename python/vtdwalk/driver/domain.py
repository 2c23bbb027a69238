"""A DMA-remapping domain: its page table, the units it is on, its mappings and their flushes.

Xen's ``struct domain_iommu`` with what the seed adds (xen-driver.md §4.3-§4.5, §8): a domain
starts with no NUMA node; its page-table pages are allocated against its node, which the
assignment of a device sets from the device's unit (see :mod:`vtdwalk.driver.assign`).
A pass-through domain has no page table (its context entries use TT 2).

Every change of the page table sends its IOTLB flush to every unit the domain is on, with Xen's
rules (§4.5, master's choice of page-selective for power-of-two, aligned page counts), decided
in this order:

* page-selective or domain-selective first: page-selective when the page count is a power of
  two and the address is aligned to it, domain-selective otherwise (and for ``flush_all``);
* only a page-selective flush carries ``non_present = !old_present``: when nothing was present
  before and the unit has no caching mode, nothing is cached, so no IOTLB invalidation (a
  write-buffer flush when CAP.RWBF); under caching mode it uses DID 0. A domain-selective
  flush has ``non_present = 0`` and uses the domain's DID;
* a page-selective flush falls back to domain-selective (keeping its DID) when the unit has no
  CAP.PSI or the address mask exceeds CAP.MAMV;
* plus a device-TLB invalidation for each ATS device of the domain behind the unit (through
  the unit's queue: register-based invalidation has none), everything for a domain-selective
  flush, the PCIe ATS size encoding of the range for a page-selective one.

A batch (``map_pages``/``unmap_pages``) is flushed as the one range ``[min, max + 4K)`` of its
addresses: that may cover more than what changed, never less.

What was flushed is counted in :attr:`Domain.flush_counts` and listed in :attr:`Domain.flush_log`.

Threads: every public method runs under the domain's ``lock``, a re-entrant lock the platform
shares with its assignment bookkeeping, so a mapping and its flush are one step for other
threads, and an assignment never sees a domain half-way through a change.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from vtdwalk._args import plain_int, u64_array
from vtdwalk.errors import InvalidArgument, PlatformError

if TYPE_CHECKING:
    from vtdwalk._core import PageTable, PhysMem, Translation
    from vtdwalk.driver.flush import UnitPort
    from vtdwalk.driver.iommu import Iommu
    from vtdwalk.topology import Bdf

__all__ = ["PAGE_SIZE", "Domain", "Flush", "UnitLink", "locked", "port_of"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _HasLock(Protocol):
    @property
    def lock(self) -> threading.RLock: ...


_S = TypeVar("_S", bound=_HasLock)


def locked(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Run the method under ``self.lock``."""

    @wraps(method)
    def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            return method(self, *args, **kwargs)

    return run


PAGE_SIZE = 4096
#: How many flush records a domain keeps (oldest dropped first); the counters keep counting.
FLUSH_LOG_LIMIT = 4096


def port_of(unit: Iommu) -> UnitPort:
    """The driver's interface to the unit's hardware, once the unit has a root table."""
    if not unit.root_maddr:
        raise PlatformError(f"unit {unit.index} ({unit.address:#x}) has no root table")
    return unit.port


@dataclass(frozen=True)
class Flush:
    """One IOTLB flush sent to one unit.

    ``kind``: "page" (PSI: ``addr``, ``am``), "domain" (DSI) or "none" (a non-present change on
    a unit that caches no non-present entries). ``did`` is the DID the invalidation carried (0
    for a non-present flush under caching mode). ``wbf``: a write-buffer flush was needed.
    ``dev_iotlb``: device-TLB invalidations sent along (one per ATS device of the domain).
    """

    unit: int
    kind: str
    did: int
    addr: int = 0
    am: int = 0
    non_present: bool = False
    wbf: bool = False
    dev_iotlb: int = 0


@dataclass
class UnitLink:
    """The domain on one unit: its DID there, the levels the unit walks, and the table the
    unit's context entries point at (``slptptr``: the root, or a lower table when levels are
    skipped; 0 for pass-through)."""

    unit: Iommu
    did: int
    levels: int
    slptptr: int


class Domain:
    """A domain (Xen's ``struct domain_iommu``). Build it with ``Platform.create_domain``.

    ``id`` is the domain id (what DIDs map to), ``levels`` the page-table depth (3, 4 or 5),
    ``passthrough`` whether its devices bypass translation (TT 2). ``node`` is None until a
    device is assigned through a unit with a node. ``page_table`` is its PageTable (None for a
    pass-through domain). ``rmrr_refs`` counts, per RMRR range ``(base, end)``, the devices
    whose identity map of it the domain holds.
    """

    def __init__(
        self,
        mem: PhysMem,
        domain_id: int,
        levels: int = 4,
        passthrough: bool = False,
        superpages: str = "1G",
        lock: threading.RLock | None = None,
    ) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels not in (3, 4, 5):
            raise InvalidArgument(f"domain levels {levels!r}: a domain has 3, 4 or 5 levels")
        self.id = domain_id
        self.levels = levels
        self.passthrough = bool(passthrough)
        self.mem = mem
        self._node: int | None = None
        self.page_table: PageTable | None = None
        if not self.passthrough:
            from vtdwalk._core import PageTable

            self.page_table = PageTable(mem, levels=levels, node=None, superpages=superpages)
        self.links: dict[int, UnitLink] = {}
        self.devices: set[Bdf] = set()
        self.rmrr_refs: dict[tuple[int, int], int] = {}
        self.flush_counts: Counter[str] = Counter()
        self.flush_log: list[Flush] = []
        self._freed = False
        #: Guards the domain's state; the platform's lock when the platform made the domain.
        self.lock = threading.RLock() if lock is None else lock
        # Set by the assignment layer: where table pages go (pre-seed policy), which ATS devices
        # want device-TLB invalidations, and what to do when a skipped-level table moves.
        self.alloc_node_hook: Callable[[], int | None] | None = None
        self.dev_iotlb_hook: Callable[[Iommu, int], list[int]] | None = None
        self.reanchor_hook: Callable[[Domain, UnitLink, int], None] | None = None

    # ---- node
    @property
    def node(self) -> int | None:
        """The NUMA node table pages are allocated against (None: NUMA_NO_NODE)."""
        return self._node

    @node.setter
    def node(self, node: int | None) -> None:
        self._node = node
        if self.page_table is not None:
            self.page_table.node = node

    def _prepare_alloc(self) -> PageTable:
        pt = self.page_table
        if self._freed:
            raise PlatformError(f"domain {self.id} was freed: it takes no more mappings")
        if pt is None:
            raise PlatformError(f"domain {self.id} is pass-through: it has no page table")
        if self.alloc_node_hook is not None:
            pt.node = self.alloc_node_hook()
        return pt

    # ---- units
    @property
    def units(self) -> list[Iommu]:
        """The units the domain is on (has a DID on), in unit index order."""
        return [self.links[i].unit for i in sorted(self.links)]

    @property
    def dids(self) -> dict[int, int]:
        """Unit index -> the domain's DID on that unit."""
        return {i: link.did for i, link in sorted(self.links.items())}

    def did(self, unit: Iommu) -> int | None:
        """The domain's DID on ``unit`` (Xen's ``domain_iommu_domid``), None when not on it."""
        link = self.links.get(unit.index)
        return None if link is None or link.unit is not unit else link.did

    # ---- mappings
    @locked
    def map(
        self,
        iova: int,
        maddr: int,
        size: int,
        read: bool = True,
        write: bool = True,
        snoop: bool = False,
    ) -> bool:
        """Map ``[iova, iova + size)`` to ``[maddr, maddr + size)`` and flush. Returns whether
        something was mapped there before (the flush then covers old entries)."""
        iova, maddr, size = plain_int(iova), plain_int(maddr), plain_int(size)
        pt = self._prepare_alloc()
        old = bool(pt.map(iova, maddr, size, read=read, write=write, snoop=snoop))
        self._flush(iova, _pages(size), old)
        return old

    @locked
    def unmap(self, iova: int, size: int) -> bool:
        """Unmap ``[iova, iova + size)`` and flush. Returns whether something was mapped."""
        iova, size = plain_int(iova), plain_int(size)
        pt = self._prepare_alloc()
        old = bool(pt.unmap(iova, size))
        if old:
            self._flush(iova, _pages(size), True)
            self._reanchor()
        return old

    @locked
    def map_pages(
        self,
        iovas: npt.ArrayLike,
        maddrs: npt.ArrayLike,
        read: bool = True,
        write: bool = True,
        snoop: bool = False,
    ) -> bool:
        """Map 4 KiB pages ``iovas[i] -> maddrs[i]`` in one batch, then flush once per unit."""
        pt = self._prepare_alloc()
        iv = u64_array(iovas, "iovas")
        ma = u64_array(maddrs, "maddrs")
        old = bool(pt.map_pages(iv, ma, read=read, write=write, snoop=snoop))
        self._flush_batch(iv, old)
        return old

    @locked
    def unmap_pages(self, iovas: npt.ArrayLike) -> bool:
        """Unmap 4 KiB pages in one batch, then flush once per unit."""
        pt = self._prepare_alloc()
        iv = u64_array(iovas, "iovas")
        old = bool(pt.unmap_pages(iv))
        if old:
            self._flush_batch(iv, True)
            self._reanchor()
        return old

    @locked
    def lookup(self, iova: int) -> Translation | None:
        """The page table's own view of ``iova`` (no hardware involved)."""
        if self.page_table is None:
            return None
        return self.page_table.lookup(plain_int(iova))

    @locked
    def table_pages(self) -> dict[int, int]:
        """Page-table pages per node."""
        return {} if self.page_table is None else dict(self.page_table.table_pages())

    # ---- worst cases (what a plan of the assignment layer checks before changing anything)
    def _max_leaf(self) -> int:
        pt = self.page_table
        sp = "none" if pt is None else pt.superpages
        return {"none": 1, "2M": 2, "1G": 3}.get(sp, 1)

    def identity_map_bound(self, iova: int, size: int) -> int:
        """At most how many table pages ``map(iova, iova, size)`` allocates, whatever the
        table holds: the root when there is none, and per table level the tables the range
        reaches (only the ends' ones where a superpage can cover the whole entry)."""
        pt = self.page_table
        if pt is None or size <= 0:
            return 0
        lo, hi = iova, iova + size
        n = 0 if pt.root else 1
        max_leaf = self._max_leaf()
        for k in range(1, self.levels):
            span = PAGE_SIZE << (9 * k)  # what one level-k table maps
            reached = (hi - 1) // span - lo // span + 1
            if k + 1 <= max_leaf:
                ends = (lo % span != 0) + (hi % span != 0)
                reached = min(reached, ends)
            n += reached
        return n

    def unmap_bound(self, iova: int, size: int) -> int:
        """At most how many table pages ``unmap(iova, size)`` allocates (superpages split
        where the range ends inside them), plus what re-anchoring a unit walking fewer levels
        may take afterwards."""
        pt = self.page_table
        if pt is None or size <= 0 or not pt.root:
            return 0
        lo, hi = iova, iova + size
        n = 0
        for k in range(1, self._max_leaf()):
            span = PAGE_SIZE << (9 * k)
            reached = (hi - 1) // span - lo // span + 1
            n += min(reached, (lo % span != 0) + (hi % span != 0))
        if any(link.levels < self.levels and link.slptptr for link in self.links.values()):
            n += self.levels - 1
        return n

    # ---- flushing
    @locked
    def flush_all(self) -> None:
        """Xen's ``iotlb_flush_all``: a domain-selective flush on every unit."""
        self._flush(0, None, True)

    def _flush_batch(self, iovas: npt.NDArray[np.uint64], old_present: bool) -> None:
        """One flush over ``[min, max + 4K)`` of the batch (no sort: O(n) and vectorised)."""
        if len(iovas) == 0:
            return
        lo = int(iovas.min()) & ~(PAGE_SIZE - 1)
        hi = int(iovas.max()) & ~(PAGE_SIZE - 1)
        self._flush(lo, (hi - lo) // PAGE_SIZE + 1, old_present)

    def _flush(self, iova: int, npages: int | None, old_present: bool) -> None:
        """Xen's ``iommu_flush_iotlb`` over every unit the domain is on (``npages`` None: DSI).

        Page-selective or domain-selective is decided first, from the page count and alignment;
        only a page-selective flush is a non-present one when nothing was present before."""
        iova = int(iova)
        order = _psi_order(iova, npages)
        non_present = order is not None and not old_present
        for i in sorted(self.links):
            link = self.links[i]
            unit = link.unit
            port = port_of(unit)
            if non_present and not unit.caching_mode:
                rec = Flush(i, "none", link.did, non_present=True, wbf=unit.rwbf)
            else:
                did = 0 if non_present else link.did
                sids = [] if self.dev_iotlb_hook is None else self.dev_iotlb_hook(unit, link.did)
                dev = len(sids)
                if order is None or not unit.psi or order > unit.mamv:
                    port.flush_iotlb_domain(did)
                    rec = Flush(i, "domain", did, non_present=non_present, dev_iotlb=dev)
                    ats = _ATS_ALL, True
                else:
                    addr = iova & ~((PAGE_SIZE << order) - 1)
                    port.flush_iotlb_page(did, addr, order)
                    rec = Flush(i, "page", did, addr, order, non_present, dev_iotlb=dev)
                    ats = _ats_range(addr, order)
                for sid in sids:
                    port.flush_device_tlb(sid, ats[0], ats[1])
            self._record(rec)

    def _record(self, rec: Flush) -> None:
        self.flush_counts[rec.kind] += 1
        if rec.wbf:
            self.flush_counts["wbf"] += 1
        if rec.dev_iotlb:
            self.flush_counts["dev_iotlb"] += rec.dev_iotlb
        self.flush_log.append(rec)
        if len(self.flush_log) > FLUSH_LOG_LIMIT:
            del self.flush_log[: len(self.flush_log) - FLUSH_LOG_LIMIT]

    # ---- level skipping
    def _reanchor(self) -> None:
        """After an unmap freed empty tables: a unit walking fewer levels than the domain
        points at the table under entry 0 of the upper levels; if that table was freed, make
        it again and let the assignment layer repoint the unit's context entries."""
        pt = self.page_table
        if pt is None:
            return
        for i in sorted(self.links):
            link = self.links[i]
            if link.levels >= self.levels or not link.slptptr:
                continue
            ptr = int(pt.leaf_table(0, False, level=link.levels))
            if ptr == link.slptptr:
                continue
            if not ptr:
                ptr = int(pt.leaf_table(0, True, level=link.levels))
            if self.reanchor_hook is not None:
                self.reanchor_hook(self, link, ptr)
            link.slptptr = ptr
            self.flush_counts["reanchor"] += 1

    @locked
    def anchor(self, levels: int) -> int:
        """The table a unit walking ``levels`` levels starts from (Xen's level skipping:
        entry 0 of each upper level), allocating the chain for address 0 when the domain has
        no table yet, as ``domain_context_mapping_one`` does."""
        pt = self._prepare_alloc()
        if not pt.root:
            pt.leaf_table(0, True, level=1)
        return int(pt.leaf_table(0, True, level=levels))

    # ---- teardown
    @locked
    def free(self) -> None:
        """Free every page-table page (the domain must have no devices)."""
        if self.devices:
            raise PlatformError(
                f"domain {self.id} still has devices: "
                + ", ".join(str(b) for b in sorted(self.devices))
            )
        if self.page_table is not None:
            self.page_table.free()
        self.rmrr_refs.clear()
        self._freed = True

    def __iter__(self) -> Iterator[Bdf]:
        return iter(sorted(self.devices))

    def __repr__(self) -> str:
        kind = "pass-through" if self.passthrough else f"{self.levels}-level"
        return (
            f"Domain(id={self.id}, {kind}, node={self.node}, devices={len(self.devices)}, "
            f"units={sorted(self.links)})"
        )


#: Xen's device-TLB invalidation of everything: S set, address bits 62:12 all ones.
_ATS_ALL = 0x7FFF_FFFF_FFFF_F000


def _ats_range(addr: int, order: int) -> tuple[int, bool]:
    """The PCIe ATS encoding of ``2^order`` pages from ``addr`` (Xen's PSI case of
    ``dev_invalidate_iotlb``): one page with S clear; else S set, bit ``12 + order - 1``
    clear and the bits below it down to 12 set."""
    if order == 0:
        return addr, False
    base = addr & ~((PAGE_SIZE << order) - 1)
    return base | (((1 << (order - 1)) - 1) * PAGE_SIZE), True


def _pages(size: int) -> int | None:
    if not isinstance(size, int) or size <= 0:
        return None
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


def _psi_order(iova: int, npages: int | None) -> int | None:
    """The address mask of a page-selective flush (a power-of-two page count, the address
    aligned to it), or None for domain-selective. The unit's CAP.PSI / MAMV come later."""
    if npages is None or npages <= 0 or npages & (npages - 1):
        return None
    order = npages.bit_length() - 1
    if iova & ((PAGE_SIZE << order) - 1):
        return None
    return order
