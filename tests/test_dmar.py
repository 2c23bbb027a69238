"""vtdwalk.dmar against the real-table corpus, iasl's decodings, hand-built tables and the CLI."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dmar_corpus import CORPUS, corpus_tables, iasl_string, read_dsl
from vtdwalk import cli, dmar
from vtdwalk.acpi.dmar import (
    Andd,
    Atsr,
    DeviceScope,
    DmarTable,
    Drhd,
    Rhsa,
    Rmrr,
    Satc,
    Sidp,
    UnknownStructure,
)
from vtdwalk.errors import DmarError, VtdError

TABLES = corpus_tables()
TABLE_IDS = [p.stem for p in TABLES]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The DMAR corpus shipped in tests/data/dmar-corpus."""
    return CORPUS


def load(corpus: Path, stem: str) -> bytes:
    return (corpus / "real" / f"{stem}.dat").read_bytes()


def codes(t: DmarTable) -> set[str]:
    return {p.code for p in t.validate()}


# ---------------------------------------------------------------------------------------------
# The corpus


def test_corpus_is_complete(corpus: Path) -> None:
    assert len(list((corpus / "real").glob("*.dat"))) == 150
    assert len(list((corpus / "iasl").glob("*.dsl"))) == 150


@pytest.mark.parametrize("path", TABLES, ids=TABLE_IDS)
def test_corpus_parses_and_round_trips(corpus: Path, path: Path) -> None:
    data = path.read_bytes()
    t = dmar.parse(data)
    assert t.to_bytes() == data
    assert t.length == len(data) == int.from_bytes(data[4:8], "little")
    # No table in the corpus is structurally broken: no raw leftovers, no structural problems.
    assert not t.padding and not t.trailer and not t.parse_problems
    for s in t.structures:
        assert not isinstance(s, UnknownStructure)
        assert not getattr(s, "extra", b"") or isinstance(s, Andd | Rhsa)
    structural = {"bad-checksum", "length-mismatch", "scope-too-short", "scope-overrun"}
    assert not codes(t) & structural


@pytest.mark.parametrize("path", TABLES, ids=TABLE_IDS)
def test_corpus_reordered_structures_serialise_and_reparse(corpus: Path, path: Path) -> None:
    data = path.read_bytes()
    t = dmar.parse(data)
    t.structures.reverse()
    out = t.to_bytes()
    assert len(out) == len(data)
    assert sum(out) % 256 == 0  # checksum recomputed
    again = dmar.parse(out)
    assert again == t
    assert again.to_bytes() == out
    t.structures.reverse()
    assert t.to_bytes() == data  # back in order: the original bytes, checksum and all


def _expected_iasl_fields(t: DmarTable, raw: bytes) -> list[tuple[int, str, object]]:
    """What iasl prints for the parsed model, field by field (HAW raw, strings as iasl shows)."""
    out: list[tuple[int, str, object]] = [
        (0, "Signature", t.signature),
        (4, "Table Length", t.length),
        (8, "Revision", t.revision),
        (9, "Checksum", t.checksum),
        (10, "Oem ID", iasl_string(t.oem_id)),
        (16, "Oem Table ID", iasl_string(t.oem_table_id)),
        (24, "Oem Revision", t.oem_revision),
        (28, "Asl Compiler ID", iasl_string(t.creator_id)),
        (32, "Asl Compiler Revision", t.creator_revision),
        (36, "Host Address Width", t.host_address_width),
        (37, "Flags", t.flags),
        (38, "Reserved", t.reserved),
    ]

    def scopes(ss: list[DeviceScope]) -> None:
        for sc in ss:
            o = sc.offset
            assert o is not None
            out.extend(
                [
                    (o, "Device Scope Type", sc.type_code),
                    (o + 1, "Entry Length", sc.length),
                    (o + 2, "Flags", sc.flags),
                    (o + 3, "Reserved", sc.reserved),
                    (o + 4, "Enumeration ID", sc.enumeration_id),
                    (o + 5, "PCI Bus Number", sc.start_bus),
                ]
            )
            out.extend((o + 6 + 2 * i, "PCI Path", tuple(e)) for i, e in enumerate(sc.path))

    for s in t.structures:
        o = s.offset
        assert o is not None
        out.append((o, "Subtable Type", s.type_code))
        out.append((o + 2, "Length", len(dmar.structure_bytes(s))))
        if isinstance(s, Drhd):
            out += [
                (o + 4, "Flags", s.flags),
                (o + 5, "Size (decoded below)", s.size),
                (o + 6, "PCI Segment Number", s.segment),
                (o + 8, "Register Base Address", s.address),
            ]
            scopes(s.scopes)
        elif isinstance(s, Rmrr):
            out += [
                (o + 4, "Reserved", s.reserved),
                (o + 6, "PCI Segment Number", s.segment),
                (o + 8, "Base Address", s.base),
                (o + 16, "End Address (limit)", s.limit),
            ]
            scopes(s.scopes)
        elif isinstance(s, Atsr | Satc):
            out += [
                (o + 4, "Flags", s.flags),
                (o + 5, "Reserved", s.reserved),
                (o + 6, "PCI Segment Number", s.segment),
            ]
            scopes(s.scopes)
        elif isinstance(s, Rhsa):
            out += [
                (o + 4, "Reserved", s.reserved),
                (o + 8, "Base Address", s.address),
                (o + 16, "Proximity Domain", s.proximity_domain),
            ]
        elif isinstance(s, Andd):
            out += [
                (o + 4, "Reserved", s.reserved),
                (o + 7, "Device Number", s.device_number),
                (o + 8, "Device Name", iasl_string(s.name)),
            ]
        elif isinstance(s, Sidp):
            out += [(o + 4, "Reserved", s.reserved), (o + 6, "PCI Segment Number", s.segment)]
            scopes(s.scopes)
        else:  # pragma: no cover - the corpus has no unknown structures
            raise AssertionError(f"unexpected structure {s!r}")
    return out


@pytest.mark.parametrize("path", TABLES, ids=TABLE_IDS)
def test_corpus_agrees_with_iasl(corpus: Path, path: Path) -> None:
    raw = path.read_bytes()
    t = dmar.parse(raw)
    dsl = corpus / "iasl" / f"{path.stem}.dsl"
    got = [(f.offset, f.name, f.value) for f in read_dsl(dsl)]
    want = _expected_iasl_fields(t, raw)
    if len(got) < len(want):
        # An iasl older than SATC/SIDP support stops at the first structure of type 5 or 6.
        assert "Unknown" in dsl.read_text(encoding="latin-1")
        stop = want[len(got)]
        assert stop[1] == "Subtable Type" and stop[2] in (5, 6)
        want = want[: len(got)]
    assert got == want


def test_iasl_comparison_covers_every_structure_and_scope_type(corpus: Path) -> None:
    seen_s: set[int] = set()
    seen_sc: set[int] = set()
    for p in TABLES:
        t = dmar.parse(p.read_bytes())
        for s in t.structures:
            seen_s.add(s.type_code)
            for sc in getattr(s, "scopes", []):
                seen_sc.add(sc.type_code)
    assert seen_s == {0, 1, 2, 3, 4, 5, 6}
    assert seen_sc == {1, 2, 3, 4, 5}


def test_corpus_counts_match_index(corpus: Path) -> None:
    rows = (corpus / "real" / "INDEX.tsv").read_text(encoding="utf-8").splitlines()
    head = rows[0].split("\t")
    assert head[4:10] == ["drhd", "rmrr", "atsr", "rhsa", "andd", "satc"]
    for row in rows[1:]:
        cols = row.split("\t")
        t = dmar.parse(load(corpus, cols[0].removesuffix(".dat")))
        counts = [len(t.drhds), len(t.rmrrs), len(t.atsrs), len(t.rhsas), len(t.andds)]
        counts.append(len(t.satcs))
        assert counts == [int(c) for c in cols[4:10]], cols[0]
        note = cols[10]
        assert f"HAW={t.host_address_width}(={t.haw_bits}bit)" in note
        assert f"flags={t.flags:#04x}:{'|'.join(t.flag_names) or 'none'}" in note
        n_all = sum(d.include_all for d in t.drhds)
        assert f"INCLUDE_PCI_ALL_DRHDs={n_all}" in note


# ---------------------------------------------------------------------------------------------
# The README's anomalies


@pytest.mark.parametrize(
    ("stem", "code", "severity"),
    [
        ("lenovo-ideapadflex-15-20309", "drhd-address-invalid", "fatal"),
        ("lenovo-thinkpad-e15-gen-2-20td0005mh", "drhd-address-invalid", "fatal"),
        ("apple-macpro7-1-dmar1", "duplicate-include-all", "fatal"),
        ("apple-macpro7-1-dmar1", "duplicate-drhd-address", "warning"),
        ("apple-imacpro1-1-dmar1", "duplicate-include-all", "fatal"),
        ("apple-imacpro1-1-dmar1", "duplicate-drhd-address", "warning"),
        ("google-ecclesia-skx-2s-testdata", "rhsa-no-drhd", "warning"),
        ("hp-elitebook-8440p", "rmrr-base-zero", "warning"),
        ("hp-proliant-dl360-g7", "multi-level-path", "warning"),
        ("hp-proliant-dl360-g7", "x2apic-opt-out-without-intremap", "warning"),
    ],
)
def test_readme_anomalies_are_reported(corpus: Path, stem: str, code: str, severity: str) -> None:
    t = dmar.parse(load(corpus, stem))
    found = [p for p in t.validate() if p.code == code]
    assert found, f"{stem}: no {code}"
    assert all(p.severity == severity for p in found)


def test_anomaly_offsets_point_at_the_culprits(corpus: Path) -> None:
    t = dmar.parse(load(corpus, "lenovo-ideapadflex-15-20309"))
    bad = [p for p in t.validate() if p.code == "drhd-address-invalid"]
    zero = [d for d in t.drhds if d.address == 0]
    assert [p.offset for p in bad] == [d.offset for d in zero]

    t = dmar.parse(load(corpus, "hp-elitebook-8440p"))
    (p,) = [p for p in t.validate() if p.code == "rmrr-base-zero"]
    (r,) = [r for r in t.rmrrs if r.offset == p.offset]
    assert (r.base, r.limit) == (0, 0xFFF)

    t = dmar.parse(load(corpus, "google-ecclesia-skx-2s-testdata"))
    drhd_bases = {d.address for d in t.drhds}
    flagged = {p.offset for p in t.validate() if p.code == "rhsa-no-drhd"}
    assert flagged == {r.offset for r in t.rhsas if r.address not in drhd_bases}
    assert len(flagged) == 2

    t = dmar.parse(load(corpus, "hp-proliant-dl360-g7"))
    multi = {p.offset for p in t.validate() if p.code == "multi-level-path"}
    deep = {sc.offset for s in t.rmrrs for sc in s.scopes if len(sc.path) > 1}
    assert multi == deep and len(deep) == 10
    assert ("00:1c.4/00.2") in {
        sc.path_str() for s in t.rmrrs for sc in s.scopes if len(sc.path) > 1
    }


def test_clean_corpus_tables_have_no_errors(corpus: Path) -> None:
    t = dmar.parse(load(corpus, "acer-aspire-a315-51"))
    assert t.validate() == []
    erroneous = {
        p.stem
        for p in TABLES
        if any(x.severity in ("error", "fatal") for x in dmar.parse(p.read_bytes()).validate())
    }
    # Independent truth: the INDEX notes of the tables Xen would refuse.
    expected = {
        p.stem
        for p in TABLES
        if "ANOMALY:drhd addr 0" in _index_note(p.stem)
        or "ANOMALY:duplicate DRHD address" in _index_note(p.stem)
    }
    assert {"lenovo-ideapadflex-15-20309", "apple-macpro7-1-dmar1"} <= expected
    assert erroneous == expected


def _index_note(stem: str) -> str:
    for row in (CORPUS / "real" / "INDEX.tsv").read_text(encoding="utf-8").splitlines():
        cols = row.split("\t")
        if cols[0] == f"{stem}.dat":
            return cols[10]
    return ""


# ---------------------------------------------------------------------------------------------
# The data model on a known table


def test_acer_table_decoded(corpus: Path) -> None:
    t = dmar.parse(load(corpus, "acer-aspire-a315-51"))
    assert (t.signature, t.revision, t.checksum) == ("DMAR", 1, 0x13)
    assert (t.oem_id, t.oem_table_id, t.creator_id) == ("ACRSYS", "ACRPRDCT", "1025")
    assert (t.host_address_width, t.haw_bits, t.flag_names) == (38, 39, ["INTR_REMAP"])
    assert t.intr_remap and not t.x2apic_opt_out
    assert [s.type_code for s in t.structures] == [0, 0, 1, 1, 4]
    gfx, rest = t.drhds
    assert not gfx.include_all and rest.include_all
    assert rest.flag_names == ["INCLUDE_PCI_ALL"]
    assert gfx.address == 0xFED90000 and gfx.offset == 0x30
    assert gfx.scopes == [DeviceScope(dmar.SCOPE_ENDPOINT, 0, 0, 0, [(2, 0)])]
    assert gfx.scopes[0].bdf == (0, 2, 0) and gfx.scopes[0].offset == 0x40
    assert [(s.type, s.enumeration_id, s.start_bus, s.path) for s in rest.scopes] == [
        ("ioapic", 2, 0xF0, [(0x1F, 0)]),
        ("hpet", 0, 0, [(0x1F, 0)]),
        ("namespace", 1, 0, [(0x15, 0)]),
    ]
    assert [(r.base, r.limit) for r in t.rmrrs] == [
        (0x8A785000, 0x8A7A4FFF),
        (0x8B800000, 0x8FFFFFFF),
    ]
    (andd,) = t.andds
    assert (andd.device_number, andd.name) == (1, "\\_SB.PCI0.I2C0")


def test_acer_table_rebuilt_by_hand_is_byte_identical(corpus: Path) -> None:
    """Built from the iasl listing alone; lengths, checksum and padding come out right."""
    ep = DeviceScope.endpoint
    t = DmarTable(
        host_address_width=0x26,
        flags=1,
        oem_id="ACRSYS",
        oem_table_id="ACRPRDCT",
        oem_revision=1,
        creator_id="1025",
        creator_revision=0x40000,
        structures=[
            Drhd(0, 0, 0xFED90000, [ep(0, 2, 0)]),
            Drhd(
                1,
                0,
                0xFED91000,
                [
                    DeviceScope.ioapic(2, 0xF0, 0x1F, 0),
                    DeviceScope.hpet(0, 0, 0x1F, 0),
                    DeviceScope.namespace(1, 0, 0x15, 0),
                ],
            ),
            Rmrr(0, 0x8A785000, 0x8A7A4FFF, [ep(0, 0x14, 0)]),
            Rmrr(0, 0x8B800000, 0x8FFFFFFF, [ep(0, 2, 0)]),
            Andd(1, "\\_SB.PCI0.I2C0", extra=bytes(5)),
        ],
    )
    assert t.to_bytes() == load(corpus, "acer-aspire-a315-51")


def test_scope_helpers() -> None:
    sc = DeviceScope(dmar.SCOPE_BRIDGE, start_bus=0, path=[(0x1C, 4), (0, 2)])
    assert sc.type == "bridge" and sc.target == (0, 2) and sc.bdf is None
    assert sc.path_str() == "00:1c.4/00.2"
    assert sc.length == 10
    assert DeviceScope(0).type == "reserved" and DeviceScope(9).type == "reserved"
    assert [DeviceScope(c).type for c in range(1, 6)] == [
        "endpoint",
        "bridge",
        "ioapic",
        "hpet",
        "namespace",
    ]
    assert (dmar.SCOPE_ENDPOINT, dmar.SCOPE_BRIDGE, dmar.SCOPE_IOAPIC) == (1, 2, 3)
    assert (dmar.SCOPE_HPET, dmar.SCOPE_NAMESPACE) == (4, 5)


# ---------------------------------------------------------------------------------------------
# A 2-socket server built from the dataclasses


def two_socket_server() -> DmarTable:
    ep, br = DeviceScope.endpoint, DeviceScope.bridge
    return DmarTable(
        host_address_width=45,
        flags=dmar.INTR_REMAP | dmar.DMA_CTRL_PLATFORM_OPT_IN,
        oem_id="VTDWLK",
        oem_table_id="2SOCKET",
        structures=[
            # socket 1: root ports on bus 0x80, its own IOAPIC
            Drhd(
                0,
                0,
                0xFBFFC000,
                [DeviceScope.ioapic(9, 0x80, 5, 4), br(0x80, 2, 0), br(0x80, 3, 0)],
            ),
            # socket 0: everything else (include-all goes last)
            Drhd(
                dmar.INCLUDE_PCI_ALL,
                0,
                0xC5FFC000,
                [
                    DeviceScope.ioapic(8, 0, 5, 4),
                    DeviceScope.ioapic(0, 0xF0, 0x1F, 0),
                    DeviceScope.hpet(0, 0, 0x1F, 0),
                ],
                size=0,
            ),
            Rmrr(0, 0x7B7D8000, 0x7B7E7FFF, [ep(0, 0x14, 0), ep(0, 0x1A, 0)]),
            Rmrr(0, 0x5DEE1000, 0x5DEE3FFF, [ep(0, 0x1D, 0)]),
            Atsr(0, 0, [br(0x80, 2, 0), br(0x80, 3, 0), br(0, 1, 0)]),
            Rhsa(0xC5FFC000, 0),
            Rhsa(0xFBFFC000, 1),
        ],
    )


def test_two_socket_server_round_trips() -> None:
    t = two_socket_server()
    data = t.to_bytes()
    assert data[:4] == b"DMAR"
    assert int.from_bytes(data[4:8], "little") == len(data) == t.length
    assert sum(data) % 256 == 0
    # Lengths computed: 48 + DRHD (16+3*8) + DRHD (16+3*8) + RMRR (24+16) + RMRR (24+8)
    # + ATSR (8+3*8) + 2 RHSA (20).
    assert len(data) == 48 + 40 + 40 + 40 + 32 + 32 + 40
    back = dmar.parse(data)
    assert back == t
    assert back.to_bytes() == data
    assert back.validate() == []
    assert [r.proximity_domain for r in back.rhsas] == [0, 1]
    assert back.drhds[1].include_all and not back.drhds[0].include_all
    assert back.atsrs[0].scopes[0].offset is not None
    assert t.structures[0].offset is None  # built by hand: no offsets


def test_built_structures_of_every_kind_round_trip() -> None:
    t = DmarTable(
        host_address_width=38,
        flags=0,
        structures=[
            Drhd(1, 0, 0xFED91000, [DeviceScope.namespace(3, 0, 0x15, 1)], size=4),
            Andd(3, "\\_SB.PCI0.UA00"),
            Satc(dmar.ATC_REQUIRED, 0, [DeviceScope.endpoint(0, 2, 0)]),
            Sidp(0, [DeviceScope(dmar.SCOPE_ENDPOINT, flags=0x1F, path=[(0xB, 0)])]),
            UnknownStructure(9, b"\x01\x02\x03\x04"),
        ],
    )
    back = dmar.parse(t.to_bytes())
    assert back == t
    assert back.satcs[0].atc_required and back.satcs[0].flag_names == ["ATC_REQUIRED"]
    assert back.drhds[0].register_pages == 16
    assert codes(back) == {"unknown-structure"}


def test_built_table_rejects_values_that_do_not_fit() -> None:
    bad = [
        DmarTable(256, 0),
        DmarTable(38, 0, [Drhd(0, 0x10000, 0xFED90000)]),
        DmarTable(38, 0, [Drhd(0, 0, 1 << 64)]),
        DmarTable(38, 0, [Rmrr(0, -1, 0)]),
        DmarTable(38, 0, [Drhd(0, 0, 0x1000, [DeviceScope(1, path=[(256, 0)])])]),
        DmarTable(38, 0, [Drhd(0, 0, 0x1000, [DeviceScope(1, path=[(0, 0)] * 125)])]),
        DmarTable(38, 0, [Andd(1, "caf\u00e9\u20ac")]),
        DmarTable(38, 0, [Andd(1, "a\0b")]),
        DmarTable(38, 0, oem_id="TOOLONGID"),
        DmarTable(38, 0, [UnknownStructure(7, bytes(70000))]),
    ]
    for t in bad:
        with pytest.raises(DmarError):
            t.to_bytes()


# ---------------------------------------------------------------------------------------------
# validate(): one constructed table per check


def _base(*structures: dmar.Structure) -> DmarTable:
    return DmarTable(
        38,
        dmar.INTR_REMAP,
        [Drhd(1, 0, 0xFED90000, [DeviceScope.ioapic(2, 0xF0, 0x1F, 0)]), *structures],
    )


def _only(t: DmarTable) -> list[tuple[str, str, int]]:
    return [(p.severity, p.code, p.offset) for p in t.validate()]


def test_validate_clean_base() -> None:
    assert _only(_base()) == []


def test_validate_rmrr_checks() -> None:
    ep = DeviceScope.endpoint(0, 0x14, 0)
    t = _base(
        Rmrr(0, 0x1000, 0x2FFF, [ep]),
        Rmrr(0, 0x2000, 0x4FFF, [ep]),  # overlaps the first (inclusive ranges)
        Rmrr(0, 0x9000, 0x8FFF, [ep]),  # base above limit
        Rmrr(0, 0x10800, 0x10FFF, [ep]),  # misaligned base
        Rmrr(0, 0x20000, 0x20FFF, []),  # no devices: Xen drops it
    )
    got = _only(t)
    assert got == [
        ("fatal", "rmrr-overlap", 0x48 + 32),
        ("fatal", "rmrr-base-above-limit", 0x48 + 64),
        ("warning", "rmrr-misaligned", 0x48 + 96),
        ("warning", "rmrr-no-devices", 0x48 + 128),
    ]
    # Touching but not overlapping ranges are fine.
    assert _only(_base(Rmrr(0, 0x1000, 0x1FFF, [ep]), Rmrr(0, 0x2000, 0x2FFF, [ep]))) == []


def test_validate_drhd_checks() -> None:
    t = DmarTable(
        38,
        1,
        [
            Drhd(0, 0, 0, [DeviceScope.endpoint(0, 2, 0)]),
            Drhd(0, 0, 0xFFFF_FFFF_FFFF_FFFF, [DeviceScope.endpoint(0, 3, 0)]),
            Drhd(1, 0, 0xFED91000),
            Drhd(1, 0, 0xFED91000),
            Drhd(0, 0, 0xFED92000, [DeviceScope.endpoint(0, 4, 0)]),
            Drhd(1, 1, 0xFED93000),
        ],
    )
    got = _only(t)
    assert ("fatal", "drhd-address-invalid", 48) in got
    assert ("fatal", "drhd-address-invalid", 48 + 24) in got
    assert ("warning", "duplicate-drhd-address", 48 + 64) in got
    assert ("fatal", "duplicate-include-all", 48 + 64) in got
    assert ("warning", "include-all-not-last", 48 + 48) in got
    assert len([c for c in got if c[1] == "duplicate-include-all"]) == 1  # segment 1 is its own


def test_validate_atsr_rhsa_and_order() -> None:
    t = _base(
        Atsr(dmar.ALL_PORTS, 0),
        Atsr(dmar.ALL_PORTS, 0),
        Atsr(0, 0, [DeviceScope.endpoint(0, 1, 0)]),
        Rhsa(0xFED90000, 0),
        Rhsa(0xDEAD0000, 1),
        Rmrr(0, 0x1000, 0x1FFF, [DeviceScope.endpoint(0, 0x14, 0)]),
    )
    got = _only(t)
    assert got == [
        ("fatal", "duplicate-all-ports", 0x48 + 8),
        ("warning", "unexpected-scope-type", 0x48 + 16 + 8),
        ("warning", "rhsa-no-drhd", 0x48 + 32 + 20),
        ("warning", "structure-order", 0x48 + 32 + 40),
    ]


def test_validate_scope_and_header_checks() -> None:
    t = DmarTable(
        0,
        dmar.X2APIC_OPT_OUT | 0x80,
        [
            Drhd(
                1,
                0,
                0xFED90000,
                [
                    DeviceScope(dmar.SCOPE_ENDPOINT, start_bus=0),  # empty path: length 6
                    DeviceScope(7, path=[(1, 0)]),
                    DeviceScope(dmar.SCOPE_NAMESPACE, enumeration_id=4, path=[(0x15, 0)]),
                    DeviceScope(dmar.SCOPE_ENDPOINT, path=[(1, 0)], extra=b"\0"),
                ],
            ),
            UnknownStructure(42, b"xyz"),
            UnknownStructure(dmar.RHSA, bytes(8)),  # an RHSA too short to decode
        ],
        signature="RMAD",
    )
    got = _only(t)
    assert ("fatal", "haw-zero", 36) in got
    assert ("warning", "reserved-flags", 37) in got
    assert ("warning", "x2apic-opt-out-without-intremap", 37) in got
    assert ("warning", "signature-zapped", 0) in got
    assert ("fatal", "scope-too-short", 64) in got
    assert ("warning", "unknown-scope-type", 70) in got
    assert ("warning", "namespace-no-andd", 78) in got
    assert ("warning", "scope-odd-length", 86) in got
    structs = 48 + 16 + 6 + 8 + 8 + 9
    assert ("warning", "unknown-structure", structs) in got
    assert ("fatal", "structure-too-short", structs + 7) in got


def test_validate_checksum_and_length(corpus: Path) -> None:
    data = bytearray(load(corpus, "acer-aspire-a315-51"))
    data[9] ^= 0x55
    t = dmar.parse(bytes(data))
    assert t.to_bytes() == bytes(data)  # a wrong checksum survives an unchanged round trip
    assert ("error", "bad-checksum", 9) in _only(t)
    t.structures.pop()
    assert "bad-checksum" not in codes(t)  # edited: recomputed

    longer = load(corpus, "acer-aspire-a315-51") + b"\0\0\0\0"
    t = dmar.parse(longer)
    assert t.trailer == b"\0\0\0\0" and t.to_bytes() == longer
    assert ("warning", "trailing-data", 204) in _only(t)


# ---------------------------------------------------------------------------------------------
# Malformed input


def test_malformed_inputs_raise_dmar_error_with_offset(corpus: Path) -> None:
    good = load(corpus, "acer-aspire-a315-51")

    def patched(off: int, fmt: str, value: int) -> bytes:
        b = bytearray(good)
        struct.pack_into(fmt, b, off, value)
        return bytes(b)

    cases = [
        (good[:47], 47),
        (b"XXXX" + good[4:], 0),
        (good[:100], 4),  # truncated: the header length runs past the data
        (patched(4, "<I", 40), 4),  # length below the header
        (patched(0x32, "<H", 3), 0x30),  # structure length below 4
        (patched(0x32, "<H", 0x1000), 0x30),  # structure past the table end
        (patched(0x32, "<H", 12), 0x30),  # DRHD below its 16-byte minimum
        (patched(0x41, "<B", 4), 0x40),  # scope length below 6
        (patched(0x41, "<B", 10), 0x40),  # scope runs past its DRHD
        (patched(0x72, "<H", 0x17), 0x70),  # RMRR below its 24-byte minimum
        (patched(0x72, "<H", 0x21), 0x90),  # one stray byte after the RMRR's scope
    ]
    for data, offset in cases:
        with pytest.raises(DmarError) as ei:
            dmar.parse(data)
        assert ei.value.offset == offset, (ei.value, offset)
        assert isinstance(ei.value, VtdError) and f"{offset:#x}" in str(ei.value)


def test_non_bytes_input_is_a_dmar_error() -> None:
    with pytest.raises(DmarError):
        dmar.parse("DMAR" * 20)  # type: ignore[arg-type]
    t = dmar.parse(bytearray(two_socket_server().to_bytes()))
    assert t == two_socket_server()


def test_non_strict_recovers_and_reports(corpus: Path) -> None:
    good = load(corpus, "acer-aspire-a315-51")
    b = bytearray(good)
    b[0x41] = 10  # first scope of the first DRHD now runs past it
    t = dmar.parse(bytes(b), strict=False)
    assert t.to_bytes() == bytes(b)
    assert len(t.structures) == 5
    assert t.drhds[0].scopes == [] and len(t.drhds[0].extra) == 8
    got = _only(t)
    assert got[0] == ("error", "scope-overrun", 0x40)
    assert sum(b) % 256 != 0 and ("error", "bad-checksum", 9) in got  # byte changed, sum not

    b = bytearray(good)
    b[0x32] = 12  # a DRHD of length 12: kept raw, the walk goes on from there
    t = dmar.parse(bytes(b), strict=False)
    assert isinstance(t.structures[0], UnknownStructure)
    assert [p.code for p in t.validate()][:1] == ["structure-too-short"]

    t = dmar.parse(good[:100], strict=False)
    assert {"length-mismatch", "structure-overrun"} <= codes(t)
    assert len(t.drhds) == 1

    with pytest.raises(DmarError):
        dmar.parse(good[:20], strict=False)


# ---------------------------------------------------------------------------------------------
# read_host


def test_read_host_reads_a_given_path(tmp_path: Path, corpus: Path) -> None:
    p = tmp_path / "DMAR"
    p.write_bytes(load(corpus, "acer-aspire-a315-51"))
    assert dmar.read_host(p).oem_id == "ACRSYS"


def test_read_host_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DmarError, match="no DMAR table"):
        dmar.read_host(tmp_path / "absent")
    with pytest.raises(DmarError, match="cannot read"):
        dmar.read_host(tmp_path)  # a directory
    host = Path(dmar.HOST_TABLE_PATH)
    if not host.exists():
        with pytest.raises(DmarError):
            dmar.read_host()


# ---------------------------------------------------------------------------------------------
# JSON and text


TOP_KEYS = {
    "signature",
    "length",
    "revision",
    "checksum",
    "oem_id",
    "oem_table_id",
    "oem_revision",
    "creator_id",
    "creator_revision",
    "host_address_width",
    "flags",
    "structures",
    "problems",
}
COMMON = {"type", "type_code", "offset", "length"}
PER_TYPE = {
    "DRHD": {"flags", "size", "segment", "address", "scopes"},
    "RMRR": {"segment", "base", "limit", "scopes"},
    "ATSR": {"flags", "segment", "scopes"},
    "SATC": {"flags", "segment", "scopes"},
    "RHSA": {"address", "proximity_domain"},
    "ANDD": {"device_number", "name"},
    "SIDP": {"segment", "scopes"},
    "UNKNOWN": set(),
}
SCOPE_KEYS = {
    "type",
    "type_code",
    "offset",
    "length",
    "flags",
    "enumeration_id",
    "start_bus",
    "path",
}


#: Structures whose flags field is also given by name (``flag_names``), as the header's is.
FLAG_NAMED = {"DRHD", "ATSR", "SATC"}


def _check_shape(d: dict[str, object]) -> None:
    assert set(d) == TOP_KEYS | {"flag_names"}
    structures = d["structures"]
    assert isinstance(structures, list)
    for s in structures:
        named = {"flag_names"} if s["type"] in FLAG_NAMED else set()
        assert set(s) == COMMON | PER_TYPE[s["type"]] | named, s
        for sc in s.get("scopes", []):
            assert set(sc) == SCOPE_KEYS
            assert sc["type"] in {"endpoint", "bridge", "ioapic", "hpet", "namespace", "reserved"}
            assert all(isinstance(e, list) and len(e) == 2 for e in sc["path"])


@pytest.mark.parametrize("path", TABLES, ids=TABLE_IDS)
def test_json_shape_on_corpus(corpus: Path, path: Path) -> None:
    d = dmar.parse(path.read_bytes()).to_dict()
    _check_shape(json.loads(json.dumps(d)))


def test_json_values(corpus: Path) -> None:
    raw = load(corpus, "asus-nuc14rvh-b")
    d = json.loads(json.dumps(dmar.parse(raw).to_dict()))
    assert d["signature"] == "DMAR" and d["length"] == len(raw) == 152
    assert d["oem_id"] == "ASUS"  # "ASUS\0\0": trailing NULs removed
    assert d["host_address_width"] == raw[36] + 1 == 42
    assert d["checksum"] == raw[9] and d["flags"] == 5
    assert [s["type"] for s in d["structures"]] == ["DRHD", "DRHD", "SATC", "SIDP"]
    satc = d["structures"][2]
    assert (satc["offset"], satc["length"], satc["flags"], satc["segment"]) == (0x68, 0x18, 1, 0)
    assert [sc["path"] for sc in satc["scopes"]] == [[[2, 0]], [[0xB, 0]]]
    sidp = d["structures"][3]
    assert [sc["flags"] for sc in sidp["scopes"]] == [0x1F, 0x1C]
    assert sidp["scopes"][0]["offset"] == 0x88
    assert d["problems"] == []

    d = dmar.parse(load(corpus, "hp-proliant-dl360-g7")).to_dict()
    deep = [sc for s in d["structures"] for sc in s.get("scopes", []) if len(sc["path"]) > 1]
    assert deep[0]["path"] == [[0x1C, 4], [0, 0]] and deep[0]["length"] == 10
    # X2APIC_OPT_OUT (bit 1) without INTR_REMAP (bit 0), and the deep scope above.
    assert d["flags"] & 3 == 2
    assert {p["code"] for p in d["problems"]} == {
        "multi-level-path",
        "x2apic-opt-out-without-intremap",
    }
    assert set(d["problems"][0]) == {"severity", "offset", "code", "message"}

    d = dmar.parse(load(corpus, "acer-aspire-a315-51")).to_dict()
    assert d["structures"][-1]["name"] == "\\_SB.PCI0.I2C0"
    assert d["structures"][-1]["device_number"] == 1


def test_unknown_structure_json() -> None:
    d = DmarTable(38, 1, [UnknownStructure(9, b"\xab")]).to_dict()
    (s,) = d["structures"]
    assert (s["type"], s["type_code"], s["offset"], s["length"]) == ("UNKNOWN", 9, 48, 5)


def test_text_decode(corpus: Path) -> None:
    text = dmar.format_table(dmar.parse(load(corpus, "hp-proliant-dl360-g7")))
    assert "host address width 39 bits" in text
    assert "X2APIC_OPT_OUT" in text and "INCLUDE_PCI_ALL" in text
    assert "00:1c.4/00.2" in text and "ioapic    00:1e.1 id 8" in text
    assert "[0x00c6] RMRR" in text and "[0xdf61e000, 0xdf61ffff] (8 KiB)" in text
    assert "[multi-level-path]" in text
    text = dmar.format_table(dmar.parse(load(corpus, "acer-aspire-a315-51")))
    assert text.endswith("no problems found")
    assert "ANDD" in text and "\\\\_SB.PCI0.I2C0" in text


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_in_process(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(corpus / "real" / "acer-aspire-a315-51.dat")
    assert cli.main(["dmar", path, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == json.loads(json.dumps(dmar.parse(load(corpus, "acer-aspire-a315-51")).to_dict()))
    assert cli.main(["dmar", path]) == 0
    assert "DRHD" in capsys.readouterr().out


def test_cli_errors_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"DMAR" + bytes(60))
    assert cli.main(["dmar", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vtdwalk dmar: ") and err.count("\n") == 1
    assert cli.main(["dmar", str(bad), "--lenient"]) == 1  # errors found: exit 1
    assert "error [length-mismatch]" in capsys.readouterr().out
    assert cli.main(["dmar", str(tmp_path / "nope")]) == 1
    assert "cannot read" in capsys.readouterr().err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtdwalk.cli", "dmar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_subprocess(corpus: Path, tmp_path: Path) -> None:
    path = corpus / "real" / "google-ecclesia-skx-2s-testdata.dat"
    r = _run(str(path), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    _check_shape(d)
    assert [s["type"] for s in d["structures"]].count("RHSA") == 2
    assert "rhsa-no-drhd" in {p["code"] for p in d["problems"]}

    r = _run(str(path))
    assert r.returncode == 0 and "RHSA" in r.stdout and "proximity domain" in r.stdout

    trunc = tmp_path / "t.dat"
    trunc.write_bytes(path.read_bytes()[:77])
    for args in ([str(trunc)], [str(tmp_path / "missing.dat")], [str(tmp_path)]):
        r = _run(*args)
        assert r.returncode != 0
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


def test_validate_all_ports_with_scopes_and_type_names() -> None:
    t = _base(Atsr(dmar.ALL_PORTS, 1, [DeviceScope.bridge(0x80, 2, 0)]))
    assert _only(t) == [("warning", "all-ports-with-scopes", 0x48)]
    names = [s.type_name for s in two_socket_server().structures]
    assert names == ["DRHD", "DRHD", "RMRR", "RMRR", "ATSR", "RHSA", "RHSA"]
    assert UnknownStructure(8).type_name == "UNKNOWN"
    assert (Andd.type_name, Satc.type_name, Sidp.type_name) == ("ANDD", "SATC", "SIDP")
