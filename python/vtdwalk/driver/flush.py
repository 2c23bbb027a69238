"""The driver's one interface to a unit's hardware: its register page.

Xen reaches a unit through ``iommu_set_root_entry``, ``iommu_enable_translation`` and the
``iommu_flush`` table (``context`` and ``iotlb``, register-based or queued);
:class:`UnitPort` is that seam, and it does what Xen does: it reads and writes the unit's
registers (``mmio_read``/``mmio_write``) and polls them until the unit reports completion. The
register vocabulary (offsets, command bits, how a command is composed and its completion read)
comes from the native spec layer (:class:`vtdwalk._core.Regs`); Python composes and decodes no
register itself. No other module of the driver touches the hardware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vtdwalk._core import Cap, Ecap, Regs, Remapper
from vtdwalk.errors import PlatformError

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem

__all__ = ["UnitPort"]

#: Polls before a command counts as lost (Xen panics after 1 s: "DMAR hardware malfunction").
POLLS = 1000


class UnitPort:
    """The driver's side of one unit: CAP/ECAP, root table, translation, cache invalidation,
    all through the unit's registers."""

    __slots__ = ("_cap", "_ecap", "_hw", "_iotlb", "_iva")

    def __init__(self, hardware: Remapper) -> None:
        self._hw = hardware
        self._cap = Cap(self._hw.mmio_read(Regs.CAP, 8))
        self._ecap = Ecap(self._hw.mmio_read(Regs.ECAP, 8))
        self._iva = Regs.iva_offset(self._ecap)
        self._iotlb = Regs.iotlb_offset(self._ecap)

    @classmethod
    def connect(
        cls, mem: PhysMem, cap: int, ecap: int, iotlb_entries: int, fault_records: int
    ) -> UnitPort:
        """The unit's hardware in its reset state (translation off, no root table) and its
        port. ``fault_records`` sets CAP.NFR."""
        return cls(
            Remapper(
                mem,
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

    # ---- capabilities, as the registers report them
    @property
    def cap(self) -> Cap:
        return self._cap

    @property
    def ecap(self) -> Ecap:
        return self._ecap

    @property
    def iotlb_offset(self) -> int:
        """Where the IOTLB register pair (IVA, IOTLB) starts: ECAP.IRO in bytes."""
        return self._iva

    @property
    def frcd_offset(self) -> int:
        """Where the fault recording registers start: CAP.FRO in bytes."""
        return int(Regs.frcd_offset(self._cap))

    @property
    def fault_records(self) -> int:
        """How many fault recording registers there are (CAP.NFR + 1)."""
        return int(Regs.fault_records(self._cap))

    # ---- registers
    def _poll(self, offset: int, size: int, done: object) -> int:
        for _ in range(POLLS):
            v = self._hw.mmio_read(offset, size)
            if done(v):  # type: ignore[operator]
                return v
        raise PlatformError(f"DMAR hardware malfunction: register {offset:#x} never completed")

    def _command(self, bit: int, on: bool) -> None:
        """One GCMD bit set or cleared as Xen and Linux do: GSTS without its one-shot bits,
        the bit changed, written to GCMD; then GSTS polled until it follows."""
        sts = Regs.gcmd_from_gsts(self._hw.mmio_read(Regs.GSTS, 4))
        self._hw.mmio_write(Regs.GCMD, 4, (sts | bit) if on else (sts & ~bit))
        want = bit if on else 0
        self._poll(Regs.GSTS, 4, lambda v: v & bit == want)

    def set_root_table(self, maddr: int) -> None:
        """``iommu_set_root_entry``: RTADDR, then SRTP, then wait for RTPS."""
        self._hw.mmio_write(Regs.RTADDR, 8, maddr)
        self._command(Regs.SRTP, True)

    def enable_translation(self) -> None:
        """``iommu_enable_translation``: TE, then wait for TES."""
        self._command(Regs.TE, True)

    def disable_translation(self) -> None:
        """``iommu_disable_translation``: TE cleared, then wait for TES to clear."""
        self._command(Regs.TE, False)

    def bring_up(self, root_maddr: int) -> None:
        """Xen's order: the root table latched, every context-cache and IOTLB entry
        invalidated, translation enabled."""
        self.set_root_table(root_maddr)
        self.flush_context_global()
        self.flush_iotlb_global()
        self.enable_translation()

    def shut_down(self) -> None:
        """Translation off and no root table, before the tables are freed."""
        self.disable_translation()
        self.set_root_table(0)

    # ---- context-cache invalidation (CCMD)
    def _ccmd(self, value: int) -> None:
        self._hw.mmio_write(Regs.CCMD, 8, value)
        self._poll(Regs.CCMD, 8, Regs.ccmd_done)

    def flush_context_global(self) -> None:
        self._ccmd(Regs.ccmd(Regs.GLOBAL))

    def flush_context_domain(self, did: int) -> None:
        self._ccmd(Regs.ccmd(Regs.DOMAIN, did=did))

    def flush_context_device(self, did: int, sid: int, fm: int = 0) -> None:
        self._ccmd(Regs.ccmd(Regs.DEVICE, did=did, sid=sid, fm=fm))

    # ---- IOTLB invalidation (IVA, IOTLB at ECAP.IRO)
    def _iotlb_cmd(self, value: int) -> None:
        self._hw.mmio_write(self._iotlb, 8, value)
        self._poll(self._iotlb, 8, Regs.iotlb_done)

    def flush_iotlb_global(self) -> None:
        self._iotlb_cmd(Regs.iotlb(Regs.GLOBAL, cap=self._cap))

    def flush_iotlb_domain(self, did: int) -> None:
        self._iotlb_cmd(Regs.iotlb(Regs.DOMAIN, did=did, cap=self._cap))

    def flush_iotlb_page(self, did: int, addr: int, am: int) -> None:
        self._hw.mmio_write(self._iva, 8, Regs.iva(addr, am=am))
        self._iotlb_cmd(Regs.iotlb(Regs.PAGE, did=did, cap=self._cap))
