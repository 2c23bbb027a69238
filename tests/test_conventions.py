"""The API conventions of the README's "Conventions" section, on every public entry point: the
forms a device may take (Platform, Topology, Remapper, RootTable), the error a malformed one or
a DID out of range raises (InvalidArgument naming the argument), "not mapped" (None, or a flag
or fault array in batches), "no table" (None) and the one Translation type."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import vtdwalk
from lookup import leaf
from reference import present_table
from vtdwalk import (
    Bdf,
    Cap,
    ContextEntry,
    Device,
    DmaFault,
    InvalidArgument,
    PageTable,
    PhysMem,
    Platform,
    Remapper,
    RootTable,
    Topology,
    levels_to_aw,
)
from vtdwalk import dmar as D

B = Bdf.parse
UNIT = 0xB000


def machine(**platform: Any) -> Platform:
    """One include-all unit with an RMRR for 01:00.0, an ALL_PORTS ATSR; 01:00.0 has ATS."""
    table = D.DmarTable(
        host_address_width=38,
        flags=0,
        structures=[
            D.Drhd(flags=1, segment=0, address=UNIT),
            D.Rmrr(
                segment=0,
                base=0x8000_0000,
                limit=0x8000_FFFF,
                scopes=[D.DeviceScope.endpoint(1, 0, 0)],
            ),
            D.Atsr(flags=1, segment=0),
        ],
    )
    topo = Topology([Device(B("01:00.0"), ats=True), Device(B("02:00.0"))])
    return Platform(table, topology=topo, **platform)


#: 01:00.0 in every form a device may take.
FORMS: list[object] = [
    B("01:00.0"),
    "0000:01:00.0",
    "01:00.0",
    (0, 1, 0, 0),
    0x0100,
    np.uint16(0x0100),
    np.int64(0x0100),
]
FORM_IDS = ["Bdf", "ssss:bb:dd.f", "bb:dd.f", "tuple", "int", "np.uint16", "np.int64"]


def _answers(p: Platform, dev: Any) -> dict[str, object]:
    """What each device-naming query says about ``dev``, on a platform where 01:00.0 is
    assigned and mapped."""
    d = p.owner_of(dev)
    unit = p.iommu_for_device(dev)
    assert unit is not None
    did = d.did(unit) if d is not None else None
    return {
        "owner": None if d is None else d.id,
        "unit": unit.address,
        "drhd": None if (x := p.drhd_for_device(dev)) is None else x.address,
        "atsr": p.atsr_for_device(dev) is not None,
        "rmrrs": [(r.base, r.end) for r in p.rmrrs_for_device(dev)],
        "in_domain": p.device_in_domain(unit, dev, did or 0),
        "translate": p.translate(dev, 0x1000).hpa,
        "batch": p.translate_batch([dev, dev], [0x1000, 0x2000])[0].tolist(),
        "topology": p.topology.get(dev),
        "contains": dev in p.topology,
    }


@pytest.mark.parametrize("dev", FORMS, ids=FORM_IDS)
def test_every_device_form_names_the_same_device(dev: object) -> None:
    p = machine()
    d = p.create_domain()
    p.assign_device(d, dev)  # type: ignore[arg-type]
    d.map(0x1000, 0x10_0000, 0x2000)
    got = _answers(p, dev)
    assert got == {
        "owner": d.id,
        "unit": UNIT,
        "drhd": UNIT,
        "atsr": True,  # ALL_PORTS
        "rmrrs": [(0x8000_0000, 0x8000_FFFF)],
        "in_domain": True,  # TT 1: ATS device, ECAP.DT (QEMU's default), an ATSR
        "translate": 0x10_0000,
        "batch": [0x10_0000, 0x10_1000],
        "topology": p.topology[B("01:00.0")],
        "contains": True,
    }
    other = p.create_domain()
    p.reassign_device(dev, other)  # type: ignore[arg-type]
    assert p.owner_of(B("01:00.0")) is other
    assert p.deassign_device(dev) is other  # type: ignore[arg-type]
    assert p.owner_of("01:00.0") is None


#: Entry points that name a device, with the argument's name, called with ``bad`` there.
ENTRY_POINTS: list[tuple[str, str, Callable[[Platform, Any], object]]] = [
    ("assign_device", "bdf", lambda p, bad: p.assign_device(p.create_domain(), bad)),
    ("deassign_device", "bdf", lambda p, bad: p.deassign_device(bad)),
    ("reassign_device", "bdf", lambda p, bad: p.reassign_device(bad, p.create_domain())),
    ("owner_of", "bdf", lambda p, bad: p.owner_of(bad)),
    ("translate", "bdf", lambda p, bad: p.translate(bad, 0)),
    ("translate_batch", "devices", lambda p, bad: p.translate_batch([bad], [0])),
    ("device_in_domain", "bdf", lambda p, bad: p.device_in_domain(0, bad, 1)),
    ("iommu_for_device", "dev", lambda p, bad: p.iommu_for_device(bad)),
    ("drhd_for_device", "dev", lambda p, bad: p.drhd_for_device(bad)),
    ("atsr_for_device", "dev", lambda p, bad: p.atsr_for_device(bad)),
    ("rmrrs_for_device", "dev", lambda p, bad: p.rmrrs_for_device(bad)),
    ("Topology.get", "bdf", lambda p, bad: p.topology.get(bad)),
    ("Bdf.coerce", "bdf", lambda p, bad: Bdf.coerce(bad)),
    ("Bdf.parse", "text", lambda p, bad: Bdf.parse(bad)),
]
BAD = ["zz", "00:20.0", "0000:100:00.0", 1 << 32, -1, (0, 256, 0, 0), 1.5, None]


@pytest.mark.parametrize("name,arg,call", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_a_malformed_pci_address_is_invalid_argument_naming_the_argument(
    name: str, arg: str, call: Callable[[Platform, Any], object], bad: object
) -> None:
    p = machine()
    if name == "Bdf.parse" and not isinstance(bad, str):
        bad = repr(bad)  # parse takes text only
    before = p.to_dict()
    if bad is None and name in ("iommu_for_device", "drhd_for_device", "atsr_for_device"):
        assert call(p, bad) is None  # documented: no device, no unit
        return
    with pytest.raises(InvalidArgument) as ei:
        call(p, bad)
    assert type(ei.value) is InvalidArgument
    assert str(ei.value).startswith(f"{arg}: "), str(ei.value)
    assert p.owner_of("01:00.0") is None and p.to_dict() == before  # nothing changed


def test_an_invalid_argument_message_quotes_a_short_prefix() -> None:
    with pytest.raises(InvalidArgument) as ei:
        Bdf.coerce("x" * 1_000_000)
    assert len(str(ei.value)) < 200


def test_not_mapped_is_none_for_single_look_ups() -> None:
    p = machine()
    d = p.create_domain()
    assert d.lookup(0x1000) is None
    d.map(0x1000, 0x10_0000, 0x1000)
    assert leaf(d.lookup(0x1000)) == (0x10_0000, 0x1000, True, True)
    assert d.lookup(0x2000) is None
    assert d.page_table is not None and d.page_table.lookup(0x2000) is None


def test_the_layers_are_exported_unchanged() -> None:
    assert vtdwalk.dmar is D
    assert {"Platform", "Domain", "Iommu", "Bdf", "Translation", "InvalidArgument"} <= set(
        vtdwalk.__all__
    )


@pytest.mark.parametrize("did", [-1, 1 << 16, np.int64(1 << 16), "1", 1.0, True])
def test_a_did_out_of_range_is_invalid_argument_naming_it(did: object) -> None:
    p = machine()
    with pytest.raises(InvalidArgument, match=r"^did: ") as ei:
        p.device_in_domain(0, "01:00.0", did)  # type: ignore[arg-type]
    assert type(ei.value) is InvalidArgument


# ---- the native objects: device naming, no table, not mapped, DIDs

SID = 0x0308  # 03:01.0


def _tables() -> tuple[PhysMem, PageTable, RootTable, Remapper]:
    """A 4-level table mapping IOVA 0x1000 -> 0x40_0000 read/write for 03:01.0 (DID 5)."""
    mem = PhysMem([(0, 1 << 24)])
    pt = PageTable(mem, 4)
    pt.map(0x1000, 0x40_0000, 0x1000)
    rt = RootTable(mem)
    root = present_table(pt.root)
    rt.set_context(3, 0x08, root, levels_to_aw(4), 5)
    return mem, pt, rt, Remapper(mem, root_table=rt.maddr)


#: 03:01.0 in every form the native objects take.
NATIVE_FORMS: list[object] = [B("03:01.0"), "03:01.0", "0000:03:01.0", SID, np.uint16(SID)]


@pytest.mark.parametrize("dev", NATIVE_FORMS, ids=repr)
def test_native_objects_name_a_device_in_every_form(dev: Any) -> None:
    _, _, rt, r = _tables()
    entry = rt.context(dev)
    assert entry is not None and entry == rt.context(3, 0x08)
    assert ContextEntry(*rt.raw_context(dev)).did == 5
    t = r.translate(dev, 0x1234)
    assert (t.hpa, t.page_size, t.domain_id) == (0x40_0234, 0x1000, 5)
    r.invalidate_context("device", did=5, sid=dev)
    assert r.translate(dev, 0x1234).hpa == 0x40_0234
    assert rt.clear_context(dev) is True and rt.context(3, 0x08) is None


NATIVE_DEVICE_CALLS: list[tuple[str, str, Callable[[RootTable, Remapper, Any], object]]] = [
    ("RootTable.context", "device", lambda rt, r, bad: rt.context(bad)),
    ("RootTable.raw_context", "device", lambda rt, r, bad: rt.raw_context(bad)),
    ("RootTable.clear_context", "device", lambda rt, r, bad: rt.clear_context(bad)),
    ("Remapper.translate", "sid", lambda rt, r, bad: r.translate(bad, 0x1000)),
    (
        "Remapper.invalidate_context",
        "sid",
        lambda rt, r, bad: r.invalidate_context("device", did=5, sid=bad),
    ),
]


@pytest.mark.parametrize(
    "name,arg,call", NATIVE_DEVICE_CALLS, ids=[c[0] for c in NATIVE_DEVICE_CALLS]
)
@pytest.mark.parametrize("bad", ["zz", "00:20.0", 1 << 16, -1, 1.5], ids=repr)
def test_a_malformed_device_on_native_objects_is_invalid_argument_naming_it(
    name: str, arg: str, call: Callable[[RootTable, Remapper, Any], object], bad: object
) -> None:
    _, _, rt, r = _tables()
    before = rt.entries()
    with pytest.raises(InvalidArgument) as ei:
        call(rt, r, bad)
    assert type(ei.value) is InvalidArgument
    assert str(ei.value).startswith(f"{arg}: "), str(ei.value)
    assert rt.entries() == before


def test_no_table_is_none_everywhere() -> None:
    mem = PhysMem([(0, 1 << 24)])
    pt, rt = PageTable(mem), RootTable(mem)
    assert pt.root is None and rt.maddr is None
    assert Remapper(mem).root_table is None
    p = machine()
    (unit,) = p.iommus
    assert unit.root_maddr is not None and unit.root_maddr == unit.root_table.maddr
    assert p.to_dict()["units"][0]["root_table"] == unit.root_maddr
    p.free()
    assert unit.root_maddr is None and unit.root_table.maddr is None
    assert p.to_dict()["units"][0]["root_table"] is None
    # Once allocated, an address (frame 0 is reserved, so never 0).
    pt.map(0, 0x40_0000, 0x1000)
    assert rt.alloc() == rt.maddr and rt.maddr is not None and rt.maddr > 0
    assert pt.root is not None and pt.root > 0


def test_not_mapped_in_batches_is_a_flag_never_an_address() -> None:
    _, pt, _, r = _tables()
    hpa, mapped = pt.lookup_batch([0x1008, 0x2000, 0x1FFF])
    assert hpa.tolist() == [0x40_0008, 0, 0x40_0FFF]
    assert mapped.tolist() == [True, False, True]
    out, fault = r.translate_batch([SID, SID], [0x1008, 0x2000])
    assert out.tolist() == [0x40_0008, 0] and fault.tolist() == [0, 0x6]  # 0x6: READ
    with pytest.raises(DmaFault) as ei:
        r.translate(SID, 0x2000)
    assert (ei.value.reason, ei.value.name) == (0x6, "READ")


DID_CALLS: list[tuple[str, Callable[[RootTable, Remapper, Any], object]]] = [
    ("RootTable.set_context", lambda rt, r, did: rt.set_context(4, 0, 0x1000, 2, did)),
    ("invalidate_iotlb domain", lambda rt, r, did: r.invalidate_iotlb("domain", did=did)),
    (
        "invalidate_iotlb page",
        lambda rt, r, did: r.invalidate_iotlb("page", did=did, addr=0x1000),
    ),
    ("invalidate_context domain", lambda rt, r, did: r.invalidate_context("domain", did=did)),
    (
        "invalidate_context device",
        lambda rt, r, did: r.invalidate_context("device", did=did, sid=SID),
    ),
]


@pytest.mark.parametrize("name,call", DID_CALLS, ids=[c[0] for c in DID_CALLS])
@pytest.mark.parametrize("did", [-1, 1 << 16, np.int64(1 << 16), 1 << 40])
def test_a_did_beyond_16_bits_is_invalid_argument_naming_it_on_native_objects(
    name: str, call: Callable[[RootTable, Remapper, Any], object], did: object
) -> None:
    _, _, rt, r = _tables()
    before, stats = rt.entries(), r.stats()
    with pytest.raises(InvalidArgument, match=r"^did: ") as ei:
        call(rt, r, did)
    assert type(ei.value) is InvalidArgument
    assert rt.entries() == before and r.stats() == stats


def test_a_did_is_checked_against_the_units_cap_nd_where_the_unit_is_known() -> None:
    p = machine(cap=int(Cap.default().replace(nd=1)))
    (unit,) = p.iommus
    assert unit.ndoms == 64  # 2 ** (4 + 2 * 1)
    assert p.device_in_domain(unit, "01:00.0", 63) is False
    with pytest.raises(InvalidArgument, match=r"^did: DID 64 is not in 0\.\.=63$"):
        p.device_in_domain(unit, "01:00.0", 64)
    # Without a unit, the 16-bit field is the range (RootTable writes any 16-bit DID).
    _, _, rt, _ = _tables()
    rt.set_context(4, 0, 0x1000, 2, 0xFFFF)
    entry = rt.context(4, 0)
    assert entry is not None and ContextEntry(*entry).did == 0xFFFF


# ---- one Translation type from every single look-up


def test_a_page_table_look_up_is_a_translation_without_a_domain() -> None:
    """`PageTable.lookup` and `Domain.lookup` give the `Translation` that `translate` gives, with
    the same field names; no context entry is involved, so `domain_id` is None, and the level
    is the leaf's (4 KiB at 1, 2 MiB at 2: vtd-hardware.md §1.7)."""
    _, pt, _, r = _tables()
    pt.map(0x20_0000, 0x60_0000, 0x20_0000)
    small, large = pt.lookup(0x1234), pt.lookup(0x20_0008)
    assert type(small) is vtdwalk.Translation and type(large) is vtdwalk.Translation
    assert type(r.translate(SID, 0x1234)) is vtdwalk.Translation
    assert (small.hpa, small.page_size, small.read, small.write) == (0x40_0234, 0x1000, True, True)
    assert (small.domain_id, small.level) == (None, 1)
    assert (large.hpa, large.page_size, large.domain_id, large.level) == (
        0x60_0008,
        0x20_0000,
        None,
        2,
    )
    assert "domain_id=None" in repr(small) and "level=1" in repr(small)
    t = r.translate(SID, 0x1234)
    assert small != t  # the same mapping, but one came through DID 5's context entry
    assert (t.hpa, t.page_size, t.read, t.write, t.level) == (
        small.hpa,
        small.page_size,
        small.read,
        small.write,
        small.level,
    )
    assert small == pt.lookup(0x1234)  # equal fields, equal translations
    p = machine()
    d = p.create_domain()
    d.map(0x1000, 0x10_0000, 0x1000)
    got = d.lookup(0x1000)
    assert type(got) is vtdwalk.Translation and got.domain_id is None and got.level == 1


def test_the_old_tuple_form_still_works_for_one_release_with_a_warning() -> None:
    _, pt, _, r = _tables()
    t = pt.lookup(0x1234)
    assert t is not None
    with pytest.warns(DeprecationWarning, match="tuple"):
        hpa, size, read, write = t
    assert (hpa, size, read, write) == (0x40_0234, 0x1000, True, True)
    with pytest.warns(DeprecationWarning, match="tuple"):
        assert t == (0x40_0234, 0x1000, True, True)
    with pytest.warns(DeprecationWarning, match="tuple"):
        assert t != (0x40_0234, 0x1000, True, False)
    with pytest.warns(DeprecationWarning, match="tuple"):
        assert tuple(r.translate(SID, 0x1234)) == (0x40_0234, 0x1000, True, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no other shape compares equal, and none warns
        assert t != (0x40_0234, 0x1000)
        assert t != 0x40_0234
    with pytest.raises(TypeError):
        hash(t)
