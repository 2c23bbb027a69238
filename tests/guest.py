"""A guest's VT-d driver in a few lines, for tests: it programs one unit through its register
page only (``mmio_read``/``mmio_write``) and its tables through memory writes.

Written from vtd-hardware.md §1.2-§1.4, §1.10-§1.13 and the bring-up of Linux's and Xen's
drivers (xen-driver.md §3.4, §4.5, §6.1, §6.2): every offset, bit and field is a literal of that
text, so the unit is checked against the architecture, not against its own vocabulary. The
queued invalidation and interrupt remapping parts write descriptors and interrupt remapping
table entries into memory as bytes composed here from those layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from vtdwalk import PhysMem, Remapper

# Register offsets (§1.2).
VER, CAP, ECAP, GCMD, GSTS, RTADDR, CCMD = 0x00, 0x08, 0x10, 0x18, 0x1C, 0x20, 0x28
FSTS, FECTL, FEDATA, FEADDR, FEUADDR = 0x34, 0x38, 0x3C, 0x40, 0x44
IQH, IQT, IQA, ICS, IECTL, IEDATA, IEADDR, IEUADDR = 0x80, 0x88, 0x90, 0x9C, 0xA0, 0xA4, 0xA8, 0xAC
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
# ICS (§1.12): invalidation wait descriptor complete.
IWC = 1 << 0
# FECTL.
IM, IP = 1 << 31, 1 << 30

# Invalidation granularities (§1.11): CCMD.CIRG / CAIG and IOTLB.IIRG / IAIG.
GLOBAL, DOMAIN, DEVICE, PAGE = 1, 2, 3, 3

POLLS = 1000

# ---- queued invalidation (§1.12, xen-driver.md §6.2): 128-bit descriptors as (lo, hi)
QI_CONTEXT, QI_IOTLB, QI_DEVICE_TLB, QI_IEC, QI_WAIT = 1, 2, 3, 4, 5


def qi_context(g: int, did: int = 0, sid: int = 0, fm: int = 0) -> tuple[int, int]:
    """Context-cache invalidate: G 5:4, DID 31:16, SID 47:32, FM 49:48."""
    return QI_CONTEXT | g << 4 | did << 16 | sid << 32 | fm << 48, 0


def qi_iotlb(
    g: int, did: int = 0, addr: int = 0, am: int = 0, ih: int = 0, dr: int = 0, dw: int = 0
) -> tuple[int, int]:
    """IOTLB invalidate: G 5:4, DW 6, DR 7, DID 31:16 / ADDR 63:12, IH 6, AM 5:0."""
    return QI_IOTLB | g << 4 | dw << 6 | dr << 7 | did << 16, addr | ih << 6 | am


def qi_iec(index: int | None = None, im: int = 0) -> tuple[int, int]:
    """Interrupt-entry-cache invalidate: G 4 (0 global, 1 index), IM 31:27, IIDX 47:32."""
    if index is None:
        return QI_IEC, 0
    return QI_IEC | 1 << 4 | im << 27 | index << 32, 0


def qi_wait(
    status: int = 0, data: int = 0, sw: bool = True, iflag: bool = False, fn: bool = False
) -> tuple[int, int]:
    """Invalidation wait: IF 4, SW 5, FN 6, status data 63:32 / status address."""
    return QI_WAIT | iflag << 4 | sw << 5 | fn << 6 | data << 32, status


# ---- interrupt remapping (§1.10, xen-driver.md §6.1)
def irte(
    vector: int,
    dst: int,
    sid: int = 0,
    sq: int = 0,
    svt: int = 0,
    p: int = 1,
    fpd: int = 0,
    dm: int = 0,
    rh: int = 0,
    tm: int = 0,
    dlm: int = 0,
) -> bytes:
    """A remapped-format IRTE's 16 bytes: P 0, FPD 1, DM 2, RH 3, TM 4, DLM 7:5, vector 23:16,
    DST 63:32 / SID 79:64, SQ 81:80, SVT 83:82."""
    lo = p | fpd << 1 | dm << 2 | rh << 3 | tm << 4 | dlm << 5 | vector << 16 | dst << 32
    hi = sid | sq << 16 | svt << 18
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")


def remappable_msi(handle: int, subhandle: int | None = None) -> tuple[int, int]:
    """A remappable-format MSI (address, data): 0xFEE in 31:20, handle[14:0] in 19:5, format 4,
    SHV 3, handle[15] in 2; data the sub-handle when SHV."""
    shv = subhandle is not None
    addr = 0xFEE << 20 | (handle & 0x7FFF) << 5 | 1 << 4 | shv << 3 | (handle >> 15) << 2
    return addr, subhandle or 0


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

    # ---- queued invalidation (§1.12): the queue in ``mem``, ``entries`` 128-bit descriptors
    def enable_queue(self, mem: PhysMem, base: int, qs: int) -> None:
        """IQA = base | QS (2^(QS+8) descriptors), IQT 0, QIE, wait for QIES."""
        self.mem = mem
        self.qbase = base
        self.qentries = 1 << (qs + 8)
        self.tail = 0
        self.wr64(IQA, base | qs)
        self.wr64(IQT, 0)
        self.command(QIE)

    def head(self) -> int:
        return self.rd64(IQH) >> 4 & 0x7FFF

    def post(self, desc: tuple[int, int]) -> int:
        """Write one descriptor at the tail and move IQT past it; returns its slot."""
        slot = self.tail
        nxt = (slot + 1) % self.qentries
        assert self.head() != nxt, "queue full"
        lo, hi = desc
        self.mem.write(self.qbase + 16 * slot, lo.to_bytes(8, "little") + hi.to_bytes(8, "little"))
        self.tail = nxt
        self.wr64(IQT, nxt << 4)
        return slot

    def qi(self, desc: tuple[int, int], status: int) -> None:
        """One descriptor, then a wait descriptor writing 1 over 0 at ``status``, polled."""
        self.mem.write(status, b"\0\0\0\0")
        self.post(desc)
        self.post(qi_wait(status, 1, fn=True))
        for _ in range(POLLS):
            if int.from_bytes(self.mem.read(status, 4), "little") == 1:
                return
            assert not self.rd32(FSTS) & IQE, "queue error"
        raise Timeout("wait descriptor never completed")

    # ---- interrupt remapping (§1.10)
    def enable_ir(self, base: int, s: int, eime: bool, status: int) -> None:
        """IRTA, SIRTP and wait, a global IEC invalidation, IRE and wait (Xen's order)."""
        self.wr64(IRTA, base | int(eime) << 11 | s)
        self.wr32(GCMD, (self.rd32(GSTS) & ~ONE_SHOT) | SIRTP)
        self.poll(GSTS, SIRTP, SIRTP)
        self.qi(qi_iec(), status)
        self.command(IRE)

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
