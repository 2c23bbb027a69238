"""Where table pages land: the seed's node rules against the pre-seed behaviour (xen-driver.md
§4.3, §5.3, §8). Pages are found by walking the tables in PhysMem, independently of the
bookkeeping that ``numa_report`` uses, and their node asked of PhysMem."""

from __future__ import annotations

from pathlib import Path

import pytest

import vtdwalk
from dmar_corpus import REAL
from reference import ctx as ref
from reference import present_table
from vtdwalk import DeviceKind, Platform
from vtdwalk.driver.domain import Domain
from vtdwalk.driver.iommu import Iommu

CORPUS = REAL
DATA = Path(vtdwalk.__file__).resolve().parent / "data"
SOCKET1_UNIT = 0xFBFFC000
SOCKET0_UNIT = 0xF3FFC000


def x10dai(policy: str) -> Platform:
    path = CORPUS / "supermicro-x10dai.dat"
    return Platform.from_dmar(
        path,
        topology=DATA / "supermicro-x10dai.toml",
        policy=policy,  # type: ignore[arg-type]
    )


def unit_pages(p: Platform, u: Iommu) -> list[int]:
    """Root and context tables walked in memory; the invalidation queue and the interrupt
    remapping table from IQA (base 63:12, QS 2:0: 2^(QS+8) 16-byte descriptors) and IRTA
    (base 63:12, S 3:0: 2^(S+1) 16-byte entries), read through the unit's registers."""
    iqa = p.mmio_read(u.address + 0x90, 8)
    irta = p.mmio_read(u.address + 0xB8, 8)
    queue = [(iqa & ~0xFFF) + i * 4096 for i in range((16 << ((iqa & 7) + 8)) // 4096)]
    irt = [(irta & ~0xFFF) + i * 4096 for i in range((16 << ((irta & 0xF) + 1)) // 4096)]
    assert len(queue) == 4 and len(irt) == 256
    return [
        present_table(u.root_maddr),
        *ref.context_table_pages(p.mem, present_table(u.root_maddr)),
        *queue,
        *irt,
    ]


def domain_pages(p: Platform, d: Domain) -> list[int]:
    assert d.page_table is not None
    root = d.page_table.root
    return [] if root is None else ref.table_pages(p.mem, root, d.levels)


def rhsa_node(p: Platform, u: Iommu) -> int | None:
    r = p.drhd_to_rhsa(u.drhd)
    return None if r is None else p.pxm_to_node(r.proximity_domain)


def populate(p: Platform) -> tuple[Domain, Domain]:
    """A domain per socket with two devices each, some mappings, an unmap."""
    d0, d1 = p.create_domain(), p.create_domain()
    for dev in ("01:00.0", "02:00.0"):
        p.assign_device(d0, dev)
    for dev in ("82:00.0", "81:00.0"):
        p.assign_device(d1, dev)
    for d in (d0, d1):
        d.map(0x8000_0000, 0x1000_0000, 0x4_0000)
        d.map(0x40_0000_0000, 0x2000_0000, 0x1000)
        d.map(0x7F_0000_0000, 0x3000_0000, 0x20_0000)
        d.unmap(0x40_0000_0000, 0x1000)
    return d0, d1


def test_seed_every_page_on_its_node() -> None:
    p = x10dai("seed")
    d0, d1 = populate(p)
    assert (d0.node, d1.node) == (0, 1)
    for u in p.iommus:
        want = rhsa_node(p, u)
        pages = unit_pages(p, u)
        if want is not None:
            assert {p.mem.node_of(a) for a in pages} == {want}, f"unit {u.address:#x}"
    for d, node in ((d0, 0), (d1, 1)):
        pages = domain_pages(p, d)
        assert len(pages) > 4
        assert {p.mem.node_of(a) for a in pages} == {node}
        assert d.table_pages() == {node: len(pages)}
    rep = p.numa_report()
    assert rep["policy"] == "seed" and rep["misplaced"] == 0
    by_id = {r["id"]: r for r in rep["domains"]}
    assert by_id[d1.id]["pages"] == {1: len(domain_pages(p, d1))}
    assert by_id[d1.id]["expected_nodes"] == [1] and by_id[d1.id]["node"] == 1
    s1 = next(r for r in rep["units"] if r["address"] == SOCKET1_UNIT)
    assert s1["pages"] == {
        1: len(unit_pages(p, next(u for u in p.iommus if u.address == SOCKET1_UNIT)))
    }


def test_pre_seed_misplacement_visible() -> None:
    p = x10dai("pre-seed")
    d0, d1 = populate(p)
    assert d0.node is None and d1.node is None  # no domain node before the seed
    s1 = next(u for u in p.iommus if u.address == SOCKET1_UNIT)
    # The root table was allocated before any RHSA: not on socket 1's node.
    assert s1.node == 1 and p.mem.node_of(present_table(s1.root_maddr)) != 1
    # Context tables did follow the unit's RHSA (looked up at each allocation).
    assert {
        p.mem.node_of(a) for a in ref.context_table_pages(p.mem, present_table(s1.root_maddr))
    } == {1}
    # The first device's tables were allocated before the domain owned any device: no node.
    pages = domain_pages(p, d1)
    on = [p.mem.node_of(a) for a in pages]
    off = sum(1 for n in on if n != 1)
    assert off >= 4 and on.count(1) >= 1
    rep = p.numa_report()
    dom = next(r for r in rep["domains"] if r["id"] == d1.id)
    assert dom["misplaced"] == off
    unit = next(r for r in rep["units"] if r["address"] == SOCKET1_UNIT)
    assert unit["misplaced"] == 1 and unit["expected_node"] == 1
    assert rep["misplaced"] >= off + 1
    # Socket 0 happens to be the node memory is taken from first: nothing off there.
    dom0 = next(r for r in rep["domains"] if r["id"] == d0.id)
    assert dom0["misplaced"] == 0
    # The same work under the seed misplaces nothing.
    q = x10dai("seed")
    populate(q)
    assert q.numa_report()["misplaced"] == 0


def test_last_device_wins_and_failure_keeps_node() -> None:
    p = x10dai("seed")
    d = p.create_domain()
    p.assign_device(d, "82:00.0")
    assert d.node == 1
    p.assign_device(d, "01:00.0")
    assert d.node == 0  # the last device assigned wins
    assert d.page_table is not None and d.page_table.node == 0
    # A device with no node's unit (00:1b.0: its unit has no RHSA) leaves the node alone.
    p.assign_device(d, "00:1b.0")
    assert d.node == 0
    # A mapping refused after the node is set (a host bridge) keeps the new node, as the seed.
    e = p.create_domain()
    with pytest.raises(vtdwalk.PlatformError):
        p.assign_device(e, "00:00.0")
    assert e.node == 0 and e.devices == set()


CORPUS_RHSA = [
    "dell-precision-t3610.dat",
    "gigabyte-x99-ud4-cf.dat",
    "google-ecclesia-skx-2s-testdata.dat",
    "hack-hackintosh-machinist-x99-e5-d8-max-tahoe-oc-modified.dat",
    "huanan-x99-qd4-v1-0.dat",
    "intel-x99.dat",
    "msi-ms-7885.dat",
    "supermicro-x10dai.dat",
]


@pytest.mark.parametrize("name", CORPUS_RHSA)
def test_corpus_tables_with_rhsas(name: str) -> None:
    """On each table alone (synthesised topology): a domain per unit with all its endpoints;
    DMA translates, and under the seed every page is on the node its unit's RHSA names."""
    path = CORPUS / name
    p = Platform.from_dmar(path)
    assert p.rhsas
    doms: dict[int, Domain] = {}
    for dev in p.topology:
        if dev.kind is not DeviceKind.PCIE_ENDPOINT:
            continue
        u = p.iommu_for_device(dev)
        if u is None:
            continue
        d = doms.setdefault(u.index, p.create_domain())
        p.assign_device(d, dev.bdf, relaxed=True)
    assert doms
    for i, (idx, d) in enumerate(sorted(doms.items())):
        base = 0x100_0000 * (i + 1)
        d.map(0x4000_0000, base, 0x2000)
        u = next(x for x in p.iommus if x.index == idx)
        for b in sorted(d.devices):
            assert p.translate(b, 0x4000_1008).hpa == base + 0x1008
            e = ref.entry(p.mem, present_table(u.root_maddr), b.bus, b.devfn)
            assert e is not None and e.present and e.did == d.did(u)
        want = rhsa_node(p, u)
        if want is not None:
            assert d.node == want
            assert {p.mem.node_of(a) for a in domain_pages(p, d)} == {want}
            assert {p.mem.node_of(a) for a in unit_pages(p, u)} == {want}
    assert p.numa_report()["misplaced"] == 0
