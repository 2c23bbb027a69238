"""Interrupt remapping, the driver's side (Xen's ``intremap.c``, xen-driver.md §6.1).

Each unit's table is a :class:`~vtdwalk.driver.irt.RemapTable` (Xen's ``ir_ctrl``).

:class:`Interrupts` is what the platform keeps for devices' MSIs and IOAPIC pins: which entries
each source holds and on which unit. The entries are Xen's ``msi_msg_to_remap_entry`` and
``ioapic_rte_to_remap_entry``: remapped format, the vector, destination, delivery, trigger and
destination modes and redirection hint asked for, and source-id validation set as Xen's
``set_msi_source_id`` does:

* a PCIe endpoint, PCIe port, PCIe-to-PCI bridge or host bridge: SVT 1 (SID and SQ), its own
  BDF, SQ from its phantom-function stride (1 -> 3, 2 -> 2, 4 -> 1, else 0: all 16 bits);
* a conventional PCI device, legacy PCI bridge or PCI-to-PCIe bridge by its upstream bridge
  (``find_upstream_bridge``): none (integrated): SVT 1 with its own BDF; a PCIe-to-PCI bridge
  on top: SVT 2 (verify the bus range) with SID = bridge bus << 8 | device bus; a legacy bridge
  on top: SVT 1 with the bridge's BDF;
* an IOAPIC pin: SVT 1, SQ 0, the IOAPIC's BDF from its unit's DMAR scope.

The programmed message of a device is the remappable-format MSI pointing at its first entry
(``Irte.remappable_msi``: SHV set, sub-handle ``i`` for the device's ``i``-th vector of a
multi-message MSI); an IOAPIC pin's is the remappable format of its entry without a sub-handle.
An entry is freed (zeroed, then invalidated) when the device's MSI is torn down or the device is
deassigned, and every entry when the platform is freed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vtdwalk._args import plain_int
from vtdwalk._core import Irte
from vtdwalk.driver.irt import IRT_ENTRIES, IRT_PAGES, IRT_SIZE, IRTE_SIZE, RemapTable
from vtdwalk.errors import InvalidArgument, PlatformError
from vtdwalk.topology import Bdf, Device, DeviceKind, Topology

if TYPE_CHECKING:
    from vtdwalk.driver.iommu import Iommu

__all__ = [
    "IRTE_SIZE",
    "IRT_ENTRIES",
    "IRT_PAGES",
    "IRT_SIZE",
    "Interrupts",
    "RemapHandle",
    "RemapTable",
    "SourceId",
    "msi_source_id",
]

#: Phantom-function stride -> SQ (Xen: 1 -> SQ_13_IGNORE_3, 2 -> _2, 4 -> _1).
_SQ_OF_STRIDE = {1: 3, 2: 2, 4: 1}
#: Kinds whose MSIs carry their own requester id (Xen's first case).
_OWN_SID = frozenset(
    {
        DeviceKind.PCIE_ENDPOINT,
        DeviceKind.PCIE_PORT,
        DeviceKind.PCIE_TO_PCI_BRIDGE,
        DeviceKind.HOST_BRIDGE,
    }
)


@dataclass(frozen=True)
class SourceId:
    """An IRTE's source validation: SVT (Irte.SVT_*), SQ and SID."""

    svt: int
    sq: int
    sid: int


def msi_source_id(topology: Topology, dev: Device) -> SourceId:
    """Xen's ``set_msi_source_id`` for ``dev`` (see the module docstring)."""
    if dev.kind in _OWN_SID:
        sq = _SQ_OF_STRIDE.get(dev.effective_phantom_stride, 0)
        return SourceId(Irte.SVT_SID, sq, dev.bdf.sid)
    up = topology.find_upstream_bridge(dev.bdf)
    if up is None:  # integrated
        return SourceId(Irte.SVT_SID, 0, dev.bdf.sid)
    top, _ = up
    bridge = topology.get(top)
    if bridge is not None and bridge.kind is DeviceKind.PCIE_TO_PCI_BRIDGE:
        # Verify the bus range: SID[15:8] the bridge's bus (start), SID[7:0] the device's (end).
        return SourceId(Irte.SVT_BUS_RANGE, 0, top.bus << 8 | dev.bdf.bus)
    return SourceId(Irte.SVT_SID, 0, top.sid)


@dataclass(frozen=True)
class RemapHandle:
    """The entries one interrupt source holds: ``unit`` (index), its first ``index`` and
    ``count`` entries, the source-id check they carry, and the message the source sends
    (``address``, ``data``: remappable format, for its first vector)."""

    source: str
    unit: int
    index: int
    count: int
    svt: int
    sq: int
    sid: int
    address: int
    data: int


def _field(value: object, name: str, hi: int) -> int:
    v = plain_int(value)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise InvalidArgument(f"{name}: expected an integer in 0..{hi}, not {value!r}")
    return v


def _flag(value: object, name: str) -> int:
    v = plain_int(value)
    if v not in (0, 1, True, False):
        raise InvalidArgument(f"{name}: expected 0 or 1, not {value!r}")
    return int(v)


class Interrupts:
    """The interrupt remapping entries of a platform's MSIs and IOAPIC pins.

    ``unit_for`` finds a device's unit (``acpi_find_matched_drhd_unit``); ``ioapic_unit``
    an IOAPIC's unit and scope BDF (``ioapic_to_iommu``, ``apicid_to_bdf``)."""

    def __init__(
        self,
        topology: Topology,
        unit_for: Callable[[Bdf], Iommu | None],
        ioapic_unit: Callable[[int], tuple[Iommu, Bdf] | None],
    ) -> None:
        self.topology = topology
        self._unit_for = unit_for
        self._ioapic_unit = ioapic_unit
        self.msis: dict[Bdf, RemapHandle] = {}
        self.pins: dict[tuple[int, int], RemapHandle] = {}
        self._units: dict[int, Iommu] = {}

    @staticmethod
    def _table(unit: Iommu) -> RemapTable:
        if unit.irt is None:
            raise PlatformError(
                f"unit {unit.index} ({unit.address:#x}) does not remap interrupts (no ECAP.IR, "
                "no INTR_REMAP in the DMAR flags, an IOAPIC without a unit, or no queue)"
            )
        return unit.irt

    def _irte(
        self,
        unit: Iommu,
        src: SourceId,
        vector: int,
        destination: int,
        delivery_mode: int,
        trigger_mode: int,
        destination_mode: int,
        redirection_hint: int,
    ) -> Irte:
        """The remapped-format entry (present, FPD clear: faults are reported)."""
        vector = _field(vector, "vector", 0xFF)
        limit = 0xFFFF_FFFF if unit.eim else 0xFF
        destination = _field(destination, "destination", limit)
        return Irte(
            present=True,
            vector=vector,
            destination=destination,
            delivery_mode=_field(delivery_mode, "delivery_mode", 7),
            trigger_mode=_flag(trigger_mode, "trigger_mode"),
            destination_mode=_flag(destination_mode, "destination_mode"),
            redirection_hint=_flag(redirection_hint, "redirection_hint"),
            sid=src.sid,
            sq=src.sq,
            svt=src.svt,
            x2apic=unit.eim,
        )

    def _place(self, unit: Iommu, old: RemapHandle | None, count: int) -> int:
        """Where the source's ``count`` entries go: its old ones when they fit, else new."""
        table = self._table(unit)
        if old is not None and old.unit == unit.index and old.count == count:
            return old.index
        index = table.alloc(count)
        if old is not None:
            self._release(old)
        return index

    def _release(self, h: RemapHandle) -> None:
        unit = self._units[h.unit]
        if unit.irt is not None:
            unit.irt.free(h.index, h.count)

    # ---- MSIs
    def setup_msi(
        self,
        dev: Device,
        vector: int,
        destination: int,
        count: int = 1,
        delivery_mode: int = 0,
        trigger_mode: int = 0,
        destination_mode: int = 0,
        redirection_hint: int = 0,
    ) -> RemapHandle:
        """Xen's ``msi_msg_to_remap_entry`` for the device's ``count`` vectors (``vector``,
        ``vector + 1``...): entries written (the device's old ones reused when it had as
        many), the remappable message returned."""
        n = _field(count, "count", 32)
        if n < 1 or n & (n - 1):
            raise InvalidArgument(f"count: an MSI has 1, 2, 4, 8, 16 or 32 vectors, not {count!r}")
        unit = self._unit_for(dev.bdf)
        if unit is None:
            raise PlatformError(f"{dev.bdf} is in no remapping unit's scope")
        src = msi_source_id(self.topology, dev)
        v0 = _field(vector, "vector", 0xFF)
        if v0 + n - 1 > 0xFF:
            raise InvalidArgument(f"vector: {v0} + {n} vectors passes 255")
        entries = [
            self._irte(
                unit,
                src,
                v0 + i,
                destination,
                delivery_mode,
                trigger_mode,
                destination_mode,
                redirection_hint,
            )
            for i in range(n)
        ]
        old = self.msis.get(dev.bdf)
        index = self._place(unit, old, n)
        self._units[unit.index] = unit
        table = self._table(unit)
        for i, irte in enumerate(entries):
            table.write(index + i, irte)
        address, data = Irte.remappable_msi(index, subhandle=0)
        h = RemapHandle(str(dev.bdf), unit.index, index, n, src.svt, src.sq, src.sid, address, data)
        self.msis[dev.bdf] = h
        return h

    def message(self, bdf: Bdf, entry: int = 0) -> tuple[int, int]:
        """The device's remappable message for its ``entry``-th vector (its sub-handle)."""
        h = self.msis.get(bdf)
        if h is None:
            raise PlatformError(f"{bdf} has no MSI set up (Platform.setup_msi)")
        e = _field(entry, "entry", h.count - 1)
        address, data = Irte.remappable_msi(h.index, subhandle=e)
        return int(address), int(data)

    def teardown_msi(self, bdf: Bdf) -> bool:
        """Free the device's entries; whether it had any."""
        h = self.msis.pop(bdf, None)
        if h is None:
            return False
        self._release(h)
        return True

    # ---- IOAPIC pins
    def setup_ioapic_pin(
        self,
        apic_id: int,
        pin: int,
        vector: int,
        destination: int,
        delivery_mode: int = 0,
        trigger_mode: int = 0,
        destination_mode: int = 0,
        redirection_hint: int = 0,
    ) -> RemapHandle:
        """Xen's ``ioapic_rte_to_remap_entry``: one entry for the pin, validated against the
        IOAPIC's scope BDF (SVT 1, SQ 0)."""
        a = _field(apic_id, "apic_id", 0xFF)
        p = _field(pin, "pin", 0xFF)
        found = self._ioapic_unit(a)
        if found is None:
            raise PlatformError(f"IOAPIC {a} is in no remapping unit's scope")
        unit, bdf = found
        src = SourceId(Irte.SVT_SID, 0, bdf.sid)
        irte = self._irte(
            unit,
            src,
            vector,
            destination,
            delivery_mode,
            trigger_mode,
            destination_mode,
            redirection_hint,
        )
        old = self.pins.get((a, p))
        index = self._place(unit, old, 1)
        self._units[unit.index] = unit
        self._table(unit).write(index, irte)
        address, data = Irte.remappable_msi(index)
        h = RemapHandle(
            f"ioapic {a} pin {p}", unit.index, index, 1, src.svt, src.sq, src.sid, address, data
        )
        self.pins[(a, p)] = h
        return h

    def teardown_ioapic_pin(self, apic_id: int, pin: int) -> bool:
        """Free the pin's entry; whether it had one."""
        h = self.pins.pop((plain_int(apic_id), plain_int(pin)), None)
        if h is None:
            return False
        self._release(h)
        return True

    def free(self) -> None:
        """Every entry freed (platform teardown)."""
        for h in [*self.msis.values(), *self.pins.values()]:
            self._release(h)
        self.msis.clear()
        self.pins.clear()
