"""One unit's interrupt remapping table, the driver's side (Xen's ``ir_ctrl``, xen-driver.md
§6.1): 65536 entries in 256 pages allocated on the unit's node, entries handed out first fit
(``alloc_remap_entry``), each written as the 16 bytes of an :class:`~vtdwalk._core.Irte` and
followed by an index invalidation of the interrupt-entry cache through the unit's queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vtdwalk.errors import PlatformError

if TYPE_CHECKING:
    from vtdwalk._core import Irte, PhysMem
    from vtdwalk.driver.flush import UnitPort

__all__ = ["IRTE_SIZE", "IRT_ENTRIES", "IRT_PAGES", "IRT_SIZE", "RemapTable"]

#: IRTA.S of Xen's table: 2^(15 + 1) = 65536 entries.
IRT_SIZE = 15
IRT_ENTRIES = 1 << (IRT_SIZE + 1)
IRTE_SIZE = 16
#: Xen's IREMAP_PAGE_ORDER 8: 256 pages, 1 MiB.
IRT_PAGES = IRT_ENTRIES * IRTE_SIZE // 4096


class RemapTable:
    """One unit's interrupt remapping table: ``maddr`` (its 256 pages) and the entries in use.

    ``entries()`` lists what the driver wrote (index -> Irte); the table in memory is the
    hardware's to read."""

    def __init__(self, mem: PhysMem, maddr: int, port: UnitPort) -> None:
        self.mem = mem
        self.maddr = maddr
        self._port = port
        self._used = bytearray(IRT_ENTRIES)
        self._entries: dict[int, Irte] = {}

    def alloc(self, nr: int = 1) -> int:
        """Xen's ``alloc_remap_entry``: the first ``nr`` contiguous free entries."""
        at = self._used.find(bytes(nr))
        if at < 0:
            raise PlatformError(f"{self._port.name}: no {nr} free interrupt remapping entries")
        self._used[at : at + nr] = b"\1" * nr
        return at

    def write(self, index: int, irte: Irte) -> None:
        """The entry's 16 bytes written, then its interrupt-entry-cache entry invalidated."""
        self.mem.write(self.maddr + index * IRTE_SIZE, irte.to_bytes())
        self._entries[index] = irte
        self._port.flush_iec_index(index)

    def free(self, index: int, nr: int = 1) -> None:
        """Zero ``nr`` entries from ``index`` (each invalidated) and give them back."""
        for i in range(index, index + nr):
            self.mem.write(self.maddr + i * IRTE_SIZE, bytes(IRTE_SIZE))
            self._entries.pop(i, None)
            self._port.flush_iec_index(i)
        self._used[index : index + nr] = bytes(nr)

    def entries(self) -> dict[int, Irte]:
        """Index -> the entry the driver wrote there, for entries in use."""
        return dict(sorted(self._entries.items()))

    def __len__(self) -> int:
        return len(self._entries)
