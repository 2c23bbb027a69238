"""A guest's VT-d driver in a few lines, for tests: it programs one unit through its register
page only (``mmio_read``/``mmio_write``) and its tables through memory writes.

Written from vtd-hardware.md §1.2-§1.4, §1.11 and §1.13 and the bring-up of Linux's and Xen's
drivers (xen-driver.md §3.4, §4.5): every offset, bit and field is a literal of that text, so
the unit is checked against the architecture, not against its own vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from vtdwalk import Remapper

# Register offsets (§1.2).
VER, CAP, ECAP, GCMD, GSTS, RTADDR, CCMD = 0x00, 0x08, 0x10, 0x18, 0x1C, 0x20, 0x28
FSTS, FECTL, FEDATA, FEADDR, FEUADDR = 0x34, 0x38, 0x3C, 0x40, 0x44
IRTA = 0xB8

# GCMD / GSTS bits (§1.4).
TE, SRTP, SFL, EAFL, WBF, QIE, IRE, SIRTP, CFI = (
    1 << b for b in (31, 30, 29, 28, 27, 26, 25, 24, 23)
)
#: The one-shot command bits (SRTP, SFL, WBF, SIRTP): software clears them in the value it
#: reads from GSTS before writing GCMD, as Linux does (``& 0x96FFFFFF``).
ONE_SHOT = SRTP | SFL | WBF | SIRTP

# FSTS (§1.13).
PFO, PPF, IQE = 1 << 0, 1 << 1, 1 << 4
# FECTL.
IM, IP = 1 << 31, 1 << 30

# Invalidation granularities (§1.11): CCMD.CIRG / CAIG and IOTLB.IIRG / IAIG.
GLOBAL, DOMAIN, DEVICE, PAGE = 1, 2, 3, 3

POLLS = 1000


class Timeout(AssertionError):
    """The unit did not complete a command (Xen: 'DMAR hardware malfunction')."""


@dataclass(frozen=True)
class Frcd:
    """A fault recording register's two words, decoded from the §1.13 layout."""

    lo: int
    hi: int

    @property
    def f(self) -> bool:
        return bool(self.hi >> 63 & 1)

    @property
    def read(self) -> bool:  # T: set for a read
        return bool(self.hi >> 62 & 1)

    @property
    def reason(self) -> int:  # FR
        return self.hi >> 32 & 0xFF

    @property
    def sid(self) -> int:
        return self.hi & 0xFFFF

    @property
    def pp(self) -> bool:  # PASID present
        return bool(self.hi >> 31 & 1)

    @property
    def pv(self) -> int:  # PASID value, bits 59:40
        return self.hi >> 40 & 0xFFFFF

    @property
    def at(self) -> int:  # address type, bits 61:60
        return self.hi >> 60 & 0x3

    @property
    def fi(self) -> int:  # fault information: the page address
        return self.lo & ~0xFFF & ((1 << 64) - 1)


class Guest:
    """A guest's driver for one unit."""

    def __init__(self, unit: Remapper) -> None:
        self.u = unit
        cap = self.rd64(CAP)
        ecap = self.rd64(ECAP)
        self.cap, self.ecap = cap, ecap
        self.iva = (ecap >> 8 & 0x3FF) * 16  # ECAP.IRO
        self.iotlb = self.iva + 8
        self.fro = (cap >> 24 & 0x3FF) * 16  # CAP.FRO
        self.nfr = (cap >> 40 & 0xFF) + 1  # CAP.NFR

    # ---- register access
    def rd32(self, off: int) -> int:
        return self.u.mmio_read(off, 4)

    def rd64(self, off: int) -> int:
        return self.u.mmio_read(off, 8)

    def wr32(self, off: int, v: int) -> None:
        self.u.mmio_write(off, 4, v)

    def wr64(self, off: int, v: int) -> None:
        self.u.mmio_write(off, 8, v)

    def poll(self, off: int, mask: int, want: int, size: int = 4) -> int:
        for _ in range(POLLS):
            v = self.u.mmio_read(off, size)
            if v & mask == want:
                return v
        raise Timeout(f"register {off:#x}: {v:#x} & {mask:#x} never became {want:#x}")

    # ---- global command (§1.4)
    def command(self, bit: int, on: bool = True) -> None:
        """Set or clear one GCMD bit the way Linux does, and wait for GSTS to follow."""
        sts = self.rd32(GSTS) & ~ONE_SHOT
        self.wr32(GCMD, (sts | bit) if on else (sts & ~bit))
        self.poll(GSTS, bit, bit if on else 0)

    def set_root(self, rta: int) -> None:
        """RTADDR, then SRTP, then wait for RTPS (``iommu_set_root_entry``)."""
        self.wr64(RTADDR, rta)
        self.wr32(GCMD, (self.rd32(GSTS) & ~ONE_SHOT) | SRTP)
        self.poll(GSTS, SRTP, SRTP)

    def flush_context(self, cirg: int, did: int = 0, sid: int = 0, fm: int = 0) -> int:
        """A context-cache invalidation through CCMD; returns CAIG."""
        self.wr64(CCMD, 1 << 63 | cirg << 61 | fm << 32 | sid << 16 | did)
        v = self.poll(CCMD, 1 << 63, 0, size=8)
        return v >> 59 & 3

    def flush_iotlb(self, iirg: int, did: int = 0, addr: int = 0, am: int = 0, ih: int = 0) -> int:
        """An IOTLB invalidation through the IOTLB register (IVA first for a page); returns
        IAIG."""
        if iirg == PAGE:
            self.wr64(self.iva, addr | ih << 6 | am)
        self.wr64(self.iotlb, 1 << 63 | iirg << 60 | did << 32)
        v = self.poll(self.iotlb, 1 << 63, 0, size=8)
        return v >> 57 & 3

    def bring_up(self, rta: int) -> None:
        """Xen's order: root table, global context and IOTLB invalidation, then TE."""
        self.set_root(rta)
        assert self.flush_context(GLOBAL) == GLOBAL
        assert self.flush_iotlb(GLOBAL) == GLOBAL
        self.command(TE)

    # ---- faults (§1.13)
    def frcd(self, i: int) -> Frcd:
        base = self.fro + 16 * i
        return Frcd(self.rd64(base), self.rd64(base + 8))

    def records(self) -> list[Frcd]:
        return [self.frcd(i) for i in range(self.nfr)]

    def clear_record(self, i: int) -> None:
        """Write 1 to F (bit 127 of the record: bit 31 of its last dword)."""
        self.wr32(self.fro + 16 * i + 12, 1 << 31)

    def fri(self) -> int:
        return self.rd32(FSTS) >> 8 & 0xFF

    def program_fault_event(self, data: int, addr: int, uaddr: int = 0) -> None:
        self.wr32(FEDATA, data)
        self.wr32(FEADDR, addr)
        self.wr32(FEUADDR, uaddr)
