"""The native glue of a unit's interrupts and DMA errors: the ``interrupt`` callback or the
``interrupts()`` queue, the fields of an ``Interrupt``, ``DmaFault.transferred``, and the
arguments ``mmio_*`` / ``dma_*`` refuse. Expected values from vtd-hardware.md §1.2 and §1.13
and the x86 MSI format (address 0xFEE<dest>000 | RH << 3 | DM << 2; data vector | delivery
mode << 8 | trigger mode << 15)."""

from __future__ import annotations

import pytest

from vtdwalk import DmaFault, Interrupt, InvalidArgument, PhysMem, Remapper

GCMD, GSTS, RTADDR, FSTS, FECTL, FEDATA, FEADDR = 0x18, 0x1C, 0x20, 0x34, 0x38, 0x3C, 0x40
TE, SRTP = 1 << 31, 1 << 30
ROOT = 0x1000
SID = 0x0100  # bus 1: its root entry is not present


def unit(**kw: object) -> tuple[PhysMem, Remapper]:
    mem = PhysMem([(0, 1 << 24)])
    r = Remapper(mem, **kw)  # type: ignore[arg-type]
    r.mmio_write(RTADDR, 8, ROOT)
    r.mmio_write(GCMD, 4, SRTP)
    r.mmio_write(GCMD, 4, TE)
    # Destination 3, logical, redirection hint; vector 0x52, lowest priority, level.
    r.mmio_write(FEADDR, 4, 0xFEE0_300C)
    r.mmio_write(FEDATA, 4, 0x8152)
    return mem, r


def fault(r: Remapper, iova: int = 0x5000) -> DmaFault:
    with pytest.raises(DmaFault) as e:
        r.dma_read(SID, iova, 8)
    return e.value


def test_fault_event_queued_then_drained() -> None:
    _, r = unit()
    r.mmio_write(FECTL, 4, 0)
    f = fault(r)
    assert (f.reason, f.name, f.sid, f.iova, f.transferred) == (1, "ROOT_ENTRY_P", SID, 0x5000, 0)
    (irq,) = r.interrupts()
    assert isinstance(irq, Interrupt)
    assert (irq.address, irq.data) == (0xFEE0_300C, 0x8152)
    assert (irq.destination, irq.vector, irq.delivery_mode, irq.trigger_mode) == (3, 0x52, 1, 1)
    assert (irq.destination_mode, irq.redirection_hint) == (1, 1)
    assert r.interrupts() == []


def test_fault_event_to_the_callback_before_the_exception() -> None:
    seen: list[Interrupt] = []
    _, r = unit(interrupt=seen.append)
    fault(r)
    assert seen == []  # IM set at reset: IP pending, nothing sent
    assert r.mmio_read(FECTL, 4) == 0xC000_0000
    r.mmio_write(FECTL, 4, 0)  # unmasking sends the pending message
    assert [(i.address, i.data) for i in seen] == [(0xFEE0_300C, 0x8152)]
    assert r.mmio_read(FECTL, 4) == 0
    # Software clears the record (faults() reads and clears): the next fault is sent at once.
    assert [x.sid for x in r.faults()] == [SID]
    assert r.mmio_read(FSTS, 4) == 0
    fault(r)
    assert len(seen) == 2 and r.interrupts() == []


def test_callback_exception_propagates_after_the_access() -> None:
    def boom(_: Interrupt) -> None:
        raise RuntimeError("handler")

    _, r = unit(interrupt=boom)
    r.mmio_write(FECTL, 4, 0)
    with pytest.raises(RuntimeError, match="handler"):
        r.dma_read(SID, 0, 4)
    assert r.mmio_read(FSTS, 4) & 0x2  # the fault was recorded all the same


def test_interrupt_must_be_callable() -> None:
    with pytest.raises(InvalidArgument, match="interrupt"):
        Remapper(PhysMem([(0, 1 << 24)]), interrupt=3)  # type: ignore[arg-type]


def test_translation_off_is_untranslated_and_transferred_counts_bytes() -> None:
    mem = PhysMem([(0, 1 << 24)])
    r = Remapper(mem)
    assert r.mmio_read(GSTS, 4) == 0
    r.dma_write(SID, 0x7FFE, b"abcd")
    assert mem.read(0x7FFE, 4) == b"abcd" and r.dma_read(SID, 0x7FFE, 4) == b"abcd"
    r.mmio_write(RTADDR, 8, ROOT)
    r.mmio_write(GCMD, 4, SRTP | TE)
    # Both requests fault (no root entry); the first one ends the access.
    with pytest.raises(DmaFault) as e:
        r.dma_write(SID, 0x7FFE, b"wxyz")
    assert (e.value.iova, e.value.transferred, e.value.write) == (0x7FFE, 0, True)
    assert mem.read(0x7FFE, 4) == b"abcd"


def test_fault_records_default_from_cap_nfr() -> None:
    mem = PhysMem([(0, 1 << 24)])
    assert (Remapper(mem).cap >> 40) & 0xFF == 7
    cap = Remapper(mem).cap & ~(0xFF << 40) | 3 << 40
    assert (Remapper(mem, cap=cap).cap >> 40) & 0xFF == 3
    assert (Remapper(mem, cap=cap, fault_records=2).cap >> 40) & 0xFF == 1


@pytest.mark.parametrize(
    ("offset", "size", "what"),
    [(0x20, 2, "size"), (0x20, 1, "size"), (0x22, 4, "offset"), (0x24, 8, "offset"),
     (0x1000, 4, "offset"), (0xFFC, 8, "offset")],
)  # fmt: skip
def test_bad_register_accesses(offset: int, size: int, what: str) -> None:
    _, r = unit()
    with pytest.raises(InvalidArgument, match=what):
        r.mmio_read(offset, size)
    with pytest.raises(InvalidArgument, match=what):
        r.mmio_write(offset, size, 0)
    assert r.mmio_read(RTADDR, 8) == ROOT


def test_bad_dma_arguments() -> None:
    _, r = unit()
    with pytest.raises(InvalidArgument, match="iova"):
        r.dma_read(0, (1 << 64) - 2, 4)
    with pytest.raises(InvalidArgument, match="sid"):
        r.dma_read("zz", 0, 4)
    with pytest.raises(InvalidArgument, match="data"):
        r.dma_write(0, 0, [1, 2])  # type: ignore[arg-type]
