"""The platform as an emulator sees it: each unit's register page at its DRHD base
(``Platform.mmio_read``/``mmio_write``), device DMA through the device's unit
(``Platform.dma_read``/``dma_write``), and a driver side that reaches the units only through
their registers: brought up as Xen does (the invalidation queue and interrupt remapping where
every unit has them, RTADDR + SRTP, global context and IOTLB invalidation, TE) and flushing
with register-based invalidations where the units have no queue.

Register offsets and fields are literals of vtd-hardware.md §1.2, §1.4 and §1.11.
"""

from __future__ import annotations

import pytest

from reference import present_table
from vtdwalk import DmaFault, Ecap, InvalidArgument, Platform, PlatformError, dmar
from vtdwalk.driver.iommu import QEMU_ECAP
from vtdwalk.platform import DEFAULT_CAP

GSTS, RTADDR, CCMD, FEDATA, IQH, IQT = 0x1C, 0x20, 0x28, 0x3C, 0x80, 0x88
TES, RTPS, QIES, IRES, IRTPS = 1 << 31, 1 << 30, 1 << 26, 1 << 25, 1 << 24
IVA, IOTLB = 0xF0, 0xF8  # ECAP.IRO 0xF of the default unit
NIC = "02:00.0"  # the X540 NIC on socket 0 of the default machine


@pytest.fixture(scope="module")
def plat() -> Platform:
    return Platform.default()


def register_flushing() -> Platform:
    """The default machine with one unit lacking ECAP.QI: Xen then uses no queue anywhere."""
    no_qi = int(Ecap(QEMU_ECAP).replace(qi=False).value)
    return Platform.default(unit_caps={0xF3FFD000: (DEFAULT_CAP, no_qi)})


@pytest.mark.parametrize("queued", [True, False], ids=["queue", "registers"])
def test_every_unit_is_brought_up_through_its_registers(queued: bool) -> None:
    plat = Platform.default() if queued else register_flushing()
    assert len(plat.iommus) == 3  # the X10DAi's three DRHDs
    for u in plat.iommus:
        a = u.address
        assert plat.mmio_read(a + 0x00, 4) == 0x10  # VER 1.0
        assert plat.mmio_read(a + 0x08, 8) == u.cap
        assert plat.mmio_read(a + 0x10, 8) == u.ecap
        assert plat.mmio_read(a + RTADDR, 8) == u.root_maddr != 0
        if queued:
            assert plat.mmio_read(a + GSTS, 4) == TES | RTPS | QIES | IRES | IRTPS
            # The global invalidations went through the queue, which the unit has consumed;
            # the registers saw none.
            assert plat.mmio_read(a + IQH, 8) == plat.mmio_read(a + IQT, 8) != 0
            assert plat.mmio_read(a + CCMD, 8) == 0
            assert u.port.descriptors["context_cache"] == u.port.descriptors["iotlb"] == 1
        else:
            assert plat.mmio_read(a + GSTS, 4) == TES | RTPS
            # The bring-up's last invalidations were global ones (CAIG / IAIG = 1).
            assert plat.mmio_read(a + CCMD, 8) >> 59 & 3 == 1
            assert plat.mmio_read(a + IOTLB, 8) >> 57 & 3 == 1


def test_registers_are_dispatched_by_drhd_base() -> None:
    p = Platform.default()
    u0, u1 = p.iommus[0], p.iommus[-1]
    assert u0.address != u1.address
    p.mmio_write(u0.address + FEDATA, 4, 0x1234)
    assert p.mmio_read(u0.address + FEDATA, 4) == 0x1234
    assert p.mmio_read(u1.address + FEDATA, 4) == 0
    assert u0.remapper.mmio_read(FEDATA, 4) == 0x1234
    # The high half of a 64-bit register at base + offset + 4.
    assert p.mmio_read(u1.address + RTADDR + 4, 4) == present_table(u1.root_maddr) >> 32
    assert p.mmio_read(u1.address + RTADDR, 4) == present_table(u1.root_maddr) & 0xFFFF_FFFF


@pytest.mark.parametrize("delta", [-4, 0x1000, 0x2000])
def test_an_address_in_no_register_page(plat: Platform, delta: int) -> None:
    a = max(u.address for u in plat.iommus) + delta
    if delta < 0:
        a = min(u.address for u in plat.iommus) + delta
    with pytest.raises(InvalidArgument, match="address"):
        plat.mmio_read(a, 4)
    with pytest.raises(InvalidArgument, match="address"):
        plat.mmio_write(a, 4, 0)


def test_bad_accesses_are_the_units_errors(plat: Platform) -> None:
    a = plat.iommus[0].address
    with pytest.raises(InvalidArgument, match="size"):
        plat.mmio_read(a + GSTS, 2)
    with pytest.raises(InvalidArgument, match="offset"):
        plat.mmio_read(a + RTADDR + 4, 8)
    with pytest.raises(InvalidArgument, match="address"):
        plat.mmio_read("0xfed90000", 4)  # type: ignore[arg-type]


def test_dma_through_the_platform() -> None:
    p = Platform.default()
    dom = p.create_domain()
    p.assign_device(dom, NIC)
    buf = p.mem.alloc_pages(2, node=dom.node)
    dom.map(0x10_0000, buf + 0x1000, 0x1000)  # IOVA order the reverse of host order
    dom.map(0x10_1000, buf, 0x1000)
    data = bytes(range(256)) * 16
    p.dma_write(NIC, 0x10_0800, data[:0x1000])
    assert p.mem.read(buf + 0x1800, 0x800) == data[:0x800]
    assert p.mem.read(buf, 0x800) == data[0x800:0x1000]
    assert p.dma_read(NIC, 0x10_0800, 0x1000) == data[:0x1000]
    # A DMA running off the mapping: the first page's requests complete.
    with pytest.raises(DmaFault) as ei:
        p.dma_write(NIC, 0x10_1800, b"\xee" * 0x1000)
    f = ei.value
    assert (f.reason, f.iova, f.transferred) == (0x5, 0x10_2000, 0x800)
    assert p.mem.read(buf + 0x800, 0x800) == b"\xee" * 0x800


def test_dma_by_a_device_in_no_scope() -> None:
    t = dmar.DmarTable(
        host_address_width=47,
        flags=1,
        structures=[dmar.Drhd(0, 0, 0xA000, [dmar.DeviceScope.endpoint(0, 2, 0)])],
    )
    p = Platform(t)
    with pytest.raises(PlatformError, match="scope"):
        p.dma_read("00:03.0", 0, 4)
    with pytest.raises(PlatformError, match="scope"):
        p.dma_write("00:03.0", 0, b"x")


def test_flushes_are_register_based_invalidations() -> None:
    p = register_flushing()
    unit = p.iommu_for_device(NIC)
    assert unit is not None
    dom = p.create_domain()
    p.assign_device(dom, NIC)
    did = dom.links[unit.index].did
    buf = p.mem.alloc_pages(1, node=dom.node)
    dom.map(0x20_0000, buf, 0x1000)
    p.mem.write(buf, b"\x42")
    assert p.dma_read(NIC, 0x20_0000, 1) == b"\x42"  # the IOTLB holds the page now
    dom.unmap(0x20_0000, 0x1000)
    # A page-selective IOTLB invalidation with the domain's DID, through the IOTLB register.
    v = p.mmio_read(unit.address + IOTLB, 8)
    assert (v >> 63, v >> 60 & 3, v >> 57 & 3, v >> 32 & 0xFFFF) == (0, 3, 3, did)
    assert p.mmio_read(unit.address + IVA, 8) == 0  # write-only
    with pytest.raises(DmaFault) as ei:
        p.dma_read(NIC, 0x20_0000, 1)
    assert ei.value.reason == 0x6  # not the stale entry
    # Leaving the domain: a device-selective context invalidation and a domain-selective
    # IOTLB one, with the domain's DID.
    p.deassign_device(NIC)
    v = p.mmio_read(unit.address + CCMD, 8)
    assert (v >> 63, v >> 61 & 3, v >> 59 & 3, v & 0xFFFF) == (0, 3, 3, did)
    v = p.mmio_read(unit.address + IOTLB, 8)
    assert (v >> 60 & 3, v >> 57 & 3, v >> 32 & 0xFFFF) == (2, 2, did)
    with pytest.raises(DmaFault) as ei:
        p.dma_read(NIC, 0x20_0000, 1)
    assert ei.value.reason == 0x2  # the context entry is gone, not cached


def test_free_turns_translation_off() -> None:
    p = Platform.default()
    a = p.iommus[0].address
    p.free()
    assert p.mmio_read(a + GSTS, 4) & TES == 0
