"""Every real DMAR table of the corpus builds a working platform from the table alone.

The expectations are computed here from the raw structures and the corpus INDEX, independently
of the platform's own look-up code: Xen's list order (specific DRHDs in reverse table order,
include-all ones last), first-RHSA-wins, and the anomalies the corpus notes name.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from dmar_corpus import REAL, corpus_tables
from reference import present_table
from vtdwalk import Bdf, Platform, PlatformError, dmar

TABLES = corpus_tables()

VALID = (0, 0xFFFF_FFFF_FFFF_FFFF)


def _index() -> dict[str, dict[str, str]]:
    path = REAL / "INDEX.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


INDEX = _index()


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _table(path: Path) -> dmar.DmarTable:
    return dmar.parse(path.read_bytes())


def _registered(t: dmar.DmarTable) -> list[dmar.Drhd]:
    """Xen's DRHD list: specific units head-inserted, include-all appended (address 0 skipped)."""
    specific = [d for d in t.drhds if d.address not in VALID and not d.include_all]
    inc = [d for d in t.drhds if d.address not in VALID and d.include_all]
    return specific[::-1] + inc


def _expected_drhd(t: dmar.DmarTable, seg: int, bus: int, devfn: int) -> dmar.Drhd | None:
    """An independent rendering of acpi_find_matched_drhd_unit for a one-element-path device."""
    fallback = None
    for d in _registered(t):
        if d.segment != seg:
            continue
        for sc in d.scopes:
            if sc.type_code in (1, 2, 3, 4) and sc.bdf == (bus, devfn >> 3, devfn & 7):
                return d
        if d.include_all:
            fallback = d
    return fallback


@pytest.mark.parametrize("path", TABLES, ids=_ids(TABLES))
def test_every_table_builds(path: Path) -> None:
    t = _table(path)
    assert Platform.from_dmar(path.read_bytes()).codes == Platform.from_dmar(path).codes
    p = Platform.from_dmar(t)
    assert p.synthesised
    assert len(p.iommus) == len(_registered(t))
    assert [u.drhd for u in p.iommus] == _registered(t)
    assert all(u.root_maddr and p.mem.is_allocated(u.root_maddr) for u in p.iommus)
    # Every DRHD keeps its own object as a field: no reverse search needed.
    assert all(any(u.drhd is d for d in t.drhds) for u in p.iommus)
    # Root tables are distinct pages.
    assert len({u.root_maddr for u in p.iommus}) == len(p.iommus)
    row = INDEX.get(path.name)
    if row is not None:
        assert len(t.drhds) == int(row["drhd"])


@pytest.mark.parametrize("path", TABLES, ids=_ids(TABLES))
def test_scope_devices_map_back(path: Path) -> None:
    t = _table(path)
    p = Platform.from_dmar(t)
    for d in _registered(t):
        for sc in d.scopes:
            if sc.type_code not in (1, 2) or not sc.path:
                continue
            if len(sc.path) == 1:
                bus, dev, fn = sc.start_bus, *sc.path[0]
                bdf = Bdf(d.segment, bus, dev, fn)
                assert bdf in p.topology, f"{bdf} named by DRHD {d.address:#x} does not exist"
                want = _expected_drhd(t, d.segment, bus, bdf.devfn)
            else:
                bdf = p.topology.resolve_path(d.segment, sc.start_bus, sc.path)
                want = d if not d.include_all else p.drhd_for_device(bdf)
            got = p.drhd_for_device(bdf)
            assert got is want, f"{bdf}: expected DRHD {want!r}, got {got!r}"
            if not d.include_all and len(sc.path) == 1:
                # A specific DRHD naming it: the answer names it too (a duplicate may win).
                assert got is not None and got.address == d.address
            if sc.type_code == 2:
                br = p.topology[bdf]
                assert br.is_bridge and br.secondary is not None
                below = Bdf(d.segment, br.secondary, 0, 0)
                assert p.drhd_for_device(below) is got
    # Devices only RMRRs/ATSRs name fall to the segment's include-all unit, if there is one.
    others: list[dmar.Rmrr | dmar.Atsr] = [*t.rmrrs, *(a for a in t.atsrs if not a.all_ports)]
    for s in others:
        for sc in s.scopes:
            if sc.type_code not in (1, 2) or len(sc.path) != 1:
                continue
            bdf = Bdf(s.segment, sc.start_bus, *sc.path[0])
            assert bdf in p.topology
            assert p.drhd_for_device(bdf) is _expected_drhd(t, s.segment, bdf.bus, bdf.devfn)


@pytest.mark.parametrize("path", TABLES, ids=_ids(TABLES))
def test_ioapic_and_hpet_lookups(path: Path) -> None:
    t = _table(path)
    p = Platform.from_dmar(t)
    order = _registered(t)
    for kind, find, to_iommu in (
        (3, p.ioapic_to_drhd, p.ioapic_to_iommu),
        (4, p.hpet_to_drhd, p.hpet_to_iommu),
    ):
        ids = {sc.enumeration_id for d in t.drhds for sc in d.scopes if sc.type_code == kind}
        for i in ids:
            owners = [
                d
                for d in order
                if any(s.type_code == kind and s.enumeration_id == i for s in d.scopes)
            ]
            got = find(i)
            if not owners:  # only a skipped DRHD (address 0) names it
                assert got is None
                assert p.findings("ioapic-no-unit" if kind == 3 else "hpet-no-unit")
                continue
            assert got is owners[0]
            unit = to_iommu(i)
            assert unit is not None and unit.drhd is got
        assert find(0x1FF) is None
    for d in order:
        for sc in d.scopes:
            if sc.type_code == 3 and len(sc.path) == 1 and p.ioapic_to_drhd(sc.enumeration_id) is d:
                assert p.apicid_to_bdf(sc.enumeration_id) == Bdf(
                    d.segment, sc.start_bus, *sc.path[0]
                )


def _notes(path: Path) -> str:
    row = INDEX.get(path.name)
    return row["notes"] if row else ""


@pytest.mark.parametrize("path", TABLES, ids=_ids(TABLES))
def test_report_names_the_corpus_anomalies(path: Path) -> None:
    t = _table(path)
    p = Platform.from_dmar(t)
    notes = _notes(path)
    codes = p.codes
    expect = {
        "drhd-address-invalid": "ANOMALY:drhd addr 0" in notes,
        "duplicate-drhd-address": "ANOMALY:duplicate DRHD address" in notes,
        "include-all-not-last": "ANOMALY:INCLUDE_PCI_ALL DRHD not last" in notes,
        "duplicate-include-all": "INCLUDE_PCI_ALL_DRHDs=2" in notes,
        "rmrr-large": "ANOMALY:huge RMRR" in notes,
        "rmrr-base-zero": "ANOMALY:RMRR base 0" in notes,
    }
    for code, present in expect.items():
        assert (code in codes) == present, f"{code}: expected {present}, report {sorted(codes)}"
    # Independent of the notes: RHSAs naming no DRHD, multi-level paths, the x2APIC flag.
    addrs = {d.address for d in t.drhds}
    assert ("rhsa-no-drhd" in codes) == any(r.address not in addrs for r in t.rhsas)
    multi = any(len(sc.path) > 1 for s in t.structures for sc in getattr(s, "scopes", []))
    assert ("multi-level-path" in codes) == multi
    assert ("x2apic-opt-out-without-intremap" in codes) == (t.x2apic_opt_out and not t.intr_remap)
    # Whatever is odd, strict mode refuses exactly the tables with a fatal finding.
    fatal = p.findings(severity="fatal")
    if fatal:
        with pytest.raises(PlatformError, match="Xen refuses"):
            Platform.from_dmar(t, strict=True)
    else:
        Platform.from_dmar(t, strict=True)


def test_readme_anomalies_are_reported() -> None:
    """The anomalies the corpus README lists, table by table."""
    cases = {
        "lenovo-ideapadflex-15-20309": {"drhd-address-invalid", "device-no-unit"},
        "lenovo-thinkpad-e15-gen-2-20td0005mh": {"drhd-address-invalid"},
        "apple-macpro7-1-dmar1": {"duplicate-include-all", "duplicate-drhd-address"},
        "apple-imacpro1-1-dmar1": {"duplicate-include-all", "duplicate-drhd-address"},
        "google-ecclesia-skx-2s-testdata": {"rhsa-no-drhd"},
        "hp-elitebook-8440p": {"rmrr-base-zero"},
        "hp-proliant-dl360-g7": {"multi-level-path", "x2apic-opt-out-without-intremap"},
    }
    for name, codes in cases.items():
        path = REAL / f"{name}.dat"
        if not path.is_file():
            continue
        p = Platform.from_dmar(path)
        assert codes <= p.codes, f"{name}: {sorted(p.codes)}"


# ---- NUMA: the seed's order of events


RHSA_TABLES = [p for p in TABLES if _table(p).rhsas]


def _expected_nodes(t: dmar.DmarTable) -> dict[int, int | None]:
    """Unit address -> node: first RHSA in table order; nodes are the sorted distinct pxms."""
    pxms = sorted({r.proximity_domain for r in t.rhsas})
    out: dict[int, int | None] = {}
    for d in t.drhds:
        rhsa = next((r for r in t.rhsas if r.address == d.address), None)
        out[d.address] = None if rhsa is None else pxms.index(rhsa.proximity_domain)
    return out


def _shuffled(t: dmar.DmarTable, seed: int, rhsa_first: bool) -> dmar.DmarTable:
    """The same table with its structures reordered and re-serialised."""
    s: list[dmar.Structure] = list(t.structures)
    rhsas: list[dmar.Structure] = [x for x in s if isinstance(x, dmar.Rhsa)]
    others: list[dmar.Structure] = [x for x in s if not isinstance(x, dmar.Rhsa)]
    random.Random(seed).shuffle(others)
    if rhsa_first:
        t.structures = rhsas + others
    else:
        mixed = others[:]
        rng = random.Random(seed + 1)
        for r in rhsas:
            mixed.insert(rng.randrange(len(mixed) + 1), r)
        t.structures = mixed
    return dmar.parse(t.to_bytes())


@pytest.mark.parametrize("path", RHSA_TABLES, ids=_ids(RHSA_TABLES))
def test_unit_nodes_follow_rhsa_in_any_order(path: Path) -> None:
    base = _table(path)
    want = _expected_nodes(base)
    variants = [base, _shuffled(_table(path), 1, True), _shuffled(_table(path), 2, False)]
    topo = Platform.from_dmar(base).topology.to_dict()
    for t in variants:
        assert [type(s) for s in t.structures] != [] and len(t.rhsas) == len(base.rhsas)
        p = Platform.from_dmar(t)
        assert p.topology.to_dict() == topo  # the synthesised machine does not depend on order
        assert p.numa.pxm_map == {
            x: i for i, x in enumerate(sorted({r.proximity_domain for r in base.rhsas}))
        }
        for u in p.iommus:
            assert u.node == want[u.address], f"unit {u.address:#x}"
            # With no node the allocator serves the first node with room: node 0.
            expect_root = 0 if u.node is None else u.node
            assert p.mem.node_of(present_table(u.root_maddr)) == expect_root


@pytest.mark.parametrize("path", RHSA_TABLES, ids=_ids(RHSA_TABLES))
def test_pre_seed_root_tables_ignore_later_rhsas(path: Path) -> None:
    t = _table(path)
    want = _expected_nodes(t)
    # Spec order (RHSAs after the DRHDs): pre-seed root tables get no node; seed ones do.
    order = [type(s).__name__ for s in t.structures]
    rhsas_after_drhds = max(i for i, n in enumerate(order) if n == "Drhd") < min(
        i for i, n in enumerate(order) if n == "Rhsa"
    )
    pre = Platform.from_dmar(t, policy="pre-seed")
    for u in pre.iommus:
        assert u.node == want[u.address]  # later allocations still follow the RHSA
        if rhsas_after_drhds:
            assert pre.mem.node_of(present_table(u.root_maddr)) == 0
    # RHSAs first: even pre-seed finds them.
    first = _shuffled(_table(path), 3, True)
    pre2 = Platform.from_dmar(first, policy="pre-seed")
    for u in pre2.iommus:
        n = want[u.address]
        assert pre2.mem.node_of(present_table(u.root_maddr)) == (0 if n is None else n)


def test_two_socket_table_puts_root_tables_on_both_nodes() -> None:
    path = REAL / "supermicro-x10dai.dat"
    seed = Platform.from_dmar(path)
    assert {seed.mem.node_of(present_table(u.root_maddr)) for u in seed.iommus} == {0, 1}
    pre = Platform.from_dmar(path, policy="pre-seed")
    assert {pre.mem.node_of(present_table(u.root_maddr)) for u in pre.iommus} == {0}
    socket1 = [u for u in seed.iommus if u.node == 1]
    assert len(socket1) == 1 and socket1[0].address == 0xFBFFC000


@pytest.mark.parametrize("path", TABLES, ids=_ids(TABLES))
def test_synthesis_ignores_structure_order(path: Path) -> None:
    a = Platform.from_dmar(_table(path))
    b = Platform.from_dmar(_shuffled(_table(path), 7, False))
    assert a.topology.to_dict() == b.topology.to_dict()
    scopes = {u.address: (u.scope.devices, u.scope.buses) for u in a.iommus}
    assert all(scopes[u.address][1] == u.scope.buses for u in b.iommus)

    # The same findings, but for where an include-all DRHD sits in the table.
    def codes(p: Platform) -> list[str]:
        return sorted(f.code for f in p.report if f.code != "include-all-not-last")

    assert codes(a) == codes(b)
