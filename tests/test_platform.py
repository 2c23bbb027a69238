"""Platform building and Xen's look-ups on hand-built tables and topologies.

Expected answers come from xen-driver.md §1.5-§3 read by hand for each case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference import present_table
from vtdwalk import (
    Bdf,
    Device,
    DeviceKind,
    DidAllocator,
    DmaFault,
    DmarError,
    InvalidArgument,
    Iommu,
    Numa,
    NumaNode,
    OutOfMemory,
    PageTable,
    PhysMem,
    Platform,
    PlatformError,
    Remapper,
    Topology,
    dmar,
)
from vtdwalk.driver.iommu import MAX_IOMMUS, QEMU_CAP, QEMU_ECAP

K = DeviceKind
SC = dmar.DeviceScope
EP, BR, IOAPIC, HPET = dmar.SCOPE_ENDPOINT, dmar.SCOPE_BRIDGE, dmar.SCOPE_IOAPIC, dmar.SCOPE_HPET

A, B, C, D, E, F, G = 0xA000, 0xB000, 0xC000, 0xD000, 0xE000, 0xF000, 0x9000


def ep(bus: int, dev: int, fn: int = 0) -> dmar.DeviceScope:
    return SC(EP, start_bus=bus, path=[(dev, fn)])


def br(bus: int, dev: int, fn: int = 0) -> dmar.DeviceScope:
    return SC(BR, start_bus=bus, path=[(dev, fn)])


def drhd(address: int, *scopes: dmar.DeviceScope, seg: int = 0, inc: bool = False) -> dmar.Drhd:
    return dmar.Drhd(1 if inc else 0, seg, address, list(scopes))


def table(*structures: dmar.Structure, flags: int = 1) -> dmar.DmarTable:
    return dmar.DmarTable(host_address_width=47, flags=flags, structures=list(structures))


def machine() -> Topology:
    """Segment 0 and 1 with bridges, an SR-IOV PF with VFs, ARI functions."""
    t = Topology(
        [
            Device(Bdf(0, 0, 0, 0), K.HOST_BRIDGE),
            Device(Bdf(0, 0, 2, 0)),
            Device(Bdf(0, 0, 3, 0)),
            Device(Bdf(0, 0, 4, 0)),
            Device(Bdf(0, 0, 0x1F, 0), K.PCI),
            # 00:1c.0 -> 01:00.0 (switch up) -> 02:00.0 (switch down) -> 03:00.0
            Device(Bdf(0, 0, 0x1C, 0), K.PCIE_PORT, secondary=1, subordinate=3),
            Device(Bdf(0, 1, 0, 0), K.PCIE_PORT, secondary=2, subordinate=3),
            Device(Bdf(0, 2, 0, 0), K.PCIE_PORT, secondary=3, subordinate=3),
            Device(Bdf(0, 3, 0, 0), ats=True),
            # 00:06.0 -> bus 4 (PFs at 04:00.0 and 04:00.1, ARI), VFs spill onto bus 5
            Device(Bdf(0, 0, 6, 0), K.PCIE_PORT, secondary=4, subordinate=5),
            Device(Bdf(0, 4, 0, 0), ari=True),
            Device(Bdf(0, 4, 0, 1), ari=True, ats=True),
            Device(Bdf(0, 4, 2, 0), ari=True),  # ARI extended function 4:0x10
            # segment 1
            Device(Bdf(1, 0, 2, 0)),
            Device(Bdf(1, 0, 7, 0)),
        ]
    )
    # PF 04:00.1 (RID 0x401): VFs at RID 0x401 + 0xFF + i: 05:00.0, 05:00.1, ..., 05:01.0 ...
    t.add_vfs(Bdf(0, 4, 0, 1), 10, offset=0xFF)
    return t


def lookup_table() -> dmar.DmarTable:
    return table(
        drhd(C, ep(0, 3), SC(HPET, enumeration_id=0, start_bus=0, path=[(0x1F, 7)]), inc=True),
        drhd(
            A,
            ep(0, 2),
            ep(0, 3),
            ep(0, 4),
            ep(4, 0, 1),
            SC(IOAPIC, enumeration_id=8, start_bus=0xF0, path=[(0x1F, 0)]),
            SC(HPET, enumeration_id=0, start_bus=0, path=[(0x1F, 6)]),
        ),
        drhd(B, br(0, 0x1C), ep(0, 4), SC(IOAPIC, enumeration_id=8, start_bus=0, path=[(5, 4)])),
        drhd(D, ep(4, 0, 0)),
        drhd(G, seg=1, inc=True),
        drhd(E, ep(0, 7), seg=1),
        drhd(F, seg=1, inc=True),
        dmar.Atsr(0, 0, [br(0, 0x1C), ep(0, 0x1F)]),
        dmar.Atsr(1, 0, []),
        dmar.Atsr(1, 1, []),
        dmar.Rhsa(A, 0),
        dmar.Rhsa(A, 1),
        dmar.Rhsa(B, 1),
        dmar.Rhsa(0xDEAD000, 0),
    )


@pytest.fixture
def plat() -> Platform:
    return Platform(lookup_table(), topology=machine())


def addr(p: Platform, dev: object) -> int | None:
    d = p.drhd_for_device(dev)  # type: ignore[arg-type]
    return None if d is None else d.address


# ---- list order and DRHD matching


def test_list_order_is_xens(plat: Platform) -> None:
    # Specific units in reverse table order, then include-all ones in table order.
    assert [u.address for u in plat.iommus] == [E, D, B, A, C, G, F]
    assert [u.index for u in plat.iommus] == [5, 3, 2, 1, 0, 4, 6]
    assert all(u.drhd.address == u.address for u in plat.iommus)


def test_specific_unit_before_include_all(plat: Platform) -> None:
    assert addr(plat, "00:03.0") == A  # named by A and by include-all C: A
    assert addr(plat, "00:02.0") == A
    assert addr(plat, "00:1f.0") == C  # named by nobody: the fallback
    assert addr(plat, "00:00.0") == C


def test_later_table_entry_wins_among_specific_units(plat: Platform) -> None:
    assert addr(plat, "00:04.0") == B  # A and B both name it; B is nearer the list head


def test_bridge_ranges(plat: Platform) -> None:
    assert addr(plat, "00:1c.0") == B  # the bridge itself, by exact BDF
    for bus in (1, 2, 3):  # every bus from secondary to subordinate
        assert addr(plat, Bdf(0, bus, 0, 0)) == B
        assert addr(plat, Bdf(0, bus, 9, 3)) == B  # even functions that do not exist
    assert addr(plat, Bdf(0, 4, 0, 0)) == D  # bus 4 is under 00:06.0, named by nobody


def test_virtual_functions_match_as_their_pf(plat: Platform) -> None:
    vfs = plat.topology.vfs(Bdf(0, 4, 0, 1))
    assert vfs[0].bdf == Bdf(0, 5, 0, 0) and vfs[8].bdf == Bdf(0, 5, 1, 0)
    # A plain VF matches as PF 04:00.1 (named by A), although bus 5 is in no scope.
    assert addr(plat, vfs[0]) == A and addr(plat, "05:00.7") == A
    # A VF that is an ARI extended function matches as devfn 0 of the PF's bus: D.
    assert vfs[8].is_extfn and addr(plat, vfs[8]) == D
    # The same BDF looked up with no VF knowledge falls to the include-all unit.
    assert addr(plat, Device(Bdf(0, 5, 0, 0))) == C


def test_ari_extended_function_matches_as_devfn_0(plat: Platform) -> None:
    assert addr(plat, "04:02.0") == D  # devfn 0x10 on an ARI link -> 04:00.0 -> D
    assert addr(plat, Device(Bdf(0, 4, 2, 0))) == C  # no ARI: the fallback


def test_segments_are_separate(plat: Platform) -> None:
    assert addr(plat, "0001:00:07.0") == E
    assert addr(plat, "0001:00:02.0") == F  # A names 00:02.0 on segment 0 only
    assert addr(plat, Bdf(1, 0x40, 0, 0)) == F  # the last include-all of segment 1 wins
    assert addr(plat, Bdf(2, 0, 0, 0)) is None  # no unit for segment 2
    assert plat.drhd_for_device(None) is None
    u = plat.iommu_for_device("0001:00:07.0")
    assert u is not None and u.segment == 1


def test_atsr_lookup_uses_the_bus_only(plat: Platform) -> None:
    atsr = plat.atsr_for_device("03:00.0")
    assert atsr is not None and not atsr.all_ports and atsr.segment == 0
    # 00:1f.0 is named by the ATSR's (odd) endpoint entry: Xen only tests bridge buses.
    fb = plat.atsr_for_device("00:1f.0")
    assert fb is not None and fb.all_ports and fb.segment == 0
    assert plat.atsr_for_device("00:1c.0") is fb  # the port itself sits on bus 0
    seg1 = plat.atsr_for_device("0001:00:02.0")
    assert seg1 is not None and seg1.segment == 1
    assert plat.atsr_for_device(Bdf(2, 0, 0, 0)) is None
    assert plat.atsr_for_device(None) is None


def test_ioapic_and_hpet_lookups(plat: Platform) -> None:
    # IOAPIC 8 is named by A and B; B comes first in the list.
    assert plat.ioapic_to_drhd(8) is plat.iommus[2].drhd
    u = plat.ioapic_to_iommu(8)
    assert u is not None and u.address == B
    assert plat.apicid_to_bdf(8) == Bdf(0, 0, 5, 4)
    assert plat.ioapic_to_drhd(9) is None and plat.apicid_to_bdf(9) is None
    # HPET 0: named by A (specific) and C (include-all): A.
    h = plat.hpet_to_iommu(0)
    assert h is not None and h.address == A and plat.hpet_to_drhd(0) is h.drhd
    assert plat.hpet_to_iommu(1) is None and plat.hpet_to_drhd(1) is None


def test_rhsa_lookup_and_nodes(plat: Platform) -> None:
    ua = next(u for u in plat.iommus if u.address == A)
    rhsa = plat.drhd_to_rhsa(ua.drhd)
    assert rhsa is not None and rhsa.proximity_domain == 0  # the first RHSA for A
    assert plat.drhd_to_rhsa(None) is None
    nodes = {u.address: u.node for u in plat.iommus}
    assert nodes == {A: 0, B: 1, C: None, D: None, E: None, F: None, G: None}
    assert plat.pxm_to_node(1) == 1 and plat.pxm_to_node(7) is None
    # No proximity domain: NUMA_NO_NODE; a non-integer is a bad argument.
    assert plat.pxm_to_node(None) is None and plat.numa.pxm_to_node(None) is None
    for bad in ("1", 1.0, True):
        with pytest.raises(InvalidArgument, match="proximity domain"):
            plat.pxm_to_node(bad)  # type: ignore[arg-type]
    codes = plat.codes
    assert {"duplicate-rhsa", "rhsa-no-drhd", "unit-no-rhsa", "duplicate-include-all"} <= codes
    assert "include-all-not-last" in codes
    # Two include-all units on segment 1 is not fatal to Xen; on segment 0 it would be.
    assert not plat.findings(severity="fatal")


def test_rmrr_lookup() -> None:
    t = table(
        drhd(C, inc=True),
        dmar.Rmrr(0, 0x1000, 0x1FFF, [ep(0, 2), ep(0, 0x14)]),
        dmar.Rmrr(0, 0x4000, 0x4FFF, [ep(0, 2)]),
    )
    p = Platform(t)
    assert [r.base for r in p.rmrrs] == [0x4000, 0x1000]  # head insertion
    assert [r.base for r in p.rmrrs_for_device("00:02.0")] == [0x4000, 0x1000]
    assert [r.base for r in p.rmrrs_for_device("00:14.0")] == [0x1000]
    assert p.rmrrs_for_device("00:15.0") == []
    assert Bdf(0, 0, 2, 0) in p.rmrrs[0]


# ---- firmware oddities: reported, or refused under strict


def test_address_zero_is_skipped_or_refused() -> None:
    t = table(drhd(0, ep(0, 2)), drhd(C, inc=True))
    p = Platform(t)
    assert [u.address for u in p.iommus] == [C]
    assert p.codes == {"drhd-address-invalid"}
    assert addr(p, "00:02.0") == C
    with pytest.raises(PlatformError, match="drhd-address-invalid"):
        Platform(t, strict=True)


def test_two_include_all_on_segment_0() -> None:
    t = table(drhd(C, inc=True), drhd(F, inc=True))
    p = Platform(t)
    assert addr(p, "00:01.0") == F  # the last one seen is the fallback
    assert p.findings("duplicate-include-all", "fatal")
    with pytest.raises(PlatformError, match="duplicate-include-all"):
        Platform(t, strict=True)


def test_duplicate_units_are_kept() -> None:
    t = table(drhd(A, ep(0, 2)), drhd(A, ep(0, 2)), drhd(C, inc=True))
    p = Platform(t)
    assert [u.index for u in p.iommus] == [1, 0, 2]
    assert addr(p, "00:02.0") == A and p.iommu_for_device("00:02.0") is p.iommus[0]
    assert p.findings("duplicate-drhd-address", "warning")
    Platform(t, strict=True)  # Xen does not detect duplicates


def test_rmrr_oddities() -> None:
    topo = Topology([Device(Bdf(0, 0, 2, 0))])
    t = table(
        drhd(C, inc=True),
        dmar.Rmrr(0, 0x1000, 0x2FFF, [ep(0, 2)]),
        dmar.Rmrr(0, 0x2000, 0x3FFF, [ep(0, 2)]),  # overlaps: fatal in Xen
        dmar.Rmrr(0, 0x8000, 0x8FFF, []),  # no devices: dropped
        dmar.Rmrr(0, 0x9000, 0x9FFF, [ep(0, 9)]),  # device absent: dropped
        dmar.Rmrr(0, 0xB000, 0xAFFF, [ep(0, 2)]),  # base above limit: fatal
        dmar.Rmrr(0, 0x0, 0x40000FFF, [ep(0, 2)]),  # covers 0, large (and overlaps)
    )
    p = Platform(t, topology=topo)
    assert [r.base for r in p.rmrrs] == [0x1000]
    codes = p.codes
    assert {"rmrr-overlap", "rmrr-no-devices", "rmrr-devices-missing"} <= codes
    assert "rmrr-base-above-limit" in codes
    with pytest.raises(PlatformError, match="rmrr-overlap"):
        Platform(t, topology=topo, strict=True)
    big = Platform(table(drhd(C, inc=True), dmar.Rmrr(0, 0x0, 0x40000FFF, [ep(0, 2)])))
    assert {"rmrr-base-zero", "rmrr-large"} <= big.codes


def test_devices_outside_every_scope_and_missing_scope_devices() -> None:
    topo = Topology([Device(Bdf(0, 0, 2, 0)), Device(Bdf(0, 0, 3, 0))])
    p = Platform(table(drhd(A, ep(0, 2), ep(0, 9))), topology=topo)
    (orphans,) = p.findings("device-no-unit")
    assert "0000:00:03.0" in orphans.message and "0000:00:02.0" not in orphans.message
    (missing,) = p.findings("scope-device-missing")
    assert "0000:00:09.0" in missing.message
    assert p.iommu_for_device("00:03.0") is None


def test_second_all_ports_atsr_on_segment_0_is_fatal() -> None:
    t = table(drhd(C, inc=True), dmar.Atsr(1, 0, []), dmar.Atsr(1, 0, []))
    assert Platform(t).findings("duplicate-all-ports", "fatal")
    with pytest.raises(PlatformError, match="duplicate-all-ports"):
        Platform(t, strict=True)
    # On another segment Xen carries on: a warning, and strict accepts the table.
    t1 = table(drhd(C, inc=True), dmar.Atsr(1, 1, []), dmar.Atsr(1, 1, []))
    assert Platform(t1).findings("duplicate-all-ports", "warning")
    Platform(t1, strict=True)


def test_table_findings_are_validates_own() -> None:
    # One code per condition: the platform reports validate()'s problems for the table-level
    # conditions, with their offsets, and no second code of its own for them.
    t = table(
        drhd(A, ep(0, 2)),
        drhd(A, ep(0, 2)),
        drhd(C, inc=True),
        drhd(F, inc=True),
        dmar.Rmrr(0, 0x0, 0xFFF, [ep(0, 2)]),
        dmar.Atsr(1, 0, []),
        dmar.Atsr(1, 0, []),
        dmar.Rhsa(0xDEAD000, 0),
    )
    p = Platform(t, topology=Topology([Device(Bdf(0, 0, 2, 0))]))
    want = {"duplicate-drhd-address", "duplicate-include-all", "rmrr-base-zero"}
    want |= {"duplicate-all-ports", "rhsa-no-drhd"}
    probs = {(q.code, q.offset) for q in t.validate() if q.code in want}
    assert {(f.code, f.offset) for f in p.report if f.code in want} == probs
    assert {c for c, _ in probs} == want
    old = {"duplicate-unit", "multiple-include-all", "multiple-all-ports", "rmrr-at-zero"}
    assert not p.codes & (old | {"rhsa-no-unit"})
    sev = {f.code: f.severity for f in p.report if f.code in want}
    assert sev == {
        "duplicate-drhd-address": "warning",
        "duplicate-include-all": "fatal",
        "rmrr-base-zero": "warning",
        "duplicate-all-ports": "fatal",
        "rhsa-no-drhd": "warning",
    }


def test_unit_count_limit() -> None:
    t = table(*(drhd(0x10000 + i * 0x1000, ep(0, 1 + i % 30)) for i in range(MAX_IOMMUS + 2)))
    p = Platform(t)
    assert len(p.iommus) == MAX_IOMMUS + 1  # Xen's off-by-one accepts index 32
    assert len(p.findings("too-many-units")) == 1


def test_strict_allocates_nothing_before_refusing() -> None:
    mem = PhysMem([(1 << 30, 1 << 30)])
    with pytest.raises(PlatformError):
        Platform(table(drhd(0), drhd(C, inc=True)), mem=mem, strict=True)
    assert mem.stats()[0]["allocated_pages"] == 0


def test_haw_zero_is_fatal() -> None:
    t = table(drhd(C, inc=True))
    t.host_address_width = 0
    assert Platform(t).findings("haw-zero", "fatal")


# ---- NUMA placement: seed and pre-seed


def two_socket() -> dmar.DmarTable:
    return table(
        drhd(A, ep(0, 2)),
        drhd(B, ep(0x80, 2)),
        drhd(C, inc=True),
        dmar.Rhsa(A, 0),
        dmar.Rhsa(B, 1),
        dmar.Rhsa(C, 0),
    )


def test_seed_places_root_tables_on_rhsa_nodes() -> None:
    p = Platform(two_socket())
    for u in p.iommus:
        assert u.node == {A: 0, B: 1, C: 0}[u.address]
        assert p.mem.node_of(present_table(u.root_maddr)) == u.node
        # The root table, then bring-up's invalidation queue (Xen's QINVAL_PAGE_ORDER 2: four
        # pages) and interrupt remapping table (IREMAP_PAGE_ORDER 8: 256 pages), on its node.
        assert u.table_pages == {u.node: 1 + 4 + 256}
        # Later allocations (context tables) go on the unit's node too.
        ctx = u.root_table.context_table(3, alloc=True)
        assert ctx and p.mem.node_of(ctx) == u.node and u.table_pages == {u.node: 2 + 4 + 256}
        page = u.alloc_pages()
        assert p.mem.node_of(page) == u.node
        u.free_pages(page)
        with pytest.raises(PlatformError, match="not allocated by unit"):
            u.free_pages(page)


def test_pre_seed_root_tables_have_no_node() -> None:
    p = Platform(two_socket(), policy="pre-seed")
    for u in p.iommus:
        assert u.node == {A: 0, B: 1, C: 0}[u.address]
        assert (
            p.mem.node_of(present_table(u.root_maddr)) == 0
        )  # allocated before any RHSA was parsed
        # Context tables looked the RHSA up at allocation time: they follow it.
        assert p.mem.node_of(u.root_table.context_table(0, alloc=True)) == u.node
    b = next(u for u in p.iommus if u.address == B)
    # The misplaced root table shows; the queue and the interrupt remapping table were allocated
    # after parsing, when the RHSA lookup finds the node.
    assert b.table_pages == {0: 1, 1: 1 + 4 + 256}
    # With the RHSAs first (not spec order) even pre-seed finds them.
    t = two_socket()
    t.structures = t.structures[3:] + t.structures[:3]
    q = Platform(t, policy="pre-seed")
    assert {u.address: q.mem.node_of(present_table(u.root_maddr)) for u in q.iommus} == {
        A: 0,
        B: 1,
        C: 0,
    }


def test_memory_and_numa_arguments() -> None:
    numa = Numa([NumaNode(1 << 32, 1 << 32, (5,)), NumaNode(2 << 32, 1 << 32, (9,))])
    t = table(drhd(A, ep(0, 2)), drhd(C, inc=True), dmar.Rhsa(A, 9), dmar.Rhsa(C, 7))
    p = Platform(t, numa=numa)
    assert {u.address: u.node for u in p.iommus} == {A: 1, C: None}
    assert p.findings("rhsa-pxm-unknown")
    # A PhysMem alone: proximity domain i is node i.
    mem = PhysMem([(1 << 32, 1 << 32), (2 << 32, 1 << 32)])
    q = Platform(table(drhd(A, ep(0, 2)), dmar.Rhsa(A, 1)), mem=mem)
    assert (
        q.mem is mem
        and q.iommus[0].node == 1
        and mem.node_of(present_table(q.iommus[0].root_maddr)) == 1
    )
    Platform(t, numa=numa, mem=mem)  # the same ranges: accepted
    with pytest.raises(PlatformError, match="differ"):
        Platform(t, numa=numa, mem=PhysMem([(1 << 32, 1 << 32)]))
    # A list of nodes, or a mapping.
    r = Platform(t, numa=[NumaNode(1 << 32, 1 << 32, (9,))])
    assert r.iommus[0].node == 0
    s = Platform(t, numa={"nodes": [{"base": "4G", "size": "4G", "pxms": [7]}]})
    assert {u.address: u.node for u in s.iommus} == {A: None, C: 0}


def test_free_returns_every_page() -> None:
    p = Platform(two_socket())
    roots = [present_table(u.root_maddr) for u in p.iommus]
    p.free()
    assert not any(p.mem.is_allocated(r) for r in roots)
    assert all(u.root_maddr is None for u in p.iommus)


def test_description_file_topology_and_numa(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(
        "[[devices]]\nbdf = '00:02.0'\n[[devices]]\nbdf = '80:02.0'\n"
        "[numa]\nnodes = [{base = '4G', size = '4G', pxms = [0]},"
        " {base = '8G', size = '4G', pxms = [1]}]\n"
    )
    p = Platform(two_socket(), topology=f)
    assert not p.synthesised and len(p.topology) == 2
    assert {u.address: p.mem.node_of(present_table(u.root_maddr)) for u in p.iommus} == {
        A: 0,
        B: 1,
        C: 0,
    }
    q = Platform(two_socket(), topology={"devices": [{"bdf": "00:02.0"}]})
    assert len(q.topology) == 1


# ---- units: CAP/ECAP, levels, DIDs


def test_qemu_default_unit() -> None:
    p = Platform(table(drhd(C, inc=True)))
    (u,) = p.iommus
    # The hardware reports NFR = fault_records - 1 (8 records by default).
    assert (u.cap, u.ecap) == (QEMU_CAP | 7 << 40, QEMU_ECAP)
    assert u.remapper.cap == u.cap and u.remapper.levels_supported == [3, 4]
    (one,) = Platform(table(drhd(C, inc=True)), fault_records=1).iommus
    assert one.cap == QEMU_CAP
    assert u.supported_levels == (3, 4) and u.levels == 4 and u.agaw == 2
    assert u.mgaw == 48 and u.ndoms == 1 << 16 and not u.caching_mode
    assert u.superpages == ("2M", "1G") and u.psi and u.mamv == 18
    assert u.queued_invalidation and u.intr_remap and u.pass_through
    # Device-TLB on (the hardware model's default ECAP); no coherency, no snoop control.
    assert u.device_iotlb and not u.coherent and not u.snoop_control
    # One default: QEMU's TCG ECAP (vtd-hardware.md §1.3: 0xF00F4A) plus ECAP.DT, and what
    # the hardware model reports when given no ECAP.
    assert QEMU_ECAP == 0xF00F4A | 1 << 2
    assert Remapper(PhysMem([(0, 1 << 24)])).ecap == QEMU_ECAP
    assert u.include_all and u.segment == 0 and "include-all" in repr(u)


def test_per_unit_caps() -> None:
    aw39 = 0x80D2008C22260206
    cm = QEMU_CAP | 0x80
    five = (QEMU_CAP & ~(0x1F << 8)) | (0xE << 8)
    small_nd = (QEMU_CAP & ~7) | 0
    t = table(drhd(A, ep(0, 2)), drhd(B, ep(0, 3)), drhd(D, ep(0, 4)), drhd(C, inc=True))
    p = Platform(
        t,
        unit_caps={
            A: (aw39, QEMU_ECAP | 4),
            B: (cm, QEMU_ECAP),
            D: (five, QEMU_ECAP),
            C: (small_nd, QEMU_ECAP),
        },
    )
    u = {x.address: x for x in p.iommus}
    assert u[A].levels == 3 and u[A].supported_levels == (3,) and u[A].device_iotlb
    assert u[B].caching_mode and u[B].dids.alloc(7) == 1  # DID 0 reserved
    assert u[D].levels == 5 and u[D].supported_levels == (3, 4, 5)
    assert u[C].ndoms == 16


@pytest.mark.parametrize(
    ("cap", "ecap", "match"),
    [
        (QEMU_CAP & ~(0x1F << 8), QEMU_ECAP, "SAGAW"),
        (2**64 - 1, QEMU_ECAP, "all-ones"),
        (QEMU_CAP, 2**64 - 1, "all-ones"),
        ((QEMU_CAP & ~(0x3FF << 24)) | (0xFF << 24), QEMU_ECAP, "register page"),
        (QEMU_CAP, QEMU_ECAP | (0x3FF << 8), "register page"),
        (2**64, QEMU_ECAP, "64-bit"),
    ],
)
def test_bad_caps_are_refused(cap: int, ecap: int, match: str) -> None:
    with pytest.raises(PlatformError, match=match):
        Platform(table(drhd(C, inc=True)), cap=cap, ecap=ecap)


def test_did_allocator() -> None:
    d = DidAllocator(16)
    assert [d.alloc(dom) for dom in (10, 11, 12)] == [0, 1, 2]
    assert d.alloc(11) == 1  # a domain keeps its DID on a unit
    assert d.lookup(12) == 2 and d.lookup(99) is None
    assert d.owner(1) == 11 and d.owner(5) is None
    d.free(1)
    assert d.owner(1) is None and d.lookup(11) is None
    assert d.alloc(13) == 1  # the lowest free DID
    assert d.in_use() == {0: 10, 1: 13, 2: 12} and len(d) == 3
    with pytest.raises(PlatformError, match="not allocated"):
        d.free(9)
    for dom in range(100, 113):
        d.alloc(dom)
    with pytest.raises(PlatformError, match="no free domain ids"):
        d.alloc(200)
    cm = DidAllocator(16, reserve_zero=True)
    assert cm.alloc(0) == 1 and cm.owner(0) is None
    assert len({cm.alloc(x) for x in range(1, 15)}) == 14
    with pytest.raises(PlatformError):
        cm.alloc(99)
    with pytest.raises(PlatformError):
        DidAllocator(0)


def test_units_hardware_walks_their_root_table() -> None:
    p = Platform(two_socket(), iotlb_entries=64)
    for u in p.iommus:
        assert u.remapper.root_table == u.root_maddr and u.remapper.iotlb_entries == 64
        assert u.root_table.maddr == u.root_maddr and u.root_table.node == u.node
        # Nothing is mapped yet: the root entry is not present (fault 0x1).
        with pytest.raises(DmaFault) as e:
            u.remapper.translate(Bdf(0, 0, 2, 0).sid, 0x1000)
        assert e.value.reason == 0x1
    p.free()
    assert all(u.remapper.root_table is None for u in p.iommus)
    with pytest.raises(PlatformError, match="MGAW"):
        Platform(two_socket(), cap=QEMU_CAP & ~(0x3F << 16))


def test_driver_tables_and_hardware_meet_in_the_unit() -> None:
    """A context entry written through a unit's RootTable is what its Remapper walks."""
    p = Platform(two_socket())
    u = p.iommu_for_device("80:02.0")
    assert u is not None and u.address == B and u.node == 1
    pt = PageTable(p.mem, levels=u.levels, node=u.node)
    pt.map(0x10000, 0x1_2345_6000, 0x1000)
    did = u.dids.alloc(5)
    u.root_table.set_context(0x80, 2 << 3, present_table(pt.root), aw=u.agaw, did=did)
    t = u.remapper.translate(Bdf(0, 0x80, 2, 0).sid, 0x10123)
    assert t.hpa == 0x1_2345_6123 and t.domain_id == did
    assert p.mem.node_of(u.root_table.context_table(0x80)) == 1
    with pytest.raises(DmaFault):
        u.remapper.translate(Bdf(0, 0x80, 3, 0).sid, 0x10123)  # no context entry
    pt.free()


def test_unit_is_igd() -> None:
    p = Platform(table(drhd(A, ep(0, 2)), drhd(C, inc=True)))
    assert [u.is_igd for u in p.iommus] == [True, False]
    assert isinstance(p.iommus[0], Iommu)


# ---- bad input


def test_bad_platform_arguments(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="DmarTable"):
        Platform(b"DMAR")  # type: ignore[arg-type]
    with pytest.raises(PlatformError, match="policy"):
        Platform(two_socket(), policy="later")  # type: ignore[arg-type]
    with pytest.raises(PlatformError, match="cannot read DMAR"):
        Platform.from_dmar(tmp_path / "none.dat")
    with pytest.raises(DmarError):
        Platform.from_dmar(b"not a dmar table at all, not even 48 bytes")
    with pytest.raises(PlatformError, match="as a topology"):
        Platform(two_socket(), topology=42)  # type: ignore[arg-type]
    with pytest.raises(PlatformError, match="a NUMA description needs at least one node"):
        Platform(two_socket(), numa={"nodes": []})
    with pytest.raises(PlatformError, match="NUMA description"):
        Platform(two_socket(), numa=42)  # type: ignore[arg-type]


def test_out_of_memory_leaves_nothing_allocated() -> None:
    mem = PhysMem([(1 << 30, 2 << 12)])  # two pages for three root tables
    t = table(drhd(A, ep(0, 2)), drhd(B, ep(0, 3)), drhd(C, inc=True))
    with pytest.raises(OutOfMemory):
        Platform(t, mem=mem)
    assert mem.stats()[0]["allocated_pages"] == 0


def test_round_trip_through_bytes() -> None:
    p = Platform.from_dmar(lookup_table().to_bytes(), topology=machine())
    assert [u.address for u in p.iommus] == [E, D, B, A, C, G, F]
    assert addr(p, "04:02.0") == D


def test_page_zero_is_never_a_table() -> None:
    numa = [NumaNode(0, 1 << 30, (0,)), NumaNode(1 << 30, 1 << 30, (1,))]
    p = Platform(two_socket(), numa=numa)
    assert all(u.root_maddr is not None for u in p.iommus)
    assert p.mem.stats()[0]["reserved_pages"] == 1 and not p.mem.is_allocated(0)
    assert {u.address: p.mem.node_of(present_table(u.root_maddr)) for u in p.iommus} == {
        A: 0,
        B: 1,
        C: 0,
    }
    # A unit allocating straight from a fresh arena never gets page 0, and frees everything.
    mem = PhysMem([(0, 1 << 20)])
    u = Iommu(drhd(A), 0, mem)
    assert u.alloc_pages() != 0 and u.alloc_pages(2) != 0
    u.free()
    s = mem.stats()[0]
    assert (s["reserved_pages"], s["allocated_pages"], s["free_pages"]) == (1, 0, 255)


def test_embedded_default_platform() -> None:
    p = Platform.default()
    assert not p.synthesised and len(p.numa) == 2
    socket1, audio, inc = 0xFBFFC000, 0xF3FFD000, 0xF3FFC000
    assert [u.address for u in p.iommus] == [audio, socket1, inc]
    assert {u.address: u.node for u in p.iommus} == {socket1: 1, audio: None, inc: 0}
    for u in p.iommus:
        assert u.root_maddr is not None
        assert p.mem.node_of(u.root_maddr) == (0 if u.node is None else u.node)
    assert addr(p, "00:1b.0") == audio
    assert addr(p, "82:00.0") == socket1  # behind root port 80:02.0
    assert addr(p, "80:04.3") == socket1
    assert addr(p, "04:01.0") == inc
    vf = p.topology.vfs("02:00.0")[0]
    assert vf.is_virtfn and addr(p, vf) == inc
    assert p.topology.find_upstream_bridge("04:01.0") == (Bdf(0, 3, 0, 0), 4)
    # The ATSR names the root ports 00:01.0, 00:03.0, 80:01.0 and 80:02.0.
    assert p.atsr_for_device("01:00.0") is not None and p.atsr_for_device("81:00.0") is not None
    assert p.atsr_for_device("05:00.0") is None
    assert p.ioapic_to_iommu(3) is p.iommus[1] and p.hpet_to_iommu(0) is p.iommus[2]
    assert p.codes == {"unit-no-rhsa"}
    pre = Platform.default(policy="pre-seed")
    assert {pre.mem.node_of(present_table(u.root_maddr)) for u in pre.iommus} == {0}


def test_undecodable_structures_and_short_scopes_are_fatal() -> None:
    t = table(
        dmar.UnknownStructure(0, bytes(8)),  # a DRHD below its minimum length
        drhd(A, SC(EP, start_bus=0, path=[]), ep(0, 2)),  # a 6-byte scope entry
        drhd(C, inc=True),
    )
    p = Platform(t)
    assert {"structure-too-short", "scope-too-short"} <= {
        f.code for f in p.findings(severity="fatal")
    }
    assert [u.address for u in p.iommus] == [A, C] and addr(p, "00:02.0") == A
    with pytest.raises(PlatformError, match="scope-too-short"):
        Platform(t, strict=True)


def test_scope_path_through_a_missing_bridge_reads_bus_ff() -> None:
    topo = Topology([Device(Bdf(0, 0, 2, 0)), Device(Bdf(0, 0xFF, 0, 0))])
    t = table(drhd(A, SC(EP, start_bus=0, path=[(1, 0), (0, 0)])), drhd(C, inc=True))
    p = Platform(t, topology=topo)
    # Xen reads 0xFF as the secondary bus of the absent 00:01.0, so the entry names ff:00.0.
    assert p.iommus[0].scope.devices == (Bdf(0, 0xFF, 0, 0),)
    assert addr(p, "ff:00.0") == A
    # A bridge entry naming an absent bridge sets bus 0xff (sec = sub = 0xff) in the scope.
    q = Platform(table(drhd(B, br(0, 9)), drhd(C, inc=True)), topology=topo)
    assert q.iommus[0].scope.buses == frozenset({0xFF})
    assert q.findings("scope-device-missing")


def test_numa_nodes_must_be_numanodes() -> None:
    with pytest.raises(PlatformError, match="NumaNode"):
        Platform(two_socket(), numa=[(0, 1 << 30)])  # type: ignore[list-item]


def test_cli_platform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vtdwalk.cli import main

    assert main(["platform"]) == 0
    text = capsys.readouterr().out
    assert "units (Xen list order):" in text and "0xfbffc000" in text and "node 1" in text
    f = tmp_path / "t.dat"
    f.write_bytes(two_socket().to_bytes())
    assert main(["platform", str(f), "--json", "--policy", "pre-seed"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == "pre-seed" and data["synthesised_topology"]
    assert [u["address"] for u in data["units"]] == [B, A, C]
    assert [u["node"] for u in data["units"]] == [1, 0, 0]
    assert {u["root_table_node"] for u in data["units"]} == {0}
    bad = tmp_path / "bad.dat"
    bad.write_bytes(table(drhd(0), drhd(C, inc=True)).to_bytes())
    assert main(["platform", str(bad), "--strict"]) == 1
    assert "drhd-address-invalid" in capsys.readouterr().err
    assert main(["platform", str(tmp_path / "none.dat")]) == 1
    assert "cannot read" in capsys.readouterr().err
