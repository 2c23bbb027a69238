"""A unit from reset to translated DMA and remapped interrupts, driven only as a guest drives
it: registers (``mmio_read``/``mmio_write``), queued invalidation (descriptors written into
memory, IQT moved, wait descriptors' status writes polled) and memory (tables, interrupt
remapping entries), then torn down.

Every offset, bit and layout comes from vtd-hardware.md §1.2-§1.4, §1.10-§1.12 and Xen's
bring-up order (xen-driver.md §3.4, §6.1, §6.2) through ``guest.py``; expected values come
from that text and the tables the test writes, never from the unit.
"""

from __future__ import annotations

import pytest

from guest import (
    DOMAIN,
    FSTS,
    GCMD,
    GLOBAL,
    GSTS,
    IQA,
    IQE,
    IQH,
    IQT,
    IRE,
    IRTA,
    ONE_SHOT,
    PAGE,
    QIE,
    RTADDR,
    SIRTP,
    SRTP,
    TE,
    Guest,
    irte,
    qi_context,
    qi_iec,
    qi_iotlb,
    qi_wait,
    remappable_msi,
)
from reference.tables import Tables
from vtdwalk import InterruptFault, PhysMem, Remapper

GIB = 1 << 30
SID = 0x0308  # 03:01.0
OTHER = 0x0310  # 03:02.0
DID = 5
IOVA = 0x40_8060_4000
#: A one-page table: S = 7, 2^(7 + 1) = 256 entries.
IRT_S = 7
HANDLE = 5


class Box:
    """A unit in reset, its memory, the guest's tables and its driver."""

    def __init__(self) -> None:
        self.mem = PhysMem([(0, 4 * GIB)])
        self.unit = Remapper(self.mem)  # QEMU's ECAP: QI and IR (§1.3)
        self.g = Guest(self.unit)
        self.t = Tables(self.mem)
        self.top = self.t.page()
        self.t.context(SID, self.top, 4, DID)
        self.status = self.mem.alloc_pages(1)
        self.queue = self.mem.alloc_pages(1)  # QS 0: 256 descriptors
        self.irt = self.mem.alloc_pages(1)

    def buf(self, fill: int) -> int:
        a = self.mem.alloc_pages(1)
        self.mem.write(a, bytes([fill]) * 4096)
        return a

    def qi(self, desc: tuple[int, int]) -> None:
        self.g.qi(desc, self.status)

    def up(self) -> Box:
        """QI, IR, root table, queued global invalidations, TE: Xen's order."""
        g = self.g
        g.enable_queue(self.mem, self.queue, 0)
        g.enable_ir(self.irt, IRT_S, False, self.status)
        g.set_root(self.t.root)
        self.qi(qi_context(GLOBAL))
        self.qi(qi_iotlb(GLOBAL))
        g.command(TE)
        return self


def test_reset_to_translated_dma_and_remapped_interrupts_then_teardown() -> None:
    b = Box()
    g, mem, unit = b.g, b.mem, b.unit
    assert g.ecap >> 1 & 1 and g.ecap >> 3 & 1  # ECAP.QI, ECAP.IR
    assert g.rd32(GSTS) == 0
    assert (g.rd64(IQH), g.rd64(IQT), g.rd64(IQA), g.rd64(IRTA)) == (0, 0, 0, 0)

    # enable_qinval: IQA, IQT 0, QIE -> QIES.
    g.enable_queue(mem, b.queue, 0)
    assert g.rd32(GSTS) == QIE
    assert g.rd64(IQA) == b.queue
    # The entry for HANDLE: vector 0x41 to APIC 3 (xAPIC: DST = id << 8), SID verified.
    mem.write(b.irt + 16 * HANDLE, irte(0x41, 3 << 8, sid=SID, svt=1))
    # enable_intremap: IRTA, SIRTP -> IRTPS, global IEC invalidation, IRE -> IRES.
    g.enable_ir(b.irt, IRT_S, False, b.status)
    assert g.rd32(GSTS) == QIE | IRE | SIRTP
    assert g.rd64(IRTA) == b.irt | IRT_S
    # Two descriptors so far (IEC + its wait): the head followed the tail.
    assert g.rd64(IQH) == g.rd64(IQT) == 2 << 4

    # The root table, queued global invalidations, TE.
    g.set_root(b.t.root)
    b.qi(qi_context(GLOBAL))
    b.qi(qi_iotlb(GLOBAL))
    g.command(TE)
    assert g.rd32(GSTS) == QIE | IRE | SIRTP | SRTP | TE
    assert g.rd64(RTADDR) == b.t.root
    assert g.rd64(IQH) == g.rd64(IQT) == 6 << 4

    # Translated DMA.
    hpa = b.buf(0x11)
    b.t.map(b.top, 4, IOVA, hpa)
    unit.dma_write(SID, IOVA + 0x10, b"queued")
    assert mem.read(hpa + 0x10, 6) == b"queued"

    # A remapped interrupt: the handle's entry decides vector and destination.
    addr, data = remappable_msi(HANDLE, subhandle=0)
    before = len(unit.interrupts())
    i = unit.msi(SID, addr, data)
    assert (i.vector, i.destination, i.sid, i.index) == (0x41, 3, SID, HANDLE)
    assert (i.delivery_mode, i.trigger_mode, i.destination_mode) == (0, 0, 0)
    queued = unit.interrupts()
    assert len(queued) == before + 1 and queued[-1].vector == 0x41
    # A device DMA-writing the same message to the interrupt window is an interrupt too.
    unit.dma_write(SID, addr, data.to_bytes(4, "little"))
    assert unit.interrupts()[-1].index == HANDLE
    # The same handle from another requester fails the SID check (SVT 1): 0x26.
    with pytest.raises(InterruptFault) as e:
        unit.msi(OTHER, addr, data)
    assert (e.value.reason, e.value.sid, e.value.index) == (0x26, OTHER, HANDLE)

    # Teardown: IRE off, the queue drained then QIE off, TE off, no root table.
    g.command(IRE, False)
    assert not g.rd32(GSTS) & IRE
    assert g.rd64(IQH) == g.rd64(IQT)
    g.command(QIE, False)
    assert not g.rd32(GSTS) & QIE
    # Register-based invalidation works again once the queue is off.
    assert g.flush_context(GLOBAL) == GLOBAL
    assert g.flush_iotlb(GLOBAL) == GLOBAL
    g.command(TE, False)
    g.wr64(RTADDR, 0)
    g.wr32(GCMD, (g.rd32(GSTS) & ~ONE_SHOT) | SRTP)
    g.poll(GSTS, SRTP, SRTP)
    assert g.rd32(GSTS) & (TE | QIE | IRE) == 0
    # Untranslated again: the host address is the DMA address.
    scratch = b.buf(0)
    unit.dma_write(SID, scratch, b"off")
    assert mem.read(scratch, 3) == b"off"


def test_interrupt_entry_cache_is_stale_until_an_index_invalidation() -> None:
    b = Box()
    b.mem.write(b.irt + 16 * HANDLE, irte(0x41, 3 << 8, sid=SID, svt=1))
    b.up()
    addr, data = remappable_msi(HANDLE, subhandle=0)
    assert b.unit.msi(SID, addr, data).vector == 0x41
    b.mem.write(b.irt + 16 * HANDLE, irte(0x52, 4 << 8, sid=SID, svt=1))
    assert b.unit.msi(SID, addr, data).vector == 0x41  # served from the cache
    b.qi(qi_iec(HANDLE + 1))  # another index: still stale
    assert b.unit.msi(SID, addr, data).vector == 0x41
    b.qi(qi_iec(HANDLE))
    i = b.unit.msi(SID, addr, data)
    assert (i.vector, i.destination) == (0x52, 4)


def test_iotlb_is_stale_until_a_queued_page_invalidation() -> None:
    b = Box().up()
    old, new = b.buf(0xA0), b.buf(0xB0)
    b.t.map(b.top, 4, IOVA, old)
    assert b.unit.dma_read(SID, IOVA, 1) == b"\xa0"
    b.t.map(b.top, 4, IOVA, new)
    assert b.unit.dma_read(SID, IOVA, 1) == b"\xa0"  # the IOTLB's entry
    b.qi(qi_iotlb(PAGE, DID + 1, IOVA))  # another domain: no effect
    assert b.unit.dma_read(SID, IOVA, 1) == b"\xa0"
    b.qi(qi_iotlb(PAGE, DID, IOVA))
    assert b.unit.dma_read(SID, IOVA, 1) == b"\xb0"
    b.t.map(b.top, 4, IOVA, old)
    b.qi(qi_iotlb(DOMAIN, DID))
    assert b.unit.dma_read(SID, IOVA, 1) == b"\xa0"


def test_the_queue_wraps_around() -> None:
    b = Box().up()
    g = b.g
    start = g.rd64(IQH) >> 4
    n = 200  # 400 descriptors through a 256-entry queue
    for _ in range(n):
        b.qi(qi_iotlb(GLOBAL))
        assert g.rd64(IQH) == g.rd64(IQT)
    assert g.rd64(IQT) >> 4 == (start + 2 * n) % 256


def test_a_bad_descriptor_stops_the_queue_at_it() -> None:
    b = Box().up()
    g = b.g
    head = g.rd64(IQH) >> 4
    g.post((0, 0))  # type 0 is no descriptor
    g.post(qi_wait(b.status, 7))
    assert g.rd32(FSTS) & IQE
    assert g.rd64(IQH) >> 4 == head  # left at the bad descriptor
    assert b.mem.read(b.status, 4) != (7).to_bytes(4, "little")  # nothing after it ran
    # Software's part: skip it (IQT back to the head), clear IQE (write 1).
    g.tail = head
    g.wr64(IQT, head << 4)
    g.wr32(FSTS, IQE)
    assert not g.rd32(FSTS) & IQE
    b.qi(qi_iotlb(GLOBAL))
    assert g.rd64(IQH) == g.rd64(IQT)
