"""The invalidation queue of a unit, driven through its registers and memory only.

Expected values come from vtd-hardware.md §1.2 (IQH 0x80, IQT 0x88, IQA 0x90, ICS 0x9C, IECTL
0xA0..0xAC; FSTS.IQE bit 4), §1.4 (GCMD.QIE bit 26), §1.12 (descriptor layouts) and §1.13
(fault events), written out here as numbers; ``Descriptor`` is checked against the same
layouts before it is used to fill queues. The Hypothesis test compares the IOTLB after random
descriptor sequences with a small reference model of what each descriptor covers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtdwalk import (
    Descriptor,
    DeviceTlbInvalidation,
    Ecap,
    InvalidArgument,
    PhysMem,
    Regs,
    Remapper,
)

GCMD, GSTS, RTADDR, FSTS, FECTL = 0x18, 0x1C, 0x20, 0x34, 0x38
IQH, IQT, IQA, ICS, IECTL, IEDATA, IEADDR = 0x80, 0x88, 0x90, 0x9C, 0xA0, 0xA4, 0xA8
IOTLB_REG = 0xF8
TE, SRTP, QIE = 1 << 31, 1 << 30, 1 << 26
IQE, IWC, IM, IP = 1 << 4, 1, 1 << 31, 1 << 30
ROOT, CTX, L4, L3, L2, L1 = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000
QUEUE, STATUS = 0x80_0000, 0x90_0000
SID, DID = 0x0008, 42  # 00:01.0 in domain 42
PAGES = 16


def machine(ecap: int | None = None) -> tuple[PhysMem, Remapper]:
    """IOVA page i -> 0x10_0000 + i pages for 00:01.0 (domain 42); translation on; a queue
    of 256 128-bit descriptors at QUEUE, enabled."""
    mem = PhysMem([(0, 1 << 24)])
    mem.write_u64(ROOT, CTX | 1)
    mem.write_u64(CTX + 16 * (SID & 0xFF), L4 | 1)
    mem.write_u64(CTX + 16 * (SID & 0xFF) + 8, 2 | DID << 8)
    mem.write_u64(L4, L3 | 3)
    mem.write_u64(L3, L2 | 3)
    mem.write_u64(L2, L1 | 3)
    for i in range(PAGES):
        mem.write_u64(L1 + 8 * i, (0x10_0000 + (i << 12)) | 3)
    kw = {} if ecap is None else {"ecap": ecap}
    r = Remapper(mem, **kw)  # type: ignore[arg-type]
    r.mmio_write(RTADDR, 8, ROOT)
    r.mmio_write(GCMD, 4, SRTP)
    r.mmio_write(GCMD, 4, TE)
    r.mmio_write(IQA, 8, QUEUE)  # QS 0: one page, 256 descriptors
    r.mmio_write(GCMD, 4, TE | QIE)
    assert r.mmio_read(GSTS, 4) & QIE
    return mem, r


def submit(mem: PhysMem, r: Remapper, at: int, descs: list[tuple[int, int]]) -> int:
    """Write descriptors from ring index ``at`` and move the tail past them."""
    i = at
    for lo, hi in descs:
        mem.write_u64(QUEUE + 16 * i, lo)
        mem.write_u64(QUEUE + 16 * i + 8, hi)
        i = (i + 1) % 256
    r.mmio_write(IQT, 8, i << 4)
    return i


def words(d: Descriptor) -> tuple[int, int]:
    return d.lo, d.hi


def head(r: Remapper) -> int:
    return r.mmio_read(IQH, 8) >> 4


def iqe(r: Remapper) -> bool:
    return bool(r.mmio_read(FSTS, 4) & IQE)


def hpa(r: Remapper, page: int) -> int:
    return r.translate(SID, page << 12).hpa


def stale_all(mem: PhysMem, r: Remapper) -> None:
    """Cache every page, then move every mapping: a cached page still gives the old frame."""
    for i in range(PAGES):
        assert hpa(r, i) == 0x10_0000 + (i << 12)
    for i in range(PAGES):
        mem.write_u64(L1 + 8 * i, (0x70_0000 + (i << 12)) | 3)


OLD = [0x10_0000 + (i << 12) for i in range(PAGES)]
NEW = [0x70_0000 + (i << 12) for i in range(PAGES)]


# ---- the descriptor vocabulary against §1.12


def test_descriptor_layouts() -> None:
    d = Descriptor.context_cache("device", did=0x1234, sid="ab:0d.5", fm=2)
    # type 1, G 3 << 4, DID << 16, SID << 32 (ab:0d.5 -> 0xAB6D), FM << 48
    assert words(d) == (1 | 3 << 4 | 0x1234 << 16 | 0xAB6D << 32 | 2 << 48, 0)
    assert (d.kind, d.type, d.granularity, d.did, d.sid, d.fm) == (
        "context_cache",
        1,
        "device",
        0x1234,
        0xAB6D,
        2,
    )
    d = Descriptor.iotlb("page", did=7, addr=0x1234_5000, am=3, ih=True, dr=True, dw=True)
    assert words(d) == (2 | 3 << 4 | 1 << 6 | 1 << 7 | 7 << 16, 0x1234_5000 | 1 << 6 | 3)
    assert (d.granularity, d.addr, d.am, d.ih, d.dr, d.dw) == ("page", 0x1234_5000, 3, 1, 1, 1)
    d = Descriptor.device_tlb(0x0310, 0x7000, size=True, qdep=8, pfsid=0xABC5)
    assert words(d) == (3 | 5 << 12 | 8 << 16 | 0x0310 << 32 | 0xABC << 52, 0x7000 | 1)
    assert (d.sid, d.addr, d.size, d.qdep, d.pfsid) == (0x0310, 0x7000, True, 8, 0xABC5)
    d = Descriptor.iec(index=0x40, im=2)
    assert words(d) == (4 | 1 << 4 | 2 << 27 | 0x40 << 32, 0)
    assert (d.index, d.im) == (0x40, 2)
    assert words(Descriptor.iec()) == (4, 0)
    assert Descriptor.iec().index is None
    d = Descriptor.wait(status_addr=0x8004, status_data=0xCAFE, interrupt=True, fence=True)
    assert words(d) == (5 | 1 << 4 | 1 << 5 | 1 << 6 | 0xCAFE << 32, 0x8004)
    assert (d.status_addr, d.status_data, d.interrupt, d.fence) == (0x8004, 0xCAFE, True, True)
    assert Descriptor.wait(interrupt=True).status_addr is None
    assert d.to_bytes() == (d.lo | d.hi << 64).to_bytes(16, "little")
    assert d.to_bytes(32) == d.to_bytes() + bytes(16)
    # Decoding gives back the same descriptor; fields of other types are None.
    for x in (d, Descriptor.iec(), Descriptor.iotlb("global")):
        assert Descriptor.decode(x.lo, x.hi) == x
    assert Descriptor.iec().did is None and Descriptor.iotlb("global").index is None


@pytest.mark.parametrize(
    ("lo", "hi", "kind", "error"),
    [
        (0, 0, "invalid", "unknown type"),
        (10, 0, "invalid", "unknown type"),
        (0x200 | 2 | 1 << 4, 0, "invalid", "unknown type"),  # bits 11:9 are type bits
        (6, 0, "pasid_iotlb", None),
        (7, 0, "pasid_cache", None),
        (8, 0, "pasid_device_tlb", None),
        (9, 0, "page_group_response", None),
        (1 | 1 << 4, 1, "invalid", "reserved bits set"),  # context-cache: hi reserved
        (2, 0, "invalid", "reserved bits set"),  # IOTLB granularity 0
        (2 | 1 << 4 | 1 << 8, 0, "invalid", "reserved bits set"),
        (2 | 1 << 4, 1 << 7, "invalid", "reserved bits set"),
        (4 | 1 << 5, 0, "invalid", "reserved bits set"),
        (5, 1, "invalid", "reserved bits set"),  # status address bits 1:0
    ],
)
def test_decode_refusals(lo: int, hi: int, kind: str, error: str | None) -> None:
    d = Descriptor.decode(lo, hi)
    assert (d.kind, d.error, d.lo, d.hi) == (kind, error, lo, hi)


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda: Descriptor.iotlb("pages"), "granularity"),
        (lambda: Descriptor.context_cache("page"), "granularity"),
        (lambda: Descriptor.iotlb("page", addr=0x1001), "addr"),
        (lambda: Descriptor.iotlb("page", am=64), "am"),
        (lambda: Descriptor.iotlb("domain", did=1 << 16), "did"),
        (lambda: Descriptor.context_cache("device", fm=4), "fm"),
        (lambda: Descriptor.device_tlb(0, 0, qdep=32), "qdep"),
        (lambda: Descriptor.device_tlb("zz", 0), "sid"),
        (lambda: Descriptor.iec(index=1 << 16), "index"),
        (lambda: Descriptor.iec(im=32), "im"),
        (lambda: Descriptor.wait(status_addr=0x1002), "status_addr"),
        (lambda: Descriptor.wait(status_data=1 << 32), "status_data"),
        (lambda: Descriptor.iec().to_bytes(24), "width"),
        (lambda: Regs.iqa(0x1800, 0), "base"),
        (lambda: Regs.iqa(0x1000, 8), "qs"),
        (lambda: Regs.iqt(1 << 15), "index"),
        (lambda: Regs.iqt(1 << 14, dw=True), "index"),
    ],
)
def test_bad_arguments_name_the_argument(call: object, arg: str) -> None:
    with pytest.raises(InvalidArgument, match=arg):
        call()  # type: ignore[operator]


def test_regs_queue_vocabulary() -> None:
    assert (Regs.IQH, Regs.IQT, Regs.IQA, Regs.ICS) == (IQH, IQT, IQA, ICS)
    assert (Regs.IECTL, Regs.IEDATA, Regs.IEADDR, Regs.IEUADDR) == (0xA0, 0xA4, 0xA8, 0xAC)
    assert (Regs.IQE, Regs.ICE, Regs.ITE, Regs.IWC, Regs.IM, Regs.IP) == (
        1 << 4,
        1 << 5,
        1 << 6,
        1,
        1 << 31,
        1 << 30,
    )
    assert Regs.iqa(0x12_3000, 3) == 0x12_3003
    assert Regs.iqa(0x12_3000, 3, dw=True) == 0x12_3003 | 1 << 11
    assert (Regs.iqt(5), Regs.iqt(5, dw=True)) == (0x50, 0xA0)
    assert (Regs.iq_index(0x50), Regs.iq_index(0xA0, dw=True)) == (5, 5)
    assert [Regs.queue_entries(q) for q in (0, 7)] == [256, 1 << 15]
    assert Regs.queue_entries(0, dw=True) == 128


# ---- the queue in the unit


@pytest.mark.parametrize(
    ("desc", "moved"),
    [
        (Descriptor.iotlb("global"), set(range(PAGES))),
        (Descriptor.iotlb("domain", did=DID), set(range(PAGES))),
        (Descriptor.iotlb("domain", did=DID + 1), set()),
        (Descriptor.iotlb("page", did=DID, addr=0x5000), {5}),
        (Descriptor.iotlb("page", did=DID, addr=0x4000, am=2), {4, 5, 6, 7}),
        (Descriptor.iotlb("page", did=DID + 1, addr=0x5000), set()),
        (Descriptor.context_cache("global"), set()),
        (Descriptor.iec(), set()),
        (Descriptor.wait(fence=True), set()),
    ],
)
def test_stale_iotlb_entries_until_the_right_descriptor(desc: Descriptor, moved: set[int]) -> None:
    mem, r = machine()
    stale_all(mem, r)
    submit(mem, r, 0, [words(desc)])
    assert not iqe(r) and head(r) == 1
    assert [hpa(r, i) for i in range(PAGES)] == [
        NEW[i] if i in moved else OLD[i] for i in range(PAGES)
    ]


def test_context_cache_granularities() -> None:
    """A changed context entry (new domain) is seen only after a context-cache invalidation
    that covers the device, then an IOTLB one (VT-d §6.5: the IOTLB is tagged by domain)."""
    cases = [
        (Descriptor.context_cache("global"), True),
        (Descriptor.context_cache("domain", did=DID), True),
        (Descriptor.context_cache("domain", did=DID + 1), False),
        (Descriptor.context_cache("device", sid=SID), True),
        (Descriptor.context_cache("device", sid=SID | 3), False),
        (Descriptor.context_cache("device", sid=SID | 3, fm=3), True),
    ]
    for desc, seen in cases:
        mem, r = machine()
        assert r.translate(SID, 0).domain_id == DID
        mem.write_u64(CTX + 16 * (SID & 0xFF) + 8, 2 | 9 << 8)
        submit(mem, r, 0, [words(desc), words(Descriptor.iotlb("global"))])
        assert r.translate(SID, 0).domain_id == (9 if seen else DID), desc


def test_device_tlb_invalidations_are_drained_events() -> None:
    mem, r = machine()
    submit(
        mem,
        r,
        0,
        [
            words(Descriptor.device_tlb("03:02.0", 0x12_3000, qdep=4, pfsid="03:00.0")),
            words(Descriptor.device_tlb(0x0310, 0x12_3000, size=True)),
            words(Descriptor.device_tlb(0x0310, 0x12_4000, size=True)),
        ],
    )
    ev = r.device_tlb_invalidations()
    assert all(isinstance(e, DeviceTlbInvalidation) for e in ev)
    # ATS: S clear 4 KiB; S set: 8 KiB << trailing ones of the page number (0x123: two).
    assert [(e.sid, e.address, e.size, e.qdep, e.pfsid) for e in ev] == [
        (0x0310, 0x12_3000, 4096, 4, 0x0300),
        (0x0310, 0x12_0000, 32 << 10, 0, 0),
        (0x0310, 0x12_4000, 8 << 10, 0, 0),
    ]
    assert r.device_tlb_invalidations() == []
    # Without ECAP.DT a device-TLB descriptor is invalid.
    mem, r = machine(ecap=Ecap.default().replace(dt=False).value)
    submit(mem, r, 0, [words(Descriptor.device_tlb(0x0310, 0))])
    assert iqe(r) and head(r) == 0 and r.device_tlb_invalidations() == []


def test_wait_status_write_and_completion_interrupt() -> None:
    mem, r = machine()
    r.mmio_write(IEDATA, 4, 0x61)
    r.mmio_write(IEADDR, 4, 0xFEE0_1000)
    mem.write_u64(STATUS, (1 << 64) - 1)
    submit(mem, r, 0, [words(Descriptor.wait(status_addr=STATUS + 4, status_data=0x1234_5678))])
    assert mem.read_u64(STATUS) == 0x1234_5678_FFFF_FFFF  # 32 bits, neighbours untouched
    assert r.mmio_read(ICS, 4) == 0 and r.interrupts() == []
    # IF while IECTL.IM is set (its reset value): IWC and IP, no message.
    submit(mem, r, 1, [words(Descriptor.wait(interrupt=True))])
    assert (r.mmio_read(ICS, 4), r.mmio_read(IECTL, 4)) == (IWC, IM | IP)
    assert r.interrupts() == []
    r.mmio_write(IECTL, 4, 0)  # unmask: the pending message goes out
    assert [(i.address, i.data, i.vector) for i in r.interrupts()] == [(0xFEE0_1000, 0x61, 0x61)]
    assert r.mmio_read(IECTL, 4) == 0
    # IWC still set: no new event; cleared: the next completion is sent at once.
    submit(mem, r, 2, [words(Descriptor.wait(interrupt=True))])
    assert r.interrupts() == []
    r.mmio_write(ICS, 4, IWC)
    assert r.mmio_read(ICS, 4) == 0
    submit(mem, r, 3, [words(Descriptor.wait(interrupt=True))])
    assert len(r.interrupts()) == 1


def test_completion_goes_to_the_callback() -> None:
    seen: list[int] = []
    mem, r = machine()
    r2 = Remapper(mem, interrupt=lambda i: seen.append(i.data))
    r2.mmio_write(IQA, 8, QUEUE)
    r2.mmio_write(IEDATA, 4, 0x77)
    r2.mmio_write(IECTL, 4, 0)
    r2.mmio_write(GCMD, 4, QIE)
    mem.write_u64(QUEUE, Descriptor.wait(interrupt=True).lo)
    mem.write_u64(QUEUE + 8, 0)
    r2.mmio_write(IQT, 8, 1 << 4)
    assert seen == [0x77]
    del r


BAD = [
    ("type 0", (0, 0)),
    ("type 10", (10, 0)),
    ("type bits 11:9", (0x200 | 4, 0)),
    ("type 6", (6, 0)),
    ("type 7", (7, 0)),
    ("type 8", (8, 0)),
    ("type 9", (9, 0)),
    ("context-cache hi", (1 | 1 << 4, 1 << 63)),
    ("context-cache lo", (1 | 1 << 4 | 1 << 50, 0)),
    ("iotlb lo", (2 | 1 << 4 | 1 << 40, 0)),
    ("iotlb hi", (2 | 1 << 4, 1 << 8)),
    ("iotlb granularity 0", (2, 0)),
    ("iotlb am above mamv", (2 | 3 << 4 | DID << 16, 19)),
    ("device-tlb lo", (3 | 1 << 21, 0)),
    ("device-tlb hi", (3, 1 << 1)),
    ("iec lo", (4 | 1 << 26, 0)),
    ("iec hi", (4, 1)),
    ("wait lo", (5 | 1 << 8, 0)),
    ("wait hi", (5, 2)),
    ("wait drain without PDS", (5 | 1 << 7, 0)),
]


@pytest.mark.parametrize(("what", "bad"), BAD, ids=[b[0] for b in BAD])
def test_queue_errors_stop_at_the_descriptor_and_resume(what: str, bad: tuple[int, int]) -> None:
    mem, r = machine()
    r.mmio_write(FECTL, 4, 0)
    stale_all(mem, r)
    page5 = words(Descriptor.iotlb("page", did=DID, addr=0x5000))
    page6 = words(Descriptor.iotlb("page", did=DID, addr=0x6000))
    submit(mem, r, 0, [page5, bad, page6])
    assert iqe(r) and head(r) == 1
    assert (hpa(r, 5), hpa(r, 6)) == (NEW[5], OLD[6])  # the first ran, nothing after
    assert len(r.interrupts()) == 1  # the fault event (FECTL unmasked)
    r.mmio_write(IQT, 8, 3 << 4)  # IQE still set: nothing runs
    assert head(r) == 1
    mem.write_u64(QUEUE + 16, page5[0])  # software fixes the descriptor,
    mem.write_u64(QUEUE + 24, page5[1])
    r.mmio_write(FSTS, 4, IQE)  # clears IQE,
    assert not iqe(r) and head(r) == 1
    r.mmio_write(IQT, 8, 3 << 4)  # and the next tail write resumes at IQH
    assert head(r) == 3 and hpa(r, 6) == NEW[6]


def test_tail_errors_and_wide_queues() -> None:
    mem, r = machine()
    r.mmio_write(IQT, 8, 256 << 4)  # one past the end of a 256-entry queue
    assert iqe(r) and head(r) == 0
    # DW = 1 without ECAP.SMTS is reserved: IQE once the queue would run.
    mem = PhysMem([(0, 1 << 24)])
    r = Remapper(mem)
    r.mmio_write(IQA, 8, Regs.iqa(QUEUE, 0, dw=True))
    r.mmio_write(GCMD, 4, QIE)
    r.mmio_write(IQT, 8, Regs.iqt(1, dw=True))
    assert iqe(r)
    # With SMTS: 32-byte slots; IQT bit 4 set is an error; bits 255:128 are reserved.
    smts = Ecap.default().replace(smts=True).value
    r = Remapper(mem, ecap=smts)
    r.mmio_write(IQA, 8, Regs.iqa(QUEUE, 0, dw=True))
    r.mmio_write(GCMD, 4, QIE)
    for k in range(3):
        mem.write(QUEUE + 32 * k, Descriptor.iec().to_bytes(32))
    r.mmio_write(IQT, 8, 1 << 4)
    assert iqe(r)
    r.mmio_write(FSTS, 4, IQE)
    r.mmio_write(IQT, 8, Regs.iqt(2, dw=True))
    assert not iqe(r) and Regs.iq_index(r.mmio_read(IQH, 8), dw=True) == 2
    mem.write_u64(QUEUE + 32 * 2 + 16, 1)
    r.mmio_write(IQT, 8, Regs.iqt(3, dw=True))
    assert iqe(r) and Regs.iq_index(r.mmio_read(IQH, 8), dw=True) == 2


def test_failed_status_write_is_a_queue_error() -> None:
    mem, r = machine()
    submit(mem, r, 0, [words(Descriptor.wait(status_addr=0x4000_0000, interrupt=True))])
    assert iqe(r) and head(r) == 0 and r.mmio_read(ICS, 4) == 0


def test_wrap_around() -> None:
    mem, r = machine()
    submit(mem, r, 0, [words(Descriptor.iec())] * 250)
    assert head(r) == 250
    stale_all(mem, r)
    descs = [words(Descriptor.iotlb("page", did=DID, addr=i << 12)) for i in range(10)]
    assert submit(mem, r, 250, descs) == 4
    assert head(r) == 4
    assert [hpa(r, i) for i in range(PAGES)] == NEW[:10] + OLD[10:]


def test_qie_enable_runs_a_pending_tail_and_disable_needs_an_empty_queue() -> None:
    mem = PhysMem([(0, 1 << 24)])
    r = Remapper(mem)
    for k in range(2):
        mem.write(QUEUE + 16 * k, Descriptor.iec().to_bytes())
    r.mmio_write(IQA, 8, QUEUE)
    r.mmio_write(IQT, 8, 2 << 4)
    assert head(r) == 0  # QIE clear: nothing runs
    r.mmio_write(GCMD, 4, QIE)
    assert head(r) == 2
    mem.write(QUEUE + 32, bytes(16))  # type 0: invalid
    r.mmio_write(IQT, 8, 3 << 4)
    assert iqe(r) and head(r) == 2
    r.mmio_write(GCMD, 4, 0)
    assert r.mmio_read(GSTS, 4) & QIE  # IQH != IQT: stays enabled
    r.mmio_write(FSTS, 4, IQE)
    r.mmio_write(IQT, 8, 2 << 4)  # the tail back at the head: empty
    r.mmio_write(GCMD, 4, 0)
    assert r.mmio_read(GSTS, 4) & QIE == 0 and r.mmio_read(IQH, 8) == 0


def test_register_invalidation_is_not_performed_while_queued() -> None:
    mem, r = machine()
    stale_all(mem, r)
    r.mmio_write(IOTLB_REG, 8, 1 << 63 | 1 << 60)  # global, through the register
    v = r.mmio_read(IOTLB_REG, 8)
    assert v >> 63 == 0 and (v >> 57) & 3 == 0  # IVT clear, IAIG 0: not performed
    assert hpa(r, 0) == OLD[0]


# ---- random sequences against a reference model


def _covers(d: tuple[str, int, int, int], page: int) -> bool:
    """Whether an IOTLB descriptor (granularity, did, addr page, am) drops a cached page of
    domain 42 (VT-d §6.5.2.3)."""
    g, did, base, am = d
    if g == "global":
        return True
    if did != DID:
        return False
    if g == "domain":
        return True
    start = base & ~((1 << am) - 1)
    return start <= page < start + (1 << am)


iotlb_desc = st.tuples(
    st.sampled_from(["global", "domain", "page"]),
    st.sampled_from([DID, DID + 1]),
    st.integers(0, PAGES - 1),
    st.integers(0, 4),
)
step = st.one_of(iotlb_desc, st.just("iec"), st.just("wait"), st.just("bad"))


@given(st.lists(step, max_size=12), st.integers(0, 255))
def test_random_sequences_match_the_reference(
    steps: list[str | tuple[str, int, int, int]], start: int
) -> None:
    mem, r = machine()
    if start:
        submit(mem, r, 0, [words(Descriptor.iec())] * start)
    stale_all(mem, r)
    descs: list[tuple[int, int]] = []
    dropped: set[int] = set()
    stopped = None
    for k, s in enumerate(steps):
        if s == "iec":
            descs.append(words(Descriptor.iec()))
        elif s == "wait":
            descs.append(words(Descriptor.wait(fence=True)))
        elif s == "bad":
            descs.append((0, 0))
            if stopped is None:
                stopped = k
        else:
            assert isinstance(s, tuple)
            g, did, page, am = s
            addr = page << 12 if g == "page" else 0
            descs.append(words(Descriptor.iotlb(g, did=did, addr=addr, am=am if addr else 0)))
            if stopped is None:
                d = (g, did, page, am if addr else 0)
                dropped |= {p for p in range(PAGES) if _covers(d, p)}
    submit(mem, r, start, descs)
    ran = len(steps) if stopped is None else stopped
    assert iqe(r) == (stopped is not None)
    assert head(r) == (start + ran) % 256
    assert [hpa(r, i) for i in range(PAGES)] == [
        NEW[i] if i in dropped else OLD[i] for i in range(PAGES)
    ]
