"""The driver's one interface to a unit's hardware: the root table and the flushes.

Xen reaches a unit through ``iommu_set_root_entry`` and the ``iommu_flush`` table
(``context`` and ``iotlb``, register-based or queued); :class:`UnitPort` is that seam. Today
each operation is a call on the unit's hardware model (the native ``Remapper``); a
register-level unit or queued invalidation replaces the body of these methods and nothing
else in the driver. No other module of the driver touches the hardware model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vtdwalk._core import Remapper

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem

__all__ = ["UnitPort"]


class UnitPort:
    """The driver's side of one unit: read CAP/ECAP, latch the root table, flush caches."""

    __slots__ = ("_hw",)

    def __init__(self, hardware: Remapper) -> None:
        self._hw = hardware

    @classmethod
    def connect(
        cls, mem: PhysMem, cap: int, ecap: int, iotlb_entries: int, fault_records: int
    ) -> UnitPort:
        """Bring up the unit's hardware (no root table latched yet) and return its port."""
        return cls(
            Remapper(
                mem,
                None,
                cap=cap,
                ecap=ecap,
                iotlb_entries=iotlb_entries,
                fault_records=fault_records,
            )
        )

    @property
    def hardware(self) -> Remapper:
        """The unit's hardware model, for the device side (DMA, statistics, fault records);
        the driver itself goes through the methods below."""
        return self._hw

    # ---- registers
    @property
    def cap(self) -> int:
        """The CAP register as the hardware reports it."""
        return int(self._hw.cap)

    @property
    def ecap(self) -> int:
        """The ECAP register as the hardware reports it."""
        return int(self._hw.ecap)

    def set_root_table(self, maddr: int | None) -> None:
        """Latch a root table (RTADDR, then SRTP); None: no table (translation faults)."""
        self._hw.root_table = maddr

    # ---- context-cache invalidation
    def flush_context_global(self) -> None:
        self._hw.invalidate_context("global")

    def flush_context_domain(self, did: int) -> None:
        self._hw.invalidate_context("domain", did=did)

    def flush_context_device(self, did: int, sid: int, fm: int = 0) -> None:
        self._hw.invalidate_context("device", did=did, sid=sid, fm=fm)

    # ---- IOTLB invalidation
    def flush_iotlb_global(self) -> None:
        self._hw.invalidate_iotlb("global")

    def flush_iotlb_domain(self, did: int) -> None:
        self._hw.invalidate_iotlb("domain", did=did)

    def flush_iotlb_page(self, did: int, addr: int, am: int) -> None:
        self._hw.invalidate_iotlb("page", did=did, addr=addr, am=am)
