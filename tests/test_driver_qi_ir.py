"""The driver's queued invalidation and interrupt remapping (xen-driver.md §3.4, §6.1, §6.2, §8):
bring-up order and placement of the queue and the interrupt remapping table under both
policies, flushes through the queue, queue errors, and interrupts of devices and IOAPIC pins
from ``Platform.setup_msi`` to ``Platform.msi``.

Where pages are and what entries hold is read back through the units' registers and memory and
decoded here with the bit layouts of vtd-hardware.md (§1.2, §1.10, §1.12), not with vtdwalk's
vocabulary; expected placements are derived from when the old and the new code allocate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import vtdwalk
from dmar_corpus import REAL
from guest import FSTS, GSTS, IQA, IQE, IQH, IQT, IRE, IRTA, QIE, TE, irte
from vtdwalk import (
    Descriptor,
    Ecap,
    InterruptFault,
    InvalidArgument,
    InvalidationError,
    Platform,
    PlatformError,
    dmar,
)
from vtdwalk.driver.iommu import QEMU_ECAP, Iommu

DATA = Path(vtdwalk.__file__).resolve().parent / "data"
SOCKET1_UNIT = 0xFBFFC000
SOCKET0_UNIT = 0xF3FFC000
AUDIO_UNIT = 0xF3FFD000
PAGE = 4096
#: Xen 2019: QINVAL_PAGE_ORDER 2 (four pages), IREMAP_PAGE_ORDER 8 (256 pages, S = 15).
QUEUE_PAGES, IRT_PAGES, IRT_S = 4, 256, 15


def x10dai(policy: str = "seed", **kw: object) -> Platform:
    return Platform.from_dmar(
        REAL / "supermicro-x10dai.dat",
        topology=DATA / "supermicro-x10dai.toml",
        policy=policy,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def reg(p: Platform, u: Iommu, off: int, size: int = 8) -> int:
    return p.mmio_read(u.address + off, size)


def queue_of(p: Platform, u: Iommu) -> tuple[int, int]:
    """(base, pages) from IQA: base 63:12, QS 2:0 (2^(QS+8) 16-byte descriptors)."""
    v = reg(p, u, IQA)
    return v & ~0xFFF, (1 << ((v & 7) + 8)) * 16 // PAGE


def irt_of(p: Platform, u: Iommu) -> tuple[int, int, bool]:
    """(base, pages, EIME) from IRTA: base 63:12, EIME 11, S 3:0 (2^(S+1) entries)."""
    v = reg(p, u, IRTA)
    return v & ~0xFFF, (1 << ((v & 0xF) + 1)) * 16 // PAGE, bool(v >> 11 & 1)


def nodes_of(p: Platform, base: int, pages: int) -> set[int]:
    return {p.mem.node_of(base + i * PAGE) for i in range(pages)}


def rhsa_node(p: Platform, u: Iommu) -> int | None:
    r = p.drhd_to_rhsa(u.drhd)
    return None if r is None else p.pxm_to_node(r.proximity_domain)


def unit(p: Platform, address: int) -> Iommu:
    return next(u for u in p.iommus if u.address == address)


# ---- bring-up and placement


def test_bring_up_enables_queue_remapping_and_translation_on_every_unit() -> None:
    p = x10dai()
    assert p.queued_invalidation and p.interrupt_remapping and not p.x2apic
    for u in p.iommus:
        gsts = reg(p, u, GSTS, 4)
        assert gsts & (QIE | IRE | TE) == QIE | IRE | TE
        base, pages = queue_of(p, u)
        assert (base, pages) == (u.queue[0] if u.queue else None, QUEUE_PAGES)
        irt, n, eime = irt_of(p, u)
        assert n == IRT_PAGES and not eime
        assert u.irt is not None and u.irt.maddr == irt
        # Xen's bring-up queued, per unit: a global IEC invalidation (enable_intremap), then
        # global context and IOTLB invalidations (iommu_flush_all), each with its wait.
        assert dict(u.port.descriptors) == {"iec": 1, "context_cache": 1, "iotlb": 1, "wait": 3}
        assert reg(p, u, IQH) == reg(p, u, IQT) == 6 << 4


def test_seed_every_queue_and_irt_page_on_its_unit_node() -> None:
    p = x10dai("seed")
    placed = 0
    for u in p.iommus:
        want = rhsa_node(p, u)
        if want is None:
            continue  # the audio unit has no RHSA: no node to be on
        assert nodes_of(p, *queue_of(p, u)) == {want}
        assert nodes_of(p, *irt_of(p, u)[:2]) == {want}
        placed += 1
    assert placed == 2  # both sockets' units
    rep = p.numa_report()
    assert rep["misplaced"] == 0
    for r in rep["units"]:
        want = rhsa_node(p, unit(p, r["address"]))
        if want is not None:
            assert r["queue"] == {want: QUEUE_PAGES} and r["ir_table"] == {want: IRT_PAGES}


def test_pre_seed_placement_follows_from_when_the_old_code_allocated() -> None:
    """Before the seed, ``alloc_pgtable_maddr(drhd, n)`` looked the unit's RHSA up at each
    call. The root table was allocated by ``iommu_alloc`` while its DRHD was parsed; the queue
    and the interrupt remapping table by ``enable_qinval``/``enable_intremap`` in
    ``init_vtd_hw``, after the whole table was parsed. So a unit whose RHSA follows its DRHD in
    the table had its root table on no node, and its queue and table on its RHSA's node."""
    t = dmar.parse((REAL / "supermicro-x10dai.dat").read_bytes())
    kinds = [type(s).__name__ for s in t.structures]
    last_drhd = max(i for i, k in enumerate(kinds) if k == "Drhd")
    assert all(i > last_drhd for i, k in enumerate(kinds) if k == "Rhsa")  # spec order
    p = x10dai("pre-seed")
    rep = {r["address"]: r for r in p.numa_report()["units"]}
    for u in p.iommus:
        want = rhsa_node(p, u)
        if want is None:
            continue
        # After parsing: the RHSA is found, the pages land on its node.
        assert nodes_of(p, *queue_of(p, u)) == {want}
        assert nodes_of(p, *irt_of(p, u)[:2]) == {want}
        assert rep[u.address]["queue"] == {want: QUEUE_PAGES}
        assert rep[u.address]["ir_table"] == {want: IRT_PAGES}
    # While parsing: no RHSA yet, no node; the allocator's first node is node 0, so socket 1's
    # root table is the one page off its node (socket 0's lands right by chance).
    s1 = unit(p, SOCKET1_UNIT)
    assert p.mem.node_of(s1.root_maddr or 0) == 0
    assert rep[SOCKET1_UNIT]["misplaced"] == 1
    assert rep[SOCKET0_UNIT]["misplaced"] == 0


def test_without_qi_on_every_unit_flushes_use_the_registers_and_no_irt() -> None:
    no_qi = int(Ecap(QEMU_ECAP).replace(qi=False).value)
    p = x10dai(unit_caps={AUDIO_UNIT: (vtdwalk.platform.DEFAULT_CAP, no_qi)})
    # Xen enables a feature only when every unit has it; IR needs QI.
    assert not p.queued_invalidation and not p.interrupt_remapping
    for u in p.iommus:
        assert reg(p, u, GSTS, 4) & (QIE | IRE | TE) == TE
        assert u.queue is None and u.irt is None and not u.port.descriptors
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    with pytest.raises(PlatformError, match="does not remap interrupts"):
        p.setup_msi("01:00.0", 0x30, 1)


def test_no_intr_remap_flag_no_remapping_but_the_queue() -> None:
    t = dmar.parse((REAL / "supermicro-x10dai.dat").read_bytes())
    t.flags &= ~dmar.INTR_REMAP  # xen-driver.md §6.1: platform_supports_intremap
    p = Platform.from_dmar(t, topology=DATA / "supermicro-x10dai.toml")
    assert p.queued_invalidation and not p.interrupt_remapping
    for u in p.iommus:
        assert reg(p, u, GSTS, 4) & (QIE | IRE) == QIE and u.irt is None


def test_eim_where_every_unit_has_it() -> None:
    eim = int(Ecap(QEMU_ECAP).replace(eim=True).value)
    caps = {a: (vtdwalk.platform.DEFAULT_CAP, eim) for a in (SOCKET0_UNIT, SOCKET1_UNIT)}
    p = x10dai(unit_caps=caps)
    assert not p.x2apic  # the audio unit lacks ECAP.EIM
    assert not any(irt_of(p, u)[2] for u in p.iommus)
    caps[AUDIO_UNIT] = caps[SOCKET0_UNIT]
    q = x10dai(unit_caps=caps)
    assert q.x2apic and all(irt_of(q, u)[2] for u in q.iommus)
    d = q.create_domain()
    q.assign_device(d, "81:00.0")
    q.setup_msi("81:00.0", 0x40, 0x1_0002)  # a 32-bit x2APIC id
    i = q.msi("81:00.0")
    assert (i.vector, i.destination) == (0x40, 0x1_0002)


def test_teardown_turns_every_unit_off() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    p.setup_msi("01:00.0", 0x30, 1)
    units = list(p.iommus)
    p.free()
    for u in units:
        assert reg(p, u, GSTS, 4) & (QIE | IRE | TE) == 0
        assert u.table_pages == {} and u.queue is None and u.irt is None
    assert sum(int(s["free_pages"]) for s in p.mem.stats()) == sum(
        int(s["total_pages"]) for s in p.mem.stats()
    )


# ---- flushes through the queue


def _reference_check(p: Platform, ref: dict[int, int], iovas: list[int]) -> list[int | None]:
    out: list[int | None] = []
    for iova in iovas:
        try:
            out.append(p.translate("01:00.0", iova).hpa)
        except vtdwalk.DmaFault:
            out.append(None)
        want = ref.get(iova & ~0xFFF)
        assert out[-1] == (None if want is None else want | (iova & 0xFFF)), hex(iova)
    return out


def test_queued_flushes_leave_the_same_translations_as_register_flushes() -> None:
    no_qi = int(Ecap(QEMU_ECAP).replace(qi=False).value)
    queued = x10dai()
    regs = x10dai(unit_caps={AUDIO_UNIT: (vtdwalk.platform.DEFAULT_CAP, no_qi)})
    assert queued.queued_invalidation and not regs.queued_invalidation
    iovas = [0x1000 * k + 0x10 for k in range(0x100, 0x140)]
    seen: dict[str, list[list[int | None]]] = {}
    for name, p in (("queued", queued), ("registers", regs)):
        d = p.create_domain()
        p.assign_device(d, "01:00.0")
        steps = seen[name] = []
        # Map, translate (filling the IOTLB), remap elsewhere, unmap part: each must show.
        for target in (0x1_0000_0000, 0x2_0000_0000):
            d.unmap(0x100000, 0x40 * PAGE)
            d.map(0x100000, target, 0x40 * PAGE)
            ref = {0x100000 + k * PAGE: target + k * PAGE for k in range(0x40)}
            steps.append(_reference_check(p, ref, iovas))
            d.unmap(0x110000, 0x10 * PAGE)
            for k in range(0x10, 0x20):
                del ref[0x100000 + k * PAGE]
            steps.append(_reference_check(p, ref, iovas))
    assert seen["queued"] == seen["registers"]
    u = unit(queued, SOCKET0_UNIT)
    assert u.port.descriptors["iotlb"] > 1 and u.port.descriptors["wait"] > 3
    assert not unit(regs, SOCKET0_UNIT).port.descriptors


def test_ats_devices_get_device_tlb_descriptors() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")  # ATS, below an ATSR port, ECAP.DT
    u = unit(p, SOCKET0_UNIT)
    before = u.port.descriptors["device_tlb"]
    d.map(0x10_0000, 0x1_0000_0000, PAGE)
    d.unmap(0x10_0000, PAGE)
    assert d.flush_log[-1].dev_iotlb == 1
    assert u.port.descriptors["device_tlb"] == before + 1
    seen = u.remapper.device_tlb_invalidations()
    assert [(x.sid, x.address, x.size) for x in seen][-1:] == [(0x0100, 0x10_0000, PAGE)]


def test_the_queue_wraps_around_under_many_flushes() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "02:00.1")
    u = unit(p, SOCKET0_UNIT)
    entries = QUEUE_PAGES * PAGE // 16
    start = reg(p, u, IQT) >> 4
    before = sum(u.port.descriptors.values())
    while sum(u.port.descriptors.values()) - before < 2 * entries:  # twice round the ring
        d.map(0x10_0000, 0x1_0000_0000, PAGE)
        d.unmap(0x10_0000, PAGE)
    sent = sum(u.port.descriptors.values()) - before
    assert reg(p, u, IQT) >> 4 == (start + sent) % entries
    assert reg(p, u, IQH) == reg(p, u, IQT)
    d.map(0x20_0000, 0x1_0000_0000, PAGE)
    assert p.translate("02:00.1", 0x20_0000).hpa == 0x1_0000_0000
    d.map(0x20_0000, 0x1_0000_2000, PAGE)
    assert p.translate("02:00.1", 0x20_0000).hpa == 0x1_0000_2000  # flushed after the wrap


def test_a_refused_descriptor_raises_invalidation_error_and_the_queue_recovers() -> None:
    p = x10dai()
    u = unit(p, SOCKET1_UNIT)
    slot = reg(p, u, IQT) >> 4
    bad = Descriptor.decode(0, 0)  # type 0: no descriptor (vtd-hardware.md §1.12)
    with pytest.raises(InvalidationError) as e:
        u.port.submit(bad)
    err = e.value
    assert err.unit == u.port.name and hex(SOCKET1_UNIT) in str(err)
    assert err.index == slot and isinstance(err.descriptor, Descriptor)
    assert err.descriptor.kind == "invalid" and (err.descriptor.lo, err.descriptor.hi) == (0, 0)
    assert "invalid" in str(err)
    # The driver skipped it and cleared IQE: the queue works again.
    assert not reg(p, u, FSTS, 4) & IQE
    d = p.create_domain()
    p.assign_device(d, "81:00.0")
    d.map(0x10_0000, 0x11_0000_0000, PAGE)
    d.map(0x10_0000, 0x11_0000_2000, PAGE)
    assert p.translate("81:00.0", 0x10_0000).hpa == 0x11_0000_2000
    with pytest.raises(TypeError, match="Descriptor"):
        u.port.submit((0, 0))  # type: ignore[arg-type]


# ---- interrupts


def irte_at(p: Platform, u: Iommu, index: int) -> bytes:
    base = irt_of(p, u)[0]
    return p.mem.read(base + 16 * index, 16)


def test_msi_end_to_end() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    h = p.setup_msi("01:00.0", vector=0x30, destination=2)
    u = unit(p, SOCKET0_UNIT)
    assert (h.unit, h.svt, h.sq, h.sid, h.count) == (u.index, 1, 0, 0x0100, 1)
    # The entry in memory, as vtd-hardware.md §1.10 lays it out (xAPIC: DST = id << 8).
    assert irte_at(p, u, h.index) == irte(0x30, 2 << 8, sid=0x0100, svt=1)
    # The message: remappable format pointing at the entry (SHV, sub-handle 0).
    assert h.address >> 20 == 0xFEE and h.address >> 4 & 1 and h.address >> 3 & 1
    assert (h.address >> 5 & 0x7FFF) | (h.address >> 2 & 1) << 15 == h.index and h.data == 0
    i = p.msi("01:00.0")
    assert (i.vector, i.destination, i.sid, i.index) == (0x30, 2, 0x0100, h.index)
    # Delivered as a compatibility-format message: 0xFEE, destination id in 19:12; vector.
    assert (i.address, i.data) == (0xFEE0_0000 | 2 << 12, 0x30)
    # Level-triggered, logical, lowest priority, redirection hint: carried to the interrupt.
    h2 = p.setup_msi(
        "01:00.0",
        0x31,
        3,
        delivery_mode=1,
        trigger_mode=1,
        destination_mode=1,
        redirection_hint=1,
    )
    assert h2.index == h.index  # re-programmed in place
    i = p.msi("01:00.0")
    assert (i.vector, i.destination, i.delivery_mode, i.trigger_mode) == (0x31, 3, 1, 1)
    assert (i.destination_mode, i.redirection_hint) == (1, 1)


def test_another_devices_handle_is_blocked_by_the_source_check() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    p.assign_device(d, "02:00.0")
    h = p.setup_msi("01:00.0", 0x30, 2)
    p.setup_msi("02:00.0", 0x31, 2)
    u = unit(p, SOCKET0_UNIT)
    before = len(u.remapper.faults())
    with pytest.raises(InterruptFault) as e:
        p.msi("02:00.0", message=(h.address, h.data))
    assert (e.value.reason, e.value.sid, e.value.index) == (0x26, 0x0200, h.index)
    assert isinstance(e.value, vtdwalk.VtdError)
    recs = u.remapper.faults()
    assert len(recs) == before + 1 and recs[-1].reason == 0x26
    assert p.msi("02:00.0").vector == 0x31  # its own still works


def test_multi_vector_msi_uses_subhandles() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "81:00.0")
    h = p.setup_msi("81:00.0", 0x60, 5, count=4)
    assert h.count == 4
    for k in range(4):
        i = p.msi("81:00.0", entry=k)
        assert (i.vector, i.index) == (0x60 + k, h.index + k)
    with pytest.raises(InvalidArgument, match="entry"):
        p.msi("81:00.0", entry=4)


def test_msi_behind_a_pcie_to_pci_bridge_checks_the_bus_range() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "04:01.0")  # conventional PCI below the PCIe-to-PCI bridge 03:00.0
    h = p.setup_msi("04:01.0", 0x44, 1)
    # Xen's set_msi_source_id: SVT 2, SID = bridge bus << 8 | device bus.
    assert (h.svt, h.sq, h.sid) == (2, 0, 0x03 << 8 | 0x04)
    u = unit(p, SOCKET0_UNIT)
    assert irte_at(p, u, h.index) == irte(0x44, 1 << 8, sid=0x0304, svt=2)
    i = p.msi("04:01.0")
    assert (i.vector, i.index) == (0x44, h.index)
    # A requester on a bus outside 03..04 with the same handle is refused.
    with pytest.raises(InterruptFault) as e:
        p.msi("01:00.0", message=(h.address, h.data))
    assert e.value.reason == 0x26


def test_phantom_functions_share_the_entry_through_sq() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "05:00.0")  # phantom stride 2: functions 0, 2, 4, 6
    h = p.setup_msi("05:00.0", 0x45, 1)
    assert (h.svt, h.sq, h.sid) == (1, 2, 0x0500)  # SQ 2: SID bits 2:1 ignored
    msg = (h.address, h.data)
    for fn in (0, 2, 4, 6):
        assert p.msi(f"05:00.{fn}", message=msg).vector == 0x45
    with pytest.raises(InterruptFault) as e:
        p.msi("05:00.1", message=msg)
    assert e.value.reason == 0x26


def test_deassign_frees_the_entry() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    h = p.setup_msi("01:00.0", 0x30, 2)
    u = unit(p, SOCKET0_UNIT)
    assert p.msi("01:00.0").vector == 0x30  # cached by the unit now
    p.deassign_device("01:00.0")
    assert p.msi_handle("01:00.0") is None
    assert irte_at(p, u, h.index) == bytes(16)
    assert u.irt is not None and h.index not in u.irt.entries()
    # The old message finds no entry: the driver's IEC invalidation dropped the cached one.
    with pytest.raises(InterruptFault) as e:
        p.msi("01:00.0", message=(h.address, h.data))
    assert (e.value.reason, e.value.index) == (0x22, h.index)
    with pytest.raises(PlatformError, match="no MSI"):
        p.msi("01:00.0")
    # The entry is handed out again (first fit).
    p.assign_device(d, "01:00.0")
    assert p.setup_msi("01:00.0", 0x33, 2).index == h.index


def test_ioapic_pin_through_its_unit() -> None:
    p = x10dai()
    h = p.setup_ioapic_pin(3, 4, 0x50, 1)  # IOAPIC 3 is in socket 1's unit, BDF 80:05.4
    u = unit(p, SOCKET1_UNIT)
    assert (h.unit, h.svt, h.sq, h.sid) == (u.index, 1, 0, 0x8000 | 5 << 3 | 4)
    i = p.ioapic_interrupt(3, 4)
    assert (i.vector, i.destination, i.index, i.sid) == (0x50, 1, h.index, h.sid)
    assert p.teardown_ioapic_pin(3, 4) and not p.teardown_ioapic_pin(3, 4)
    with pytest.raises(PlatformError):
        p.ioapic_interrupt(3, 4)
    with pytest.raises(PlatformError, match="IOAPIC 9"):
        p.setup_ioapic_pin(9, 0, 0x50, 1)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"vector": 256}, "vector"),
        ({"vector": -1}, "vector"),
        ({"destination": 256}, "destination"),  # xAPIC: an 8-bit APIC id
        ({"count": 3}, "count"),
        ({"count": 64}, "count"),
        ({"vector": 0xFE, "count": 4}, "vector"),
        ({"trigger_mode": 2}, "trigger_mode"),
        ({"delivery_mode": 8}, "delivery_mode"),
    ],
)
def test_setup_msi_bad_arguments_change_nothing(kw: dict[str, int], name: str) -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    args = {"vector": 0x30, "destination": 1, **kw}
    u = unit(p, SOCKET0_UNIT)
    before = dict(u.port.descriptors)
    with pytest.raises(InvalidArgument, match=name):
        p.setup_msi("01:00.0", **args)
    assert p.msi_handle("01:00.0") is None and dict(u.port.descriptors) == before
    assert u.irt is not None and len(u.irt) == 0


def test_an_ioapic_without_a_unit_turns_remapping_off() -> None:
    """Xen's init_vtd_hw: every IOAPIC must have a DRHD (``ioapic_to_iommu``), or IR is off."""
    from vtdwalk.topology import Bdf, load_description

    topo, numa = load_description(DATA / "supermicro-x10dai.toml")
    assert topo is not None
    topo.ioapics[9] = Bdf(0, 0xF0, 0x1E, 7)  # named by no DRHD scope
    p = Platform.from_dmar(REAL / "supermicro-x10dai.dat", topology=topo, numa=numa)
    assert "ioapic-no-unit" in p.codes
    assert p.queued_invalidation and not p.interrupt_remapping
    assert all(u.irt is None and reg(p, u, GSTS, 4) & (QIE | IRE) == QIE for u in p.iommus)
