"""Device assignment end to end: context entries read back from PhysMem, DMA through the
hardware model, RMRRs, ownership, atomicity, device_in_domain (xen-driver.md §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vtdwalk
import vtdwalk.driver.assign
from dmar_corpus import REAL
from reference import ctx as ref
from reference import hw_walk, present_table
from vtdwalk import (
    Bdf,
    Device,
    DeviceKind,
    DmaFault,
    InvalidArgument,
    Platform,
    PlatformError,
    Topology,
    VtdError,
)
from vtdwalk import dmar as D
from vtdwalk.driver.iommu import QEMU_CAP, QEMU_ECAP, Iommu

B = Bdf.parse
CORPUS = REAL
DATA = Path(vtdwalk.__file__).resolve().parent / "data"
X10DAI = CORPUS / "supermicro-x10dai.dat"
DT = 1 << 2  # ECAP.DT: device-TLB support

SOCKET1_UNIT = 0xFBFFC000  # x10dai: RHSA proximity domain 1
SOCKET0_UNIT = 0xF3FFC000  # x10dai: include-all, proximity domain 0


def x10dai(policy: str = "seed", ecap: int = QEMU_ECAP, **kw: object) -> Platform:
    """The two-socket Supermicro X10DAi from the corpus table, with its PCI population."""
    return Platform.from_dmar(
        X10DAI,
        topology=DATA / "supermicro-x10dai.toml",
        policy=policy,  # type: ignore[arg-type]
        ecap=ecap,
        **kw,  # type: ignore[arg-type]
    )


def unit_at(p: Platform, address: int) -> Iommu:
    return next(u for u in p.iommus if u.address == address)


def q35(policy: str = "seed", mem_pages: int | None = None) -> Platform:
    """QEMU q35-like: one include-all unit; 00:1c.0 -> 01:00.0 (phantom-function endpoint);
    00:1c.1 -> bus 2 with a PCIe-to-PCI bridge 02:00.0 -> bus 3 with an e1000 at 03:01.0 and
    another conventional device at 03:02.0; a legacy PCI bridge 00:1e.0 -> bus 4 -> 04:03.0."""
    table = D.DmarTable(
        host_address_width=38,
        flags=1,
        structures=[D.Drhd(flags=1, segment=0, address=0xFED90000)],
    )
    topo = Topology(
        [
            Device(B("00:00.0"), DeviceKind.HOST_BRIDGE),
            Device(B("00:1c.0"), DeviceKind.PCIE_PORT, secondary=1, subordinate=1),
            Device(B("01:00.0"), phantom_stride=2, name="phantom SATA"),
            Device(B("00:1c.1"), DeviceKind.PCIE_PORT, secondary=2, subordinate=3),
            Device(B("02:00.0"), DeviceKind.PCIE_TO_PCI_BRIDGE, secondary=3, subordinate=3),
            Device(B("03:01.0"), DeviceKind.PCI, name="e1000"),
            Device(B("03:02.0"), DeviceKind.PCI),
            Device(B("00:1e.0"), DeviceKind.LEGACY_PCI_BRIDGE, secondary=4, subordinate=4),
            Device(B("04:03.0"), DeviceKind.PCI),
            Device(B("00:1f.0"), DeviceKind.PCI_TO_PCIE_BRIDGE, secondary=5, subordinate=5),
        ]
    )
    numa = None
    if mem_pages is not None:
        # ``mem_pages`` past bring-up's invalidation queue (4 pages), its wait status slot (1)
        # and interrupt remapping table (256).
        pages = mem_pages + 4 + 1 + 256
        numa = vtdwalk.Numa([vtdwalk.NumaNode(0x100000, pages * 4096, (0,))])
    return Platform(table, topology=topo, numa=numa, policy=policy)  # type: ignore[arg-type]


def entries_on(p: Platform) -> dict[str, ref.Ctx]:
    """Present context entries of the (only) unit, read from memory."""
    (u,) = p.iommus
    return ref.present_entries(p.mem, present_table(u.root_maddr))


def ref_translate(p: Platform, unit: Iommu, sid: int, iova: int, write: bool = False) -> int:
    """The independent reference walk over the same memory: hpa, or -fault reason."""
    r = hw_walk.translate(
        hw_walk.Unit(unit.cap, unit.ecap), p.mem.read_u64, unit.root_maddr, sid, iova, write
    )
    return -r.fault if r.fault else r.hpa


# ---------------------------------------------------------------------------------------------
# End to end on the two-socket corpus machine


def test_two_sockets_end_to_end() -> None:
    p = x10dai()
    s0, s1 = unit_at(p, SOCKET0_UNIT), unit_at(p, SOCKET1_UNIT)
    assert (s0.node, s1.node) == (0, 1)
    d0, d1 = p.create_domain(), p.create_domain()
    assert [d0.node, d1.node] == [None, None]
    p.assign_device(d0, "01:00.0")  # NVMe behind root port 00:01.0: socket 0
    p.assign_device(d1, "0000:82:00.0")  # NVMe behind root port 80:02.0: socket 1
    p.assign_device(d1, 0x8100)  # 81:00.0 as an int source-id
    assert (d0.node, d1.node) == (0, 1)
    assert d0.units == [s0] and d1.units == [s1]

    d0.map(0x10_0000, 0x4000_0000, 0x3000)
    d1.map(0x10_0000, 0x10_0000_0000 + 0x20_0000, 0x1000, write=False)
    d1.map(0x20_0000, 0x10_8000_0000, 0x20_0000)  # a 2 MiB page
    assert p.translate("01:00.0", 0x10_2ABC).hpa == 0x4000_2ABC
    t = p.translate("82:00.0", 0x10_0010)
    assert t.hpa == 0x10_0020_0010 and t.domain_id == d1.did(s1)
    assert p.translate("81:00.0", 0x3F_FFF8, write=True).hpa == 0x10_801F_FFF8
    # The independent walker agrees on the same memory.
    for dev, unit, iova in (
        ("01:00.0", s0, 0x10_1008),
        ("82:00.0", s1, 0x10_0FF0),
        ("81:00.0", s1, 0x21_2340),
    ):
        sid = vtdwalk.Bdf.parse(dev).sid
        assert p.translate(dev, iova).hpa == ref_translate(p, unit, sid, iova)
    # Read-only mapping: a write faults (0x5), and a device of one domain cannot see the other's.
    with pytest.raises(DmaFault) as e:
        p.translate("82:00.0", 0x10_0000, write=True)
    assert e.value.reason == 0x5
    with pytest.raises(DmaFault) as e:
        p.translate("01:00.0", 0x20_0000)
    assert e.value.reason == 0x6  # not mapped in d0
    # A device assigned nowhere: its bus has no context table on its unit.
    with pytest.raises(DmaFault) as e:
        p.translate("02:00.0", 0x10_0000)
    assert e.value.reason in (0x1, 0x2)


def test_deassign_gives_context_not_present() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    p.assign_device(d, "00:1f.2")
    d.map(0x8000, 0x9000_0000, 0x1000)
    assert p.translate("01:00.0", 0x8000).hpa == 0x9000_0000  # now in the IOTLB
    assert p.deassign_device("01:00.0") is d
    with pytest.raises(DmaFault) as e:
        p.translate("01:00.0", 0x8000)
    assert e.value.reason == 0x2 and e.value.sid == 0x0100
    s0 = unit_at(p, SOCKET0_UNIT)
    e2 = ref.entry(p.mem, present_table(s0.root_maddr), 1, 0)
    assert e2 is not None and not e2.present and (e2.slptptr, e2.did) == (0, 0)
    # The other device of the domain is untouched, and the DID stays while it is there.
    assert p.translate("00:1f.2", 0x8000).hpa == 0x9000_0000
    did = d.did(s0)
    assert did is not None and s0.dids.owner(did) == d.id
    p.deassign_device("00:1f.2")
    assert d.did(s0) is None and s0.dids.owner(did) is None and d.units == []
    with pytest.raises(PlatformError):
        p.deassign_device("00:1f.2")


def test_remap_after_flush() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "82:00.0")
    s1 = unit_at(p, SOCKET1_UNIT)
    d.map(0x5000, 0x10_0000_1000, 0x1000)
    assert p.translate("82:00.0", 0x5010).hpa == 0x10_0000_1010  # cached in the IOTLB
    # Changing the table behind the hardware's back: the IOTLB still has the old translation.
    assert d.page_table is not None
    d.page_table.map(0x5000, 0x10_0000_7000, 0x1000)
    assert p.translate("82:00.0", 0x5010).hpa == 0x10_0000_1010
    # The domain's map flushes (page-selective, the domain's DID): the new address shows.
    assert d.map(0x5000, 0x10_0000_9000, 0x1000) is True
    assert d.flush_log[-1].kind == "page" and d.flush_log[-1].did == d.did(s1)
    assert p.translate("82:00.0", 0x5010).hpa == 0x10_0000_9010
    d.unmap(0x5000, 0x1000)
    with pytest.raises(DmaFault) as e:
        p.translate("82:00.0", 0x5010)
    assert e.value.reason == 0x6


def test_rmrr_identity_map_refcounted() -> None:
    p = x10dai()
    (rmrr,) = p.rmrrs
    assert (rmrr.base, rmrr.end) == (0x7B461000, 0x7B470FFF)
    d = p.create_domain()
    # 00:14.0 shares the RMRR with 00:1a.0 and 00:1d.0: refused unless relaxed, nothing done.
    with pytest.raises(PlatformError, match="shares RMRR"):
        p.assign_device(d, "00:14.0")
    assert p.owner_of("00:14.0") is None and d.node is None and d.links == {}
    p.assign_device(d, "00:14.0", relaxed=True)
    p.assign_device(d, "00:1a.0", relaxed=True)
    assert d.rmrr_refs == {(rmrr.base, rmrr.end): 2}
    for dev in ("00:14.0", "00:1a.0"):
        for iova in (rmrr.base, rmrr.base + 0x8123, rmrr.end - 7):
            assert p.translate(dev, iova, write=True).hpa == iova
    with pytest.raises(DmaFault):
        p.translate("00:14.0", rmrr.end + 1)
    with pytest.raises(DmaFault):
        p.translate("00:14.0", rmrr.base - 1)
    p.deassign_device("00:14.0")
    assert d.rmrr_refs == {(rmrr.base, rmrr.end): 1}
    assert p.translate("00:1a.0", rmrr.base).hpa == rmrr.base
    p.deassign_device("00:1a.0")
    assert d.rmrr_refs == {}
    assert d.lookup(rmrr.base) is None


def test_rmrrs_on_corpus_table() -> None:
    path = CORPUS / "dell-poweredge-r820.dat"
    p = Platform.from_dmar(path)
    devices = sorted({b for r in p.rmrrs for b in r.devices})
    assert len(p.rmrrs) == 3 and devices
    for dev in devices:
        d = p.create_domain()
        p.assign_device(d, dev, relaxed=True)
        for r in p.rmrrs_for_device(dev):
            for iova in (r.base, (r.base + r.end) // 2, r.end):
                assert p.translate(dev, iova, write=True).hpa == iova
        assert len(d.rmrr_refs) == len(p.rmrrs_for_device(dev))


# ---------------------------------------------------------------------------------------------
# Context entries by device kind


def test_q35_pcie_to_pci_bridge_aliases() -> None:
    p = q35()
    d = p.create_domain()
    p.assign_device(d, "03:01.0")
    (u,) = p.iommus
    did = d.did(u)
    got = entries_on(p)
    assert sorted(got) == ["02:00.0", "03:00.0", "03:01.0"]
    assert {e.did for e in got.values()} == {did}
    assert {(e.tt, e.aw, e.fpd) for e in got.values()} == {(0, 2, False)}
    assert d.page_table is not None
    assert {e.slptptr for e in got.values()} == {d.page_table.root}
    # The context tables sit on the unit's node; DMA by the device or by either alias works.
    d.map(0x1000, 0x2345_6000, 0x1000)
    for dev in ("03:01.0", "03:00.0", "02:00.0"):
        assert p.translate(dev, 0x1010).hpa == 0x2345_6010
    # A second device behind the same bridge: same domain fine (aliases shared) ...
    p.assign_device(d, "03:02.0")
    assert sorted(entries_on(p)) == ["02:00.0", "03:00.0", "03:01.0", "03:02.0"]
    # ... and its leaving keeps the aliases the e1000 still needs.
    p.deassign_device("03:02.0")
    assert sorted(entries_on(p)) == ["02:00.0", "03:00.0", "03:01.0"]
    p.deassign_device("03:01.0")
    assert entries_on(p) == {}
    assert d.did(u) is None


def test_alias_owned_by_other_domain_refused_without_trace() -> None:
    p = q35()
    d1, d2 = p.create_domain(), p.create_domain()
    p.assign_device(d1, "03:01.0")
    before = entries_on(p)
    (u,) = p.iommus
    with pytest.raises(PlatformError, match="already mapped to domain 1"):
        p.assign_device(d2, "03:02.0")
    assert entries_on(p) == before
    assert d2.did(u) is None and u.dids.lookup(d2.id) is None
    assert p.owner_of("03:02.0") is None and d2.devices == set()


def test_legacy_bridge_alias_has_no_secbus_entry() -> None:
    p = q35()
    d = p.create_domain()
    p.assign_device(d, "04:03.0")
    assert sorted(entries_on(p)) == ["00:1e.0", "04:03.0"]


def test_phantom_functions_one_entry_per_stride() -> None:
    p = q35()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    got = entries_on(p)
    assert sorted(got) == ["01:00.0", "01:00.2", "01:00.4", "01:00.6"]
    (u,) = p.iommus
    assert {e.did for e in got.values()} == {d.did(u)}
    d.map(0, 0x7000_0000, 0x1000)
    for fn in (0, 2, 4, 6):
        assert p.translate(f"01:00.{fn}", 0x44).hpa == 0x7000_0044
    with pytest.raises(DmaFault) as e:
        p.translate("01:00.1", 0x44)
    assert e.value.reason == 0x2
    p.deassign_device("01:00.0")
    assert entries_on(p) == {}


def test_bridges_get_no_entry_and_host_bridge_refused() -> None:
    p = q35()
    d = p.create_domain()
    p.assign_device(d, "02:00.0")  # a PCIe-to-PCI bridge: owned, no context entry
    p.assign_device(d, "00:1c.1")  # a root port
    assert entries_on(p) == {} and p.owner_of("02:00.0") is d
    for bad in ("00:00.0", "00:1f.0"):
        with pytest.raises(PlatformError):
            p.assign_device(d, bad)
        assert p.owner_of(bad) is None
    assert entries_on(p) == {}


def test_bad_input_changes_nothing() -> None:
    p = q35()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    before = entries_on(p)
    other = p.create_domain()
    # Malformed addresses are bad arguments; a well-formed one in no unit's scope is refused.
    bad_devs: list[tuple[object, type[VtdError]]] = [
        ("zz:00.0", InvalidArgument),
        ("07:00.0", PlatformError),
        (1 << 40, InvalidArgument),
        (-1, InvalidArgument),
        (True, InvalidArgument),
        (3.5, InvalidArgument),
    ]
    for dev, exc in bad_devs:
        with pytest.raises(exc) as bi:
            p.assign_device(other, dev)  # type: ignore[arg-type]
        assert type(bi.value) is exc
        if exc is InvalidArgument:
            assert str(bi.value).startswith("bdf: ")
    with pytest.raises(PlatformError, match="owned by domain"):
        p.assign_device(other, "01:00.0")
    with pytest.raises(PlatformError, match="already assigned"):
        p.assign_device(d, "01:00.0")
    with pytest.raises(PlatformError):
        p.assign_device(999, "03:01.0")
    stranger = x10dai().create_domain()
    with pytest.raises(PlatformError):
        p.assign_device(stranger, "03:01.0")
    for lv in (2, 6, True, "4"):
        with pytest.raises(InvalidArgument, match="levels"):
            p.create_domain(levels=lv)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="passthrough"):
        p.create_domain(passthrough=1)  # type: ignore[arg-type]
    assert entries_on(p) == before
    assert isinstance(PlatformError("x"), VtdError)


def test_out_of_memory_mid_assignment_rolls_back() -> None:
    # Root table 1 page + the domain's first chain 4 pages + one context table: the second
    # context table (bus 2, for the bridge alias) does not fit.
    p = q35(mem_pages=6)
    (u,) = p.iommus
    d = p.create_domain()
    for _ in range(2):
        with pytest.raises(vtdwalk.OutOfMemory):
            p.assign_device(d, "03:01.0")
        # No context entry is left behind (an empty context table may be: Xen never frees
        # them either), nor a DID, nor ownership.
        assert entries_on(p) == {}
        assert u.dids.lookup(d.id) is None and d.links == {} and p.owner_of("03:01.0") is None
    # Still usable: a bridge needs no context entry.
    p.assign_device(d, "02:00.0")
    assert p.owner_of("02:00.0") is d


def test_reassign_moves_device() -> None:
    p = x10dai()
    s1 = unit_at(p, SOCKET1_UNIT)
    a, b = p.create_domain(), p.create_domain()
    a.map(0x1000, 0x10_0000_A000, 0x1000)
    b.map(0x1000, 0x10_0000_B000, 0x1000)
    p.reassign_device("82:00.0", a)  # no owner: plain assignment
    assert p.translate("82:00.0", 0x1000).hpa == 0x10_0000_A000
    p.reassign_device("82:00.0", b)
    assert p.owner_of("82:00.0") is b and a.devices == set()
    assert p.translate("82:00.0", 0x1000).hpa == 0x10_0000_B000
    assert a.did(s1) is None and b.did(s1) is not None
    e = ref.entry(p.mem, present_table(s1.root_maddr), 0x82, 0)
    assert e is not None and e.present and e.did == b.did(s1)
    # Reassigning to the owner is a no-op; to a stranger an error with nothing changed.
    p.reassign_device("82:00.0", b)
    with pytest.raises(PlatformError):
        p.reassign_device("82:00.0", 42)
    assert p.owner_of("82:00.0") is b


def test_reassign_refused_when_alias_still_needed() -> None:
    p = q35()
    a, b = p.create_domain(), p.create_domain()
    p.assign_device(a, "03:01.0")
    p.assign_device(a, "03:02.0")
    before = entries_on(p)
    with pytest.raises(PlatformError, match="still needed"):
        p.reassign_device("03:02.0", b)
    assert entries_on(p) == before and p.owner_of("03:02.0") is a


def test_passthrough_domain() -> None:
    p = x10dai()
    d = p.create_domain(passthrough=True)
    assert d.page_table is None
    p.assign_device(d, "82:00.0")
    s1 = unit_at(p, SOCKET1_UNIT)
    e = ref.entry(p.mem, present_table(s1.root_maddr), 0x82, 0)
    assert e is not None and (e.tt, e.aw, e.slptptr) == (2, s1.levels - 2, 0)
    assert p.translate("82:00.0", 0x1234_5678).hpa == 0x1234_5678
    with pytest.raises(PlatformError):
        d.map(0, 0, 0x1000)
    # A unit without ECAP.PT refuses it.
    q = x10dai(ecap=QEMU_ECAP & ~(1 << 6))
    with pytest.raises(PlatformError, match="pass-through"):
        q.assign_device(q.create_domain(passthrough=True), "82:00.0")


def test_level_skipping_on_a_three_level_unit() -> None:
    cap39 = (QEMU_CAP & ~(0x1F << 8)) | (0x2 << 8)  # SAGAW: 3-level only
    p = x10dai(unit_caps={SOCKET1_UNIT: (cap39, QEMU_ECAP)})
    s1 = unit_at(p, SOCKET1_UNIT)
    assert s1.levels == 3
    d = p.create_domain()  # 4 levels
    p.assign_device(d, "82:00.0")
    pt = d.page_table
    assert pt is not None and pt.levels == 4
    e = ref.entry(p.mem, present_table(s1.root_maddr), 0x82, 0)
    l3 = p.mem.read_u64(present_table(pt.root)) & ref.ADDR  # entry 0 of the L4 table
    assert e is not None and e.aw == 1 and e.slptptr == l3 != 0
    d.map(0x4000_0000, 0x10_0000_0000, 0x1000)
    assert p.translate("82:00.0", 0x4000_0008).hpa == 0x10_0000_0008
    # Beyond the first 512 GiB the 4-level table has mappings the 3-level unit cannot reach.
    d.map(1 << 39, 0x10_0000_5000, 0x1000)
    with pytest.raises(DmaFault):
        p.translate("82:00.0", 1 << 39)
    # Unmapping everything frees the tables under entry 0; the unit is pointed at new ones.
    d.map(0, 0x10_0000_4000, 0x1000)
    d.unmap(0x4000_0000, 0x1000)
    d.unmap(1 << 39, 0x1000)
    d.unmap(0, 0x1000)
    assert d.flush_counts["reanchor"] >= 1
    d.map(0x4000_0000, 0x10_0000_3000, 0x1000)
    e = ref.entry(p.mem, present_table(s1.root_maddr), 0x82, 0)
    assert e is not None and e.slptptr == p.mem.read_u64(present_table(pt.root)) & ref.ADDR
    assert p.translate("82:00.0", 0x4000_0008).hpa == 0x10_0000_3008
    # A 3-level domain on a 4-level unit needs no skipping.
    d3 = p.create_domain(levels=3)
    p.assign_device(d3, "01:00.0")
    s0 = unit_at(p, SOCKET0_UNIT)
    e = ref.entry(p.mem, present_table(s0.root_maddr), 1, 0)
    assert d3.page_table is not None
    assert e is not None and (e.aw, e.slptptr) == (1, d3.page_table.root)


# ---------------------------------------------------------------------------------------------
# ATS and device_in_domain (seed patch 3)


def test_ats_tt_and_device_in_domain() -> None:
    p = x10dai(ecap=QEMU_ECAP | DT)
    s0 = unit_at(p, SOCKET0_UNIT)
    d = p.create_domain()
    p.assign_device(d, "01:00.0")  # ATS, below ATSR root port 00:01.0
    p.assign_device(d, "00:1f.2")  # no ATS capability
    did = d.did(s0)
    assert did is not None
    e_ats = ref.entry(p.mem, present_table(s0.root_maddr), 0x01, 0)
    e_plain = ref.entry(p.mem, present_table(s0.root_maddr), 0x00, 0x1F << 3 | 2)
    assert e_ats is not None and e_ats.tt == 1
    assert e_plain is not None and e_plain.tt == 0
    # True: the entry's DID matches and TT is device-TLB.
    assert p.device_in_domain(s0, "01:00.0", did) is True
    assert p.device_in_domain(s0.index, 0x0100, did) is True
    # False: another DID; TT 0; no root entry for the bus; a zeroed entry (DID 0, TT 0).
    assert p.device_in_domain(s0, "01:00.0", did + 1) is False
    assert p.device_in_domain(s0, "00:1f.2", did) is False
    assert p.device_in_domain(s0, "0a:00.0", did) is False
    assert p.device_in_domain(s0, "01:00.1", 0) is False
    # The present bit is not checked: a not-present entry with the DID and TT 1 counts.
    t = ref.context_table(p.mem, present_table(s0.root_maddr), 0x01)
    assert t is not None
    p.mem.write_u64(t + 16 * 3 + 8, did << 8)
    p.mem.write_u64(t + 16 * 3, 1 << 2)
    assert p.device_in_domain(s0, "01:00.3", did) is True
    # No root table: false (Xen: ASSERT_UNREACHABLE).
    bare = x10dai(ecap=QEMU_ECAP | DT)
    b0 = unit_at(bare, SOCKET0_UNIT)
    bare.assign_device(bare.create_domain(), "01:00.0")
    assert bare.device_in_domain(b0, "01:00.0", 0) is True
    b0.free()
    assert b0.root_maddr is None
    assert bare.device_in_domain(b0, "01:00.0", 0) is False
    # Flushes of the domain carry a device-TLB invalidation for the ATS device.
    d.map(0x1000, 0x2000_0000, 0x1000)
    d.map(0x1000, 0x2000_1000, 0x1000)
    assert d.flush_log[-1].dev_iotlb == 1
    # Without ECAP.DT, TT stays 0.
    q = x10dai(ecap=QEMU_ECAP & ~DT)
    q.assign_device(q.create_domain(), "01:00.0")
    e = ref.entry(q.mem, present_table(unit_at(q, SOCKET0_UNIT).root_maddr), 0x01, 0)
    assert e is not None and e.tt == 0
    # Deassignment clears it.
    p.deassign_device("01:00.0")
    assert p.device_in_domain(s0, "01:00.0", did) is False


def test_device_in_domain_bad_input() -> None:
    p = q35()
    (u,) = p.iommus
    for did in (-1, 1 << 16, True):
        with pytest.raises(InvalidArgument, match="DID"):
            p.device_in_domain(u, "01:00.0", did)
    with pytest.raises(PlatformError):
        p.device_in_domain(99, "01:00.0", 0)
    with pytest.raises(PlatformError):
        p.device_in_domain(x10dai().iommus[0], "01:00.0", 0)


# ---------------------------------------------------------------------------------------------
# Batches


def test_translate_batch_matches_single_requests() -> None:
    p = x10dai()
    d0, d1 = p.create_domain(), p.create_domain()
    p.assign_device(d0, "01:00.0")
    p.assign_device(d1, "82:00.0")
    d0.map(0, 0x3000_0000, 0x10_0000)
    d1.map(0, 0x10_0000_0000, 0x10_0000, write=False)
    rng = np.random.default_rng(7)
    devs = ["01:00.0", "82:00.0", "81:00.0", "0000:01:00.0"]
    picks = rng.integers(0, len(devs), 200)
    bdfs = [devs[i] for i in picks]
    iovas = rng.integers(0, 0x12_0000, 200).astype(np.uint64)
    writes = rng.integers(0, 2, 200).astype(bool)
    hpa, fault = p.translate_batch(bdfs, iovas, writes)
    for b, a, w, h, f in zip(bdfs, iovas.tolist(), writes.tolist(), hpa, fault, strict=True):
        try:
            t = p.translate(b, a, write=w)
            assert (int(h), int(f)) == (t.hpa, 0)
        except DmaFault as e:
            assert (int(h), int(f)) == (0, e.reason)
    # Integer source-ids (segment << 16 | sid) give the same answers.
    keys = np.array([vtdwalk.Bdf.parse(b).sid for b in bdfs], dtype=np.uint32)
    hpa2, fault2 = p.translate_batch(keys, iovas, writes)
    assert np.array_equal(hpa, hpa2) and np.array_equal(fault, fault2)
    with pytest.raises(InvalidArgument):
        p.translate_batch(bdfs[:3], iovas)
    with pytest.raises(InvalidArgument):
        p.translate_batch("01:00.0", iovas[:1])
    # threads goes through to the units' hardware and changes no answer.
    hpa3, fault3 = p.translate_batch(bdfs, iovas, writes, threads=2)
    assert np.array_equal(hpa, hpa3) and np.array_equal(fault, fault3)
    # One device, or several devices of one unit, take the one-unit path: same answers.
    for dev in ("01:00.0", "82:00.0"):
        sel = [i for i, b in enumerate(bdfs) if B(b) == B(dev)]
        h1, f1 = p.translate_batch([dev] * len(sel), iovas[sel], writes[sel])
        assert np.array_equal(h1, hpa[sel]) and np.array_equal(f1, fault[sel])
    sel = [i for i, b in enumerate(bdfs) if B(b) in (B("82:00.0"), B("81:00.0"))]
    h2, f2 = p.translate_batch([bdfs[i] for i in sel], iovas[sel], writes[sel])
    assert np.array_equal(h2, hpa[sel]) and np.array_equal(f2, fault[sel])
    h0, f0 = p.translate_batch([], [])
    assert h0.shape == f0.shape == (0,)


def test_translate_batch_bad_arrays_refused() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    d.map(0, 0x3000_0000, 0x10_0000)
    devs = ["01:00.0"] * 2
    for iovas in ([-4096, 0], [4096.0, 0.5], ["0x1000", "0"], [[0, 1], [2, 3]], [2**64, 0]):
        with pytest.raises(InvalidArgument, match="iovas") as ei:
            p.translate_batch(devs, iovas)
        assert isinstance(ei.value, VtdError) and isinstance(ei.value, ValueError)
    bad_writes: list[Any] = [["no", "yes"], [0.0, 1.0], [2, 0], [-1, 0], [None, None]]
    for writes in bad_writes:
        with pytest.raises(InvalidArgument, match="writes"):
            p.translate_batch(devs, [0, 0x1000], writes)
    # Booleans and 0/1 integers are writes.
    good_writes: list[Any] = [[True, False], [1, 0], np.array([1, 0], dtype=np.uint8)]
    for writes in good_writes:
        _, fault = p.translate_batch(devs, [0, 0x1000], writes)
        assert fault.tolist() == [0, 0]
    d.map(0, 0x3000_0000, 0x1000, write=False)
    _, fault = p.translate_batch(devs, [0, 0], [1, 0])
    assert fault.tolist() == [5, 0]  # a write to a read-only page; the read is fine
    bad_devices: list[tuple[list[Any], type[VtdError], str]] = [
        (["01:00.0", "zz"], InvalidArgument, "^devices: 'zz' is not a PCI address"),
        ([0x0100, -1], InvalidArgument, "devices: a device key is outside 0..0xffffffff"),
        ([0x0100, 1 << 40], InvalidArgument, "devices: a device key is outside 0..0xffffffff"),
    ]
    for bad, exc, msg in bad_devices:
        with pytest.raises(exc, match=msg) as bi:
            p.translate_batch(bad, [0, 0])
        assert type(bi.value) is exc


def test_every_method_takes_the_same_device_forms() -> None:
    p = x10dai()
    d = p.create_domain()
    forms = [
        "0000:81:00.0",
        "81:00.0",
        B("81:00.0"),
        (0, 0x81, 0, 0),
        0x8100,
        np.uint32(0x8100),
        p.topology[B("81:00.0")],
    ]
    unit = p.iommu_for_device("81:00.0")
    assert unit is not None and unit.address == SOCKET1_UNIT
    for f in forms:
        assert Bdf.coerce(f) == B("81:00.0")
        assert p.iommu_for_device(f) is unit
        assert p.drhd_for_device(f) is unit.drhd
        assert p.atsr_for_device(f) is not None
        assert p.rmrrs_for_device(f) == []
        p.assign_device(d, f)
        assert p.owner_of(f) is d
        d.map(0, 0x5000_0000, 0x1000)
        assert p.translate(f, 0x10).hpa == 0x5000_0010
        assert p.deassign_device(f) is d
        d.unmap(0, 0x1000)
    # Segment in the high half; out of range or booleans are refused.
    assert Bdf.coerce(0x1_8100) == Bdf(1, 0x81, 0, 0)
    for bad in (-1, 1 << 32, True, 1.5):
        with pytest.raises(InvalidArgument, match=r"^bdf: "):
            Bdf.coerce(bad)  # type: ignore[arg-type]


def test_default_platform_uses_device_tlb_where_ats_applies() -> None:
    # Issue 7: TT 1 where the device has ATS, the unit ECAP.DT and an ATSR covers it. The
    # default units have ECAP.DT (the hardware model's default ECAP).
    p = Platform.default()
    s1 = unit_at(p, SOCKET1_UNIT)
    assert s1.device_iotlb and s1.ecap == QEMU_ECAP
    assert p.atsr_for_device("81:00.0") is not None and p.topology[B("81:00.0")].ats
    assert p.atsr_for_device("81:00.1") is not None and not p.topology[B("81:00.1")].ats
    d = p.create_domain()
    p.assign_device(d, "81:00.0")
    p.assign_device(d, "81:00.1")
    gpu = ref.entry(p.mem, present_table(s1.root_maddr), 0x81, 0)
    audio = ref.entry(p.mem, present_table(s1.root_maddr), 0x81, 1)
    assert gpu is not None and gpu.tt == 1
    assert audio is not None and audio.tt == 0
    did = d.did(s1)
    assert did is not None and p.device_in_domain(s1, "81:00.0", did)
    d.map(0, 0x5000_0000, 0x1000)
    d.map(0, 0x5000_1000, 0x1000)
    assert d.flush_log[-1].dev_iotlb == 1
    # Without ECAP.DT: TT 0 for the same device.
    q = Platform.default(ecap=QEMU_ECAP & ~DT)
    q.assign_device(q.create_domain(), "81:00.0")
    e = ref.entry(q.mem, present_table(unit_at(q, SOCKET1_UNIT).root_maddr), 0x81, 0)
    assert e is not None and e.tt == 0


def test_reassign_double_failure_says_the_device_is_unassigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = x10dai()
    a, b = p.create_domain(), p.create_domain()
    p.assign_device(a, "82:00.0")
    real_apply = vtdwalk.driver.assign.Assignments._apply
    calls: list[int] = []

    def failing_apply(
        self: vtdwalk.driver.assign.Assignments, d: vtdwalk.Domain, plan: object
    ) -> None:
        calls.append(d.id)
        raise vtdwalk.OutOfMemory(f"no memory for domain {d.id}")

    monkeypatch.setattr(vtdwalk.driver.assign.Assignments, "_apply", failing_apply)
    with pytest.raises(PlatformError, match="now unassigned") as ei:
        p.reassign_device("82:00.0", b)
    assert calls == [b.id, a.id]
    msg = str(ei.value)
    assert f"domain {b.id}" in msg and f"domain {a.id}" in msg
    assert isinstance(ei.value.__cause__, vtdwalk.OutOfMemory)
    assert str(ei.value.__cause__) == f"no memory for domain {b.id}"
    assert p.owner_of("82:00.0") is None
    # Only the move failing: the device is back in its source, the move's error raised.
    calls.clear()

    def fail_target(
        self: vtdwalk.driver.assign.Assignments, d: vtdwalk.Domain, plan: object
    ) -> None:
        if d is b:
            raise vtdwalk.OutOfMemory("target")
        real_apply(self, d, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(vtdwalk.driver.assign.Assignments, "_apply", fail_target)
    p.assign_device(a, "82:00.0")
    with pytest.raises(vtdwalk.OutOfMemory, match="target"):
        p.reassign_device("82:00.0", b)
    assert p.owner_of("82:00.0") is a


def test_rmrr_over_a_foreign_mapping_refused() -> None:
    p = x10dai()
    (rmrr,) = p.rmrrs
    d = p.create_domain()
    d.map(rmrr.base + 0x2000, 0x5000_0000, 0x1000)
    with pytest.raises(PlatformError, match="overlaps"):
        p.assign_device(d, "00:14.0", relaxed=True)
    assert p.owner_of("00:14.0") is None and d.rmrr_refs == {} and d.links == {}
    assert d.lookup(rmrr.base) is None
    # An identity mapping already there is no conflict.
    d.unmap(rmrr.base + 0x2000, 0x1000)
    d.map(rmrr.base, rmrr.base, 0x1000)
    p.assign_device(d, "00:14.0", relaxed=True)
    assert p.translate("00:14.0", rmrr.base + 0x2008).hpa == rmrr.base + 0x2008


def test_virtual_function_gets_its_own_entry() -> None:
    p = x10dai()
    vf = p.topology["02:10.2"]
    assert vf.physfn == B("02:00.0")
    d = p.create_domain()
    p.assign_device(d, "02:10.2")
    s0 = unit_at(p, SOCKET0_UNIT)
    got = ref.present_entries(p.mem, present_table(s0.root_maddr))
    assert sorted(got) == ["02:10.2"] and got["02:10.2"].did == d.did(s0)
    d.map(0, 0x6000_0000, 0x1000)
    assert p.translate("02:10.2", 0x10).hpa == 0x6000_0010
    with pytest.raises(DmaFault):
        p.translate("02:00.0", 0x10)  # the PF is not assigned


def test_platform_free_releases_domain_tables() -> None:
    p = x10dai()
    base = sum(s["allocated_pages"] for s in p.mem.stats())
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    p.assign_device(d, "82:00.0")
    d.map(0, 0x4000_0000, 0x40_0000)
    assert sum(s["allocated_pages"] for s in p.mem.stats()) > base
    p.free()
    assert p.domains == [] and p.owner_of("01:00.0") is None
    assert sum(s["allocated_pages"] for s in p.mem.stats()) == 0


def test_five_level_domain() -> None:
    cap57 = QEMU_CAP | (0x8 << 8) | (56 << 16)  # SAGAW adds 5-level, MGAW 57 bits
    p = x10dai(unit_caps={SOCKET1_UNIT: (cap57, QEMU_ECAP)})
    s0, s1 = unit_at(p, SOCKET0_UNIT), unit_at(p, SOCKET1_UNIT)
    assert s1.levels == 5 and s0.levels == 4
    d = p.create_domain(levels=5)
    p.assign_device(d, "82:00.0")  # walks all 5 levels
    p.assign_device(d, "01:00.0")  # 4-level unit: one level skipped
    assert d.page_table is not None
    e1 = ref.entry(p.mem, present_table(s1.root_maddr), 0x82, 0)
    e0 = ref.entry(p.mem, present_table(s0.root_maddr), 0x01, 0)
    assert e1 is not None and (e1.aw, e1.slptptr) == (3, d.page_table.root)
    l4 = p.mem.read_u64(present_table(d.page_table.root)) & ref.ADDR
    assert e0 is not None and (e0.aw, e0.slptptr) == (2, l4)
    d.map(0x7F_0000_0000, 0x10_0000_0000, 0x1000)
    d.map(1 << 48, 0x10_0000_1000, 0x1000)
    assert p.translate("82:00.0", 0x7F_0000_0010).hpa == 0x10_0000_0010
    assert p.translate("01:00.0", 0x7F_0000_0010).hpa == 0x10_0000_0010
    assert p.translate("82:00.0", (1 << 48) + 0x10).hpa == 0x10_0000_1010
    with pytest.raises(DmaFault):
        p.translate("01:00.0", (1 << 48) + 0x10)


def test_translate_remembers_units_and_forgets_them_on_change() -> None:
    p = x10dai()
    d = p.create_domain()
    p.assign_device(d, "82:00.0")
    d.map(0x10_0000, 0x10_0000_0000, 0x1000)
    want = 0x10_0000_0010
    # Every name form, twice (the second time from the remembered unit), the same answer.
    for _ in range(2):
        for name in ("82:00.0", "0000:82:00.0", 0x8200, B("82:00.0"), np.uint32(0x8200)):
            assert p.translate(name, 0x10_0010).hpa == want
    # A remembered integer does not make a bool or a float a device name.
    for bad in (True, float(0x8200)):
        with pytest.raises(InvalidArgument, match="bdf"):
            p.translate(bad, 0x10_0010)  # type: ignore[arg-type]
    # A device in no unit's scope is refused every time, and not remembered as anything.
    for _ in range(2):
        with pytest.raises(PlatformError):
            p.translate("0001:00:00.0", 0)
    # Deassigned: the next request faults (context entry not present).
    p.deassign_device("82:00.0")
    with pytest.raises(DmaFault) as e:
        p.translate("82:00.0", 0x10_0010)
    assert e.value.reason == 0x2
    # The topology changes its version on every change: a name then resolves afresh.
    v = p.topology.version
    p.topology.add_vfs("82:00.0", 2, offset=0x80)
    assert p.topology.version is not v
    p.assign_device(d, "82:10.0")
    assert p.translate("82:10.0", 0x10_0010).hpa == want
