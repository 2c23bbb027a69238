"""A unit driven only as a guest drives it: its register page (``mmio_read``/``mmio_write``),
tables written into memory, and device DMA (``dma_read``/``dma_write``).

From reset to translated DMA (3- and 4-level tables, 2M and 1G pages, read-only pages), every
fault reason a DMA can meet with the fault recording register it leaves (§1.13), W1C clearing,
overflow, compression, FPD, fault events with IM/IP, stale IOTLB and context-cache entries
until each kind of register-based invalidation (§1.11), SRTP/TE toggles, untranslated DMA
before TE, and DMA split at page boundaries. Expected values come from vtd-hardware.md and the
tables the test writes, never from the unit.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from guest import (
    CFI,
    DEVICE,
    DOMAIN,
    FECTL,
    FSTS,
    GCMD,
    GLOBAL,
    GSTS,
    IM,
    IP,
    IRE,
    IRTA,
    ONE_SHOT,
    PAGE,
    PFO,
    PPF,
    QIE,
    RTADDR,
    SFL,
    SIRTP,
    SRTP,
    TE,
    WBF,
    Guest,
)
from reference.tables import R, Tables, W, level_index
from vtdwalk import DmaFault, Interrupt, PhysMem, Remapper

GIB = 1 << 30
MIB = 1 << 20
SID = 0x0308  # 03:01.0
DID = 5
#: QEMU's aw48 CAP (§1.3) with NFR 7: 3- and 4-level, 2M and 1G pages, PSI, MAMV 18, ESRTPS.
CAP = 0x80D2078C222F0606


def new_mem() -> PhysMem:
    # 4 GiB, sparse: room for a 1 GiB page at 1 GiB.
    return PhysMem([(0, 4 * GIB)])


class Machine:
    """A unit and its memory, the guest's tables and its driver."""

    def __init__(self, levels: int = 4, **unit_kw: object) -> None:
        self.mem = new_mem()
        self.unit = Remapper(self.mem, **unit_kw)  # type: ignore[arg-type]
        self.g = Guest(self.unit)
        self.t = Tables(self.mem)
        self.levels = levels
        self.top = self.t.page()
        self.ce = self.t.context(SID, self.top, levels, DID)

    def buf(self, fill: int, pages: int = 1) -> int:
        a = self.mem.alloc_pages(pages)
        self.mem.write(a, bytes([fill]) * (4096 * pages))
        return a

    def up(self) -> Machine:
        self.g.bring_up(self.t.root)
        return self


def fault(fn: Callable[[], object]) -> DmaFault:
    with pytest.raises(DmaFault) as ei:
        fn()
    return ei.value


# ---- reset and bring-up


@pytest.mark.parametrize("levels", [3, 4])
def test_reset_to_translated_dma(levels: int) -> None:
    m = Machine(levels)
    g = m.g
    assert g.rd32(GSTS) == 0
    assert g.rd64(RTADDR) == 0
    iova = 0x0000_0040_8060_4000 & ((1 << (30 + 9 * (levels - 2))) - 1)
    hpa = m.buf(0x11)
    m.t.map(m.top, levels, iova, hpa)
    # Before TE a DMA goes to memory untranslated: its address is the host address.
    scratch = m.buf(0)
    m.unit.dma_write(SID, scratch + 8, b"before TE")
    assert m.mem.read(scratch + 8, 9) == b"before TE"
    assert m.unit.dma_read(SID, scratch + 8, 9) == b"before TE"

    g.set_root(m.t.root)
    assert g.rd32(GSTS) == SRTP  # RTPS; TES still clear
    assert g.rd64(RTADDR) == m.t.root
    # SRTP alone does not translate.
    m.unit.dma_write(SID, scratch, b"still off")
    assert m.mem.read(scratch, 9) == b"still off"

    assert g.flush_context(GLOBAL) == GLOBAL
    assert g.flush_iotlb(GLOBAL) == GLOBAL
    g.command(TE)
    assert g.rd32(GSTS) == TE | SRTP

    m.unit.dma_write(SID, iova + 0x10, b"translated")
    assert m.mem.read(hpa + 0x10, 10) == b"translated"
    assert m.unit.dma_read(SID, iova + 0x10, 10) == b"translated"
    assert m.unit.dma_read(SID, iova, 4) == b"\x11" * 4
    # The scratch page is not mapped in the domain any more: a read now faults.
    f = fault(lambda: m.unit.dma_read(SID, scratch, 4))
    assert (f.reason, f.sid, f.iova, f.transferred) == (0x6, SID, scratch, 0)


@pytest.mark.parametrize("levels", [3, 4])
def test_dma_split_across_discontiguous_pages(levels: int) -> None:
    m = Machine(levels).up()
    a, b = m.buf(0xAA), m.buf(0xBB)
    m.t.map(m.top, levels, 0x10_0000, b)  # IOVA order is the reverse of host order
    m.t.map(m.top, levels, 0x10_1000, a)
    data = bytes(range(256)) * 32  # 8 KiB
    m.unit.dma_write(SID, 0x10_0800, data[:0x1000])
    assert m.mem.read(b + 0x800, 0x800) == data[:0x800]
    assert m.mem.read(a, 0x800) == data[0x800:0x1000]
    assert m.mem.read(a + 0x800, 4) == b"\xaa" * 4
    assert m.unit.dma_read(SID, 0x10_0800, 0x1000) == data[:0x1000]


@pytest.mark.parametrize("levels", [3, 4])
def test_2m_and_1g_pages(levels: int) -> None:
    m = Machine(levels).up()
    two_m = 4 * MIB  # host, 2 MiB aligned
    m.t.map(m.top, levels, 0x20_0000, two_m, leaf_level=2)
    one_g = 1 * GIB
    m.t.map(m.top, levels, 0x4000_0000, one_g, leaf_level=3)
    # A DMA across 4 KiB boundaries inside a superpage is one contiguous host range.
    data = bytes(range(256)) * 40
    m.unit.dma_write(SID, 0x20_0000 + 0x1F_F000 - 0x100, data[:0x1100])
    assert m.mem.read(two_m + 0x1F_F000 - 0x100, 0x1100) == data[:0x1100]
    m.unit.dma_write(SID, 0x4000_0000 + 0x123_4F00, data)
    assert m.mem.read(one_g + 0x123_4F00, len(data)) == data
    assert m.unit.dma_read(SID, 0x4000_0000 + 0x123_4F00, len(data)) == data
    # The end of the 2 MiB page is the end of the mapping.
    f = fault(lambda: m.unit.dma_write(SID, 0x3F_FF00, b"\x01" * 0x200))
    assert (f.reason, f.iova, f.transferred) == (0x5, 0x40_0000, 0x100)


def test_read_only_page() -> None:
    m = Machine().up()
    page = m.buf(0x5A)
    m.t.map(m.top, 4, 0x7000, page, perm=R)
    assert m.unit.dma_read(SID, 0x7000, 4) == b"\x5a" * 4
    f = fault(lambda: m.unit.dma_write(SID, 0x7004, b"no"))
    assert (f.reason, f.sid, f.iova, f.transferred) == (0x5, SID, 0x7004, 0)
    assert m.mem.read(page + 4, 2) == b"\x5a\x5a"
    # Cached from the read, the entry still refuses the write, and the fault is recorded.
    rec = m.g.frcd(0)
    assert rec.f and rec.reason == 0x5 and not rec.read and rec.fi == 0x7000


def test_dma_fault_transferred_counts_the_requests_before_the_fault() -> None:
    m = Machine().up()
    a, b = m.buf(0), m.buf(0)
    m.t.map(m.top, 4, 0x1000, a)
    m.t.map(m.top, 4, 0x2000, b, perm=R)
    f = fault(lambda: m.unit.dma_write(SID, 0x1800, b"\x77" * 0x1000))
    assert (f.reason, f.sid, f.iova, f.transferred) == (0x5, SID, 0x2000, 0x800)
    assert m.mem.read(a + 0x800, 0x800) == b"\x77" * 0x800
    assert m.mem.read(b, 0x800) == b"\x00" * 0x800
    # Three pages, the third unmapped: two pages' worth done.
    f = fault(lambda: m.unit.dma_read(SID, 0x1000, 0x3000))
    assert (f.reason, f.iova, f.transferred) == (0x6, 0x3000, 0x2000)
    rec = m.g.frcd(0)
    assert (rec.reason, rec.fi, rec.read) == (0x5, 0x2000, False)


# ---- every fault reason a DMA can meet


def _root_not_present(m: Machine) -> tuple[int, int]:
    return 0x0910, 0x1000  # bus 9 has no root entry


def _context_not_present(m: Machine) -> tuple[int, int]:
    return SID + 1, 0x1000  # same bus, no context entry


def _context_tt_reserved(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.ce, m.top | 3 << 2 | 1)  # TT 3
    return SID, 0x1000


def _context_aw_unsupported(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.ce + 8, 3 | DID << 8)  # AW 3: 5-level, not in SAGAW
    return SID, 0x1000


def _beyond_width(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.ce + 8, 1 | DID << 8)  # a 3-level, 39-bit context
    return SID, 1 << 39


def _pte_outside_memory(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.top + 8 * level_index(0x1000, 4), 0x10_0000_0000 | R | W)  # 64 GiB
    return SID, 0x1000


def _root_table_outside_memory(m: Machine) -> tuple[int, int]:
    m.g.set_root(0x20_0000_0000)  # 128 GiB: nothing there
    return SID, 0x1000


def _context_table_outside_memory(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.t.root + 16 * (SID >> 8), 0x10_0000_0000 | 1)
    return SID, 0x1000


def _root_reserved(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.t.root + 16 * (SID >> 8) + 8, 1)  # the high word must be 0
    return SID, 0x1000


def _context_reserved(m: Machine) -> tuple[int, int]:
    m.mem.write_u64(m.ce + 8, 2 | DID << 8 | 0x80)  # hi bit 7 is reserved
    return SID, 0x1000


def _pte_reserved(m: Machine) -> tuple[int, int]:
    m.t.map(m.top, 4, 0x1000, 0x8000 | 1 << 50)  # bits 51:48 reserved at a 48-bit width
    return SID, 0x1000


def _interrupt_range(m: Machine) -> tuple[int, int]:
    m.t.map(m.top, 4, 0x1000, 0xFEE0_0000)
    return SID, 0x1000


FAULTS = [
    (0x1, _root_not_present),
    (0x2, _context_not_present),
    (0x3, _context_tt_reserved),
    (0x3, _context_aw_unsupported),
    (0x4, _beyond_width),
    (0x7, _pte_outside_memory),
    (0x8, _root_table_outside_memory),
    (0x9, _context_table_outside_memory),
    (0xA, _root_reserved),
    (0xB, _context_reserved),
    (0xC, _pte_reserved),
    (0xE, _interrupt_range),
]
NAMES = {
    0x1: "ROOT_ENTRY_P",
    0x2: "CONTEXT_ENTRY_P",
    0x3: "CONTEXT_ENTRY_INV",
    0x4: "ADDR_BEYOND_MGAW",
    0x5: "WRITE",
    0x6: "READ",
    0x7: "PAGING_ENTRY_INV",
    0x8: "ROOT_TABLE_INV",
    0x9: "CONTEXT_TABLE_INV",
    0xA: "ROOT_ENTRY_RSVD",
    0xB: "CONTEXT_ENTRY_RSVD",
    0xC: "PAGING_ENTRY_RSVD",
    0xE: "INTERRUPT_ADDR",
}


def _check_record(m: Machine, reason: int, sid: int, iova: int, write: bool) -> None:
    rec = m.g.frcd(0)
    assert rec.f
    assert rec.reason == reason
    assert rec.sid == sid
    assert rec.fi == iova & ~0xFFF
    assert rec.read == (not write)
    # A request without PASID: PP clear and no PASID value; an untranslated request (AT 0).
    assert not rec.pp and rec.pv == 0 and rec.at == 0
    assert m.g.rd32(FSTS) == PPF  # FRI 0, no overflow
    assert all(not r.f for r in m.g.records()[1:])


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
@pytest.mark.parametrize(("reason", "setup"), FAULTS, ids=lambda x: getattr(x, "__name__", ""))
def test_fault_reason_and_its_record(
    reason: int, setup: Callable[[Machine], tuple[int, int]], write: bool
) -> None:
    m = Machine().up()
    sid, iova = setup(m)
    # Caches must not hide the rewritten tables.
    m.g.flush_context(GLOBAL)
    m.g.flush_iotlb(GLOBAL)
    iova += 0x123
    f = fault(
        (lambda: m.unit.dma_write(sid, iova, b"\x01\x02"))
        if write
        else (lambda: m.unit.dma_read(sid, iova, 2))
    )
    assert (f.reason, f.name, f.sid, f.iova, f.transferred) == (reason, NAMES[reason], sid, iova, 0)
    _check_record(m, reason, sid, iova, write)


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_permission_faults(write: bool) -> None:
    m = Machine().up()
    f = fault(
        (lambda: m.unit.dma_write(SID, 0x5678, b"x"))
        if write
        else (lambda: m.unit.dma_read(SID, 0x5678, 1))
    )
    reason = 0x5 if write else 0x6
    assert (f.reason, f.name, f.iova, f.transferred) == (reason, NAMES[reason], 0x5678, 0)
    _check_record(m, reason, SID, 0x5678, write)


# ---- fault recording: W1C, PPF, overflow, compression, FPD


def test_f_is_write_1_to_clear_and_ppf_follows() -> None:
    m = Machine().up()
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert m.g.frcd(0).f and m.g.rd32(FSTS) == PPF
    # Writing 0 changes nothing; PPF cannot be written.
    m.g.wr32(m.g.fro + 12, 0)
    m.g.wr32(FSTS, PPF)
    assert m.g.frcd(0).f and m.g.rd32(FSTS) == PPF
    lo = m.g.frcd(0).lo
    m.g.wr64(m.g.fro, 0)  # FI is read-only
    assert m.g.frcd(0).lo == lo
    m.g.clear_record(0)
    assert not m.g.frcd(0).f
    assert m.g.rd32(FSTS) & PPF == 0
    # A 64-bit write of bit 63 clears too.
    fault(lambda: m.unit.dma_read(SID + 1, 0x1000, 4))
    assert m.g.frcd(1).f and m.g.fri() == 1
    m.g.wr64(m.g.fro + 16 + 8, 1 << 63)
    assert not m.g.frcd(1).f and m.g.rd32(FSTS) & PPF == 0


def test_overflow_with_more_faults_than_records() -> None:
    m = Machine(fault_records=4).up()
    assert m.g.nfr == 4
    sids = [0x1000 + i for i in range(6)]  # bus 0x10: no root entry; distinct sources
    for s in sids:
        with pytest.raises(DmaFault):
            m.unit.dma_write(s, 0x1000 * s, b"x")
    recs = m.g.records()
    assert [r.sid for r in recs] == sids[:4]
    assert all(r.f and r.reason == 0x1 and not r.read for r in recs)
    assert [r.fi for r in recs] == [0x1000 * s for s in sids[:4]]
    assert m.g.rd32(FSTS) == PFO | PPF  # FRI 0: the first pending record
    # PFO is W1C; the records stay pending, so the next fault overflows again.
    m.g.wr32(FSTS, PFO)
    assert m.g.rd32(FSTS) == PPF
    fault(lambda: m.unit.dma_read(0x1100, 0, 1))
    assert m.g.rd32(FSTS) == PFO | PPF
    assert [r.sid for r in m.g.records()] == sids[:4]
    # Software services every record and the overflow; the ring goes on at index 0.
    for i in range(4):
        m.g.clear_record(i)
    m.g.wr32(FSTS, PFO)
    assert m.g.rd32(FSTS) == 0
    fault(lambda: m.unit.dma_read(0x1200, 0x5000, 1))
    assert m.g.frcd(0).sid == 0x1200 and m.g.frcd(0).read
    assert m.g.rd32(FSTS) == PPF and m.g.fri() == 0


def test_the_ring_and_fri() -> None:
    m = Machine(fault_records=3).up()
    fault(lambda: m.unit.dma_read(0x1000, 0, 1))
    fault(lambda: m.unit.dma_read(0x1001, 0, 1))
    m.g.clear_record(0)
    m.g.clear_record(1)
    # PPF went to 0; the next fault is recorded at index 2 and FRI names it.
    fault(lambda: m.unit.dma_read(0x1002, 0, 1))
    assert m.g.frcd(2).sid == 0x1002 and m.g.fri() == 2
    # ... and the next at index 0 (circular), while FRI stays at the first pending one.
    fault(lambda: m.unit.dma_read(0x1003, 0, 1))
    assert m.g.frcd(0).sid == 0x1003 and m.g.fri() == 2


def test_faults_from_the_same_source_are_compressed() -> None:
    m = Machine().up()
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    fault(lambda: m.unit.dma_write(SID, 0x9000, b"y"))  # same source, still pending
    recs = m.g.records()
    assert recs[0].f and recs[0].fi == 0x1000 and recs[0].reason == 0x6
    assert not any(r.f for r in recs[1:])
    assert m.g.rd32(FSTS) == PPF  # compressed, not an overflow
    m.g.clear_record(0)
    fault(lambda: m.unit.dma_write(SID, 0x9000, b"y"))
    assert m.g.frcd(1).f and m.g.frcd(1).reason == 0x5 and m.g.frcd(1).fi == 0x9000


def test_fpd_suppresses_qualified_faults_only() -> None:
    m = Machine(interrupt=None)
    m.mem.write_u64(m.ce, m.top | 2 | 1)  # FPD
    m.up()
    m.g.wr32(FECTL, 0)  # unmasked: a recorded fault would send an interrupt
    # Qualified: the DMA still fails, nothing is recorded or signalled.
    f = fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert f.reason == 0x6
    assert m.g.rd32(FSTS) == 0 and not any(r.f for r in m.g.records())
    assert m.unit.interrupts() == []
    # A context entry not present but with FPD set: 0x2 is qualified too.
    other = m.t.context(SID + 1, m.top, 4, DID, fpd=True)
    m.mem.write_u64(other, m.top | 2)  # FPD, P clear
    m.g.flush_context(GLOBAL)
    f = fault(lambda: m.unit.dma_write(SID + 1, 0x1000, b"z"))
    assert f.reason == 0x2 and m.g.rd32(FSTS) == 0
    # Not qualified: a reserved bit in the FPD context entry itself is recorded.
    m.mem.write_u64(m.ce + 8, 2 | DID << 8 | 0x80)
    m.g.flush_context(GLOBAL)
    f = fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert f.reason == 0xB
    rec = m.g.frcd(0)
    assert rec.f and rec.reason == 0xB and rec.sid == SID
    assert len(m.unit.interrupts()) == 1


# ---- fault events


def _event_unit() -> Machine:
    m = Machine().up()
    # Vector 0x21, fixed delivery, edge; destination APIC 3, physical, no redirection hint.
    m.g.program_fault_event(0x21, 0xFEE0_0000 | 3 << 12)
    return m


def test_a_fault_event_when_unmasked() -> None:
    m = _event_unit()
    assert m.g.rd32(FECTL) == IM  # reset: masked
    m.g.wr32(FECTL, 0)
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    (irq,) = m.unit.interrupts()
    assert isinstance(irq, Interrupt)
    assert (irq.address, irq.data) == (0xFEE0_3000, 0x21)
    assert (irq.destination, irq.vector, irq.delivery_mode, irq.trigger_mode) == (3, 0x21, 0, 0)
    assert irq.destination_mode == 0 and not irq.redirection_hint
    assert m.g.rd32(FECTL) == 0  # IP cleared once the message is sent
    assert m.unit.interrupts() == []  # drained
    # PPF already set: the next fault raises no event.
    fault(lambda: m.unit.dma_read(SID + 1, 0x1000, 4))
    assert m.unit.interrupts() == []
    # All serviced: the next fault is a new event.
    m.g.clear_record(0)
    m.g.clear_record(1)
    fault(lambda: m.unit.dma_read(SID, 0x2000, 4))
    assert len(m.unit.interrupts()) == 1


def test_message_fields() -> None:
    m = Machine().up()
    # Lowest-priority delivery (1), level-triggered assert, vector 0xEE; logical destination
    # 0x23 with the redirection hint.
    m.g.program_fault_event(
        0xEE | 1 << 8 | 1 << 14 | 1 << 15, 0xFEE0_0000 | 0x23 << 12 | 1 << 3 | 1 << 2
    )
    m.g.wr32(FECTL, 0)
    fault(lambda: m.unit.dma_write(SID, 0x1000, b"q"))
    (irq,) = m.unit.interrupts()
    assert irq.address == 0xFEE2_300C and irq.data == 0xEE | 1 << 8 | 1 << 14 | 1 << 15
    assert (irq.destination, irq.vector, irq.delivery_mode) == (0x23, 0xEE, 1)
    assert irq.trigger_mode == 1 and irq.destination_mode == 1 and irq.redirection_hint


def test_masked_event_is_pending_until_unmasked() -> None:
    m = _event_unit()
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert m.g.rd32(FECTL) == IM | IP
    assert m.unit.interrupts() == []
    m.g.wr32(FECTL, 0)  # unmask with IP set: the message goes now
    (irq,) = m.unit.interrupts()
    assert irq.vector == 0x21
    assert m.g.rd32(FECTL) == 0


def test_servicing_the_faults_clears_a_masked_pending_event() -> None:
    m = _event_unit()
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert m.g.rd32(FECTL) == IM | IP
    m.g.clear_record(0)  # PPF goes to 0: nothing is pending any more
    assert m.g.rd32(FECTL) == IM
    m.g.wr32(FECTL, 0)
    assert m.unit.interrupts() == []


def test_interrupt_callback() -> None:
    got: list[Interrupt] = []
    m = Machine(interrupt=got.append).up()
    m.g.program_fault_event(0x30, 0xFEE0_0000 | 1 << 12)
    m.g.wr32(FECTL, 0)
    fault(lambda: m.unit.dma_read(SID, 0x1000, 4))
    assert [i.vector for i in got] == [0x30] and got[0].destination == 1
    assert m.unit.interrupts() == []


# ---- stale IOTLB entries until a register-based invalidation


def _two_pages(m: Machine) -> tuple[list[int], list[int]]:
    """IOVA 0x40000 and 0x41000 mapped to pages of 0xA0/0xA1; B pages of 0xB0/0xB1 ready."""
    a = [m.buf(0xA0), m.buf(0xA1)]
    b = [m.buf(0xB0), m.buf(0xB1)]
    for i in range(2):
        m.t.map(m.top, 4, 0x40000 + 0x1000 * i, a[i])
    return a, b


def _first_bytes(m: Machine) -> tuple[int, int]:
    return m.unit.dma_read(SID, 0x40000, 1)[0], m.unit.dma_read(SID, 0x41000, 1)[0]


@pytest.mark.parametrize(
    ("iirg", "kw", "iaig", "fresh"),
    [
        (GLOBAL, {}, GLOBAL, (True, True)),
        (DOMAIN, {"did": DID}, DOMAIN, (True, True)),
        (DOMAIN, {"did": DID + 1}, DOMAIN, (False, False)),
        (PAGE, {"did": DID, "addr": 0x40000}, PAGE, (True, False)),
        (PAGE, {"did": DID, "addr": 0x41000}, PAGE, (False, True)),
        (PAGE, {"did": DID, "addr": 0x40000, "ih": 1}, PAGE, (True, False)),
        (PAGE, {"did": DID, "addr": 0x40000, "am": 1}, PAGE, (True, True)),
        (PAGE, {"did": DID + 1, "addr": 0x40000, "am": 1}, PAGE, (False, False)),
        (PAGE, {"did": DID, "addr": 0x0, "am": 9}, PAGE, (True, True)),  # 2 MiB at 0
    ],
    ids=[
        "global",
        "domain",
        "other-domain",
        "page0",
        "page1",
        "page0-ih",
        "am1",
        "am1-other",
        "am9",
    ],
)
def test_stale_iotlb_until_invalidated(
    iirg: int, kw: dict[str, int], iaig: int, fresh: tuple[bool, bool]
) -> None:
    m = Machine().up()
    _, b = _two_pages(m)
    assert _first_bytes(m) == (0xA0, 0xA1)
    for i in range(2):  # rewrite both PTEs without invalidation
        m.t.map(m.top, 4, 0x40000 + 0x1000 * i, b[i])
    assert _first_bytes(m) == (0xA0, 0xA1)  # stale: served from the IOTLB
    assert m.g.flush_context(GLOBAL) == GLOBAL  # the context cache is not the IOTLB
    assert _first_bytes(m) == (0xA0, 0xA1)
    assert m.g.flush_iotlb(iirg, **kw) == iaig
    want = tuple(0xB0 + i if fresh[i] else 0xA0 + i for i in range(2))
    assert _first_bytes(m) == want


def test_page_invalidation_without_cap_psi_is_domain_wide() -> None:
    m = Machine(cap=CAP & ~(1 << 39)).up()
    _, b = _two_pages(m)
    _first_bytes(m)
    for i in range(2):
        m.t.map(m.top, 4, 0x40000 + 0x1000 * i, b[i])
    assert m.g.flush_iotlb(PAGE, did=DID, addr=0x40000) == DOMAIN
    assert _first_bytes(m) == (0xB0, 0xB1)


def test_the_iotlb_register_reads_back_after_invalidation() -> None:
    m = Machine().up()
    m.g.flush_iotlb(DOMAIN, did=0x1234)
    # IVT cleared, IIRG and DID as written, IAIG = domain.
    assert m.g.rd64(m.g.iotlb) == 2 << 60 | 2 << 57 | 0x1234 << 32
    assert m.g.rd64(m.g.iva) == 0  # write-only
    # The high half alone triggers (a 32-bit guest writes low then high).
    m.g.wr32(m.g.iotlb, 0)
    m.g.wr32(m.g.iotlb + 4, 1 << 31 | 1 << 28)
    assert m.g.rd64(m.g.iotlb) == 1 << 60 | 1 << 57


# ---- stale context-cache entries until a register-based invalidation

FN = [0x18 | f for f in range(8)]  # 00:03.0 - 00:03.7


def _retarget(m: Machine, sids: list[int]) -> None:
    """Every sid in DID 1 over a table mapping 0x40000 to 0xA0 pages; cached; then each
    context entry rewritten to DID 2 over a table mapping it to 0xB0 pages."""
    a, b = m.buf(0xA0), m.buf(0xB0)
    t1, t2 = m.t.page(), m.t.page()
    m.t.map(t1, 4, 0x40000, a)
    m.t.map(t2, 4, 0x40000, b)
    for s in sids:
        m.t.context(s, t1, 4, 1)
    m.g.flush_context(GLOBAL)
    for s in sids:
        assert m.unit.dma_read(s, 0x40000, 1) == b"\xa0"
    for s in sids:
        m.t.context(s, t2, 4, 2)
    # Still the old context (and its DID's IOTLB entries), even after the IOTLB is flushed.
    m.g.flush_iotlb(GLOBAL)
    for s in sids:
        assert m.unit.dma_read(s, 0x40000, 1) == b"\xa0"


def _now(m: Machine, sids: list[int]) -> list[int]:
    return [m.unit.dma_read(s, 0x40000, 1)[0] for s in sids]


@pytest.mark.parametrize(
    ("cirg", "kw", "caig", "fresh"),
    [
        (GLOBAL, {}, GLOBAL, {0, 1, 3, 5}),
        (DOMAIN, {"did": 1}, DOMAIN, {0, 1, 3, 5}),
        (DOMAIN, {"did": 3}, DOMAIN, set()),
        (DEVICE, {"did": 1, "sid": FN[1]}, DEVICE, {1}),
        (DEVICE, {"did": 1, "sid": FN[1], "fm": 1}, DEVICE, {1, 5}),  # function bit 2 masked
        (DEVICE, {"did": 1, "sid": FN[1], "fm": 2}, DEVICE, {1, 3, 5}),  # bits 2:1
        (DEVICE, {"did": 1, "sid": FN[0], "fm": 3}, DEVICE, {0, 1, 3, 5}),  # bits 2:0
        (DEVICE, {"did": 1, "sid": FN[2]}, DEVICE, set()),
    ],
    ids=["global", "domain", "other-domain", "device", "fm1", "fm2", "fm3", "other-device"],
)
def test_stale_context_until_invalidated(
    cirg: int, kw: dict[str, int], caig: int, fresh: set[int]
) -> None:
    m = Machine().up()
    fns = [0, 1, 3, 5]
    sids = [FN[f] for f in fns]
    _retarget(m, sids)
    assert m.g.flush_context(cirg, **kw) == caig
    assert _now(m, sids) == [0xB0 if f in fresh else 0xA0 for f in fns]


def test_the_context_command_register_reads_back() -> None:
    m = Machine().up()
    m.g.flush_context(DEVICE, did=0x77, sid=0x1234, fm=3)
    # ICC cleared, CIRG and DID as written, CAIG = device; SID and FM are write-only.
    assert m.g.rd64(0x28) == 3 << 61 | 3 << 59 | 0x77
    # The high half alone triggers.
    m.g.wr32(0x28, 0)
    m.g.wr32(0x2C, 1 << 31 | 1 << 29)
    assert m.g.rd64(0x28) == 1 << 61 | 1 << 59


# ---- SRTP and TE


def _table(m: Machine, fill: int) -> int:
    """A root table whose SID maps 0x40000 to a page of ``fill`` bytes."""
    t = Tables(m.mem)
    top = t.page()
    t.context(SID, top, 4, DID)
    t.map(top, 4, 0x40000, m.buf(fill))
    return t.root


def test_rtaddr_is_latched_only_by_srtp() -> None:
    m = Machine()
    r1, r2 = _table(m, 0x01), _table(m, 0x02)
    m.g.bring_up(r1)
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x01"
    m.g.wr64(RTADDR, r2)
    assert m.g.rd64(RTADDR) == r2
    m.g.flush_context(GLOBAL)
    m.g.flush_iotlb(GLOBAL)
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x01"  # not latched yet
    # A GCMD write without SRTP (TE re-asserted, one-shot bits cleared) does not latch it.
    m.g.wr32(GCMD, (m.g.rd32(GSTS) & ~ONE_SHOT) | TE)
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x01"
    # SRTP latches it; with CAP.ESRTPS the caches are flushed by the SRTP itself.
    m.g.wr32(GCMD, (m.g.rd32(GSTS) & ~ONE_SHOT) | SRTP | TE)
    m.g.poll(GSTS, SRTP, SRTP)
    assert m.g.rd32(GSTS) == TE | SRTP
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x02"


def test_te_toggles() -> None:
    m = Machine()
    r1 = _table(m, 0x01)
    m.g.bring_up(r1)
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x01"
    m.g.command(TE, on=False)
    assert m.g.rd32(GSTS) == SRTP
    assert not m.mem.is_allocated(0x40000)
    m.mem.write(0x40000, b"\x99")  # untranslated: IOVA 0x40000 is host 0x40000
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x99"
    m.g.command(TE)
    assert m.g.rd32(GSTS) == TE | SRTP
    assert m.unit.dma_read(SID, 0x40000, 1) == b"\x01"


def test_other_command_bits() -> None:
    m = Machine()
    g = m.g
    # Without CAP.AFL, SFL and EAFL are ignored; without CAP.RWBF a write-buffer flush has
    # nothing to do: neither leaves a status bit.
    g.wr32(GCMD, SFL)
    g.wr32(GCMD, WBF)
    assert g.rd32(GSTS) == 0
    # SIRTP latches IRTA (one-shot status IRTPS), then IRE and CFI are level bits.
    g.wr64(IRTA, 0x1_0000 | 0xF)
    g.wr32(GCMD, SIRTP)
    g.poll(GSTS, SIRTP, SIRTP)
    g.command(IRE)
    g.command(CFI)
    assert g.rd32(GSTS) == SIRTP | IRE | CFI
    g.command(CFI, on=False)
    g.command(IRE, on=False)
    assert g.rd32(GSTS) == SIRTP
    # QIE is a level bit whose status follows the command (an empty queue).
    g.wr64(0x90, 0x2_0000)  # IQA
    g.command(QIE)
    assert g.rd32(GSTS) == SIRTP | QIE
    g.command(QIE, on=False)
    assert g.rd32(GSTS) == SIRTP


def test_gsts_and_gcmd_ignore_writes_to_gsts() -> None:
    m = Machine()
    m.g.wr32(GSTS, 0xFFFF_FFFF)
    assert m.g.rd32(GSTS) == 0
    assert m.g.rd32(GCMD) == 0


def test_interrupts_are_drained_once() -> None:
    m = _event_unit()
    m.g.wr32(FECTL, 0)
    fault(lambda: m.unit.dma_read(0x1000, 0, 1))
    m.g.clear_record(0)
    fault(lambda: m.unit.dma_read(0x1001, 0, 1))
    assert len(m.unit.interrupts()) == 2
    assert m.unit.interrupts() == []
